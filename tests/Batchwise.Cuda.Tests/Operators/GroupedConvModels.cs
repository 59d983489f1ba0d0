using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Operators;

/// <summary>
/// One grouped convolution as RegNet and ResNeXt have it: x [N, C, H, W], C / groups input channels a group, a 3x3 (or
/// other) window, a bias or a BatchNormalization, then what follows (ReLU, a residual Add then ReLU, or nothing).
/// </summary>
/// <param name="Batch">N.</param>
/// <param name="Channels">C.</param>
/// <param name="Height">H.</param>
/// <param name="Width">W.</param>
/// <param name="Groups">The group count.</param>
/// <param name="OutChannels">K (C when 0).</param>
/// <param name="Stride">Both strides.</param>
/// <param name="Pads">[top, left, bottom, right].</param>
/// <param name="Dilation">Both dilations.</param>
/// <param name="Kernel">The window's side.</param>
/// <param name="After">"relu", "bn-relu" (a BatchNormalization folded in, then ReLU), "residual-relu" (Add of the input, then ReLU), "silu" (Sigmoid and Mul: a chain over the raw sum that takes the bias), or "none" (bias only).</param>
internal sealed record GroupedConvCase(long Batch, long Channels, long Height, long Width, long Groups, long OutChannels = 0, long Stride = 1, long[]? Pads = null, long Dilation = 1, long Kernel = 3, string After = "relu")
{
    public long K => OutChannels == 0 ? Channels : OutChannels;

    public long[] PadsOrOne => Pads ?? [1, 1, 1, 1];

    public long OutHeight => ((Height + PadsOrOne[0] + PadsOrOne[2] - (((Kernel - 1) * Dilation) + 1)) / Stride) + 1;

    public long OutWidth => ((Width + PadsOrOne[1] + PadsOrOne[3] - (((Kernel - 1) * Dilation) + 1)) / Stride) + 1;

    /// <summary>Multiply-adds x 2 of the convolution.</summary>
    public double Flops => 2.0 * Batch * K * OutHeight * OutWidth * (Channels / Groups) * Kernel * Kernel;

    /// <summary>The case's one-node graph (plus its BatchNormalization, Add, ReLU) with seeded weights.</summary>
    public OnnxModel Model()
    {
        var g = new GraphBuilder("grouped-conv", seed: 5);
        var x = g.Input("x", ElementType.Float, Batch, Channels, Height, Width);
        var w = g.Weight("w", [K, Channels / Groups, Kernel, Kernel], 0.5f);
        string[] ins = After == "bn-relu" ? [x, w] : [x, w, g.Weight("b", [K], 0.5f)];
        var y = g.Node("Conv", ins, GraphBuilder.Attr("group", Groups), GraphBuilder.Attr("kernel_shape", Kernel, Kernel), GraphBuilder.Attr("strides", Stride, Stride), GraphBuilder.Attr("pads", PadsOrOne), GraphBuilder.Attr("dilations", Dilation, Dilation));
        y = After switch
        {
            "relu" => g.Node("Relu", [y]),
            "bn-relu" => g.Node("Relu", [g.Node("BatchNormalization", [y, g.Uniform("gamma", [K], 0.5f, 1.5f), g.Weight("beta", [K], 0.5f), g.Weight("mean", [K], 0.2f), g.Uniform("var", [K], 0.5f, 1.5f)])]),
            "residual-relu" => g.Node("Relu", [g.Node("Add", [y, x])]),
            "silu" => g.Node("Mul", [y, g.Node("Sigmoid", [y])]),
            _ => y,
        };
        g.Output(g.Rename(y, "y"), ElementType.Float, Batch, K, OutHeight, OutWidth);
        return g.Build("grouped-conv");
    }

    /// <summary>Seeded inputs in [-1, 1).</summary>
    public List<Tensor> Inputs(int seed)
    {
        var rng = new Random(seed);
        long[] shape = [Batch, Channels, Height, Width];
        var n = (int)Tensor.ElementCountOf(shape);
        return [Tensor.From<float>(ElementType.Float, shape, Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray())];
    }
}

/// <summary>Grouped convolution cases: small ones the CPU runs, and RegNet/ResNeXt layers at model sizes for the GPU.</summary>
internal static class GroupedConvModels
{
    /// <summary>Small cases (the CPU runs every block's threads): group widths 24, 16, 8, strides 1 and 2, odd sizes.</summary>
    public static IReadOnlyDictionary<string, GroupedConvCase> Small { get; } = new Dictionary<string, GroupedConvCase>(StringComparer.Ordinal)
    {
        ["gw24-s1-relu"] = new(2, 48, 9, 11, 2),
        ["gw24-s2-odd-bn-relu"] = new(1, 72, 13, 10, 3, Stride: 2, After: "bn-relu"),
        ["gw24-s1-residual-relu"] = new(1, 48, 7, 9, 2, After: "residual-relu"),
        ["gw24-s1-bias-only"] = new(1, 48, 5, 6, 2, After: "none"),
        ["gw24-s1-silu"] = new(1, 48, 7, 6, 2, After: "silu"),
        ["gw24-dilation2-asymmetric"] = new(1, 48, 10, 7, 2, Pads: [2, 1, 1, 2], Dilation: 2),
        ["gw16-s1-relu"] = new(1, 32, 7, 7, 2),
        ["gw8-s2-bn-relu"] = new(1, 32, 12, 9, 4, Stride: 2, After: "bn-relu"),
        ["gw32-to-24-s1"] = new(1, 64, 6, 8, 2, OutChannels: 48),
        ["gw64-1x1"] = new(1, 128, 5, 5, 2, Pads: [0, 0, 0, 0], Kernel: 1),
    };

    /// <summary>
    /// RegNetY-016 (widths 48/120/336/888) and RegNetX-016 (72/168/408/912), group width 24, each stage's first block
    /// (stride 2) and a later one (stride 1) at 224x224 input, and ResNeXt-50 32x4d's stage 3 and 4 (group widths 16
    /// and 32), at batch <paramref name="batch"/>.
    /// </summary>
    public static IReadOnlyDictionary<string, GroupedConvCase> Layers(long batch) => new Dictionary<string, GroupedConvCase>(StringComparer.Ordinal)
    {
        ["regnety016-s1-b1"] = new(batch, 48, 112, 112, 2, Stride: 2),
        ["regnety016-s1-b2"] = new(batch, 48, 56, 56, 2),
        ["regnety016-s2-b1"] = new(batch, 120, 56, 56, 5, Stride: 2),
        ["regnety016-s2-b2"] = new(batch, 120, 28, 28, 5),
        ["regnety016-s3-b1"] = new(batch, 336, 28, 28, 14, Stride: 2),
        ["regnety016-s3-b2"] = new(batch, 336, 14, 14, 14),
        ["regnety016-s4-b1"] = new(batch, 888, 14, 14, 37, Stride: 2),
        ["regnety016-s4-b2"] = new(batch, 888, 7, 7, 37),
        ["regnetx016-s1-b1"] = new(batch, 72, 112, 112, 3, Stride: 2),
        ["regnetx016-s2-b2"] = new(batch, 168, 28, 28, 7),
        ["regnetx016-s3-b2"] = new(batch, 408, 14, 14, 17),
        ["regnetx016-s4-b2"] = new(batch, 912, 7, 7, 38),
        ["resnext50-s3-gw16"] = new(batch, 512, 14, 14, 32),
        ["resnext50-s4-gw32"] = new(batch, 1024, 7, 7, 32),
    };
}
