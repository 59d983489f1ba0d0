using Batchwise.Cuda.Planning;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Which convolutions of a QDQ model the cuda engine runs int8, and why not the others (decided from the graph, no GPU);
/// and the int8 layer's requantization tables against a direct uint8 convolution.
/// </summary>
public sealed class Int8PlanTests
{
    /// <summary>The zoo's resnet18 at 32x32 with the transforms `optimize --int8` applies (without its verification runs).</summary>
    internal static readonly Lazy<OnnxModel> QdqResnet18 = new(() =>
    {
        var model = ModelZoo.Build("zoo:resnet18?size=32");
        foreach (var t in new IModelTransform[] { new ConstantFolding(), new BatchNormFolding(), new DeadNodeRemoval(), new Int8Quantization(CalibrationData.Parse("random:1")) })
        {
            t.Apply(model);
        }

        return model;
    });

    [Fact]
    public void Every_convolution_of_an_optimized_resnet18_runs_int8_but_the_three_channel_stem()
    {
        var model = QdqResnet18.Value;
        var layers = Int8Layers.Find(model, enabled: true);
        var convs = model.Graph.Node.Where(n => n.OpType == "Conv").ToList();
        Assert.Equal(convs.Count + 1, layers.Count);
        var fc = Assert.Single(layers.Values, l => l.IsGemm);
        Assert.True(fc.Int8, fc.Reason);
        Assert.Equal($"{Int8Layers.Switch}=conv", Int8Layers.Find(model, enabled: true, gemms: false)[fc.Node].Reason);

        var stem = layers[convs[0]];
        Assert.False(stem.Int8);
        Assert.Contains("3 input", stem.Reason, StringComparison.Ordinal);
        Assert.All(convs.Skip(1), c =>
        {
            var l = layers[c];
            Assert.True(l.Int8, l.Reason);
            Assert.Equal("QuantizeLinear", l.Quantize!.OpType);
            Assert.Equal("DequantizeLinear", l.InputDequantize!.OpType);
            Assert.Equal(c.Input[1], l.WeightDequantize!.Output[0]);
        });
    }

    [Fact]
    public void The_layer_test_models_are_valid_and_int8()
    {
        foreach (var (kernel, relu, yType) in new[] { (3, true, ElementType.UInt8), (1, false, ElementType.Int8) })
        {
            var model = Gpu.Int8LayerGpuTests.QdqConv(16, 32, kernel, 1, kernel / 2, 7, relu, 3, yType);
            var layer = Assert.Single(Int8Layers.Find(model, enabled: true).Values);
            Assert.True(layer.Int8, layer.Reason);
            Assert.Equal(relu, layer.Relu is not null);
            using var ort = new Engines.OrtEngine().Load(model, new Engines.EngineOptions { GraphOptimization = "disabled" });
            var y = ort.Run([Engines.Tensor.From<byte>(ElementType.UInt8, [2, 16, 9, 9], new byte[2 * 16 * 81])]);
            Assert.Equal(new long[] { 2, 32, 9, 9 }, y[0].Shape);
        }

        foreach (var gemm in new[] { false, true })
        {
            var model = Gpu.Int8LayerGpuTests.QdqMatMul(24, 64, 48, 131, gemm);
            var layer = Assert.Single(Int8Layers.Find(model, enabled: true).Values);
            Assert.True(layer.Int8 && layer.IsGemm, layer.Reason);
            using var ort = new Engines.OrtEngine().Load(model, new Engines.EngineOptions { GraphOptimization = "disabled" });
            Assert.Equal(new long[] { 24, 48 }, ort.Run([Engines.Tensor.From<byte>(ElementType.UInt8, [24, 64], new byte[24 * 64])])[0].Shape);
        }
    }

    [Fact]
    public void The_switch_turns_every_layer_float_and_a_float_model_has_none()
    {
        Assert.All(Int8Layers.Find(QdqResnet18.Value, enabled: false).Values, l => Assert.Equal($"{Int8Layers.Switch}=off", l.Reason));
        Assert.Empty(Int8Layers.Find(ModelZoo.Build("zoo:resnet18?size=32"), enabled: true));
    }

    [Fact]
    public void A_convolution_read_by_more_than_its_quantize_stays_float_with_the_reason()
    {
        var model = OnnxModel.FromBytes(QdqResnet18.Value.ToBytes(), "copy");
        var conv = model.Graph.Node.Where(n => n.OpType == "Conv").ElementAt(1);
        var extra = new global::Onnx.NodeProto { OpType = "Identity", Name = "extra_reader" };
        extra.Input.Add(conv.Output[0]);
        extra.Output.Add("extra_out");
        model.Graph.Node.Add(extra);
        var layer = Int8Layers.Find(model, enabled: true)[conv];
        Assert.False(layer.Int8);
        Assert.Contains("more than a QuantizeLinear", layer.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false, 128.0)]
    [InlineData(true, 0.0)]
    public void Gemm_tables_reproduce_the_uint8_product(bool transposed, double aZero)
    {
        const int rows = 3, inner = 8, columns = 4;
        var rng = new Random(transposed ? 1 : 2);
        var a = Enumerable.Range(0, rows * inner).Select(_ => (long)rng.Next(0, 256)).ToArray();
        var w = Enumerable.Range(0, inner * columns).Select(_ => (long)rng.Next(-127, 128)).ToArray();
        var wScale = Enumerable.Range(0, columns).Select(_ => 0.001 + (rng.NextDouble() * 0.01)).ToArray();
        var bias = Enumerable.Range(0, columns).Select(_ => rng.NextDouble() - 0.5).ToArray();
        const double aScale = 0.03;
        long W(int kk, int n) => transposed ? w[(n * inner) + kk] : w[(kk * columns) + n];
        var t = GraphCompiler.Int8GemmTables(HostTensor.OfInts(ElementType.Int8, transposed ? [columns, inner] : [inner, columns], w), transposed, HostTensor.OfFloats(ElementType.Float, [columns], wScale), HostTensor.OfFloats(ElementType.Float, [columns], bias), aScale, aZero - 128);
        Assert.Equal(new long[] { columns, inner }, t[0].Shape);
        for (var m = 0; m < rows; m++)
        {
            for (var n = 0; n < columns; n++)
            {
                double expected = bias[n], sum = 0;
                for (var kk = 0; kk < inner; kk++)
                {
                    expected += (a[(m * inner) + kk] - aZero) * aScale * W(kk, n) * wScale[n];
                    sum += (a[(m * inner) + kk] - 128) * t[0][(n * inner) + kk];
                }

                Assert.Equal(expected, (sum * t[1][n]) + t[2][n], 9);
            }
        }
    }

    [Theory]
    [InlineData(false, 5, Batchwise.Cuda.Interop.CublasLt.CUBLASLT_EPILOGUE_BIAS)] // no ReLU: saturation alone
    [InlineData(true, -128, Batchwise.Cuda.Interop.CublasLt.CUBLASLT_EPILOGUE_BIAS)] // uint8 zero point 0: int8's floor is the ReLU
    [InlineData(true, 0, Batchwise.Cuda.Interop.CublasLt.CUBLASLT_EPILOGUE_RELU_BIAS)] // zero stored as 0: the ReLU epilogue
    [InlineData(true, -100, -1)] // neither: the cuDNN path's kernel
    public void The_gemm_epilogue_clamps_where_the_real_zero_is_stored(bool relu, double storedZero, int epilogue) =>
        Assert.Equal(epilogue, GraphCompiler.Int8GemmEpilogue(relu, storedZero));

    [Theory]
    [InlineData(3, 1, 1, 131, false)] // 3x3, padded, uint8 input with zero point 131: per-pixel border offsets
    [InlineData(3, 2, 1, 0, true)] // strided, ReLU, post-ReLU input (zero point 0, stored as -128)
    [InlineData(1, 1, 0, 77, false)] // 1x1: per-channel offsets
    [InlineData(1, 1, 0, 77, true, 128)] // ReLU at a zero stored as 0: the graph's ReLU, no zero vector
    [InlineData(3, 1, 1, 60, true, 100)] // ReLU at a zero stored as -28: the graph's ReLU, then the zero vector
    public void Requantization_tables_reproduce_the_uint8_convolution(int kernel, int stride, int pad, int xZero, bool relu, int outZero = -1)
    {
        const int n = 2, c = 8, k = 4, h = 7, w = 6;
        var rng = new Random(kernel * 100 + stride * 10 + pad);
        var x = Enumerable.Range(0, n * c * h * w).Select(_ => (long)rng.Next(0, 256)).ToArray();
        var wq = Enumerable.Range(0, k * c * kernel * kernel).Select(_ => (long)rng.Next(-127, 128)).ToArray();
        var wScale = Enumerable.Range(0, k).Select(_ => 0.001 + (rng.NextDouble() * 0.01)).ToArray();
        var bias = Enumerable.Range(0, k).Select(_ => (rng.NextDouble() - 0.5) * 2).ToArray();
        double xScale = 0.02, yScale = 0.05, yZero = outZero >= 0 ? outZero : relu ? 0 : 128;
        var ho = ((h + (2 * pad) - kernel) / stride) + 1;
        var wo = ((w + (2 * pad) - kernel) / stride) + 1;

        var weights = HostTensor.OfInts(ElementType.Int8, [k, c, kernel, kernel], wq);
        var (filter, scale, offset, perPixel) = GraphCompiler.Int8ConvTables(weights, HostTensor.OfFloats(ElementType.Float, [k], wScale), HostTensor.OfFloats(ElementType.Float, [k], bias), xScale, xZero - 128, yScale, [h, w], [ho, wo], [kernel, kernel], [stride, stride], [pad, pad]);
        Assert.Equal(xZero != 128 && pad != 0, perPixel);
        Assert.Equal(new long[] { k, kernel, kernel, c }, filter.Constant!.Shape);

        // The cuDNN graph's problem and vectors (float32, as its pointwise operations compute): its ReLU only where the
        // floor is not the int8 saturation, the stored zero point added after it where that is not 0.
        var shape = GraphCompiler.Int8GraphShape([n, c, h, w], [k, c, kernel, kernel], [n, k, ho, wo], [pad, pad], [stride, stride], xZero - 128, relu, yZero - 128);
        var tables = GraphCompiler.Int8GraphTables(scale.Constant!, offset.Constant!, yZero - 128, shape.Relu, shape.ZeroAdd);
        Assert.Equal(perPixel, shape.PerPixelOffset);
        Assert.Equal(relu && yZero != 0, shape.Relu);
        Assert.Equal(relu && yZero != 0 && yZero != 128, shape.ZeroAdd);
        Assert.Equal(shape.ZeroAdd ? 3 : 2, tables.Length);
        Assert.Equal(shape.OffsetCount, tables[1].Count);

        // The fallback for border offsets: the input padded explicitly with its stored zero point, an unpadded
        // convolution with per-channel offsets.
        var (_, padScale, padOffset, padPerPixel) = GraphCompiler.Int8ConvTables(weights, HostTensor.OfFloats(ElementType.Float, [k], wScale), HostTensor.OfFloats(ElementType.Float, [k], bias), xScale, xZero - 128, yScale, [h + (2 * pad), w + (2 * pad)], [ho, wo], [kernel, kernel], [stride, stride], [0, 0]);
        var padShape = GraphCompiler.Int8GraphShape([n, c, h + (2 * pad), w + (2 * pad)], [k, c, kernel, kernel], [n, k, ho, wo], [0, 0], [stride, stride], xZero - 128, relu, yZero - 128);
        var padTables = GraphCompiler.Int8GraphTables(padScale.Constant!, padOffset.Constant!, yZero - 128, padShape.Relu, padShape.ZeroAdd);
        Assert.False(padPerPixel);
        Assert.False(padShape.PerPixelOffset);

        var exact = 0;
        var graphExact = 0;
        var padExact = 0;
        var total = 0;
        for (var b = 0; b < n; b++)
        {
            for (var o = 0; o < k; o++)
            {
                for (var oy = 0; oy < ho; oy++)
                {
                    for (var ox = 0; ox < wo; ox++)
                    {
                        // ONNX: QuantizeLinear(Relu?(Conv(DequantizeLinear(x), DequantizeLinear(w)) + b)); padding is a real 0.
                        double real = 0;
                        long shifted = 0; // what cuDNN sums: int8 bytes x - 128, padding 0
                        long paddedSum = 0; // the same with the input padded explicitly by its stored zero point
                        for (var ch = 0; ch < c; ch++)
                        {
                            for (var r = 0; r < kernel; r++)
                            {
                                for (var s = 0; s < kernel; s++)
                                {
                                    var (iy, ix) = ((oy * stride) - pad + r, (ox * stride) - pad + s);
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                    {
                                        paddedSum += (xZero - 128) * wq[(((o * c) + ch) * kernel * kernel) + (r * kernel) + s];
                                        continue;
                                    }

                                    var xv = x[(((b * c) + ch) * h * w) + (iy * w) + ix];
                                    var wv = wq[(((o * c) + ch) * kernel * kernel) + (r * kernel) + s];
                                    real += (xv - xZero) * xScale * wv * wScale[o];
                                    shifted += (xv - 128) * wv;
                                    paddedSum += (xv - 128) * wv;
                                }
                            }
                        }

                        real += bias[o];
                        real = relu ? Math.Max(real, 0) : real;
                        var expected = Math.Clamp(Math.Round(real / yScale, MidpointRounding.ToEven) + yZero, 0, 255);
                        var off = perPixel ? offset.Constant![(((oy * wo) + ox) * k) + o] : offset.Constant![o];
                        var v = (shifted * scale.Constant![o]) + off;
                        v = relu ? Math.Max(v, 0) : v;
                        var actual = Math.Clamp(Math.Round(v, MidpointRounding.ToEven) + yZero, 0, 255);
                        Assert.True(Math.Abs(actual - expected) <= 1, $"({b},{o},{oy},{ox}): {actual} vs {expected}");
                        exact += actual == expected ? 1 : 0;

                        var at = perPixel ? (((oy * wo) + ox) * k) + o : o;
                        var g = ((float)shifted * F(tables[0], o)) + F(tables[1], at);
                        g = shape.Relu ? Math.Max(g, 0f) : g;
                        g = shape.ZeroAdd ? g + F(tables[2], o) : g;
                        var stored = Math.Clamp(Math.Round(g, MidpointRounding.ToEven), -128, 127);
                        Assert.True(Math.Abs(stored + 128 - expected) <= 1, $"graph ({b},{o},{oy},{ox}): {stored + 128} vs {expected}");
                        graphExact += stored + 128 == expected ? 1 : 0;

                        var pg = ((float)paddedSum * F(padTables[0], o)) + F(padTables[1], o);
                        pg = padShape.Relu ? Math.Max(pg, 0f) : pg;
                        pg = padShape.ZeroAdd ? pg + F(padTables[2], o) : pg;
                        var padStored = Math.Clamp(Math.Round(pg, MidpointRounding.ToEven), -128, 127);
                        Assert.True(Math.Abs(padStored + 128 - expected) <= 1, $"padded ({b},{o},{oy},{ox}): {padStored + 128} vs {expected}");
                        padExact += padStored + 128 == expected ? 1 : 0;
                        total++;
                    }
                }
            }
        }

        Assert.True(exact >= total - 1, $"{total - exact} of {total} differ by one (only exact ties may)");
        Assert.True(graphExact >= total - 2, $"graph: {total - graphExact} of {total} differ by one (float32 ties only)");
        Assert.True(padExact >= total - 2, $"padded: {total - padExact} of {total} differ by one (float32 ties only)");
    }

    /// <summary>A float32 vector entry of a graph's tables (stored as its bits).</summary>
    private static float F(HostTensor t, long i) => BitConverter.Int32BitsToSingle((int)t[i]);

    /// <summary>
    /// The uint8 value a graph's chain writes for channel <paramref name="o"/> from <paramref name="g"/> (its value after
    /// the offset, the residual or the activation): the ReLU, the zero vector (the tables' third), int8's rounding and
    /// saturation, read back as uint8.
    /// </summary>
    private static double GraphWrites(float g, Int8ConvGraphShape shape, HostTensor[] tables, long o)
    {
        g = shape.Relu ? Math.Max(g, 0f) : g;
        g = shape.ZeroAdd ? g + F(tables[2], o) : g;
        return Math.Clamp(Math.Round(g, MidpointRounding.ToEven), -128, 127) + 128;
    }

    /// <summary>ONNX's QuantizeLinear to uint8: round half to even, add the zero point, saturate.</summary>
    private static double Q(double v, double s, double z) => Math.Clamp(Math.Round(v / s, MidpointRounding.ToEven) + z, 0, 255);

    /// <summary>
    /// Each output of a 1x1 int8 convolution of uint8 x [n, c, hw] (scale <paramref name="xScale"/>, zero point
    /// <paramref name="xZero"/>) by int8 weights [k, c] (per-channel scales, a bias): its real value, as ONNX computes it
    /// in float64, and the sum cuDNN computes (the bytes less 128 times the weights).
    /// </summary>
    private static IEnumerable<(int B, int O, int P, double Real, long Shifted)> PointwiseOutputs(long[] x, long[] wq, double[] wScale, double[] bias, (int N, int C, int K, int Pixels) size, double xScale, double xZero)
    {
        var (n, c, k, hw) = size;
        for (var b = 0; b < n; b++)
        {
            for (var o = 0; o < k; o++)
            {
                for (var p = 0; p < hw; p++)
                {
                    double real = bias[o];
                    long shifted = 0;
                    for (var ch = 0; ch < c; ch++)
                    {
                        var xv = x[(((b * c) + ch) * hw) + p];
                        real += (xv - xZero) * xScale * wq[(o * c) + ch] * wScale[o];
                        shifted += (xv - 128) * wq[(o * c) + ch];
                    }

                    yield return (b, o, p, real, shifted);
                }
            }
        }
    }

    /// <summary>
    /// A residual block's end fused into its last 1x1 convolution's graph (BATCHWISE_INT8_RESIDUAL=fused), its float32
    /// chain emulated: sums * scale + offset + residual * rscale [-> relu [+ zero]] -> int8. Against ONNX's QDQ
    /// semantics, Q(Relu?(DQ(Q(conv)) + DQ(r))), it is at most one step off where the convolution output's own
    /// QuantizeLinear does not saturate (it skips that rounding: half a step of that scale, here as large as the
    /// output's); against the same sum without that rounding it agrees but for float32 ties.
    /// </summary>
    [Theory]
    [InlineData(true, 0)] // ReLU, uint8 zero point 0: int8's floor is the ReLU
    [InlineData(true, 10)] // ReLU at a zero stored as -118: the graph's ReLU, then the zero vector
    [InlineData(true, 128)] // ReLU at a zero stored as 0
    [InlineData(false, 120)] // no ReLU
    public void Fused_residual_tables_reproduce_the_quantized_residual_block_end(bool relu, int yZero)
    {
        const int n = 2, c = 8, k = 4, h = 5, w = 6;
        var rng = new Random((yZero * 2) + (relu ? 1 : 0));
        var x = Enumerable.Range(0, n * c * h * w).Select(_ => (long)rng.Next(0, 256)).ToArray();
        var res = Enumerable.Range(0, n * k * h * w).Select(_ => (long)rng.Next(0, 256)).ToArray();
        var wq = Enumerable.Range(0, k * c).Select(_ => (long)rng.Next(-127, 128)).ToArray();
        var wScale = Enumerable.Range(0, k).Select(_ => 0.0005 + (rng.NextDouble() * 0.002)).ToArray();
        var bias = Enumerable.Range(0, k).Select(_ => rng.NextDouble() - 0.5).ToArray();
        double xScale = 0.02, xZero = 77, convScale = 0.1, convZero = 128, resScale = 0.04, resZero = 90, yScale = 0.1;

        var weights = HostTensor.OfInts(ElementType.Int8, [k, c, 1, 1], wq);
        var (_, scale, offset, perPixel) = GraphCompiler.Int8ConvTables(weights, HostTensor.OfFloats(ElementType.Float, [k], wScale), HostTensor.OfFloats(ElementType.Float, [k], bias), xScale, xZero - 128, yScale, [h, w], [h, w], [1, 1], [1, 1], [0, 0]);
        Assert.False(perPixel);
        var shape = GraphCompiler.Int8GraphShape([n, c, h, w], [k, c, 1, 1], [n, k, h, w], [0, 0], [1, 1], xZero - 128, relu, yZero - 128) with { Residual = true };
        var tables = GraphCompiler.Int8GraphTables(scale.Constant!, offset.Constant!, yZero - 128, shape.Relu, shape.ZeroAdd, (resScale / yScale, (128 - resZero) * resScale / yScale));
        Assert.Equal(shape.Uids.Length - 4, tables.Length); // scale, offset, [zero,] rscale: the step's buffers but x, w, y and the residual

        var (withinOne, exact, total, residualMatters) = (0, 0, 0, 0);
        foreach (var (b, o, p, real, shifted) in PointwiseOutputs(x, wq, wScale, bias, (n, c, k, h * w), xScale, xZero))
        {
            var r = res[(((b * k) + o) * h * w) + p];
            var residual = (r - resZero) * resScale;
            // A convolution output the calibration's range holds (its own QuantizeLinear does not saturate).
            Assert.InRange((real / convScale) + convZero, 0, 255);
            var onnx = ((Q(real, convScale, convZero) - convZero) * convScale) + residual;
            var expected = Q(relu ? Math.Max(onnx, 0) : onnx, yScale, yZero);
            var unrounded = Q(relu ? Math.Max(real + residual, 0) : real + residual, yScale, yZero);
            residualMatters += Q(relu ? Math.Max(real, 0) : real, yScale, yZero) != unrounded ? 1 : 0;

            var actual = GraphWrites(((float)shifted * F(tables[0], o)) + F(tables[1], o) + ((float)(r - 128) * F(tables[^1], o)), shape, tables, o);
            withinOne += Math.Abs(actual - expected) <= 1 ? 1 : 0;
            exact += actual == unrounded ? 1 : 0;
            total++;
        }

        Assert.Equal(total, withinOne);
        Assert.True(exact >= total - 2, $"{total - exact} of {total} differ from the unrounded sum (float32 ties only)");
        Assert.True(residualMatters > total / 2, $"the residual changed only {residualMatters} of {total} outputs");
    }

    /// <summary>
    /// A SiLU and its QuantizeLinear fused into a 1x1 convolution's graph, its float32 chain emulated: sums * scale +
    /// offset -> swish -> * outscale [+ zero] -> int8. Against ONNX's QDQ semantics, Q_z(d·sigmoid(d)) with
    /// d = DQ(Q_y(conv)), it is at most one step off (it skips Q_y's rounding: half a step of s_y, here about the
    /// output's); against the same SiLU without that rounding it agrees but for float32 ties.
    /// </summary>
    [Theory]
    [InlineData(11)] // the zero point YOLOv8's SiLU outputs calibrate to: the zero vector
    [InlineData(128)] // a zero stored as 0: no zero vector
    public void Fused_silu_tables_reproduce_the_quantized_silu(int zZero)
    {
        const int n = 2, c = 8, k = 4, h = 5, w = 6;
        var rng = new Random(zZero);
        var x = Enumerable.Range(0, n * c * h * w).Select(_ => (long)rng.Next(0, 256)).ToArray();
        var wq = Enumerable.Range(0, k * c).Select(_ => (long)rng.Next(-127, 128)).ToArray();
        var wScale = Enumerable.Range(0, k).Select(_ => 0.002 + (rng.NextDouble() * 0.004)).ToArray();
        var bias = Enumerable.Range(0, k).Select(_ => rng.NextDouble() - 0.5).ToArray();
        double xScale = 0.02, xZero = 77, yScale = 0.05, yZero = 128, zScale = 0.04;

        var weights = HostTensor.OfInts(ElementType.Int8, [k, c, 1, 1], wq);
        var (_, scale, offset, _) = GraphCompiler.Int8ConvTables(weights, HostTensor.OfFloats(ElementType.Float, [k], wScale), HostTensor.OfFloats(ElementType.Float, [k], bias), xScale, xZero - 128, yScale, [h, w], [h, w], [1, 1], [1, 1], [0, 0]);
        var shape = GraphCompiler.Int8GraphShape([n, c, h, w], [k, c, 1, 1], [n, k, h, w], [0, 0], [1, 1], xZero - 128, false, yZero - 128) with { ZeroAdd = zZero != 128, Activation = "swish" };
        var tables = GraphCompiler.Int8GraphTables(scale.Constant!, offset.Constant!, 0, shape.Relu, shape.ZeroAdd, null, (yScale, ([.. Enumerable.Repeat(zScale, k)], [.. Enumerable.Repeat(zZero - 128.0, k)])));
        Assert.Equal(shape.Uids.Length - 3, tables.Length); // scale, offset, [zero,] outscale: the step's buffers but x, w and y
        Assert.Contains("swish * outscale[k]", shape.Chain, StringComparison.Ordinal);
        static double Silu(double v) => v / (1 + Math.Exp(-v));

        var (withinOne, exact, total, negative) = (0, 0, 0, 0);
        foreach (var (_, o, _, real, shifted) in PointwiseOutputs(x, wq, wScale, bias, (n, c, k, h * w), xScale, xZero))
        {
            Assert.InRange((real / yScale) + yZero, 0, 255); // Q_y does not saturate here
            var expected = Q(Silu((Q(real, yScale, yZero) - yZero) * yScale), zScale, zZero);
            var unrounded = Q(Silu(real), zScale, zZero);
            negative += real < 0 ? 1 : 0;

            var g = ((float)shifted * F(tables[0], o)) + F(tables[1], o);
            var actual = GraphWrites(g / (1f + MathF.Exp(-g)) * F(tables[^1], o), shape, tables, o);
            withinOne += Math.Abs(actual - expected) <= 1 ? 1 : 0;
            exact += actual == unrounded ? 1 : 0;
            total++;
        }

        Assert.Equal(total, withinOne);
        Assert.True(exact >= total - 2, $"{total - exact} of {total} differ from the unrounded SiLU (float32 ties only)");
        Assert.True(negative > total / 5 && negative < total * 4 / 5, $"{negative} of {total} convolution outputs negative: the case does not cover both sides of the SiLU");
    }
}

/// <summary>Per-tensor QuantizeLinear/DequantizeLinear with constant scales plan as pending elementwise code: a residual Add between pairs is one kernel.</summary>
public sealed class QdqFusionOnCpuTests
{
    [Fact]
    public void A_residual_add_between_quantize_pairs_fuses_and_matches_onnx_runtime()
    {
        CpuKernelRunner.Require();

        long[] shape = [2, 8, 3, 5];
        var g = new global::Onnx.GraphProto { Name = "qdq-add" };
        global::Onnx.ValueInfoProto Info(string name, ElementType type)
        {
            var info = new global::Onnx.ValueInfoProto { Name = name, Type = new global::Onnx.TypeProto { TensorType = new global::Onnx.TypeProto.Types.Tensor { ElemType = (int)type, Shape = new global::Onnx.TensorShapeProto() } } };
            info.Type.TensorType.Shape.Dim.AddRange(shape.Select(d => new global::Onnx.TensorShapeProto.Types.Dimension { DimValue = d }));
            return info;
        }

        void Node(string op, string output, params string[] inputs)
        {
            var n = new global::Onnx.NodeProto { OpType = op, Name = output };
            n.Input.AddRange(inputs);
            n.Output.Add(output);
            g.Node.Add(n);
        }

        g.Input.Add(Info("a", ElementType.Float));
        g.Input.Add(Info("b", ElementType.Float));
        foreach (var (name, scale, zero) in new[] { ("1", 0.02, 128L), ("2", 0.013, 100L), ("3", 0.031, 0L) })
        {
            g.Initializer.Add(HostTensor.OfFloats(ElementType.Float, [], [scale]).ToProto("s" + name));
            g.Initializer.Add(HostTensor.OfInts(ElementType.UInt8, [], [zero]).ToProto("z" + name));
        }

        Node("QuantizeLinear", "qa", "a", "s1", "z1");
        Node("QuantizeLinear", "qb", "b", "s2", "z2");
        Node("DequantizeLinear", "da", "qa", "s1", "z1");
        Node("DequantizeLinear", "db", "qb", "s2", "z2");
        Node("Add", "sum", "da", "db");
        Node("QuantizeLinear", "qs", "sum", "s3", "z3");
        Node("DequantizeLinear", "out", "qs", "s3", "z3");
        g.Output.Add(Info("qs", ElementType.UInt8));
        g.Output.Add(Info("out", ElementType.Float));
        var proto = new global::Onnx.ModelProto { IrVersion = 8, Graph = g };
        proto.OpsetImport.Add(new global::Onnx.OperatorSetIdProto { Domain = string.Empty, Version = 17 });
        var model = OnnxModel.FromProto(proto, "qdq-add");

        var rng = new Random(3);
        var inputs = new[] { "a", "b" }.Select(_ => Engines.Tensor.From<float>(ElementType.Float, shape, Enumerable.Range(0, 240).Select(_ => (float)((rng.NextDouble() * 6) - 3)).ToArray())).ToList();
        using var ort = new Engines.OrtEngine().Load(model, new Engines.EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        foreach (var precision in new[] { Engines.Precision.Fp32, Engines.Precision.Fp16 })
        {
            var plan = new GraphCompiler(model, new NoGpuTarget(precision)).Compile(inputs, model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t)), GraphCompiler.HostValueInputs(model));
            if (precision == Engines.Precision.Fp32)
            {
                // Both outputs from the one chain: two kernels, not seven.
                Assert.Equal(2, plan.Steps.Count);
            }

            var actual = CpuKernelRunner.Run(plan, inputs);
            var q = actual[0].ToDoubles();
            var e = expected[0].ToDoubles();
            Assert.All(Enumerable.Range(0, q.Length), i => Assert.True(Math.Abs(q[i] - e[i]) <= 1, $"{precision} qs[{i}]: {q[i]} vs {e[i]}"));
            Assert.True(Enumerable.Range(0, q.Length).Count(i => q[i] == e[i]) >= q.Length - 2, $"{precision}: more than ties differ");
        }
    }

    [Fact]
    public void A_graph_execution_is_refused_before_it_starts_where_an_address_breaks_the_declared_alignment()
    {
        long[] uids = [Int8ConvGraph.XUid, Int8ConvGraph.WUid, Int8ConvGraph.ScaleUid, Int8ConvGraph.OffsetUid, Int8ConvGraph.YUid];
        ulong[] aligned = [0x7f0000000000, 0x7f0000010000, 0x7f0000020100, 0x7f0000020200, 0x7f0000030000];
        Assert.Null(Int8ConvGraph.CheckAddresses(uids, aligned, 0, 0, 0));
        Assert.Null(Int8ConvGraph.CheckAddresses(uids, aligned, 4096, 0x7f0000040000, 8192));

        // An int8 activation 8 bytes into an allocation (what a view at an odd channel offset would give).
        ulong[] misaligned = [.. aligned];
        misaligned[4] += 8;
        var why = Int8ConvGraph.CheckAddresses(uids, misaligned, 0, 0, 0);
        Assert.NotNull(why);
        Assert.Contains($"tensor {Int8ConvGraph.YUid}", why, StringComparison.Ordinal);
        Assert.Contains("16-byte", why, StringComparison.Ordinal);

        ulong[] missing = [.. aligned];
        missing[1] = 0;
        Assert.Contains("no address", Int8ConvGraph.CheckAddresses(uids, missing, 0, 0, 0), StringComparison.Ordinal);
        Assert.Contains("workspace", Int8ConvGraph.CheckAddresses(uids, aligned, 4096, 0, 0), StringComparison.Ordinal);
        Assert.Contains("workspace", Int8ConvGraph.CheckAddresses(uids, aligned, 4096, 0x7f0000040000, 1024), StringComparison.Ordinal);
    }

    [Fact]
    public void Only_a_kernel_fault_counts_as_a_lost_context()
    {
        Assert.True(GraphCompiler.IsContextLoss(new Batchwise.Cuda.Interop.CudaException("CUDA driver", "cuStreamSynchronize", 716, "CUDA_ERROR_MISALIGNED_ADDRESS")));
        Assert.True(GraphCompiler.IsContextLoss(new Batchwise.Cuda.Interop.CudaException("CUDA driver", "cuStreamCreate", 700, "CUDA_ERROR_ILLEGAL_ADDRESS")));
        Assert.False(GraphCompiler.IsContextLoss(new Batchwise.Cuda.Interop.CudaException("CUDA driver", "cuMemAlloc", 2, "CUDA_ERROR_OUT_OF_MEMORY")));

        // cuDNN's own codes never do (its STREAM_MISMATCH after a fault is found out by probing the context instead).
        Assert.False(GraphCompiler.IsContextLoss(new Batchwise.Cuda.Interop.CudaException("cuDNN", "cudnnSetStream", 716, "CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH")));
    }

    [Fact]
    public void Skipped_engines_parse_as_a_list_and_anything_else_is_refused_with_the_fix()
    {
        Assert.Equal([12L, 40L], Int8Layers.ParseEngines(" 12, 40 ,").Order());
        Assert.Empty(Int8Layers.ParseEngines(null));
        var e = Assert.Throws<BatchwiseException>(() => Int8Layers.ParseEngines("12,x"));
        Assert.Contains(Int8Layers.GraphSkipSwitch, e.Message, StringComparison.Ordinal);
        Assert.Throws<BatchwiseException>(() => Int8Layers.ParseEngines("-3"));
    }
}
