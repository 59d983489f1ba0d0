namespace Batchwise.Cuda.Kernels;

/// <summary>
/// An int8 1x1 convolution over few input channels (8 to 64, in 8s) into many (a MobileNet's or EfficientNet's expansion:
/// 16 -> 96, 24 -> 144 channels) with dp4a: cuDNN's int8 graphs ran those at 0.35 TB/s on an H200 (session 28: 24 -> 144
/// at 56x56 0.363 ms, fp16's GEMM 0.16), and a tensor-core tile of 32 input channels would be mostly padding.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Threads per block of <see cref="Int8NarrowPointwise"/> (a pixel each).</summary>
    public const int Int8NarrowPointwiseBlock = 256;

    /// <summary>Output channels a thread of <see cref="Int8NarrowPointwise"/> sums at once (one 16-byte store).</summary>
    public const int Int8NarrowPointwiseGroup = 16;

    /// <summary>
    /// Input and output channel counts <see cref="Int8NarrowPointwise"/> takes: 8 to 64 input channels in 8s, output
    /// channels in 16s, the filter with each channel's scale and offset within the 48 KB of static shared memory.
    /// </summary>
    public static bool Int8NarrowPointwiseTakes(long channels, long outChannels) =>
        channels is >= 8 and <= 64 && channels % 8 == 0 && outChannels % Int8NarrowPointwiseGroup == 0 && outChannels * (channels + 8) <= 48 * 1024;

    /// <summary>
    /// y[p, n] = saturate(rint(relu?(x[p, :] · w[n, :] · scale[n] + offset[n])) + zero) - shift, as <see cref="Int8Conv"/>'s
    /// epilogue (<see cref="Int8ConvEpilogue"/>, without a residual: an expansion starts a block), for int8 channels-last x
    /// [pixels, C] and an int8 filter [K, C] with C of 8 to 64. A thread takes one pixel: its C input bytes in registers,
    /// then for each group of 16 output channels the 16 sums by dp4a (four channels a step) against the filter in shared
    /// memory (the same address in every lane: broadcast reads), requantized and stored as 16 bytes. The parameters are
    /// the other own int8 kernels' (the planner passes them alike); r, the residual, is not read.
    /// </summary>
    public static KernelCode Int8NarrowPointwise(long channels, long outChannels, long pixels, Int8ConvEpilogue epilogue)
    {
        if (!Int8NarrowPointwiseTakes(channels, outChannels) || pixels < 1 || pixels > int.MaxValue || epilogue.Residual is not null)
        {
            throw new ArgumentException("int8 narrow pointwise: 8 to 64 input channels in 8s, output channels in 16s, the filter and its constants within 48 KB, no residual");
        }

        const int G = Int8NarrowPointwiseGroup;
        var words = (int)channels / 4; // an input pixel's and a filter row's 32-bit words (even: C in 8s)
        var w = new KernelWriter(small: true);
        var m = w.I32("m", checked((int)pixels));
        var folded = w.Float("folded", epilogue.Folded);
        var requantize = Int8Requantize(w, epilogue, "v", "0", "q[e]");
        var k = checked((int)outChannels);
        w.Body.Append($$"""
                __shared__ int2 ws[{{k * words / 2}}];   // the filter [{{k}}][{{channels}}] as pairs of 32-bit words
                __shared__ float ss[{{k}}], os[{{k}}];
                for (int i = threadIdx.x; i < {{k * words / 2}}; i += blockDim.x) ws[i] = ((const int2*)wt)[i];
                for (int i = threadIdx.x; i < {{k}}; i += blockDim.x) { ss[i] = scale[i]; os[i] = offset[i] + {{folded}}; }
                __syncthreads();
                const int p = (int)(blockIdx.x * blockDim.x + threadIdx.x);
                if (p >= {{m}}) return;
                int xv[{{words}}];
                #pragma unroll
                for (int j = 0; j < {{words / 2}}; j++) { const int2 v2 = ((const int2*)(x + (i64)p * {{channels}}))[j]; xv[2 * j] = v2.x; xv[2 * j + 1] = v2.y; }
                #pragma unroll 1
                for (int n0 = 0; n0 < {{k}}; n0 += {{G}}) {
                    int acc[{{G}}];
                    #pragma unroll
                    for (int e = 0; e < {{G}}; e++) {
                        int s = 0;
                        #pragma unroll
                        for (int j = 0; j < {{words / 2}}; j++) {
                            const int2 f = ws[(n0 + e) * {{words / 2}} + j];
                            s = __dp4a(xv[2 * j], f.x, s);
                            s = __dp4a(xv[2 * j + 1], f.y, s);
                        }
                        acc[e] = s;
                    }
                    const i64 o = (i64)p * {{k}} + n0;
                    unsigned q[{{G}}];
                    #pragma unroll
                    for (int e = 0; e < {{G}}; e++) {
                        float v = (float)acc[e] * ss[n0 + e] + os[n0 + e];
                        {{requantize}}
                    }
                    int4 out;
                    out.x = (int){{PackedBytes("q", 0)}};
                    out.y = (int){{PackedBytes("q", 4)}};
                    out.z = (int){{PackedBytes("q", 8)}};
                    out.w = (int){{PackedBytes("q", 12)}};
                    *(int4*)(y + o) = out;
                }

            """);
        return w.Build($"signed char* __restrict__ y, const signed char* __restrict__ x, const signed char* __restrict__ wt, const float* __restrict__ scale, const float* __restrict__ offset, const signed char* __restrict__ r, {KernelWriter.ArgsParameter}");
    }
}
