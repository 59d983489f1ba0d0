using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>Reproducible inputs for a model: the same seed gives the same tensors, so two variants of a model see the same data.</summary>
public static class SeededInputs
{
    /// <summary>Size used for dynamic dimensions other than the batch (spatial size, sequence length).</summary>
    public const long DefaultDynamicSize = 64;

    /// <summary>Creates one tensor per model input: the batch axis at <paramref name="batchSize"/> (when dynamic), other dynamic axes at <paramref name="dynamicSize"/>; data from the benchmark's InputGenerator (floats uniform in [-1, 1), token ids within the vocabulary, masks all ones).</summary>
    public static IReadOnlyList<Tensor> Create(OnnxModel model, long batchSize, int seed = 42, long dynamicSize = DefaultDynamicSize)
    {
        ArgumentNullException.ThrowIfNull(model);
        var shapes = model.Inputs.Select(input => input.Shape.Select((d, i) => d.Value ?? (i == 0 ? batchSize : dynamicSize)).ToArray()).ToList();
        return new InputGenerator(model, seed).Generate(shapes);
    }
}
