using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Zoo;

namespace Batchwise.Analysis;

/// <summary>What `batchwise explain` is asked: the model, the engine and its options, and where the measured side comes from.</summary>
public sealed record ExplainRequest
{
    /// <summary>The model as given (a path or zoo:NAME).</summary>
    public required string Model { get; init; }

    /// <summary>The engine to explain.</summary>
    public required IEngine Engine { get; init; }

    /// <summary>The engine's options (precision, TF32, CUDA graph change the ceilings the prediction takes).</summary>
    public EngineOptions Options { get; init; } = new();

    /// <summary>Batch sizes to predict and measure.</summary>
    public IReadOnlyList<int> BatchSizes { get; init; } = [1, 2, 4, 8, 16, 32];

    /// <summary>The input size the model runs at (dynamic axes only); null: the model's own or the default.</summary>
    public InputSize? Size { get; init; }

    /// <summary>Sizes of other dynamic dimensions (--shape), as bench takes them.</summary>
    public Benchmarking.ShapeBindings Shapes { get; init; } = Benchmarking.ShapeBindings.None;

    /// <summary>A bench file to take the measured points from instead of measuring.</summary>
    public string? BenchFile { get; init; }

    /// <summary>Predict only: measure nothing.</summary>
    public bool NoMeasure { get; init; }

    /// <summary>Measurement time per batch size of the short sweep.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How many of the most costly layers to list.</summary>
    public int Top { get; init; } = 10;

    /// <summary>Measure the device's ceilings again instead of reading the cache.</summary>
    public bool Recalibrate { get; init; }

    /// <summary>
    /// Device ceilings from this file (--ceilings-file: a ceilings cache file, as `explain` and `devices --ceilings` write them under
    /// $BATCHWISE_CACHE_DIR/ceilings, perhaps on another machine) instead of this machine's cache or a probe; with
    /// <see cref="NoMeasure"/> or <see cref="BenchFile"/> the engine's device is not needed.
    /// </summary>
    public string? CeilingsFile { get; init; }
}

/// <summary>An explanation with what it was made from.</summary>
/// <param name="Explanation">The prediction, the measured points and the verdict.</param>
/// <param name="Context">Model, engine, device, machine, date (for the report's context table).</param>
/// <param name="CeilingsFromCache">Whether the device ceilings came from the cache (else measured now).</param>
/// <param name="CeilingsPath">The ceilings cache file.</param>
/// <param name="Warnings">Things the user should know (a bench file measured elsewhere).</param>
public sealed record ExplainResult(Explanation Explanation, IReadOnlyDictionary<string, string> Context, bool CeilingsFromCache, string CeilingsPath, IReadOnlyList<string> Warnings);

/// <summary>explain end to end: ceilings, the model's work, the measured side, the prediction and the verdict.</summary>
public static class ExplainRun
{
    /// <summary>
    /// What explain says about nodes whose output size depends on values (NonZero) on an engine that plans ahead: the
    /// cuda engine runs such a plan in segments, reading each count back to the host (a stream synchronisation per node
    /// per run), which the prediction does not cost; null when the model has none or the engine plans nothing ahead.
    /// </summary>
    public static string? HostSynchronisations(OnnxModel model, string engine)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!string.Equals(engine, "cuda", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        var nodes = model.Graph.Node.Where(n => OperatorRegistry.Find(n.Domain, n.OpType, model.OpsetOf(n.Domain))?.HasDataDependentShape == true).ToList();
        return nodes.Count == 0
            ? null
            : $"the plan has {nodes.Count} host synchronisation{(nodes.Count == 1 ? string.Empty : "s")} per run ({string.Join(", ", nodes.Take(3).Select(n => $"{n.OpType} '{(n.Name.Length > 0 ? n.Name : n.Output.FirstOrDefault())}'"))}{(nodes.Count > 3 ? ", ..." : string.Empty)}): their output size depends on the values, so the cuda engine runs up to each, reads its count back and runs the rest under a plan built per count; the prediction does not cost the waits";
    }

    /// <summary>
    /// Runs explain: <paramref name="say"/> gets what the user should see while it runs (a calibration in progress),
    /// <paramref name="detail"/> the rest (sweep points, where the ceilings came from).
    /// </summary>
    public static ExplainResult Execute(ExplainRequest request, Action<string> say, Action<string> detail, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(say);
        ArgumentNullException.ThrowIfNull(detail);
        if (request.Top < 1)
        {
            throw new BatchwiseException($"--top {request.Top} lists nothing", "Pass --top 1 or more.");
        }

        var batches = request.BatchSizes.Distinct().Order().ToList();
        var original = ModelSource.Load(request.Model);
        request = request with { Options = Transforms.CalibratedInt8.OptionsFor(request.Options, original) };

        // Every dynamic dimension but the batch gets a size from --shape or --input-size, never a silent default:
        // the same rule, error and syntax as bench.
        var bindings = request.Shapes;
        if (request.Size is not null && bindings.Text.Count > 0)
        {
            throw new BatchwiseException("--input-size and --shape both size the input", "Give the size once: --shape (any model) or --input-size (images and sequences).");
        }

        var onnx = request.Size is null && (bindings.Text.Count > 0 || original.Inputs.Any(i => i.Shape.Skip(1).Any(d => d.IsDynamic))) ? bindings.Pin(original) : original;
        var engine = request.Engine;
        var (measuredCeilings, fromCache, cachePath) = request.CeilingsFile is { } file ? (ReadCeilingsFile(file, request.Recalibrate), true, file)
            : DeviceCeilingsSource.Get(engine, request.Options, CeilingsCache.Default(), request.Recalibrate, say, cancellationToken);
        detail($"ceilings {(fromCache ? "from" : "written to")} {cachePath}");

        // The cache holds every precision the probe measured; the prediction takes the one these options run in, with the
        // products' weights cold where the model's do not fit the device's cache.
        var ceilings = measuredCeilings.For(request.Options).ForWeights(WeightBytes(original, request.Options.Precision));

        // The cuda engine fuses epilogues (BN folded, ReLU and residual Add in cuDNN's call, other chains in one kernel).
        var fuses = string.Equals(engine.Name, "cuda", StringComparison.OrdinalIgnoreCase);

        // In half precision it also runs attention blocks as one kernel and their Q, K, V projections as one product.
        var fusesAttention = fuses && ceilings.Precision == "fp16";

        // And (from compute capability 8.0) ResNet's stem as one kernel reading the float32 input as given.
        var fusesStem = fusesAttention && (!ceilings.Details.TryGetValue("compute_capability", out var cc) || !int.TryParse(cc, CultureInfo.InvariantCulture, out var capability) || capability >= 80);

        // --precision int8 on a float model: explain the QDQ model the engine will run (quantized as it loads, with the
        // same calibration, whose ranges are cached so the sweep does not calibrate again).
        var int8 = request.Options.Precision == Precision.Int8 && !QuantizedGraph.IsQuantized(onnx);
        var work = ModelWork.Analyze(int8 ? Transforms.CalibratedInt8.Quantize(onnx, request.Options.Calibration, reduceRange: !fuses && Transforms.Int8Weights.ReduceRangeByDefault) : onnx, request.Size, fuses, fusesAttention, fusesStem);
        var warnings = new List<string>();
        if (HostSynchronisations(onnx, engine.Name) is { } synchronises)
        {
            warnings.Add(synchronises);
        }
        IReadOnlyList<MeasuredPoint> measured = [];
        if (request.BenchFile is { } benchFile)
        {
            var contents = Analysis.BenchFile.Read(benchFile);
            measured = contents.Points;
            if (!string.Equals(contents.Engine, engine.Name, StringComparison.OrdinalIgnoreCase) || contents.Device != ceilings.Device)
            {
                warnings.Add($"{benchFile} was measured with {contents.Engine} on {contents.Device}; the prediction is for {engine.Name} on {ceilings.Device}");
            }
        }
        else if (!request.NoMeasure)
        {
            measured = MeasuredSweep.Run(engine, request.Options, onnx, request.Model, batches, request.Size, request.Duration.TotalSeconds, detail, cancellationToken);
        }

        var fromBench = request.BenchFile is not null;
        // The input-size lever is the float model's; an int8 explanation leaves it out rather than mix precisions.
        var smaller = work.HasInt8 ? null : SmallerInput(request.Model, original, request.Size ?? PinnedImageSize(original, onnx), fuses, fusesAttention, fusesStem, detail);
        // The int8 verdict's check: the float model measured too, in the precision its float layers run (fp16 on a GPU, fp32 on a CPU).
        IReadOnlyList<MeasuredPoint> floatMeasured = [];
        if (int8 && !fromBench && measured.Count > 0)
        {
            var floatOptions = request.Options with { Precision = ceilings.Precision == "fp16" ? Precision.Fp16 : Precision.Fp32 };
            detail($"measuring the float model at {ceilings.Precision} for the int8 comparison");
            floatMeasured = MeasuredSweep.Run(engine, floatOptions, onnx, request.Model, batches, request.Size, request.Duration.TotalSeconds, detail, cancellationToken);
        }

        var explanation = Explainer.Explain(work, ceilings, measured.Count > 0 && fromBench ? [] : batches, measured, request.Top, smaller, fromBench ? null : MeasuredSweep.LoadAverage(), floatMeasured);

        // With ceilings from a file and nothing measured here, this machine need not have the engine's device.
        EngineDescription? description = null;
        try
        {
            description = engine.Describe(request.Options);
        }
        catch (BatchwiseException) when (request.CeilingsFile is not null && (request.NoMeasure || fromBench))
        {
        }

        var context = new Dictionary<string, string>
        {
            ["model"] = request.Model,
            ["input"] = explanation.Input,
            ["engine"] = description is null ? $"{engine.Name} (not loaded here: ceilings from {request.CeilingsFile})" : $"{description.Engine} {description.Version}",
            ["ceilings used"] = ceilings.Precision + " GEMM" + (work.HasInt8 ? (ceilings.HasInt8 ? " for float layers, int8 GEMM for int8 layers" : " for every layer (no int8 ceiling measured)") : string.Empty)
                + (ceilings.Launch.Length > 0 ? $", launch costs of a {ceilings.Launch}" : string.Empty)
                + (ceilings.LayerRates.Keys.Any(k => k.StartsWith(ceilings.Precision + "/", StringComparison.Ordinal)) ? ", measured layer rates" : string.Empty)
                + (ceilings.WeightsCold ? ", products' weights from memory (they exceed the device's cache)" : string.Empty),
            ["device"] = description?.Device ?? ceilings.Device,
            ["machine"] = $"{HostInfo.MachineName}, {HostInfo.LogicalCores} logical cores, {HostInfo.OperatingSystem}",
            ["runtime"] = HostInfo.Runtime,
            ["measured sweep"] = fromBench ? $"from {request.BenchFile}" : measured.Count > 0 ? $"short sweep, {request.Duration.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s per batch size" : "none (--no-measure)",
            ["load average"] = explanation.LoadAverage is { } la ? la.ToString("N1", CultureInfo.InvariantCulture) : "not recorded",
            ["date"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture),
        };
        return new ExplainResult(explanation, context, fromCache, cachePath, warnings);
    }

    /// <summary>The ceilings in <paramref name="path"/> (a ceilings cache file); a one-line error where it is not one.</summary>
    private static DeviceCeilings ReadCeilingsFile(string path, bool recalibrate)
    {
        if (recalibrate)
        {
            throw new BatchwiseException("--ceilings-file and --recalibrate both say where the ceilings come from", "Give one: --ceilings-file FILE (measured earlier, perhaps elsewhere) or --recalibrate (measure this machine's device again).");
        }

        if (!File.Exists(path))
        {
            throw new BatchwiseException($"Ceilings file '{path}' not found", "Pass a file from a ceilings cache ($BATCHWISE_CACHE_DIR/ceilings/*.json, written by explain or `devices --ceilings`).");
        }

        return new CeilingsCache(Path.GetDirectoryName(Path.GetFullPath(path))!).TryRead(path, olderSchemas: true)
            ?? throw new BatchwiseException($"'{path}' is not a ceilings file of this Batchwise (schema {DeviceCeilings.OldestReadableSchema} to {DeviceCeilings.CurrentSchema})", "Pass a file from a ceilings cache ($BATCHWISE_CACHE_DIR/ceilings/*.json), not `devices --ceilings --json` output (a summary without the rate tables), or measure with --recalibrate.");
    }

    /// <summary>The image size --shape gave a model with a dynamic height and width, or null.</summary>
    private static InputSize? PinnedImageSize(OnnxModel original, OnnxModel pinned)
    {
        var i = original.Inputs.ToList().FindIndex(x => x.Shape.Count == 4 && (x.Shape[2].IsDynamic || x.Shape[3].IsDynamic));
        return i < 0 ? null : new InputSize((int)pinned.Inputs[i].Shape[2].Value!.Value, (int)pinned.Inputs[i].Shape[3].Value!.Value);
    }

    /// <summary>The same model at half the image size (for the input-size lever), where the model allows it.</summary>
    private static (InputSize From, InputSize To, ModelWork Work)? SmallerInput(string spec, OnnxModel onnx, InputSize? size, bool fuses, bool fusesAttention, bool fusesStem, Action<string> log)
    {
        var image = onnx.Inputs.FirstOrDefault(i => i.Shape.Count == 4);
        if (image is null)
        {
            return null;
        }

        var from = size ?? new InputSize((int)(image.Shape[2].Value ?? InputShapes.DefaultImageSize), (int)(image.Shape[3].Value ?? InputShapes.DefaultImageSize));
        var to = new InputSize(Math.Max(1, from.Height / 2), Math.Max(1, from.Width / 2));
        if (from.Width < 64 || from.Height < 64)
        {
            return null;
        }

        try
        {
            if (!image.Shape[2].IsDynamic && spec.StartsWith(ModelZoo.Prefix, StringComparison.OrdinalIgnoreCase))
            {
                // A fixed-size zoo model: build it again at the smaller size (size=SIDE, or HEIGHTxWIDTH as everywhere).
                var q = spec.IndexOf('?', StringComparison.Ordinal);
                var kept = q < 0 ? [] : spec[(q + 1)..].Split('&').Where(p => !p.StartsWith("size=", StringComparison.OrdinalIgnoreCase));
                var smaller = (q < 0 ? spec : spec[..q]) + "?" + string.Join('&', kept.Append($"size={to}"));
                return (from, to, ModelWork.Analyze(ModelZoo.Build(smaller), null, fuses, fusesAttention, fusesStem));
            }

            return image.Shape[2].IsDynamic ? (from, to, ModelWork.Analyze(onnx, to, fuses, fusesAttention, fusesStem)) : null;
        }
        catch (BatchwiseException e)
        {
            log($"input-size lever skipped: {e.Message}");
            return null;
        }
    }

    /// <summary>
    /// The model's weights as an engine at <paramref name="precision"/> keeps them: float initializers at 2 bytes in fp16
    /// (and int8, whose float layers run in fp16) and 4 in fp32, 8-bit ones at 1, others at their own size.
    /// </summary>
    internal static double WeightBytes(Onnx.OnnxModel model, Precision precision) =>
        model.Graph.Initializer.Sum(t =>
        {
            var count = t.Dims.Aggregate(1.0, (a, b) => a * b);
            return count * (ElementType)t.DataType switch
            {
                ElementType.Float or ElementType.Float16 or ElementType.BFloat16 => precision == Precision.Fp32 ? 4 : 2,
                var other when other is ElementType.Undefined or ElementType.String || !Enum.IsDefined(other) => 8, // no fixed size: few, counted wide
                var type => type.SizeOf(),
            };
        });
}
