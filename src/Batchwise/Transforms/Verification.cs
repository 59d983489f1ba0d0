using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>How closely one output of a transformed model follows the original on the same inputs.</summary>
/// <param name="Output">Output name.</param>
/// <param name="MaxAbsError">Largest absolute difference.</param>
/// <param name="MeanAbsError">Mean absolute difference.</param>
/// <param name="Cosine">Cosine similarity of the flattened outputs (1 = same direction).</param>
/// <param name="Top1Agreement">Share of rows whose arg-max agrees (classifier outputs [batch, classes]); null for other outputs.</param>
public sealed record OutputAgreement(string Output, double MaxAbsError, double MeanAbsError, double Cosine, double? Top1Agreement);

/// <summary>One model's speed at one batch size on ONNX Runtime CPU.</summary>
/// <param name="BatchSize">Samples per run.</param>
/// <param name="MedianMs">Median latency of one run, milliseconds.</param>
/// <param name="P90Ms">90th percentile latency, milliseconds.</param>
/// <param name="Runs">Measured runs (after warm-up).</param>
/// <param name="Error">Why it could not run at this batch size, when it could not.</param>
public sealed record SpeedPoint(long BatchSize, double MedianMs, double P90Ms, int Runs, string? Error = null)
{
    /// <summary>Samples per second at the median latency.</summary>
    public double Throughput => MedianMs > 0 ? BatchSize * 1000 / MedianMs : 0;
}

/// <summary>Verifies a transformed model against the original: output agreement on seeded inputs and a before/after timing on ONNX Runtime CPU.</summary>
public static class Verification
{
    /// <summary>Runs both models on the same seeded inputs (batch <paramref name="batchSize"/>) and compares every output the two share.</summary>
    public static IReadOnlyList<OutputAgreement> Compare(OnnxModel original, OnnxModel result, long batchSize = 4, int seed = 42)
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(result);
        var inputs = SeededInputs.Create(result, BatchFor(original, BatchFor(result, batchSize)), seed);
        IReadOnlyList<Tensor> expected, actual;
        using (var session = new OrtEngine().Load(original, new EngineOptions()))
        {
            expected = session.Run(inputs);
        }

        using (var session = new OrtEngine().Load(result, new EngineOptions()))
        {
            actual = session.Run(inputs);
        }

        var agreements = new List<OutputAgreement>();
        var originalOutputs = original.Outputs;
        for (var i = 0; i < actual.Count && i < expected.Count; i++)
        {
            var a = expected[i].ToDoubles();
            var b = actual[i].ToDoubles();
            if (a.Length != b.Length)
            {
                throw new BatchwiseException($"Output '{originalOutputs[i].Name}' changed shape: {Tensor.ShapeText(expected[i].Shape)} before, {Tensor.ShapeText(actual[i].Shape)} after", "This transform must not change output shapes; report it as a bug.");
            }

            agreements.Add(Agreement(originalOutputs[i].Name, a, b, expected[i].Shape));
        }

        return agreements;
    }

    /// <summary>Max/mean absolute error, cosine and (for [batch, classes] outputs) top-1 agreement.</summary>
    public static OutputAgreement Agreement(string name, double[] expected, double[] actual, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(actual);
        ArgumentNullException.ThrowIfNull(shape);
        double max = 0, sum = 0, dot = 0, na = 0, nb = 0;
        for (var j = 0; j < expected.Length; j++)
        {
            var d = Math.Abs(expected[j] - actual[j]);
            max = Math.Max(max, double.IsNaN(d) ? double.PositiveInfinity : d);
            sum += d;
            dot += expected[j] * actual[j];
            na += expected[j] * expected[j];
            nb += actual[j] * actual[j];
        }

        var cosine = na == 0 && nb == 0 ? 1 : na == 0 || nb == 0 ? 0 : dot / Math.Sqrt(na * nb);
        double? top1 = null;
        if (shape.Length == 2 && shape[1] > 1)
        {
            var (rows, cols) = ((int)shape[0], (int)shape[1]);
            var agree = 0;
            for (var r = 0; r < rows; r++)
            {
                agree += ArgMax(expected, r * cols, cols) == ArgMax(actual, r * cols, cols) ? 1 : 0;
            }

            top1 = rows == 0 ? null : (double)agree / rows;
        }

        return new OutputAgreement(name, max, expected.Length == 0 ? 0 : sum / expected.Length, cosine, top1);
    }

    /// <summary>Times a model on ONNX Runtime CPU at each batch size: warm-up, then runs until <paramref name="secondsPerPoint"/> have passed (at least 5 runs).</summary>
    public static IReadOnlyList<SpeedPoint> Bench(OnnxModel model, IEnumerable<long> batchSizes, double secondsPerPoint = 1.0, EngineOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batchSizes);
        var points = new List<SpeedPoint>();
        using var session = new OrtEngine().Load(model, options ?? new EngineOptions());
        var batchable = model.FindBatchAxis();
        foreach (var b in batchSizes)
        {
            if (!batchable.IsBatchable && b != BatchFor(model, b))
            {
                points.Add(new SpeedPoint(b, 0, 0, 0, $"fixed batch ({batchable.Reason})"));
                continue;
            }

            using var run = session.Prepare(SeededInputs.Create(model, b, seed: 1));
            run.Run();
            run.Run();
            var samples = new List<double>();
            var start = System.Diagnostics.Stopwatch.GetTimestamp();
            while (samples.Count < 5 || (System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds < secondsPerPoint && samples.Count < 1000))
            {
                samples.Add(run.Run() * 1000);
            }

            samples.Sort();
            points.Add(new SpeedPoint(b, Quantile(samples, 0.5), Quantile(samples, 0.9), samples.Count));
        }

        return points;
    }

    private static long BatchFor(OnnxModel model, long batchSize) =>
        model.Inputs.FirstOrDefault()?.Shape.FirstOrDefault() is { Value: { } fixedBatch } ? fixedBatch : batchSize;

    private static double Quantile(List<double> sorted, double q)
    {
        var position = q * (sorted.Count - 1);
        var lo = (int)Math.Floor(position);
        var hi = Math.Min(lo + 1, sorted.Count - 1);
        return sorted[lo] + ((position - lo) * (sorted[hi] - sorted[lo]));
    }

    private static int ArgMax(double[] v, int offset, int count)
    {
        var best = offset;
        for (var i = offset + 1; i < offset + count; i++)
        {
            if (v[i] > v[best])
            {
                best = i;
            }
        }

        return best - offset;
    }
}
