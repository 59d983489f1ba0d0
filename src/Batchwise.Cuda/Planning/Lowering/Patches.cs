using Batchwise.Cuda.Kernels;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Patch-embedding convolutions (window == stride, no padding or dilation, one group: ViT's 16 x 16 stride 16 on 3
/// channels) in half precision as one GEMM: the patches laid out as rows [N * OH * OW, kh * kw * C] by one copy, times
/// the filter as [K, kh * kw * C]; the product [N * OH * OW, K] is the output channels-last as it stands. cuDNN ran this
/// 3-channel convolution far from the GEMM rate on an H200 (0.28 ms at batch 64).
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>Lowers a patch-embedding convolution with a constant filter and returns true, or returns false (nothing emitted).</summary>
    private bool TryLowerPatches(PlanValue x, PlanValue w, PlanValue? b, string outName, long[] yShape, long[] kernel, long[] strides, long[] dilations, long groups, long[] padsBegin, long[] padsEnd, long[] outSpatial)
    {
        if (!Half || x.Shape.Length != 4 || groups != 1 || w.Constant is null || w.Shape.Length != 4 || !kernel.SequenceEqual(w.Shape[2..])
            || !kernel.SequenceEqual(strides) || dilations.Any(d => d != 1) || padsBegin.Concat(padsEnd).Any(p => p != 0) || kernel.All(k => k == 1)
            || outSpatial.Any(o => o < 1))
        {
            return false;
        }

        var (n, c, k) = (x.Shape[0], x.Shape[1], w.Shape[0]);
        var rows = n * outSpatial[0] * outSpatial[1];
        var cols = kernel[0] * kernel[1] * c;
        if (rows > int.MaxValue || cols > int.MaxValue || k > int.MaxValue || k % 8 != 0)
        {
            return false; // the GEMM's sizes are 32-bit; tensor cores want the output channels in eights
        }

        // The stored input: channels-last (a network input padded with zero channels reads its first C), else NCHW.
        x = Materialize(x);
        var stored = x.Nhwc ? Math.Max(c, x.PaddedChannels) : c;
        var patches = Temp(x.Type, [rows, cols]);
        Kernel(KernelSource.Patches(St(x), x.Nhwc, n, c, stored, x.Shape[2..], outSpatial, kernel), rows * cols, Dev(patches), Dev(x));

        // The filter [K, C, kh, kw] as [K, kh, kw, C]: a row per output channel in the patches' column order.
        var f = w.Constant;
        var s4 = w.Shape;
        var filter = new PlanValue(w.Type, [k, cols], _target.Derive($"patch-filter:{k}x{cols}", [f], () => ChannelsLast(f, s4).WithShape([k, cols])));
        var raw = b is null ? Output(outName, x.Type, yShape, nhwc: true) : Temp(x.Type, yShape, nhwc: true);
        EmitMatmul(patches, filter, raw, (int)rows, (int)k, (int)cols, false, true, cols, cols, 1, 0, 0, 1, 0);
        if (b is not null)
        {
            var bias = View(b, [b.Count, 1, 1]);
            _values[outName] = Pending([raw, bias], _ => "x0 + x1", raw.Type, yShape);
        }

        return true;
    }
}
