using Batchwise.Cuda.Kernels;

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
    /// Lowers a 1-d or 2-d depthwise convolution with a constant filter (BatchNormalization already folded into it) to
    /// the own kernel and returns true, or returns false (nothing emitted) for any other convolution.
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
        x = nhwc ? Nhwc(x) : Nchw(x);
        var taps = kernel[0] * kernel[1];
        var f = w.Constant;
        var filter = nhwc
            ? new PlanValue(w.Type, [taps, c], _target.Derive($"depthwise-filter:{c}x{taps}", [f], () => HostTensor.Create(f.Type, [taps, c], i => f[((i % c) * taps) + (i / c)])))
            : w;
        var raw = b is null ? Output(outName, x.Type, yShape, nhwc) : Temp(x.Type, yShape, nhwc);
        var type = St(x);
        var vector = KernelSource.DepthwiseVector(type, nhwc, c);
        var n = x.Shape[0];
        Kernel(KernelSource.Depthwise(type, nhwc, vector, n, c, inSpatial, outs, kernel, s, d, pb), KernelSource.DepthwiseThreads(nhwc, vector, n, c, outs), Dev(raw), Dev(x), Dev(filter));
        if (b is not null)
        {
            var bias = View(b, [b.Count, .. Enumerable.Repeat(1L, r)]);
            _values[outName] = Pending([raw, bias], _ => "x0 + x1", raw.Type, yShape);
        }

        return true;
    }
}
