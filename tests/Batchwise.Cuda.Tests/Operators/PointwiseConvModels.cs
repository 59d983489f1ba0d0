using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Operators;

/// <summary>
/// One pointwise (1x1) convolution as ResNet's bottlenecks have it: x [N, C, H, W] to K channels with a bias, then
/// "relu", "residual-relu" (Add of a second input z [N, K, H, W], then ReLU: the block's expansion) or "none".
/// </summary>
internal sealed record PointwiseConvCase(long Batch, long Channels, long OutChannels, long Height, long Width, string After)
{
    public bool Residual => After == "residual-relu";

    /// <summary>Multiply-adds x 2.</summary>
    public double Flops => 2.0 * Batch * OutChannels * Height * Width * Channels;

    /// <summary>Bytes the layer must move at least in half precision: x, the filter, z when added, and y.</summary>
    public double Bytes => 2.0 * ((Batch * Height * Width * (Channels + (OutChannels * (Residual ? 2 : 1)))) + (Channels * OutChannels));

    public OnnxModel Model()
    {
        var g = new GraphBuilder("pointwise-conv", seed: 3);
        var x = g.Input("x", ElementType.Float, Batch, Channels, Height, Width);
        var z = Residual ? g.Input("z", ElementType.Float, Batch, OutChannels, Height, Width) : null;
        var y = g.Node("Conv", [x, g.Weight("w", [OutChannels, Channels, 1, 1], 0.3f), g.Weight("b", [OutChannels], 0.5f)], GraphBuilder.Attr("kernel_shape", 1, 1));
        y = After switch
        {
            "relu" => g.Node("Relu", [y]),
            "residual-relu" => g.Node("Relu", [g.Node("Add", [y, z!])]),
            _ => y,
        };
        g.Output(g.Rename(y, "y"), ElementType.Float, Batch, OutChannels, Height, Width);
        return g.Build("pointwise-conv");
    }

    /// <summary>Inputs in [-1, 1) from a cheap hash (model-sized batches have hundreds of millions of elements).</summary>
    public List<Tensor> Inputs(int seed)
    {
        List<Tensor> inputs = [PointwiseConvModels.Filled([Batch, Channels, Height, Width], seed)];
        if (Residual)
        {
            inputs.Add(PointwiseConvModels.Filled([Batch, OutChannels, Height, Width], seed + 17));
        }

        return inputs;
    }
}

/// <summary>Pointwise convolution cases: small ones the CPU runs, and ResNet-50's at model sizes for the GPU.</summary>
internal static class PointwiseConvModels
{
    /// <summary>A float32 tensor of <paramref name="shape"/> with values in [-1, 1) from a cheap hash of the index and <paramref name="seed"/>.</summary>
    public static Tensor Filled(long[] shape, int seed)
    {
        var data = new float[Tensor.ElementCountOf(shape)];
        for (var i = 0; i < data.Length; i++)
        {
            var h = unchecked((uint)(i + seed) * 2654435761u);
            h ^= h >> 15;
            data[i] = ((h & 0xffff) / 32768f) - 1f;
        }

        return Tensor.From<float>(ElementType.Float, shape, data);
    }

    public static IReadOnlyDictionary<string, PointwiseConvCase> Small { get; } = new Dictionary<string, PointwiseConvCase>(StringComparer.Ordinal)
    {
        ["16to32-relu"] = new(2, 16, 32, 3, 5, "relu"),
        ["16to32-residual-relu"] = new(2, 16, 32, 4, 3, "residual-relu"),
        ["24to8-bias-only"] = new(1, 24, 8, 5, 5, "none"),
    };

    /// <summary>ResNet-50's pointwise convolutions (224 x 224 input) at batch <paramref name="batch"/>.</summary>
    public static IReadOnlyDictionary<string, PointwiseConvCase> ResNet50(long batch) => new Dictionary<string, PointwiseConvCase>(StringComparer.Ordinal)
    {
        ["56-64to64-relu"] = new(batch, 64, 64, 56, 56, "relu"),
        ["56-64to256-residual"] = new(batch, 64, 256, 56, 56, "residual-relu"),
        ["56-256to64-relu"] = new(batch, 256, 64, 56, 56, "relu"),
        ["28-128to512-residual"] = new(batch, 128, 512, 28, 28, "residual-relu"),
        ["28-512to128-relu"] = new(batch, 512, 128, 28, 28, "relu"),
        ["14-256to1024-residual"] = new(batch, 256, 1024, 14, 14, "residual-relu"),
        ["14-1024to256-relu"] = new(batch, 1024, 256, 14, 14, "relu"),
        ["7-512to2048-residual"] = new(batch, 512, 2048, 7, 7, "residual-relu"),
        ["7-2048to512-relu"] = new(batch, 2048, 512, 7, 7, "relu"),
    };
}
