using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>How activation ranges are chosen from calibration data.</summary>
public enum CalibrationMethod
{
    /// <summary>The smallest and largest value seen (outliers widen the range).</summary>
    MinMax,

    /// <summary>The 0.01% and 99.99% percentiles of the values seen (outliers clipped).</summary>
    Percentile,

    /// <summary>The clipping threshold that minimises the KL divergence between the float and the 8-bit histograms (TensorRT's entropy calibration).</summary>
    Entropy,
}

/// <summary>Where calibration inputs come from: a folder of .npy files (one per input per sample, or one per sample for single-input models) or N seeded random samples.</summary>
public sealed class CalibrationData
{
    private CalibrationData(string description, Func<OnnxModel, IEnumerable<IReadOnlyList<Tensor>>> samples)
    {
        Description = description;
        Samples = samples;
    }

    /// <summary>What the data is, for reports.</summary>
    public string Description { get; }

    /// <summary>The calibration batches for a model (each batch: one tensor per model input).</summary>
    public Func<OnnxModel, IEnumerable<IReadOnlyList<Tensor>>> Samples { get; }

    /// <summary>Parses --calibration: DIR or random:N.</summary>
    public static CalibrationData Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.StartsWith("random:", StringComparison.OrdinalIgnoreCase))
        {
            var text = spec["random:".Length..];
            if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) || n < 1 || n > 10_000)
            {
                throw new BatchwiseException($"--calibration '{spec}': N must be an integer from 1 to 10000", "Write e.g. --calibration random:16.");
            }

            return new CalibrationData($"{n} random samples (seeded, uniform [-1, 1))", m => Enumerable.Range(0, n).Select(i => SeededInputs.Create(m, 1, seed: 1000 + i)));
        }

        if (!Directory.Exists(spec))
        {
            throw new BatchwiseException($"--calibration directory '{spec}' not found", "Pass a folder of .npy files (one per sample, float32, shaped like the model input) or random:N.");
        }

        var files = Directory.GetFiles(spec, "*.npy").Order(StringComparer.Ordinal).ToArray();
        if (files.Length == 0)
        {
            throw new BatchwiseException($"--calibration directory '{spec}' holds no .npy files", "Save calibration samples with numpy.save (float32, shaped like the model input, batch axis optional).");
        }

        return new CalibrationData($"{files.Length} .npy files from {spec}", m =>
        {
            if (m.Inputs.Count != 1)
            {
                throw new BatchwiseException($"--calibration DIR supports single-input models; '{m.Name}' has {m.Inputs.Count} inputs", "Use --calibration random:N for this model.");
            }

            return files.Select(f => (IReadOnlyList<Tensor>)[Npy.Read(f, m.Inputs[0])]);
        });
    }
}

/// <summary>Reads a calibration sample (.npy, via the benchmark's reader) and checks it fits the model input; a missing batch axis is added.</summary>
internal static class Npy
{
    public static Tensor Read(string path, TensorSpec expected)
    {
        var t = Benchmarking.NpyReader.Read(path);
        if (t.ElementType != expected.ElementType)
        {
            throw new BatchwiseException($"'{path}' holds {t.ElementType.ShortName()}; input '{expected.Name}' is {expected.ElementType.ShortName()}", $"Save with numpy.save(path, x.astype(numpy.{expected.ElementType.ShortName()})).");
        }

        var shape = t.Shape.ToList();
        if (shape.Count == expected.Shape.Count - 1)
        {
            shape.Insert(0, 1);
        }

        var ok = shape.Count == expected.Shape.Count && expected.Shape.Select((d, i) => d.Value is null || d.Value == shape[i]).All(x => x);
        return ok
            ? new Tensor(t.ElementType, [.. shape], t.Data)
            : throw new BatchwiseException($"'{path}' has shape {Tensor.ShapeText(t.Shape)}; input '{expected.Name}' is {expected.ShapeText}", "Save samples shaped like the model input.");
    }
}

/// <summary>Collects activation ranges over calibration batches: min/max in one pass, then a histogram for percentile or entropy.</summary>
internal sealed class RangeCollector(CalibrationMethod method)
{
    private const int Bins = 2048;
    private readonly Dictionary<string, (float Min, float Max)> _minMax = new(StringComparer.Ordinal);
    private readonly Dictionary<string, double[]> _histograms = new(StringComparer.Ordinal);

    public CalibrationMethod Method { get; } = method;

    public Dictionary<string, (float Min, float Max)> Collect(OnnxModel model, IEnumerable<IReadOnlyList<Tensor>> batches, ISet<string> tensors)
    {
        var all = batches.ToList();
        if (all.Count == 0)
        {
            throw new BatchwiseException("Calibration produced no samples", "Pass random:N with N >= 1 or a folder with .npy files.");
        }

        foreach (var batch in all)
        {
            foreach (var (name, t) in ModelProbe.Run(model, batch, tensors).Where(p => tensors.Contains(p.Key) && p.Value.ElementType == ElementType.Float))
            {
                var span = t.AsSpan<float>();
                float lo = float.MaxValue, hi = float.MinValue;
                foreach (var v in span)
                {
                    lo = Math.Min(lo, v);
                    hi = Math.Max(hi, v);
                }

                _minMax[name] = _minMax.TryGetValue(name, out var r) ? (Math.Min(r.Min, lo), Math.Max(r.Max, hi)) : (lo, hi);
            }
        }

        if (Method == CalibrationMethod.MinMax)
        {
            return _minMax;
        }

        // Second pass: histograms of |x| over [0, max|x|].
        foreach (var batch in all)
        {
            foreach (var (name, t) in ModelProbe.Run(model, batch, tensors).Where(p => _minMax.ContainsKey(p.Key)))
            {
                var (min, max) = _minMax[name];
                var limit = Math.Max(Math.Abs(min), Math.Abs(max));
                if (!_histograms.TryGetValue(name, out var h))
                {
                    _histograms[name] = h = new double[Bins];
                }

                if (limit == 0)
                {
                    continue;
                }

                foreach (var v in t.AsSpan<float>())
                {
                    h[Math.Min(Bins - 1, (int)(Math.Abs(v) / limit * Bins))]++;
                }
            }
        }

        var result = new Dictionary<string, (float Min, float Max)>(StringComparer.Ordinal);
        foreach (var (name, (min, max)) in _minMax)
        {
            var limit = Math.Max(Math.Abs(min), Math.Abs(max));
            var h = _histograms[name];
            var threshold = Method == CalibrationMethod.Percentile ? Percentile(h, 0.9999) : Entropy(h);
            var t = (float)(limit * threshold / Bins);
            result[name] = (Math.Max(min, -t), Math.Min(max, t));
        }

        return result;
    }

    // The bin edge below which the given share of values lies.
    private static int Percentile(double[] h, double share)
    {
        var total = h.Sum();
        double seen = 0;
        for (var i = 0; i < h.Length; i++)
        {
            seen += h[i];
            if (seen >= share * total)
            {
                return i + 1;
            }
        }

        return h.Length;
    }

    // TensorRT's entropy calibration: for each candidate threshold, clip the histogram there (outliers into the last bin),
    // quantize it to 128 levels, expand back, and keep the threshold with the smallest KL divergence.
    private static int Entropy(double[] h)
    {
        const int Levels = 128;
        var best = h.Length;
        var bestDivergence = double.MaxValue;
        for (var i = Levels; i <= h.Length; i += 16)
        {
            var p = new double[i];
            Array.Copy(h, p, i);
            for (var j = i; j < h.Length; j++)
            {
                p[i - 1] += h[j];
            }

            var q = new double[i];
            var width = (double)i / Levels;
            for (var level = 0; level < Levels; level++)
            {
                var start = (int)(level * width);
                var end = level == Levels - 1 ? i : (int)((level + 1) * width);
                double sum = 0;
                var nonZero = 0;
                for (var j = start; j < end; j++)
                {
                    sum += h[j];
                    nonZero += h[j] > 0 ? 1 : 0;
                }

                for (var j = start; j < end; j++)
                {
                    q[j] = h[j] > 0 ? sum / nonZero : 0;
                }
            }

            var divergence = KullbackLeibler(p, q);
            if (divergence < bestDivergence)
            {
                bestDivergence = divergence;
                best = i;
            }
        }

        return best;
    }

    private static double KullbackLeibler(double[] p, double[] q)
    {
        double sp = p.Sum(), sq = q.Sum(), d = 0;
        if (sp == 0 || sq == 0)
        {
            return double.MaxValue;
        }

        for (var i = 0; i < p.Length; i++)
        {
            if (p[i] > 0)
            {
                var pi = p[i] / sp;
                var qi = q[i] / sq;
                d += qi > 0 ? pi * Math.Log(pi / qi) : pi * 20; // an empty quantized bin where data lives: heavily penalised
            }
        }

        return d;
    }
}
