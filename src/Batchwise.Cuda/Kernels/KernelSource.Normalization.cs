using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>Generators for normalizations over groups of channels (GroupNormalization, InstanceNormalization).</summary>
internal static partial class KernelSource
{
    /// <summary>
    /// Normalizes each of <paramref name="rows"/> contiguous groups of <paramref name="channelsPerGroup"/> x
    /// <paramref name="spatial"/> elements (an [N, C, spatial...] tensor, rows = N x groups) by its mean and variance, then
    /// scales and shifts per channel (or per group with <paramref name="perChannel"/> false). One 256-thread block per
    /// group: a pass for the mean, one for the variance, one to write.
    /// </summary>
    public static KernelCode GroupNorm(ElementType type, ElementType paramType, long rows, long groups, long channelsPerGroup, long spatial, double epsilon, bool perChannel)
    {
        var t = CType(type);
        var pt = CType(paramType);
        var w = new KernelWriter(small: false);
        var r = w.I64("rows", rows);
        var g = w.I64("groups", groups);
        var cpg = w.I64("channels_per_group", channelsPerGroup);
        var sp = w.I64("spatial", spatial);
        var param = perChannel ? $"(row % {g}) * {cpg} + j / {sp}" : $"row % {g}";
        w.Body.Append($$"""
                __shared__ float shared[32];
                const i64 row = blockIdx.x;
                if (row >= {{r}}) return;
                const i64 size = {{cpg}} * {{sp}};
                const {{t}}* xr = x + row * size;
                {{t}}* yr = y + row * size;
                float s = 0.f;
                for (i64 j = threadIdx.x; j < size; j += blockDim.x) s += (float)xr[j];
                const float mean = bw_block_sum(s, shared) / (float)size;
                float v = 0.f;
                for (i64 j = threadIdx.x; j < size; j += blockDim.x) { const float d = (float)xr[j] - mean; v += d * d; }
                const float inv = rsqrtf(bw_block_sum(v, shared) / (float)size + {{F(epsilon)}});
                for (i64 j = threadIdx.x; j < size; j += blockDim.x) {
                    const i64 p = {{param}};
                    yr[j] = ({{t}})(((float)xr[j] - mean) * inv * (float)scale[p] + (float)bias[p]);
                }

            """);
        return w.Build($"{t}* __restrict__ y, const {t}* __restrict__ x, const {pt}* __restrict__ scale, const {pt}* __restrict__ bias, {KernelWriter.ArgsParameter}");
    }

    /// <summary>Threads to launch <see cref="GroupNorm"/> with: one block per group.</summary>
    public static long GroupNormThreads(long rows) => rows * BlockSize;
}
