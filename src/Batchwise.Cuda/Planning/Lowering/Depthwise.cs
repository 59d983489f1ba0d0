using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Depthwise convolutions (groups == input channels == output channels, one filter each) through the engine's own kernel
/// rather than cuDNN, whose channels-last half-precision depthwise kernels ran 50-150x off bandwidth on an H200
/// (ConvNeXt's 7x7, MobileNetV3's 3x3 stride 2). The bias starts an elementwise chain, so the activation after it fuses.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>Largest filter window the own kernel unrolls (11 x 11); larger ones stay with cuDNN.</summary>
    private const long MaxDepthwiseTaps = 121;

    /// <summary>Largest input span (columns) one thread holds in registers per filter row.</summary>
    private const long MaxDepthwiseSpan = 48;

    /// <summary>
    /// Where the convolution's input is an elementwise chain not written yet over one value of its own shape and layout
    /// (a DequantizeLinear of an int8 activation, a Clip or SiLU after a product): that value and the chain's statements
    /// with it as xe, which the depthwise kernel applies to each element as it loads it: no pass writes the chain's
    /// result first. Null otherwise (the input is written out as before).
    /// </summary>
    private (PlanValue Leaf, string Statements, string Result)? FusedDepthwiseInput(PlanValue x, bool nhwc)
    {
        if (x.Pending is not { Leaves: [var leaf] } p || leaf.Pending is not null || leaf.ViewStrides is not null || leaf.Constant is not null
            || leaf.Nhwc != nhwc || leaf.PaddedChannels > 0 || !leaf.Shape.SequenceEqual(x.Shape) || leaf.Type is ElementType.Double or ElementType.Int64)
        {
            return null;
        }

        var id = LeafId(leaf);
        var text = new System.Text.StringBuilder();
        foreach (var (_, code) in p.Statements)
        {
            AppendWithLeaves(text, code, k => k == id ? "xe" : throw new InvalidOperationException($"a one-leaf chain names leaf {k}"));
            text.Append('\n');
        }

        return (leaf, text.ToString(), p.Result);
    }

    /// <summary>
    /// Where the convolution's output is read by one QuantizeLinear alone, per tensor with constants, into 8 bits (a QDQ
    /// model's depthwise layer): that node, its type and the expression that quantizes z as the node does (the same text
    /// as its elementwise form), so the kernel writes the 8-bit tensor itself. Null otherwise.
    /// </summary>
    private (OnnxProto.NodeProto Node, ElementType Type, string Expression)? QuantizedDepthwiseOutput(string name)
    {
        if (SoleConsumer(name) is not { OpType: "QuantizeLinear", Domain: "" } q || q.Input[0] != name || new NodeAttributes(q).Int("block_size", 0) != 0
            || QdqPerTensor(q, v => _values.GetValueOrDefault(v)) is not { } pair || !(pair.Scale > 0))
        {
            return null;
        }

        var zeroGiven = q.Input.Count > 2 && q.Input[2].Length > 0;
        var type = zeroGiven ? pair.Type : (ElementType)new NodeAttributes(q).Int("output_dtype", (long)ElementType.UInt8);
        return type is ElementType.UInt8 or ElementType.Int8 ? (q, type, QuantizeExpression("z", pair.Scale, pair.Zero, type)) : null;
    }

    /// <summary>
    /// Lowers a 1-d or 2-d depthwise convolution with a constant filter (BatchNormalization already folded into it) to
    /// the own kernel and returns true; a QuantizeLinear alone after it (with a bias) is taken into it, or returns false (nothing emitted) for any other convolution.
    /// </summary>
    private bool TryLowerDepthwise(PlanValue x, PlanValue w, PlanValue? b, string outName, long[] yShape, long[] strides, long[] dilations, long groups, long[] padsBegin, long[] outSpatial)
    {
        var r = x.Shape.Length - 2;
        var c = x.Shape[1];
        if (r is < 1 or > 2 || w.Constant is null || w.Shape.Length != r + 2 || groups != c || w.Shape[0] != c || w.Shape[1] != 1 || x.PaddedChannels > 0)
        {
            return false;
        }

        // 1-d runs as 2-d with a height of 1.
        long[] Lift(long[] v, long one) => r == 1 ? [one, .. v] : v;
        var kernel = Lift(w.Shape[2..], 1);
        var (s, d, pb) = (Lift(strides, 1), Lift(dilations, 1), Lift(padsBegin, 0));
        var inSpatial = Lift(x.Shape[2..], 1);
        var outs = Lift(outSpatial, 1);
        var span = ((KernelSource.DepthwiseOutputsPerThread - 1) * s[1]) + ((kernel[1] - 1) * d[1]) + 1;
        if (kernel[0] * kernel[1] > MaxDepthwiseTaps || span > MaxDepthwiseSpan || inSpatial.Concat(outs).Concat(pb).Any(v => v > int.MaxValue / 4))
        {
            return false;
        }

        var nhwc = PreferNhwc(x.Shape);
        var (valueType, type) = (x.Type, St(x));
        var source = FusedDepthwiseInput(x, nhwc);
        x = source?.Leaf ?? (nhwc ? Nhwc(x) : Nchw(x));
        var taps = kernel[0] * kernel[1];
        var f = w.Constant;
        var filter = nhwc
            ? new PlanValue(w.Type, [taps, c], _target.Derive($"depthwise-filter:{c}x{taps}", [f], () => HostTensor.Create(f.Type, [taps, c], i => f[((i % c) * taps) + (i / c)])))
            : w;
        var quantize = b is not null ? QuantizedDepthwiseOutput(outName) : null;
        var outType = quantize?.Type ?? type;
        var raw = quantize is not null ? Output(quantize.Value.Node.Output[0], outType, yShape, nhwc) : b is null ? Output(outName, valueType, yShape, nhwc) : Temp(valueType, yShape, nhwc);
        var fusion = source is null && quantize is null ? null
            : new DepthwiseFusion(St(x), source?.Statements, source?.Result, outType, quantize is not null, quantize?.Expression);
        var vector = nhwc && St(x).SizeOf() == 1 && outType.SizeOf() == 1 && c % 4 == 0 ? 4 : KernelSource.DepthwiseVector(type, nhwc, c);
        var n = x.Shape[0];
        var code = KernelSource.Depthwise(type, nhwc, vector, n, c, inSpatial, outs, kernel, s, d, pb, fusion);
        var threads = KernelSource.DepthwiseThreads(nhwc, vector, n, c, outs);
        if (quantize is not null)
        {
            _folded.Add(quantize.Value.Node);
            Kernel(code, threads, Dev(raw), Dev(x), Dev(filter), Dev(View(b!, [b!.Count])));
            return true;
        }

        Kernel(code, threads, Dev(raw), Dev(x), Dev(filter));
        if (b is not null)
        {
            var bias = View(b, [b.Count, .. Enumerable.Repeat(1L, r)]);
            _values[outName] = Pending([raw, bias], _ => "x0 + x1", raw.Type, yShape);
        }

        return true;
    }
}
