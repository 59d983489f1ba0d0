using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Kernels;

public sealed class KernelSourceTests
{
    [Fact]
    public void Elementwise_broadcast_indexes_only_the_dimensions_an_input_has()
    {
        var src = KernelSource.Elementwise(ElementType.Float, [ElementType.Float, ElementType.Float], [2, 3, 4], [[2, 3, 4], [1, 3, 1]], ElementwiseOps.Expression("Add", [ElementType.Float, ElementType.Float], (_, d) => d));

        Assert.Contains("const float x0 = p0[i];", src, StringComparison.Ordinal);
        Assert.Contains("const float x1 = p1[((i / 4u) % 3u)];", src, StringComparison.Ordinal);
        Assert.Contains("y[i] = (float)(x0 + x1);", src, StringComparison.Ordinal);
        Assert.Contains("if (i >= 24u) return;", src, StringComparison.Ordinal);
    }

    [Fact]
    public void Scalars_read_element_zero_and_attributes_become_literals()
    {
        var src = KernelSource.Elementwise(ElementType.Float, [ElementType.Float], [5], [[5]], ElementwiseOps.Expression("LeakyRelu", [ElementType.Float], (n, d) => n == "alpha" ? 0.25 : d));
        var scalar = KernelSource.Elementwise(ElementType.Bool, [ElementType.Int64, ElementType.Int64], [5], [[5], [1]], ElementwiseOps.Expression("Less", [ElementType.Int64, ElementType.Int64], (_, d) => d));

        Assert.Contains("x0 * 0.25f", src, StringComparison.Ordinal);
        Assert.Contains("const long long x1 = p1[0];", scalar, StringComparison.Ordinal);
        Assert.Contains("bool* __restrict__ y", scalar, StringComparison.Ordinal);
    }

    [Fact]
    public void Half_tensors_load_as_float_and_store_rounded()
    {
        var src = KernelSource.Elementwise(ElementType.Float16, [ElementType.Float16, ElementType.Int64], [4], [[4], [4]], "x0 * x1");

        Assert.Contains("bw_half* __restrict__ y", src, StringComparison.Ordinal);
        Assert.Contains("const float x0 = p0[i];", src, StringComparison.Ordinal);
        Assert.Contains("y[i] = (bw_half)(float)(x0 * x1);", src, StringComparison.Ordinal);
        Assert.Contains("cvt.rn.f16.f32", KernelSource.Prelude, StringComparison.Ordinal);
    }

    [Fact]
    public void Fused_statements_run_before_the_stored_expression()
    {
        var src = KernelSource.Elementwise(ElementType.Float, [ElementType.Float, ElementType.Float], [2, 8], [[2, 8], [1, 8]], "t1", "    const float t0 = x0 + x1;\n    const float t1 = t0 * bw_sigmoid(t0);\n");

        var body = src.IndexOf("const float t0", StringComparison.Ordinal);
        Assert.True(body > src.IndexOf("const float x1", StringComparison.Ordinal));
        Assert.True(src.IndexOf("y[i] = (float)(t1);", StringComparison.Ordinal) > body);
    }

    [Fact]
    public void Convert_copy_changes_type_and_order_in_one_pass()
    {
        // float32 NCHW [1, 2, 2, 2] read as NHWC into float16.
        var src = KernelSource.ConvertCopy(ElementType.Float, ElementType.Float16, [1, 2, 2, 2], [8, 2, 1, 4], 0, [8, 4, 2, 1], 0);
        var same = KernelSource.ConvertCopy(ElementType.Float, ElementType.Float, [4], [1], 0, [1], 0);

        Assert.Contains("bw_half* __restrict__ dst, const float* __restrict__ src", src, StringComparison.Ordinal);
        Assert.Contains("dst[d] = (bw_half)(float)src[s];", src, StringComparison.Ordinal);
        Assert.Contains("dst[d] = src[s];", same, StringComparison.Ordinal);
    }

    [Fact]
    public void Channels_last_pooling_walks_channels_fastest()
    {
        var src = KernelSource.Pool(ElementType.Float16, true, 2 * 8, [4, 4], [2, 2], [2, 2], [2, 2], [0, 0], [0, 0], [1, 1], false, channelsLast: true, channels: 8);

        Assert.Contains("i64 ch = r % 8LL", src, StringComparison.Ordinal);
        Assert.Contains("xp = x + r * 128LL + ch", src, StringComparison.Ordinal);
        Assert.Contains("c1 * 8LL", src, StringComparison.Ordinal);
    }

    [Fact]
    public void Copies_of_contiguous_runs_move_16_bytes_per_thread()
    {
        // Channels-last concat of 32 half channels into a 64-channel tensor at channel 32: 4 x 16 bytes per pixel.
        var wide = KernelSource.ViewCopy(2, [10, 32], [32, 1], 0, [64, 1], 32);
        var odd = KernelSource.ViewCopy(2, [10, 3], [3, 1], 0, [6, 1], 3);

        Assert.Contains("uint4* __restrict__ dst", wide, StringComparison.Ordinal);
        Assert.Contains("if (i >= 40u) return;", wide, StringComparison.Ordinal);
        Assert.Contains("unsigned short* __restrict__ dst", odd, StringComparison.Ordinal);
    }

    [Fact]
    public void Fused_half_kernels_take_eight_elements_per_thread_where_shapes_allow()
    {
        ElementType[] types = [ElementType.Float16, ElementType.Float16];
        long[][] shapes = [[2, 4, 4, 16], [1, 1, 1, 16]];
        var vector = KernelSource.ElementwiseVector(ElementType.Float16, types, [2, 4, 4, 16], shapes);
        var src = KernelSource.Elementwise(ElementType.Float16, types, [2, 4, 4, 16], shapes, "x0 + x1", null, vector);

        Assert.Equal(8, vector);
        Assert.Contains("const uint4 v0 = *(const uint4*)(p0 + first);", src, StringComparison.Ordinal);
        Assert.Contains("x1 = p1[((i / 1u) % 16u)];", src, StringComparison.Ordinal);
        Assert.Contains("*(uint4*)(y + first) = out;", src, StringComparison.Ordinal);
        Assert.Equal(1, KernelSource.ElementwiseVector(ElementType.Float16, types, [3, 5], [[3, 5], [1, 5]]));
        Assert.Equal(1, KernelSource.ElementwiseVector(ElementType.Bool, [ElementType.Float16], [16], [[16]]));
    }

    [Fact]
    public void Index_arithmetic_is_32_bit_where_it_fits_and_64_bit_beyond()
    {
        var small = KernelSource.ViewCopy(4, [8, 16], [1, 8], 0, [16, 1], 0);
        var negative = KernelSource.ViewCopy(4, [8], [-1], 7, [1], 0);
        var huge = KernelSource.Elementwise(ElementType.Float, [ElementType.Float], [3L << 30], [[3L << 30]], "x0");

        Assert.Contains("unsigned i = ", small, StringComparison.Ordinal);
        Assert.Contains("i64 i = ", negative, StringComparison.Ordinal);
        Assert.Contains("i64 i = ", huge, StringComparison.Ordinal);
    }

    [Fact]
    public void View_copy_merges_contiguous_dimensions()
    {
        // A contiguous copy of [2, 3, 4] collapses to one dimension; a transpose of the last two does not.
        var (shape, _, _) = KernelSource.Collapse([2, 3, 4], [12, 4, 1], [12, 4, 1]);
        var (tshape, tsrc, _) = KernelSource.Collapse([2, 4, 3], [12, 1, 4], [12, 3, 1]);

        Assert.Equal([24L], shape);
        Assert.Equal([2L, 4L, 3L], tshape);
        Assert.Equal([12L, 1L, 4L], tsrc);
    }

    [Fact]
    public void Float_literals_are_valid_c()
    {
        Assert.Equal("1.0f", KernelSource.F(1));
        Assert.Equal("(-1.f/0.f)", KernelSource.F(double.NegativeInfinity));
        Assert.Equal("1E-05f", KernelSource.F(1e-5));
        Assert.Equal("0.5", KernelSource.F(0.5, ElementType.Double));
    }

    [Fact]
    public void Unsupported_element_types_fail_with_a_clear_message()
    {
        var e = Assert.Throws<BatchwiseException>(() => KernelSource.CType(ElementType.BFloat16));
        Assert.Contains("bfloat16", e.Message, StringComparison.Ordinal);
    }
}
