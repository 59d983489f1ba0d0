using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>Reproducible inputs for a model: the same seed gives the same tensors, so two variants of a model see the same data.</summary>
public static class SeededInputs
{
    /// <summary>Size used for dynamic dimensions other than the batch (spatial size, sequence length).</summary>
    public const long DefaultDynamicSize = 64;

    /// <summary>Creates one tensor per model input: the batch axis at <paramref name="batchSize"/> (when dynamic), other dynamic axes at <paramref name="dynamicSize"/>; floats standard normal, integers in [0, 100), masks all ones.</summary>
    public static IReadOnlyList<Tensor> Create(OnnxModel model, long batchSize, int seed = 42, long dynamicSize = DefaultDynamicSize)
    {
        ArgumentNullException.ThrowIfNull(model);
        var rng = new Random(seed);
        var result = new List<Tensor>();
        foreach (var input in model.Inputs)
        {
            var shape = input.Shape.Select((d, i) => d.Value ?? (i == 0 ? batchSize : dynamicSize)).ToArray();
            var n = (int)Tensor.ElementCountOf(shape);
            switch (input.ElementType)
            {
                case ElementType.Float:
                    result.Add(Tensor.From<float>(ElementType.Float, shape, Normal(rng, n)));
                    break;
                case ElementType.Float16:
                    result.Add(Tensor.From<Half>(ElementType.Float16, shape, Array.ConvertAll(Normal(rng, n), v => (Half)v)));
                    break;
                case ElementType.Int64:
                    var mask = input.Name.Contains("mask", StringComparison.OrdinalIgnoreCase);
                    result.Add(Tensor.From<long>(ElementType.Int64, shape, Enumerable.Range(0, n).Select(_ => mask ? 1L : rng.Next(100)).ToArray()));
                    break;
                case ElementType.Int32:
                    result.Add(Tensor.From<int>(ElementType.Int32, shape, Enumerable.Range(0, n).Select(_ => rng.Next(100)).ToArray()));
                    break;
                default:
                    throw new BatchwiseException($"Cannot generate inputs of type {input.ElementType.ShortName()} (input '{input.Name}')", "Use a model with float or integer inputs.");
            }
        }

        return result;
    }

    private static float[] Normal(Random rng, int n)
    {
        var values = new float[n];
        for (var i = 0; i < n; i++)
        {
            // Box-Muller: standard normal from two uniforms.
            var u1 = 1.0 - rng.NextDouble();
            var u2 = rng.NextDouble();
            values[i] = (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2));
        }

        return values;
    }
}
