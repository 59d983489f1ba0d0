using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>
/// The inputs `optimize` verifies, costs and benches the original and the result with: both at the same shapes (from
/// --shape and --input-size, never a hidden default size) and on the same data, seeded random or real samples
/// (--calibration DIR doubles as verification data).
/// </summary>
public sealed class VerificationInputs
{
    /// <summary>Most real samples used for the agreement check.</summary>
    public const int MaxSamples = 32;

    private VerificationInputs(ShapeBindings shapes, IReadOnlyList<IReadOnlyList<Tensor>>? samples, string description)
    {
        Shapes = shapes;
        Samples = samples;
        Description = description;
    }

    /// <summary>Sizes of dynamic dimensions: --shape, with --input-size's height and width added.</summary>
    public ShapeBindings Shapes { get; }

    /// <summary>Real samples (one batch each, in the original's input types), or null for seeded random data.</summary>
    public IReadOnlyList<IReadOnlyList<Tensor>>? Samples { get; }

    /// <summary>What the agreement check runs on, for reports.</summary>
    public string Description { get; }

    /// <summary>
    /// Sizes every dynamic dimension of <paramref name="original"/> but the batch from the options, or throws naming every
    /// one left without a size (before any transform runs); loads real samples when --calibration names a folder.
    /// </summary>
    public static VerificationInputs Create(OnnxModel original, OptimizeOptions options)
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(options);
        var shapes = options.Shapes;
        if (options.InputSize is { } text)
        {
            var size = StaticInputSize.Parse(text);
            shapes = shapes.WithImageSize(original.Inputs, size.Height, size.Width);
        }

        shapes.Resolve(original.Inputs, original.FindBatchAxis(), 1);
        if (options.Calibration is { } calibration && !calibration.StartsWith("random:", StringComparison.OrdinalIgnoreCase))
        {
            var samples = CalibrationData.Parse(calibration).Samples(original).Take(MaxSamples).ToList();
            return new VerificationInputs(shapes, samples, $"{samples.Count} real samples from {calibration}");
        }

        return new VerificationInputs(shapes, null, "seeded random inputs, batch 4");
    }

    /// <summary>The concrete input shapes of <paramref name="model"/> (the original or a result) at a batch size.</summary>
    public IReadOnlyList<long[]> ShapesFor(OnnxModel model, long batchSize)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Shapes.Resolve(model.Inputs, model.FindBatchAxis(), checked((int)batchSize), strict: false);
    }

    /// <summary>Seeded inputs for <paramref name="model"/> at a batch size (the benchmark's generator: floats in [-1, 1), token ids within the vocabulary, masks 1).</summary>
    public IReadOnlyList<Tensor> Seeded(OnnxModel model, long batchSize, int seed = 42)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new InputGenerator(model, seed).Generate(ShapesFor(model, batchSize));
    }

    /// <summary>The batches the agreement check runs: the real samples, or one seeded batch of 4 (in the original's shapes and types).</summary>
    public IReadOnlyList<IReadOnlyList<Tensor>> AgreementBatches(OnnxModel original) => Samples ?? [Seeded(original, 4)];

    /// <summary>The model's input shapes at batch 1, for reports: "x [1, 3, 320, 320]".</summary>
    public string Describe(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var shapes = ShapesFor(model, 1);
        return string.Join(", ", model.Inputs.Select((i, k) => $"{i.Name} {Tensor.ShapeText(shapes[k])}"));
    }
}
