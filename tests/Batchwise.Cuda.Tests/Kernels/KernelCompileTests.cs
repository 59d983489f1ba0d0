using System.Text;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Kernels;

/// <summary>Every generator's source compiles with NVRTC (which needs no GPU): runs wherever NVRTC is found.</summary>
public sealed class KernelCompileTests
{
    private static void RequireNvrtc()
    {
        try
        {
            _ = Nvrtc.Version();
        }
        catch (BatchwiseException e)
        {
            if (Environment.GetEnvironmentVariable("BATCHWISE_REQUIRE_GPU") == "1")
            {
                throw;
            }

            Assert.Skip("NVRTC not found, so generated kernels cannot be compiled here: " + e.Message);
        }
    }

    private static IEnumerable<KernelCode> Generated()
    {
        // NonZero over the element types that are not float (those come with the float loop below).
        foreach (var t in new[] { ElementType.Bool, ElementType.Int32, ElementType.Int64, ElementType.UInt8, ElementType.Double, ElementType.BFloat16 })
        {
            yield return KernelSource.NonZeroCount(t, 9);
            yield return KernelSource.NonZeroIndices(t, [9], 4);
        }

        yield return KernelSource.CopySegments(3);

        ElementType[] floats = [ElementType.Float, ElementType.Float16];
        foreach (var t in floats)
        {
            var vector = 16 / t.SizeOf();
            yield return KernelSource.Elementwise(t, [t, t], [2, 3, 4], [[2, 3, 4], [1, 3, 1]], "x0 + x1");
            yield return KernelSource.Elementwise(t, [t, t], [2, 5, 5, 16], [[2, 5, 5, 16], [1, 1, 1, 16]], "t1", "const float t0 = x0 + x1;\nconst float t1 = t0 * bw_sigmoid(t0);", vector);
            yield return KernelSource.Elementwise(t, [t, t], [4, 16], [[4, 16], [4, 16]], "x0 * x1", null, vector, 16, 32, 16);
            yield return KernelSource.Elementwise(t, [t], [4, 16], [[4, 16]], "x0", null, 1, 16, 32, 0);
            yield return KernelSource.Elementwise(t, [t], [3L << 30], [[3L << 30]], "x0");
            yield return KernelSource.UnaryInPlace(t, "bw_gelu(x0)", 64);
            yield return KernelSource.UnaryInPlace(t, "bw_gelu(x0)", 63);
            yield return KernelSource.UnaryInPlace(t, "bw_gelu(x0)", 64, backToFront: false);
            yield return KernelSource.UnaryInPlace(t, "bw_gelu(x0)", 3L << 30);
            yield return KernelSource.ViewCopy(t.SizeOf(), [2, 3, 4], [12, 1, 3], 0, [12, 4, 1], 0);
            yield return KernelSource.ViewCopy(t.SizeOf(), [8], [-1], 7, [1], 0);
            yield return KernelSource.ViewCopy(t.SizeOf(), [10, 32], [32, 1], 0, [64, 1], 32);
            yield return KernelSource.Transpose(t.SizeOf(), 2, 50, 40);
            yield return KernelSource.Reduce(t, "mean", [2, 3, 4], [false, true, true]);
            yield return KernelSource.Reduce(t, "max", [2, 3, 4], [true, false, true]);
            yield return KernelSource.Softmax(t, 6, 100, 1, false);
            yield return KernelSource.SoftmaxShortAxis(t, 6, 16, 8, true);
            yield return KernelSource.LayerNorm(t, t, ElementType.Float, 4, 64, 1e-5, true, 64, 64);
            yield return KernelSource.LayerNormRows(t, t, ElementType.Float, 4, 768, 1e-12, true, (0.03, 131, ElementType.UInt8)); // a QuantizeLinear's bytes written
            yield return KernelSource.Pool(t, true, 16, [8, 8], [4, 4], [3, 3], [2, 2], [1, 1], [1, 1], [1, 1], false);
            yield return KernelSource.Pool(t, false, 16, [8, 8], [4, 4], [3, 3], [2, 2], [1, 1], [1, 1], [1, 1], true, channelsLast: true, channels: 8);
            yield return KernelSource.Pool(t, false, 16, [8], [4], [2], [2], [0], [0], [1], false);
            foreach (var mode in new[] { "constant", "edge", "reflect", "wrap" })
            {
                yield return KernelSource.Pad(t, [2, 3, 4], [2, 5, 6], [0, 1, 1], mode, 0.5);
            }

            yield return KernelSource.Reduce(t, "logsum", [2, 3, 4], [false, true, false]);
            yield return KernelSource.Reduce(t, "logsumexp", [2, 3, 4], [true, true, true]);
            yield return KernelSource.NonZeroCount(t, 120);
            yield return KernelSource.NonZeroIndices(t, [2, 3, 4, 5], 17);
            yield return KernelSource.ScatterElements(t, ElementType.Int64, [4, 5], [2, 5], 0, "none");
            if (t is ElementType.Float or ElementType.Float16)
            {
                yield return KernelSource.SmallRows(t, bias: true, residual: false, relu: false, 1, 1000, 2048, 2048, 2048, 1, 0); // 16-byte loads
                yield return KernelSource.SmallRows(t, bias: false, residual: true, relu: true, 5, 24, 37, 37, 37, 0.7f, 0.5f); // one element a load
                yield return KernelSource.SmallRows(t, bias: true, residual: true, relu: false, 8, 1L << 20, 4096, 4096, 4096, 1, 1); // 64-bit indices
            }

            yield return KernelSource.ScatterElements(t, ElementType.Int32, [4, 5], [2, 5], 1, "add");
            yield return KernelSource.ScatterND(t, ElementType.Int64, [4, 5, 6], 3, 2, "mul");
            yield return KernelSource.ScatterND(t, ElementType.Int64, [4, 5, 6], 3, 1, "none");
            yield return KernelSource.CumSum(t, 2, 10, 3, exclusive: true, reverse: true);
            yield return KernelSource.CumSum(t, 2, 10, 3, exclusive: false, reverse: false);
            yield return KernelSource.ArgExtreme(t, 2, 10, 3, max: true, selectLast: true);
            yield return KernelSource.TopK(t, 2, 100, 3, 5, largest: false);
            yield return KernelSource.GroupNorm(t, t, 8, 4, 2, 49, 1e-5, perChannel: true);
            yield return KernelSource.GroupNorm(t, t, 8, 4, 2, 49, 1e-5, perChannel: false);
            if (t == ElementType.Float16)
            {
                foreach (var head in new[] { 16, 48, 64, 80, 96, 112, 128 })
                {
                    yield return KernelSource.Attention(head, 2, 3, 70, 90, head - 3, head, 0.125, [0, 70 * head, head, 1], [0, 90 * head, 1, 90], [0, 90 * head, head, 1], head == 64 ? [90, 0, 0, 1] : null);
                }

                // The safe-softmax mode (rows masked entirely give zeros) with a boolean mask (SDPA's export).
                yield return KernelSource.Attention(64, 2, 3, 70, 90, 64, 64, 0.125, [0, 70 * 64, 64, 1], [0, 90 * 64, 64, 1], [0, 90 * 64, 64, 1], [90, 0, 0, 1], zeroEmptyRows: true, booleanMask: (0, double.NegativeInfinity));
            }

            foreach (var channelsLast in new[] { false, true })
            {
                var dw = KernelSource.DepthwiseVector(t, channelsLast, 16);
                yield return KernelSource.Depthwise(t, channelsLast, dw, 2, 16, [14, 14], [14, 14], [7, 7], [1, 1], [1, 1], [3, 3]);
                yield return KernelSource.Depthwise(t, channelsLast, dw, 2, 16, [13, 12], [7, 6], [3, 3], [2, 2], [1, 1], [0, 0]);
                yield return KernelSource.Depthwise(t, channelsLast, 1, 1L << 12, 15, [100, 100], [100, 100], [5, 5], [1, 1], [2, 2], [4, 4]);
            }

            // A QDQ depthwise layer's kernel: an 8-bit input through its table, the output's QuantizeLinear and the table
            // after it, each held once per lane; 2 and 4 rows a thread, threads a grid apart.
            var int8Fusion = new DepthwiseFusion(ElementType.UInt8, "const float t0 = ((float)xe - 128.0f) * 0.02f;", "t0", ElementType.UInt8, true,
                new KernelSource.QuantRounding(0.01f, 7, 0, 255), null, new QuantizedOutputTable(0, "fminf(fmaxf(qv - 7.0f, 0.0f), 255.0f)"));
            yield return KernelSource.Depthwise(t, true, 4, 256, 32, [112, 112], [112, 112], [3, 3], [1, 1], [1, 1], [1, 1], int8Fusion, 2);
            yield return KernelSource.Depthwise(t, true, 4, 256, 96, [112, 112], [56, 56], [3, 3], [2, 2], [1, 1], [1, 1], int8Fusion, 4);

            foreach (var kind in new[] { "mean", "sum", "max", "min", "l1", "l2", "sumsquare", "logsum", "prod" })
            {
                yield return KernelSource.ReduceColumns(t, kind, t == ElementType.Float16 ? 2 : 1, 2, 49, 96);
                yield return KernelSource.ReduceColumns(t, kind, t == ElementType.Float16 ? 2 : 1, 2, 12544, 32, 98, partial: true);
                yield return KernelSource.ReduceSplits(t, kind, 98, 2, 12544, 32);
                yield return KernelSource.ReduceRows(t, kind, 32, 6, 100);
                yield return KernelSource.ReduceRows(t, kind, 256, 6, 5000);
            }

            // A QDQ model's global pooling and means, reading the int8 activation through its DequantizeLinear.
            var dequantized = new ReductionInput(ElementType.Int8, "const unsigned char t0 = (unsigned char)(((signed char)xe) + 128);\nconst float t1 = (float)(((float)t0 - 3.0f) * 0.02f);\n", "t1");
            yield return KernelSource.ReduceColumns(t, "mean", 8, 256, 49, 2048, input: dequantized);
            yield return KernelSource.ReduceColumns(t, "max", 4, 1, 12544, 36, 98, partial: true, input: dequantized);
            yield return KernelSource.ReduceRows(t, "mean", 32, 6, 100, dequantized);

            foreach (var cols in new long[] { 384, 96, 37, 1024 / t.SizeOf() })
            {
                yield return KernelSource.LayerNormRows(t, t, ElementType.Float, 100, cols, 1e-6, hasBias: cols != 96);
                yield return KernelSource.SoftmaxRows(t, 100, cols, log: cols == 37);
            }

            foreach (var cols in new long[] { 1536, 4097 })
            {
                yield return KernelSource.LayerNormWideRows(t, t, ElementType.Float, 100, cols, 1e-6, hasBias: cols == 1536, KernelSource.WideRowWarps(t, cols)!.Value);
            }

            yield return KernelSource.Patches(t, true, 2, 3, 8, [224, 224], [14, 14], [16, 16]);
            yield return KernelSource.Patches(t, false, 2, 3, 3, [18, 17], [4, 4], [4, 4]);
            foreach (var coord in new[] { "half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn", "half_pixel_symmetric" })
            {
                yield return KernelSource.Resize(t, [2, 3, 4, 4], [2, 3, 8, 8], [1, 1, 2, 2], "linear", coord, "round_prefer_floor");
                yield return KernelSource.Resize(t, [2, 3, 4, 4], [2, 3, 8, 8], [1, 1, 2, 2], "nearest", coord, "floor");
            }
        }

        // Grouped convolutions: RegNet's group width 24 at strides 1 and 2 (both tile heights), with each epilogue;
        // ResNeXt's 32, an odd n-tile count (40), a 1x1 at the widest group.
        GroupedConvEpilogue plain = new(null, false, false), biasRelu = new(ElementType.Float16, true, false), residual = new(ElementType.Float16, true, true);
        yield return KernelSource.GroupedConv(24, 24, [3, 3], [1, 1], [1, 1], 2, biasRelu, 64, 2, [56, 56], [56, 56], [1, 1]);
        yield return KernelSource.GroupedConv(24, 24, [3, 3], [2, 2], [1, 1], 2, biasRelu, 64, 2, [112, 112], [56, 56], [1, 1]);
        yield return KernelSource.GroupedConv(24, 24, [3, 3], [2, 2], [1, 1], 1, residual, 64, 37, [14, 14], [7, 7], [1, 1]);
        yield return KernelSource.GroupedConv(32, 32, [3, 3], [1, 1], [1, 1], 1, plain, 8, 32, [7, 7], [7, 7], [1, 1]);
        yield return KernelSource.GroupedConv(16, 40, [3, 3], [1, 1], [2, 2], 2, new(ElementType.Float, true, false), 2, 4, [30, 30], [30, 30], [2, 2]);
        yield return KernelSource.GroupedConv(64, 64, [1, 1], [1, 1], [1, 1], 2, plain, 2, 2, [16, 16], [16, 16], [0, 0]);
        yield return KernelSource.Resize(ElementType.Float16, [2, 4, 4, 8], [2, 8, 8, 1], [1, 2, 2, 1], "nearest", "asymmetric", "floor", "uint4");
        yield return KernelSource.ChannelsLastPadded(ElementType.Float, ElementType.Float16, 2, 3, 64, 8);
        yield return KernelSource.ChannelsLastPadded(ElementType.Float, ElementType.Float16, 2, 3, 64, 5);
        yield return KernelSource.ConvertCopy(ElementType.Float, ElementType.Float16, [1, 2, 2, 2], [8, 2, 1, 4], 0, [8, 4, 2, 1], 0);
        yield return KernelSource.Gather(4, ElementType.Int64, 2, 10, 3, 4);
        yield return KernelSource.Gather(2, ElementType.Int32, 2, 10, 3, 4);
        yield return KernelSource.Reduce(ElementType.Int64, "sum", [2, 3], [false, true]);
        yield return KernelSource.Elementwise(ElementType.Bool, [ElementType.Int64, ElementType.Int64], [5], [[5], [1]], "x0 < x1");
        foreach (var op in new[] { "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Shrink", "IsNaN", "IsInf" })
        {
            foreach (var t in new[] { ElementType.Float, ElementType.Float16, ElementType.Double })
            {
                var compute = KernelSource.ComputeType(t);
                var outType = ElementwiseOps.OutputType(op, [t]);
                yield return KernelSource.Elementwise(outType, [t], [6], [[6]], ElementwiseOps.Expression(op, [compute], (_, d) => d));
            }
        }

        foreach (var op in new[] { "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitShift" })
        {
            foreach (var t in new[] { ElementType.UInt8, ElementType.Int32, ElementType.UInt64 })
            {
                yield return KernelSource.Elementwise(t, [t, t], [6], [[6], [1]], ElementwiseOps.Expression(op, [t, t], (_, d) => d, op == "BitShift" ? "RIGHT" : null));
            }
        }

        yield return KernelSource.Elementwise(ElementType.Int16, [ElementType.Int16], [6], [[6]], ElementwiseOps.Expression("BitwiseNot", [ElementType.Int16], (_, d) => d));
        yield return KernelSource.Elementwise(ElementType.BFloat16, [ElementType.Float], [8], [[8]], "x0");
        yield return KernelSource.Elementwise(ElementType.Float, [ElementType.BFloat16], [8], [[8]], "x0", null, 4);
        yield return KernelSource.GatherElements(4, ElementType.Int64, [3, 4, 5], [3, 2, 5], 1);
        yield return KernelSource.GatherND(2, ElementType.Int64, [2, 3, 4, 5], 2, 6, 1, 2);
        yield return KernelSource.ArgExtreme(ElementType.Int64, 2, 10, 3, max: false, selectLast: false);
        yield return KernelSource.CumSum(ElementType.Int32, 2, 10, 3, exclusive: false, reverse: true);
        yield return KernelSource.TopK(ElementType.Int64, 2, 100, 3, 5, largest: true);
        yield return KernelSource.OneHot(4, ElementType.Int64, 3, 10, 2);
        yield return KernelSource.OneHot(2, ElementType.Float, 3, 10, 2);
        yield return KernelSource.Trilu(2, 60, 4, 5, upper: false);
        yield return KernelSource.Trilu(8, 60, 4, 5, upper: true);
        foreach (var (q, scale) in new[] { (ElementType.UInt8, ElementType.Double), (ElementType.Int8, ElementType.Float16), (ElementType.Int16, ElementType.Float) })
        {
            yield return KernelSource.Dequantize(q, ElementType.Float16, scale, q, 24, 3, 4, true);
            yield return KernelSource.Dequantize(ElementType.Int32, ElementType.Float, scale, ElementType.Int32, 24, 1, 1, false);
            yield return KernelSource.Quantize(ElementType.Float16, q, scale, 24, 3, 4, true);
            yield return KernelSource.Quantize(ElementType.Float, q, scale, 24, 1, 1, false);
        }

        yield return KernelSource.DynamicQuantizeRange(ElementType.Float16, ElementType.Float16, 24);
        yield return KernelSource.Pool(ElementType.Float16, true, 6, [5, 6], [3, 3], [3, 2], [2, 2], [1, 0], [1, 1], [1, 1], false, indices: true, columnMajor: true);
        yield return KernelSource.Resize(ElementType.Float16, [1, 2, 4, 4], [1, 2, 8, 6], [1, 1, 2, 1.5], "cubic", "half_pixel", "round_prefer_floor", null, -0.5, excludeOutside: true);
        yield return KernelSource.Resize(ElementType.Float, [1, 2, 4, 4], [1, 2, 3, 5], [1, 1, 0.75, 1.25], "linear", "tf_crop_and_resize", "round_prefer_floor", null, roi: [0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2], extrapolation: 9);
        yield return KernelSource.Resize(ElementType.Float, [1, 2, 4, 4], [1, 2, 3, 5], [1, 1, 0.75, 1.25], "cubic", "tf_crop_and_resize", "round_prefer_floor", null, roi: [0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2], extrapolation: 9);
        yield return KernelSource.DynamicQuantizeRange(ElementType.Float, ElementType.Float, 24);
        yield return KernelSource.DynamicQuantizePartials(ElementType.Float16, 3_145_728, KernelSource.DynamicQuantizeBlocks(3_145_728));
        yield return KernelSource.Requantize(ElementType.UInt8, 4 * 9 * 8, 8, 9, 0, 128, true, true);
        foreach (var outType in new[] { ElementType.Float, ElementType.Float16 })
        {
            // An int8 GEMM's dequantization: int32 sums times a float64 column scale plus a float64 column offset.
            ElementType[] leaves = [ElementType.Int32, ElementType.Double, ElementType.Double];
            long[] shape = [24, 48];
            long[][] leafShapes = [[24, 48], [1, 48], [1, 48]];
            yield return KernelSource.Elementwise(outType, leaves, shape, leafShapes, "t0", "const double t0 = (double)(((int)x0) * ((double)x1) + ((double)x2));", KernelSource.ElementwiseVector(outType, leaves, shape, leafShapes));
        }

        // The own int8 convolutions with a SiLU and its QuantizeLinear in the epilogue (the sigmoid quantized or not).
        var silu = new Int8ConvEpilogue(ElementType.UInt8, 128, false, null, new Int8SiluEpilogue(0.05, null, 0.026, 11, ElementType.UInt8));
        var gatedSilu = silu with { Silu = silu.Silu! with { Sigmoid = (1.0 / 255, 0, ElementType.UInt8), OutType = ElementType.Int8, OutZero = -117 } };
        yield return KernelSource.Int8Conv(64, [3, 3], [1, 1], 2, 64, [20, 20], [20, 20], [1, 1], 64, 64, 4, 3, silu);
        yield return KernelSource.Int8Pointwise(64, 128, 800, 4, gatedSilu);
        yield return KernelSource.Int8NarrowPointwise(16, 96, 800, silu);
        yield return KernelSource.Int8Depthwise(96, [3, 3], [2, 2], 2, [20, 20], [10, 10], [1, 1], -128, new Int8ConvEpilogue(ElementType.UInt8, 0, true, Clamp: (double.NegativeInfinity, 200)));
        yield return KernelSource.Int8Depthwise(48, [5, 5], [1, 1], 2, [9, 9], [9, 9], [2, 2], 3, silu, rows: 1);
        yield return KernelSource.Attention(64, 2, 12, 128, 128, 64, 64, 0.125, [196608, 64, 768, 1], [196608, 64, 768, 1], [196608, 64, 768, 1], [128, 0, 0, 1], null, [98304, 64, 768], quantize: (0.012, 130, ElementType.UInt8)); // O as a QuantizeLinear's bytes
        yield return KernelSource.Requantize(ElementType.Int8, 4 * 9 * 8, 8, 9, -3, 0, false, false);
        yield return KernelSource.Elementwise(ElementType.Int8, [ElementType.UInt8], [2, 3, 3, 8], [[2, 3, 3, 8]], "t0", "const int t0 = (int)(signed char)((int)x0 - 128);");
        yield return KernelSource.Elementwise(ElementType.UInt8, [ElementType.Float16], [2, 3, 3, 8], [[2, 3, 3, 8]], "t0", "const float t0 = fminf(fmaxf(rintf((float)x0 / 0.05f) + 3.0f, 0.0f), 255.0f);");
        yield return KernelSource.Elementwise(ElementType.Int8, [ElementType.Float16, ElementType.Int8], [2, 3, 3, 16], [[2, 3, 3, 16], [2, 3, 3, 16]], "t0", "const float t0 = fminf(fmaxf(rintf((float)x0 / 0.05f) + (float)x1, -128.0f), 127.0f);", 8);
        yield return KernelSource.IntegerConv(ElementType.UInt8, ElementType.UInt8, ElementType.Int32, (ElementType.Float, ElementType.Float, ElementType.Float), 2, 100, 4, 2, 4, [5, 5], [5, 5], [3, 3], [1, 1], [1, 1], [1, 1], 0, 0, false);
        yield return KernelSource.IntegerConv(ElementType.Int8, ElementType.Int8, ElementType.Int8, (ElementType.Double, ElementType.Double, ElementType.Float16), 1, 100, 4, 1, 2, [9], [5], [3], [2], [1], [1], 1, 1, true);
        yield return KernelSource.IntegerMatMul(ElementType.UInt8, ElementType.Int8, ElementType.Int32, (ElementType.Float, ElementType.Float, ElementType.Float), 30, 3, 4, 5, 12, 0, 1, 1, 0, false);
        yield return KernelSource.IntegerMatMul(ElementType.UInt8, ElementType.UInt8, ElementType.UInt8, (ElementType.Double, ElementType.Double, ElementType.Float16), 30, 3, 4, 5, 12, 20, 0, 0, 1, true);

        // Recurrent layers: every activation, optional inputs and outputs present and absent, fp32 and fp16 storage.
        var activations = KernelSource.RecurrentActivationNames.Select(n => new RecurrentActivation(n, 0.5, 0.25)).ToArray();
        var sizes = new RecurrentSizes(5, 3, 7, 40, 2, false, (21, 7), (240, 120, 40), (120, 40), 3.0);
        foreach (var t in floats)
        {
            yield return KernelSource.Recurrent(new RecurrentSignature(RecurrentCell.Lstm, [.. activations.Take(3), .. activations.Skip(3).Take(3)], t, t, t, t, true, t, t, t, t, t, t, true, false, true), sizes);
            yield return KernelSource.Recurrent(new RecurrentSignature(RecurrentCell.Gru, [.. activations.Skip(6).Take(2), .. activations.Skip(8).Take(2)], t, t, t, null, false, null, null, null, t, null, null, false, true, false), sizes);
            yield return KernelSource.Recurrent(new RecurrentSignature(RecurrentCell.Rnn, [activations[10], activations[0]], t, t, t, t, true, t, null, null, null, t, null, false, false, false), sizes with { Directions = 1, Reverse = true });
        }
    }

    [Fact]
    public void Every_generated_kernel_compiles_with_nvrtc()
    {
        RequireNvrtc();
        var program = new StringBuilder(KernelSource.Prelude);
        var i = 0;
        foreach (var k in Generated())
        {
            program.Append(k.Source.Replace(KernelSource.Name, "bw_k" + i++, StringComparison.Ordinal)).Append('\n');
        }

        var cubin = Nvrtc.CompileToCubin(program.ToString(), "kernels.cu", 80);
        Assert.NotEmpty(cubin);
    }
}
