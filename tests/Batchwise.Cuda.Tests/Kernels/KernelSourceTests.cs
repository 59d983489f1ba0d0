using System.Buffers.Binary;
using System.Text.RegularExpressions;
using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Kernels;

public sealed partial class KernelSourceTests
{
    /// <summary>
    /// The argument block read through the struct the source declares (C's natural alignment, parsed from the source, not
    /// taken from the writer): field name to value (a divisor reads as its divisor).
    /// </summary>
    internal static Dictionary<string, double> Args(KernelCode code)
    {
        var start = code.Source.IndexOf("_args {", StringComparison.Ordinal); // after any vector types the source declares first
        var decl = code.Source[start..code.Source.IndexOf("};", start, StringComparison.Ordinal)];
        var values = new Dictionary<string, double>(StringComparer.Ordinal);
        var offset = 0;
        foreach (Match m in FieldPattern().Matches(decl))
        {
            var (type, name) = (m.Groups[1].Value, m.Groups[2].Value);
            var (size, align) = type switch { "i64" => (8, 8), "bw_div" => (12, 4), _ => (4, 4) };
            offset = (offset + align - 1) / align * align;
            var bytes = code.Args.AsSpan(offset);
            values[name] = type switch
            {
                "i64" => BinaryPrimitives.ReadInt64LittleEndian(bytes),
                "float" => BinaryPrimitives.ReadSingleLittleEndian(bytes),
                "int" => BinaryPrimitives.ReadInt32LittleEndian(bytes),
                _ => BinaryPrimitives.ReadUInt32LittleEndian(bytes),
            };
            offset += size;
        }

        Assert.True((offset + 7) / 8 * 8 == code.Args.Length, $"struct of {offset} bytes, argument block of {code.Args.Length}");
        return values;
    }

    [GeneratedRegex(@"^\s+(i64|unsigned|int|float|bw_div) (\w+);", RegexOptions.Multiline)]
    private static partial Regex FieldPattern();

    [Fact]
    public void A_kernel_source_holds_no_sizes_so_every_shape_of_a_signature_shares_it()
    {
        string expr = ElementwiseOps.Expression("Add", [ElementType.Float, ElementType.Float], (_, d) => d);
        var b2 = KernelSource.Elementwise(ElementType.Float, [ElementType.Float, ElementType.Float], [2, 8, 5, 5], [[2, 8, 5, 5], [1, 8, 1, 1]], expr);
        var b9 = KernelSource.Elementwise(ElementType.Float, [ElementType.Float, ElementType.Float], [9, 8, 7, 7], [[9, 8, 7, 7], [1, 8, 1, 1]], expr);

        Assert.Equal(b2.Source, b9.Source);
        Assert.Equal(2 * 8 * 25, Args(b2)["n"]);
        Assert.Equal(9 * 8 * 49, Args(b9)["n"]);
        Assert.Equal(49, Args(b9)["d2"]); // the merged H x W dimension
    }

    [Fact]
    public void Every_generator_gives_one_source_for_two_batch_sizes()
    {
        (KernelCode A, KernelCode B)[] pairs =
        [
            (KernelSource.ViewCopy(4, [2, 3, 4], [12, 1, 3], 0, [12, 4, 1], 0), KernelSource.ViewCopy(4, [6, 3, 4], [12, 1, 3], 0, [12, 4, 1], 0)),
            (KernelSource.Transpose(2, 2, 50, 40), KernelSource.Transpose(2, 2, 60, 40)),
            (KernelSource.ChannelsLastPadded(ElementType.Float, ElementType.Float16, 2, 3, 64, 8), KernelSource.ChannelsLastPadded(ElementType.Float, ElementType.Float16, 5, 3, 64, 8)),
            (KernelSource.Gather(4, ElementType.Int64, 2, 10, 3, 4), KernelSource.Gather(4, ElementType.Int64, 8, 10, 3, 4)),
            (KernelSource.Reduce(ElementType.Float, "mean", [2, 3, 4], [false, true, true]), KernelSource.Reduce(ElementType.Float, "mean", [5, 3, 4], [false, true, true])),
            (KernelSource.Softmax(ElementType.Float, 6, 100, 1, false), KernelSource.Softmax(ElementType.Float, 12, 100, 1, false)),
            (KernelSource.SoftmaxShortAxis(ElementType.Float, 6, 16, 8, false), KernelSource.SoftmaxShortAxis(ElementType.Float, 12, 16, 8, false)),
            (KernelSource.LayerNorm(ElementType.Float, ElementType.Float, ElementType.Float, 4, 64, 1e-5, true, 64, 64), KernelSource.LayerNorm(ElementType.Float, ElementType.Float, ElementType.Float, 9, 64, 1e-5, true, 64, 64)),
            (KernelSource.Pool(ElementType.Float, true, 2 * 8, [8, 8], [4, 4], [3, 3], [2, 2], [1, 1], [1, 1], [1, 1], false), KernelSource.Pool(ElementType.Float, true, 3 * 8, [8, 8], [4, 4], [3, 3], [2, 2], [1, 1], [1, 1], [1, 1], false)),
            (KernelSource.Pad(ElementType.Float, [2, 3, 4], [2, 5, 6], [0, 1, 1], "reflect", 0), KernelSource.Pad(ElementType.Float, [4, 3, 4], [4, 5, 6], [0, 1, 1], "reflect", 0)),
            (KernelSource.Resize(ElementType.Float, [2, 3, 4, 4], [2, 3, 8, 8], [1, 1, 2, 2], "linear", "half_pixel", "round_prefer_floor"), KernelSource.Resize(ElementType.Float, [6, 3, 4, 4], [6, 3, 8, 8], [1, 1, 2, 2], "linear", "half_pixel", "round_prefer_floor")),
            (KernelSource.Dequantize(ElementType.Int8, ElementType.Float, ElementType.Double, ElementType.Int8, 2 * 3 * 4, 3, 4, true), KernelSource.Dequantize(ElementType.Int8, ElementType.Float, ElementType.Double, ElementType.Int8, 5 * 3 * 4, 3, 4, true)),
            (KernelSource.Quantize(ElementType.Float, ElementType.UInt8, ElementType.Double, 2 * 3 * 4, 3, 4, true), KernelSource.Quantize(ElementType.Float, ElementType.UInt8, ElementType.Double, 5 * 3 * 4, 3, 4, true)),
            (KernelSource.Resize(ElementType.Float, [2, 3, 4, 4], [2, 3, 8, 6], [1, 1, 2, 1.5], "cubic", "half_pixel", "round_prefer_floor", null, -0.5, true), KernelSource.Resize(ElementType.Float, [6, 3, 5, 4], [6, 3, 10, 6], [1, 1, 2, 1.5], "cubic", "half_pixel", "round_prefer_floor", null, -0.5, true)),
            (KernelSource.Resize(ElementType.Float, [1, 1, 4, 4], [1, 1, 3, 5], [1, 1, 1, 1], "linear", "tf_crop_and_resize", "round_prefer_floor", null, roi: [0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2], extrapolation: 9), KernelSource.Resize(ElementType.Float, [3, 1, 6, 4], [3, 1, 3, 5], [1, 1, 1, 1], "linear", "tf_crop_and_resize", "round_prefer_floor", null, roi: [0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2], extrapolation: 9)),
            (KernelSource.DynamicQuantizeRange(ElementType.Float, ElementType.Float, 24), KernelSource.DynamicQuantizeRange(ElementType.Float, ElementType.Float, 60)),
            (KernelSource.Depthwise(ElementType.Float16, true, 2, 1, 96, [14, 14], [7, 7], [3, 3], [2, 2], [1, 1], [1, 1]), KernelSource.Depthwise(ElementType.Float16, true, 2, 64, 96, [14, 14], [7, 7], [3, 3], [2, 2], [1, 1], [1, 1])),
            (KernelSource.IntegerConv(ElementType.UInt8, ElementType.Int8, ElementType.UInt8, (ElementType.Double, ElementType.Double, ElementType.Double), 2, 2 * 4 * 25, 4, 2, 4, [5, 5], [5, 5], [3, 3], [1, 1], [1, 1], [1, 1], 1, 1, true), KernelSource.IntegerConv(ElementType.UInt8, ElementType.Int8, ElementType.UInt8, (ElementType.Double, ElementType.Double, ElementType.Double), 2, 3 * 4 * 25, 4, 2, 4, [5, 5], [5, 5], [3, 3], [1, 1], [1, 1], [1, 1], 1, 1, true)),
            (KernelSource.IntegerMatMul(ElementType.UInt8, ElementType.Int8, ElementType.Int32, (ElementType.Float, ElementType.Float, ElementType.Float), 2 * 3 * 5, 3, 4, 5, 12, 0, 0, 0, 0, false), KernelSource.IntegerMatMul(ElementType.UInt8, ElementType.Int8, ElementType.Int32, (ElementType.Float, ElementType.Float, ElementType.Float), 7 * 3 * 5, 3, 4, 5, 12, 0, 0, 0, 0, false)),
        ];

        Assert.All(pairs, p =>
        {
            Assert.Equal(p.A.Source, p.B.Source);
            Assert.False(p.A.Args.AsSpan().SequenceEqual(p.B.Args), "the sizes differ, so the argument blocks must");
        });
    }

    [Fact]
    public void Image_sizes_are_arguments_too()
    {
        var small = KernelSource.Resize(ElementType.Float16, [1, 16, 20, 20], [1, 16, 40, 40], [1, 1, 2, 2], "nearest", "asymmetric", "floor");
        var large = KernelSource.Resize(ElementType.Float16, [1, 16, 32, 48], [1, 16, 64, 96], [1, 1, 2, 2], "nearest", "asymmetric", "floor");
        var pool = KernelSource.Pool(ElementType.Float16, true, 16, [20, 20], [10, 10], [2, 2], [2, 2], [0, 0], [0, 0], [1, 1], false, channelsLast: true, channels: 16);
        var pool2 = KernelSource.Pool(ElementType.Float16, true, 16, [32, 48], [16, 24], [2, 2], [2, 2], [0, 0], [0, 0], [1, 1], false, channelsLast: true, channels: 16);

        // The depthwise kernel holds its layer's channel count (reads at fixed offsets), not the image's size.
        var depthwise = KernelSource.Depthwise(ElementType.Float16, true, 2, 1, 96, [14, 14], [14, 14], [3, 3], [1, 1], [1, 1], [1, 1]);
        var depthwise2 = KernelSource.Depthwise(ElementType.Float16, true, 2, 1, 96, [40, 24], [40, 24], [3, 3], [1, 1], [1, 1], [1, 1]);

        Assert.Equal(small.Source, large.Source);
        Assert.Equal(pool.Source, pool2.Source);
        Assert.Equal(depthwise.Source, depthwise2.Source);
        Assert.Equal(47, Args(large)["last3"]);
        Assert.Equal(48 * 16, Args(pool2)["is0"]); // channels-last: a step along H skips a row of W x C elements
        Assert.Equal(16, Args(pool2)["is1"]);
    }

    [Fact]
    public void Broadcast_dimensions_merge_so_a_channel_costs_one_division()
    {
        // [2, 3, 4] + [1, 3, 1]: the input varies along the middle dimension only.
        var code = KernelSource.Elementwise(ElementType.Float, [ElementType.Float, ElementType.Float], [2, 3, 4], [[2, 3, 4], [1, 3, 1]], ElementwiseOps.Expression("Add", [ElementType.Float, ElementType.Float], (_, d) => d));
        var args = Args(code);

        Assert.Contains("const float x0 = p0[i];", code.Source, StringComparison.Ordinal);
        Assert.Contains("const float x1 = p1[c1 * a.s1_1];", code.Source, StringComparison.Ordinal);
        Assert.Contains("y[i] = (float)(x0 + x1);", code.Source, StringComparison.Ordinal);
        Assert.Equal(1, args["s1_1"]);
        Assert.Equal(3, args["d1"]);
        Assert.Equal(4, args["d2"]);

        // Channels-last bias over [N, H, W, C]: two merged dimensions, the channel is the column.
        var nhwc = KernelSource.Elementwise(ElementType.Float, [ElementType.Float, ElementType.Float], [2, 5, 5, 16], [[2, 5, 5, 16], [1, 1, 1, 16]], "x0 + x1");
        Assert.Contains("const float x1 = p1[c1];", nhwc.Source, StringComparison.Ordinal);
        Assert.Equal(16, Args(nhwc)["d1"]);
        Assert.DoesNotContain("d2", Args(nhwc).Keys);
    }

    [Fact]
    public void Magic_numbers_divide_exactly()
    {
        var rng = new Random(7);
        for (var t = 0; t < 20000; t++)
        {
            var d = (uint)(t % 3 == 0 ? rng.Next(1, 100) : rng.Next(1, int.MaxValue));
            var n = (uint)rng.Next(0, int.MaxValue);
            var (_, m, s) = KernelWriter.Magic(d);
            var hi = (uint)(((ulong)n * m) >> 32);
            Assert.Equal(n / d, (uint)(((ulong)hi + n) >> (int)s));
        }
    }

    [Fact]
    public void Scalars_read_element_zero_and_attributes_become_literals()
    {
        var src = KernelSource.Elementwise(ElementType.Float, [ElementType.Float], [5], [[5]], ElementwiseOps.Expression("LeakyRelu", [ElementType.Float], (n, d) => n == "alpha" ? 0.25 : d)).Source;
        var scalar = KernelSource.Elementwise(ElementType.Bool, [ElementType.Int64, ElementType.Int64], [5], [[5], [1]], ElementwiseOps.Expression("Less", [ElementType.Int64, ElementType.Int64], (_, d) => d)).Source;

        Assert.Contains("x0 * 0.25f", src, StringComparison.Ordinal);
        Assert.Contains("const long long x1 = p1[0];", scalar, StringComparison.Ordinal);
        Assert.Contains("bool* __restrict__ y", scalar, StringComparison.Ordinal);
    }

    [Fact]
    public void Half_tensors_load_as_float_and_store_rounded()
    {
        var src = KernelSource.Elementwise(ElementType.Float16, [ElementType.Float16, ElementType.Int64], [4], [[4], [4]], "x0 * x1").Source;

        Assert.Contains("bw_half* __restrict__ y", src, StringComparison.Ordinal);
        Assert.Contains("const float x0 = p0[i];", src, StringComparison.Ordinal);
        Assert.Contains("y[i] = (bw_half)(float)(x0 * x1);", src, StringComparison.Ordinal);
        Assert.Contains("cvt.rn.f16.f32", KernelSource.Prelude, StringComparison.Ordinal);
    }

    [Fact]
    public void Fused_statements_run_before_the_stored_expression()
    {
        var src = KernelSource.Elementwise(ElementType.Float, [ElementType.Float, ElementType.Float], [2, 8], [[2, 8], [1, 8]], "t1", "    const float t0 = x0 + x1;\n    const float t1 = t0 * bw_sigmoid(t0);\n").Source;

        var body = src.IndexOf("const float t0", StringComparison.Ordinal);
        Assert.True(body > src.IndexOf("const float x1", StringComparison.Ordinal));
        Assert.True(src.IndexOf("y[i] = (float)(t1);", StringComparison.Ordinal) > body);
    }

    [Fact]
    public void Convert_copy_changes_type_and_order_in_one_pass()
    {
        // float32 NCHW [1, 2, 2, 2] read as NHWC into float16.
        var code = KernelSource.ConvertCopy(ElementType.Float, ElementType.Float16, [1, 2, 2, 2], [8, 2, 1, 4], 0, [8, 4, 2, 1], 0);
        var same = KernelSource.ConvertCopy(ElementType.Float, ElementType.Float, [4], [1], 0, [1], 0).Source;

        Assert.Contains("bw_half* __restrict__ dst, const float* __restrict__ src", code.Source, StringComparison.Ordinal);
        Assert.Contains("dst[d] = (bw_half)(float)src[s];", code.Source, StringComparison.Ordinal);
        Assert.Contains("dst[d] = src[s];", same, StringComparison.Ordinal);
        Assert.Equal(8, Args(code)["n"]);
    }

    [Fact]
    public void Channels_last_pooling_walks_channels_fastest()
    {
        var code = KernelSource.Pool(ElementType.Float16, true, 2 * 8, [4, 4], [2, 2], [2, 2], [2, 2], [0, 0], [0, 0], [1, 1], false, channelsLast: true, channels: 8);
        var args = Args(code);

        // Eight half channels per thread (one 16-byte load per tap): the channel coordinate counts vectors.
        Assert.Contains("xp = x + r_ * a.plane + ch * 8;", code.Source, StringComparison.Ordinal);
        Assert.Equal(1, args["channels"]);
        Assert.Equal(4 * 4 * 8, args["plane"]);
        Assert.Equal(8, args["is1"]);
    }

    [Fact]
    public void Copies_of_contiguous_runs_move_16_bytes_per_thread()
    {
        // Channels-last concat of 32 half channels into a 64-channel tensor at channel 32: 4 x 16 bytes per pixel.
        var wide = KernelSource.ViewCopy(2, [10, 32], [32, 1], 0, [64, 1], 32);
        var odd = KernelSource.ViewCopy(2, [10, 3], [3, 1], 0, [6, 1], 3);

        Assert.Contains("uint4* __restrict__ dst", wide.Source, StringComparison.Ordinal);
        Assert.Equal(40, Args(wide)["n"]);
        Assert.Equal(40, KernelSource.ViewCopyThreads(2, [10, 32], [32, 1], 0, [64, 1], 32));
        Assert.Contains("unsigned short* __restrict__ dst", odd.Source, StringComparison.Ordinal);
    }

    [Fact]
    public void Fused_half_kernels_take_eight_elements_per_thread_where_shapes_allow()
    {
        ElementType[] types = [ElementType.Float16, ElementType.Float16];
        long[][] shapes = [[2, 4, 4, 16], [1, 1, 1, 16]];
        var vector = KernelSource.ElementwiseVector(ElementType.Float16, types, [2, 4, 4, 16], shapes);
        var src = KernelSource.Elementwise(ElementType.Float16, types, [2, 4, 4, 16], shapes, "x0 + x1", null, vector).Source;

        Assert.Equal(8, vector);
        Assert.Contains("const uint4 v0 = *(const uint4*)(p0 + first);", src, StringComparison.Ordinal);
        Assert.Contains("x1 = p1[base1 + j];", src, StringComparison.Ordinal);
        Assert.Contains("*(uint4*)(y + first) = out;", src, StringComparison.Ordinal);
        Assert.Equal(1, KernelSource.ElementwiseVector(ElementType.Float16, types, [3, 5], [[3, 5], [1, 5]]));
        Assert.Equal(1, KernelSource.ElementwiseVector(ElementType.Bool, [ElementType.Float16], [16], [[16]]));

        // Eight elements of a row share their coordinates: a row that does not divide by eight takes one at a time.
        Assert.Equal(1, KernelSource.ElementwiseVector(ElementType.Float16, types, [2, 4, 4, 12], [[2, 4, 4, 12], [1, 1, 1, 12]]));
    }

    [Fact]
    public void Fused_kernels_between_half_and_int8_move_eight_elements_per_thread()
    {
        // Quantizing half to int8 (an int8 convolution's input): 16 bytes of half read, 8 of int8 written per thread.
        long[] shape = [2, 4, 4, 64];
        var vector = KernelSource.ElementwiseVector(ElementType.Int8, [ElementType.Float16], shape, [shape]);
        var quantize = KernelSource.Elementwise(ElementType.Int8, [ElementType.Float16], shape, [shape], "t0", "const int t0 = (int)x0;", vector).Source;
        Assert.Equal(8, vector);
        Assert.Contains("const uint4 v0 = *(const uint4*)(p0 + first);", quantize, StringComparison.Ordinal);
        Assert.Contains("*(uint2*)(y + first) = out;", quantize, StringComparison.Ordinal);

        // Two int8 operands to int8 (a residual block's requantization): 16 of each per thread; float and int8: 4.
        Assert.Equal(16, KernelSource.ElementwiseVector(ElementType.Int8, [ElementType.Int8, ElementType.UInt8], shape, [shape, shape]));
        Assert.Equal(4, KernelSource.ElementwiseVector(ElementType.UInt8, [ElementType.Float], shape, [shape]));
        Assert.Equal(8, KernelSource.ElementwiseVector(ElementType.Float16, [ElementType.Int8], shape, [shape]));

        // Nothing wider than 4 bytes moves in vectors; a broadcast input (read a value at a time) does not set the
        // count, and a row must divide by it.
        Assert.Equal(1, KernelSource.ElementwiseVector(ElementType.Int8, [ElementType.Double], shape, [shape]));
        Assert.Equal(16, KernelSource.ElementwiseVector(ElementType.Int8, [ElementType.Int8, ElementType.Float16], [2, 4, 4, 32], [[2, 4, 4, 32], [1, 1, 1, 32]]));
        Assert.Equal(1, KernelSource.ElementwiseVector(ElementType.Int8, [ElementType.Int8, ElementType.Float16], [2, 4, 4, 24], [[2, 4, 4, 24], [1, 1, 1, 24]]));
    }

    [Fact]
    public void Layout_changes_go_through_shared_memory_tiles()
    {
        // [2, 50, 40] -> [2, 40, 50]: 2 x 2 x 2 tiles of 32 x 32, one 256-thread block each.
        var code = KernelSource.Transpose(2, 2, 50, 40);

        Assert.Contains("__shared__ unsigned short tile[32][33];", code.Source, StringComparison.Ordinal);
        Assert.Contains("__syncthreads();", code.Source, StringComparison.Ordinal);
        Assert.Equal(8 * 256, KernelSource.TransposeThreads(2, 50, 40));
        Assert.Equal(4, Args(code)["tiles"]);
    }

    [Fact]
    public void An_image_enters_channels_last_with_zero_channels_up_to_eight()
    {
        var code = KernelSource.ChannelsLastPadded(ElementType.Float, ElementType.Float16, 4, 3, 224 * 224, 8);
        var args = Args(code);

        Assert.Equal(4 * 224 * 224, args["n"]); // one thread per pixel
        Assert.Equal(224 * 224, args["pixels"]);
        Assert.Equal(3, args["channels"]);
        Assert.Contains("*(uint4*)(dst + p * 8) = packed;", code.Source, StringComparison.Ordinal);
    }

    [Fact]
    public void Index_arithmetic_is_32_bit_where_it_fits_and_64_bit_beyond()
    {
        var small = KernelSource.ViewCopy(4, [8, 16], [1, 8], 0, [16, 1], 0).Source;
        var negative = KernelSource.ViewCopy(4, [8], [-1], 7, [1], 0).Source;
        var huge = KernelSource.Elementwise(ElementType.Float, [ElementType.Float], [3L << 30], [[3L << 30]], "x0").Source;

        Assert.Contains("const unsigned i = ", small, StringComparison.Ordinal);
        Assert.Contains("bw_div dim1;", small, StringComparison.Ordinal);
        Assert.Contains("const i64 i = ", negative, StringComparison.Ordinal);
        Assert.Contains("const i64 i = ", huge, StringComparison.Ordinal);
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
        var e = Assert.Throws<BatchwiseException>(() => KernelSource.CType(ElementType.String));
        Assert.Contains("string", e.Message, StringComparison.Ordinal);
    }
}
