using OnnxProto = Onnx;

namespace Batchwise.Operators;

/// <summary>
/// The network stem the cuda engine runs as one kernel (Batchwise.Cuda's Planning/Lowering/StemPool.cs and
/// Kernels/KernelSource.StemPool.cs): a float32 graph input [N, C, H, W] read by one Conv alone (constant 4-D filter and
/// bias, one group, stride 2, no dilation, explicit pads, at most <see cref="MaxChannels"/> input channels, 16 to 64
/// outputs in sixteens, a window of at most <see cref="MaxWindowRows"/> x <see cref="MaxWindowColumns"/>, an output row
/// the kernel's shared memory holds), then an optional BatchNormalization, a Relu and a MaxPool 3 x 3 / 2 with pads 1
/// (floor mode, one output), each the other's only reader and none a graph output. One description for the planner and
/// for explain, which prices the stem as the engine runs it: explain's own copy of these conditions had lost the kernel's
/// width limit, so it priced ResNet's stem as fused at input sizes the engine runs layer by layer.
/// </summary>
public static class StemPattern
{
    /// <summary>Most input channels: a pixel is 4 halves in the kernel's shared memory.</summary>
    public const int MaxChannels = 4;

    /// <summary>Input rows of the kernel's shared-memory ring (a power of two: a row's slot is its index's low bits).</summary>
    public const int Ring = 16;

    /// <summary>Most filter rows: a step reads the window's rows and the two below them while the next four arrive in the ring.</summary>
    public const int MaxWindowRows = Ring - 6;

    /// <summary>Most filter columns: 8 taps x 4 channels are one filter row's reduction of 32 halves.</summary>
    public const int MaxWindowColumns = 8;

    /// <summary>Most convolution output columns: a warp per 16 columns, 8 warps.</summary>
    public const int MaxOutputColumns = 128;

    /// <summary>Warps of a kernel block for a convolution output <paramref name="outWidth"/> columns wide: one per 16 columns.</summary>
    public static int Warps(long outWidth) => (int)((outWidth + 15) / 16);

    /// <summary>Halves of one filter row's reduction (taps x 4 channels, rounded up to a k16 step): 16 for up to 4 taps across, 32 for up to 8.</summary>
    public static int RowReduction(long kernelWidth) => kernelWidth <= 4 ? 16 : 32;

    /// <summary>Pixel slots of one input row in the kernel's shared memory: every column a warp's A rows can reach (2 x output column + the row's reduction).</summary>
    public static int Slots(int warps, int rowReduction) => (32 * warps) + (rowReduction / 4) - 2;

    /// <summary>Whether an input row <paramref name="inWidth"/> wide, stored from column -<paramref name="padLeft"/>, fits a ring row of the kernel.</summary>
    public static bool Fits(long inWidth, long padLeft, long outWidth, long kernelWidth) =>
        outWidth <= MaxOutputColumns && inWidth + padLeft <= Slots(Warps(outWidth), RowReduction(kernelWidth));

    /// <summary>A stem the kernel takes: its nodes, the convolution's window, leading pads and output size.</summary>
    public sealed record Match(OnnxProto.NodeProto Conv, OnnxProto.NodeProto? BatchNorm, OnnxProto.NodeProto Relu, OnnxProto.NodeProto Pool, long[] Kernel, long[] PadsBegin, long[] OutSpatial);

    /// <summary>
    /// The stem graph input <paramref name="input"/> (shape <paramref name="shape"/>, [N, C, H, W] with known H and W)
    /// feeds, when it is one the kernel takes; else null. <paramref name="soleConsumer"/> gives a value's only reader
    /// (null when it has several or is a graph output), <paramref name="initializerShape"/> a constant's dimensions (null
    /// when the name is not one). The caller checks what is its own: the element type, the precision, the device.
    /// </summary>
    public static Match? Find(string input, IReadOnlyList<long> shape, Func<string, OnnxProto.NodeProto?> soleConsumer, Func<string, long[]?> initializerShape)
    {
        if (Window(input, shape, soleConsumer, initializerShape) is not { } window)
        {
            return null;
        }

        var (conv, kernel, padsBegin, outSpatial) = window;
        var after = soleConsumer(conv.Output[0]);
        OnnxProto.NodeProto? bn = null;
        if (after is { OpType: "BatchNormalization", Domain: "" } b && b.Output.Count(o => o.Length > 0) == 1)
        {
            bn = b;
            after = soleConsumer(b.Output[0]);
        }

        return after is { OpType: "Relu", Domain: "" } relu && MaxPool(relu.Output[0], soleConsumer) is { } pool
            ? new Match(conv, bn, relu, pool, kernel, padsBegin, outSpatial)
            : null;
    }

    /// <summary>
    /// A QDQ model's stem (<c>batchwise optimize --int8</c>, ONNX Runtime's quantizer): the input's QuantizeLinear and
    /// DequantizeLinear, the convolution of <see cref="Find"/> (its filter and bias may be DequantizeLinear outputs of
    /// constants), an optional Relu, the convolution output's QuantizeLinear
    /// and DequantizeLinear, the MaxPool and the pooled value's QuantizeLinear. The caller checks what needs values: one
    /// constant scale and zero point each, the pairs undoing each other, and that the rounding is the ReLU where there
    /// is none.
    /// </summary>
    public sealed record QuantizedMatch(OnnxProto.NodeProto InputQuantize, OnnxProto.NodeProto InputDequantize, OnnxProto.NodeProto Conv, OnnxProto.NodeProto? Relu, OnnxProto.NodeProto ConvQuantize, OnnxProto.NodeProto ConvDequantize, OnnxProto.NodeProto Pool, OnnxProto.NodeProto PoolQuantize, long[] Kernel, long[] PadsBegin, long[] OutSpatial);

    /// <summary>The QDQ stem graph input <paramref name="input"/> feeds (<see cref="QuantizedMatch"/>), when the kernel takes it; else null.</summary>
    public static QuantizedMatch? FindQuantized(string input, IReadOnlyList<long> shape, Func<string, OnnxProto.NodeProto?> soleConsumer, Func<string, long[]?> constantShape)
    {
        static bool Is(OnnxProto.NodeProto? n, string op, string from) => n is not null && n.OpType == op && n.Domain.Length == 0 && n.Input.Count > 0 && n.Input[0] == from;
        var q = soleConsumer(input);
        if (!Is(q, "QuantizeLinear", input) || soleConsumer(q!.Output[0]) is not { } dq || !Is(dq, "DequantizeLinear", q.Output[0])
            || Window(dq.Output[0], shape, soleConsumer, constantShape) is not { } window)
        {
            return null;
        }

        var (conv, kernel, padsBegin, outSpatial) = window;
        var after = soleConsumer(conv.Output[0]);
        var relu = Is(after, "Relu", conv.Output[0]) ? after : null;
        var convQ = relu is null ? after : soleConsumer(relu.Output[0]);
        var from = (relu ?? conv).Output[0];
        if (!Is(convQ, "QuantizeLinear", from) || soleConsumer(convQ!.Output[0]) is not { } convDq || !Is(convDq, "DequantizeLinear", convQ.Output[0])
            || MaxPool(convDq.Output[0], soleConsumer) is not { } pool || soleConsumer(pool.Output[0]) is not { } poolQ || !Is(poolQ, "QuantizeLinear", pool.Output[0]))
        {
            return null;
        }

        return new QuantizedMatch(q, dq, conv, relu, convQ, convDq, pool, poolQ, kernel, padsBegin, outSpatial);
    }

    /// <summary>The convolution <see cref="Find"/> describes reading <paramref name="input"/>, with its window, leading pads and output size; else null.</summary>
    private static (OnnxProto.NodeProto Conv, long[] Kernel, long[] PadsBegin, long[] OutSpatial)? Window(string input, IReadOnlyList<long> shape, Func<string, OnnxProto.NodeProto?> soleConsumer, Func<string, long[]?> initializerShape)
    {
        if (shape.Count != 4 || shape[1] is < 1 or > MaxChannels || shape[2] < 1 || shape[3] < 1 || shape.Any(v => v > int.MaxValue / 8)
            || soleConsumer(input) is not { OpType: "Conv", Domain: "" } conv || conv.Input[0] != input
            || initializerShape(conv.Input[1]) is not { Length: 4 } w || (conv.Input.Count > 2 && conv.Input[2].Length > 0 && initializerShape(conv.Input[2]) is null))
        {
            return null;
        }

        var a = new NodeAttributes(conv);
        var kernel = a.Ints("kernel_shape") ?? w[2..];
        var strides = a.Ints("strides") ?? [1, 1];
        var dilations = a.Ints("dilations") ?? [1, 1];
        var pads = a.Ints("pads") ?? [0, 0, 0, 0];
        if (a.String("auto_pad", "NOTSET") != "NOTSET" || a.Int("group", 1) != 1 || w[1] != shape[1] || kernel.Length != 2 || pads.Length != 4
            || strides is not [2, 2] || dilations is not [1, 1] || kernel[0] > MaxWindowRows || kernel[1] > MaxWindowColumns
            || w[0] % 16 != 0 || w[0] is < 16 or > 64)
        {
            return null;
        }

        long[] outSpatial = [((shape[2] + pads[0] + pads[2] - kernel[0]) / 2) + 1, ((shape[3] + pads[1] + pads[3] - kernel[1]) / 2) + 1];
        if (outSpatial.Any(o => o < 1) || !Fits(shape[3], pads[1], outSpatial[1], kernel[1]))
        {
            return null;
        }

        return (conv, kernel, [pads[0], pads[1]], outSpatial);
    }

    /// <summary>The MaxPool that alone reads <paramref name="name"/>, when it is 3 x 3, stride 2, pads 1, no dilation, floor mode, one output; else null.</summary>
    public static OnnxProto.NodeProto? MaxPool(string name, Func<string, OnnxProto.NodeProto?> soleConsumer)
    {
        if (soleConsumer(name) is not { OpType: "MaxPool", Domain: "" } pool || pool.Output.Count(o => o.Length > 0) != 1 || (pool.Output.Count > 1 && pool.Output[1].Length > 0))
        {
            return null;
        }

        var a = new NodeAttributes(pool);
        static bool All(long[]? v, long value, int count) => v is not null && v.Length == count && v.All(x => x == value);
        return All(a.Ints("kernel_shape"), 3, 2) && All(a.Ints("strides"), 2, 2) && All(a.Ints("pads") ?? [0, 0, 0, 0], 1, 4) && (a.Ints("dilations") is null || All(a.Ints("dilations"), 1, 2))
            && a.String("auto_pad", "NOTSET") == "NOTSET" && a.Int("ceil_mode", 0) == 0 ? pool : null;
    }
}
