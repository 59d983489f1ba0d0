using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A QDQ model's int8 products planned without a GPU (the libraries' steps without their descriptors): a transformer's
/// Q, K and V projections of one quantized activation, on cuBLASLt's int32 route and on cuDNN's graph.
/// </summary>
public sealed class Int8GemmPlanTests
{
    /// <summary>
    /// x float [2, 8, 32] -> Q -> DQ, read by three MatMuls with int8 weights [32, 16] (per-column scales), the first
    /// followed by a bias Add, each output a graph output; as `optimize --int8` writes a transformer's projections.
    /// </summary>
    private static OnnxModel Projections()
    {
        var rng = new Random(3);
        var g = new GraphBuilder("int8-projections");
        var x = g.Input("x", ElementType.Float, 2L, 8L, 32L);
        var (s, z) = (g.Initializer("xs", [], [0.02f]), g.Raw<byte>("xz", ElementType.UInt8, [], [(byte)120]));
        var d = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [x, s, z]), s, z]);
        for (var i = 0; i < 3; i++)
        {
            var wq = g.Raw<sbyte>($"w{i}", ElementType.Int8, [32, 16], [.. Enumerable.Range(0, 32 * 16).Select(_ => (sbyte)rng.Next(-127, 128))]);
            var ws = g.Initializer($"ws{i}", [16], [.. Enumerable.Range(0, 16).Select(_ => (float)(0.001 + (rng.NextDouble() * 0.01)))]);
            var wz = g.Raw<sbyte>($"wz{i}", ElementType.Int8, [16], new sbyte[16]);
            var product = g.Node("MatMul", [d, g.Node("DequantizeLinear", [wq, ws, wz], GraphBuilder.Attr("axis", 1L))]);
            g.Rename(i == 0 ? g.Node("Add", [product, g.Initializer("b0", [16], [.. Enumerable.Range(0, 16).Select(j => j * 0.1f)])]) : product, $"y{i}");
            g.Output($"y{i}", ElementType.Float, 2L, 8L, 16L);
        }

        return g.Build("int8-projections");
    }

    private static ExecutionPlan Plan(Int8GemmChoice choice) =>
        new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { Int8 = true, Int8Gemms = choice, PlansConvolutionsWithoutLibrary = true }
            .Compile(Projections(), [Tensor.From<float>(ElementType.Float, [2, 8, 32], new float[2 * 8 * 32])]);

    [Fact]
    public void Products_of_one_quantized_activation_quantize_it_once()
    {
        var plan = Plan(Int8GemmChoice.Cublaslt);
        Assert.Equal(3, plan.Steps.OfType<Int8GemmStep>().Count());
        var quantize = plan.Steps.OfType<KernelStep>().Where(k => k.Source.Contains("signed char* __restrict__ y", StringComparison.Ordinal)).ToList();
        Assert.True(quantize.Count == 1, $"{quantize.Count} kernels write the int8 operand: {string.Join(", ", quantize.Select(q => q.Node))}");
        Assert.All(plan.Int8Layers.Values, how => Assert.Equal("int8 (cuBLASLt, int32 sums)", how));
    }

    [Fact]
    public void On_cudnns_graph_each_product_writes_its_float16_value_with_the_dequantization_fused()
    {
        var plan = Plan(Int8GemmChoice.Graph);
        Assert.Empty(plan.Steps.OfType<Int8GemmStep>());
        var graphs = plan.Steps.OfType<Int8GraphConvStep>().ToList();
        Assert.Equal(3, graphs.Count);
        Assert.All(graphs, g =>
        {
            Assert.Equal(ElementType.Float16, g.Graph.Shape.Out);
            Assert.Equal(new long[] { 1, 32, 16, 1 }, g.Graph.Shape.X); // the 16 rows of A as a 1x1 convolution's pixels
            Assert.Equal(new long[] { 1, 16, 16, 1 }, g.Graph.Shape.Y);
        });
        Assert.All(plan.Int8Layers.Values, how => Assert.Contains($"conv * scale[k] + offset[k] -> {ElementType.Float16.ShortName()}", how, StringComparison.Ordinal));
        Assert.Single(plan.Int8Layers.Values, how => how.Contains("the bias Add in the offset", StringComparison.Ordinal));
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("Add", StringComparison.Ordinal));

        // Nothing reads int32 sums: the graph's output is the product itself.
        Assert.DoesNotContain(plan.Steps.OfType<KernelStep>(), k => k.Source.Contains("const int* __restrict__", StringComparison.Ordinal));
    }

    /// <summary>
    /// A transformer's output projection: x [2, 8, 32] -> LayerNormalization -> Q -> DQ = d; MatMul(d, DQ(int8 w [32, 32]))
    /// + bias + d = y. On the graph the LayerNorm writes the int8 bytes, and one graph step computes the product, its
    /// bias and the residual from those bytes.
    /// </summary>
    [Fact]
    public void On_cudnns_graph_a_residual_add_of_a_quantized_layernorm_joins_the_product()
    {
        var rng = new Random(9);
        var g = new GraphBuilder("int8-block", seed: 2);
        var x = g.Input("x", ElementType.Float, 2L, 8L, 32L);
        var (s, z) = (g.Initializer("s", [], [0.02f]), g.Raw<byte>("z", ElementType.UInt8, [], [(byte)125]));
        var ln = g.Node("LayerNormalization", [x, g.Weight("gamma", [32], 1f), g.Weight("beta", [32], 0.1f)], GraphBuilder.Attr("axis", -1L));
        var d = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [ln, s, z]), s, z]);
        var wq = g.Raw<sbyte>("wq", ElementType.Int8, [32, 32], [.. Enumerable.Range(0, 32 * 32).Select(_ => (sbyte)rng.Next(-127, 128))]);
        var wd = g.Node("DequantizeLinear", [wq, g.Initializer("ws", [32], [.. Enumerable.Range(0, 32).Select(_ => 0.004f)]), g.Raw<sbyte>("wz", ElementType.Int8, [32], new sbyte[32])], GraphBuilder.Attr("axis", 1L));
        var product = g.Node("Add", [g.Node("MatMul", [d, wd]), g.Weight("b", [32], 0.1f)]);
        g.Rename(g.Node("Add", [product, d]), "y");
        g.Output("y", ElementType.Float, 2L, 8L, 32L);
        var model = g.Build("int8-block");

        var plan = new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { Int8 = true, Int8Gemms = Int8GemmChoice.Graph, PlansConvolutionsWithoutLibrary = true }
            .Compile(model, [Tensor.From<float>(ElementType.Float, [2, 8, 32], new float[2 * 8 * 32])]);
        var graph = Assert.Single(plan.Steps.OfType<Int8GraphConvStep>());
        Assert.True(graph.Graph.Shape.Residual);
        Assert.Equal(graph.Graph.Shape.Uids.Length, graph.Buffers.Length);
        Assert.Contains("the bias Add in the offset, the residual Add fused", Assert.Single(plan.Int8Layers.Values), StringComparison.Ordinal);
        Assert.Single(plan.Steps, st => st.Node.Contains("LayerNormalization", StringComparison.Ordinal) && st.Node.Contains("+ QuantizeLinear", StringComparison.Ordinal));
        Assert.DoesNotContain(plan.Steps, st => st.Node.StartsWith("Add", StringComparison.Ordinal) || st.Node.StartsWith("QuantizeLinear", StringComparison.Ordinal));
    }

    /// <summary>
    /// A transformer's MLP: x [2, 8, 32] -> LayerNormalization -> Q -> DQ = d; h = GELU(MatMul(d, w1) + b1) as BERT's
    /// export writes it (Div by sqrt 2, Erf, Add 1, Mul, Mul 0.5) -> Q -> DQ; y = MatMul(h, w2) + b2 + d. On the graph
    /// the first product writes the GELU's QuantizeLinear bytes, which the second reads as they are.
    /// </summary>
    [Fact]
    public void On_cudnns_graph_a_gelu_and_its_quantize_join_the_product_before_them()
    {
        var rng = new Random(10);
        var g = new GraphBuilder("int8-mlp", seed: 3);
        var x = g.Input("x", ElementType.Float, 2L, 8L, 32L);
        string Scalar(string name, float v) => g.Initializer(name, [], [v]);
        string Weight(string name, int inner, int columns) => g.Node("DequantizeLinear", [g.Raw<sbyte>(name, ElementType.Int8, [inner, columns], [.. Enumerable.Range(0, inner * columns).Select(_ => (sbyte)rng.Next(-127, 128))]), g.Initializer(name + "s", [columns], [.. Enumerable.Range(0, columns).Select(_ => 0.004f)]), g.Raw<sbyte>(name + "z", ElementType.Int8, [columns], new sbyte[columns])], GraphBuilder.Attr("axis", 1L));
        var (s, z) = (Scalar("s", 0.02f), g.Raw<byte>("z", ElementType.UInt8, [], [(byte)125]));
        var ln = g.Node("LayerNormalization", [x, g.Weight("gamma", [32], 1f), g.Weight("beta", [32], 0.1f)], GraphBuilder.Attr("axis", -1L));
        var d = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [ln, s, z]), s, z]);
        var f = g.Node("Add", [g.Node("MatMul", [d, Weight("w1", 32, 64)]), g.Weight("b1", [64], 0.1f)]);
        var gelu = g.Node("Mul", [g.Node("Mul", [f, g.Node("Add", [g.Node("Erf", [g.Node("Div", [f, Scalar("sqrt2", 1.4142135f)])]), Scalar("one", 1f)])]), Scalar("half", 0.5f)]);
        var (hs, hz) = (Scalar("hs", 0.01f), g.Raw<byte>("hz", ElementType.UInt8, [], [(byte)17]));
        var h = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [gelu, hs, hz]), hs, hz]);
        g.Rename(g.Node("Add", [g.Node("Add", [g.Node("MatMul", [h, Weight("w2", 64, 32)]), g.Weight("b2", [32], 0.1f)]), d]), "y");
        g.Output("y", ElementType.Float, 2L, 8L, 32L);
        var model = g.Build("int8-mlp");

        var plan = new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { Int8 = true, Int8Gemms = Int8GemmChoice.Graph, PlansConvolutionsWithoutLibrary = true }
            .Compile(model, [Tensor.From<float>(ElementType.Float, [2, 8, 32], new float[2 * 8 * 32])]);
        var graphs = plan.Steps.OfType<Int8GraphConvStep>().ToList();
        Assert.Equal(2, graphs.Count);
        Assert.Equal(("gelu", ElementType.Int8, true), (graphs[0].Graph.Shape.Activation, graphs[0].Graph.Shape.Out, graphs[0].Graph.Shape.ZeroAdd));
        Assert.Equal(graphs[0].Graph.Shape.Uids.Length, graphs[0].Buffers.Length);
        Assert.True(graphs[1].Graph.Shape.Residual);

        // The LayerNorm writes the first operand, the first graph the second: nothing else runs.
        var work = plan.Steps.Where(st => !st.Node.StartsWith("input ", StringComparison.Ordinal) && !st.Node.StartsWith("output ", StringComparison.Ordinal)).Select(st => st.Node).ToList();
        Assert.True(work.Count == 3, string.Join(" // ", work));
    }

    /// <summary>
    /// A QDQ attention block: x [2, 16, 32] -> Q -> DQ = d; Q, K and V = MatMul(d, DQ(int8 [32, 32])) + bias, each split
    /// into two heads of 16 (Reshape, Transpose), then MatMul, Div, Softmax, MatMul, the heads merged. On the graph the
    /// three products are one, each result a view of its columns that the fused attention reads as it lies.
    /// </summary>
    [Fact]
    public void On_cudnns_graph_the_q_k_and_v_projections_are_one_product_read_by_the_fused_attention()
    {
        var rng = new Random(12);
        var g = new GraphBuilder("int8-qkv", seed: 5);
        var x = g.Input("x", ElementType.Float, 2L, 16L, 32L);
        var (s, z) = (g.Initializer("s", [], [0.02f]), g.Raw<byte>("z", ElementType.UInt8, [], [(byte)128]));
        var d = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [x, s, z]), s, z]);
        string Heads(string name, long[] perm)
        {
            var w = g.Node("DequantizeLinear", [g.Raw<sbyte>(name, ElementType.Int8, [32, 32], [.. Enumerable.Range(0, 32 * 32).Select(_ => (sbyte)rng.Next(-127, 128))]), g.Initializer(name + "s", [32], [.. Enumerable.Range(0, 32).Select(_ => 0.003f)]), g.Raw<sbyte>(name + "z", ElementType.Int8, [32], new sbyte[32])], GraphBuilder.Attr("axis", 1L));
            var projected = g.Node("Add", [g.Node("MatMul", [d, w]), g.Weight(name + "b", [32], 0.1f)]);
            return g.Node("Transpose", [g.Node("Reshape", [projected, g.Int64s(name + "shape", [2L, 16L, 2L, 16L])])], GraphBuilder.Attr("perm", perm));
        }

        var (q, kt, v) = (Heads("wq", [0, 2, 1, 3]), Heads("wk", [0, 2, 3, 1]), Heads("wv", [0, 2, 1, 3]));
        var probs = g.Node("Softmax", [g.Node("Div", [g.Node("MatMul", [q, kt]), g.Scalar(4f)])], GraphBuilder.Attr("axis", -1L));
        var merged = g.Node("Reshape", [g.Node("Transpose", [g.Node("MatMul", [probs, v])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L)), g.Int64s("merged", [2L, 16L, 32L])]);
        g.Output(g.Rename(merged, "y"), ElementType.Float, 2L, 16L, 32L);
        var model = g.Build("int8-qkv");

        var plan = new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { Int8 = true, Int8Gemms = Int8GemmChoice.Graph, PlansConvolutionsWithoutLibrary = true }
            .Compile(model, [Tensor.From<float>(ElementType.Float, [2, 16, 32], new float[2 * 16 * 32])]);
        var product = Assert.Single(plan.Steps.OfType<Int8GraphConvStep>());
        Assert.Contains("(one product)", product.Node, StringComparison.Ordinal);
        Assert.Equal(new long[] { 1, 96, 32, 1 }, product.Graph.Shape.Y); // Q, K and V side by side over the 32 rows
        var int8 = plan.Int8Layers.Values.Where(how => how.StartsWith("int8", StringComparison.Ordinal)).ToList(); // the attention's products stay float
        Assert.Equal(3, int8.Count);
        Assert.All(int8, how => Assert.StartsWith("int8 (cuDNN graph, 3 products of one operand", how, StringComparison.Ordinal));
        Assert.Single(plan.Steps, st => st.Node.Contains("fused attention", StringComparison.Ordinal));

        // Besides the product and the attention: the input made int8 and the output made float32, nothing (no copies of Q, K or V).
        var others = plan.Steps.Where(st => st != product && !st.Node.Contains("fused attention", StringComparison.Ordinal)).Select(st => st.Node).ToList();
        Assert.True(others.Count <= 3, string.Join(" // ", others));
    }

    [Fact]
    public void Sibling_tables_join_one_after_another()
    {
        var rng = new Random(13);
        HostTensor[] Tables(int columns)
        {
            var w = HostTensor.OfInts(ElementType.Int8, [8, columns], [.. Enumerable.Range(0, 8 * columns).Select(_ => (long)rng.Next(-127, 128))]);
            var scales = HostTensor.OfFloats(ElementType.Float, [columns], [.. Enumerable.Range(0, columns).Select(_ => 0.001 + rng.NextDouble())]);
            var bias = HostTensor.OfFloats(ElementType.Float, [columns], [.. Enumerable.Range(0, columns).Select(_ => rng.NextDouble())]);
            return GraphCompiler.Int8GemmTables(w, false, scales, bias, 0.02, -3);
        }

        HostTensor[][] parts = [Tables(4), Tables(12), Tables(4)];
        var joined = GraphCompiler.JoinedInt8GemmTables(parts);
        Assert.Equal(new long[] { 20, 8 }, joined[0].Shape);
        var row = 0;
        foreach (var p in parts)
        {
            for (var n = 0; n < p[1].Count; n++, row++)
            {
                Assert.Equal(p[1][n], joined[1][row]);
                Assert.Equal(p[2][n], joined[2][row]);
                Assert.All(Enumerable.Range(0, 8), k => Assert.Equal(p[0][(n * 8) + k], joined[0][(row * 8) + k]));
            }
        }
    }

    /// <summary>
    /// The graph's float32 chain, sums * scale + offset + r * rscale, against the QDQ semantics in float64:
    /// MatMul(DQ(a), DQ(w)) + b + DQ(r), for a uint8 operand and residual stored as their bytes less 128.
    /// </summary>
    [Fact]
    public void The_graph_vectors_reproduce_the_dequantized_product_with_its_bias_and_residual()
    {
        const int rows = 5, inner = 16, columns = 8;
        var rng = new Random(4);
        var a = Enumerable.Range(0, rows * inner).Select(_ => (long)rng.Next(0, 256)).ToArray();
        var res = Enumerable.Range(0, rows * columns).Select(_ => (long)rng.Next(0, 256)).ToArray();
        var w = Enumerable.Range(0, inner * columns).Select(_ => (long)rng.Next(-127, 128)).ToArray();
        var wScale = Enumerable.Range(0, columns).Select(_ => 0.001 + (rng.NextDouble() * 0.01)).ToArray();
        var bias = Enumerable.Range(0, columns).Select(_ => rng.NextDouble() - 0.5).ToArray();
        const double aScale = 0.03, aZero = 121, rScale = 0.05, rZero = 130;
        var t = GraphCompiler.Int8GemmTables(HostTensor.OfInts(ElementType.Int8, [inner, columns], w), false, HostTensor.OfFloats(ElementType.Float, [columns], wScale), HostTensor.OfFloats(ElementType.Float, [columns], bias), aScale, aZero - 128);
        var v = GraphCompiler.Int8GemmGraphVectors(t, (rScale, (128 - rZero) * rScale));
        static float F(HostTensor h, long i) => BitConverter.Int32BitsToSingle((int)h[i]);
        for (var m = 0; m < rows; m++)
        {
            for (var n = 0; n < columns; n++)
            {
                double expected = bias[n] + ((res[(m * columns) + n] - rZero) * rScale);
                long sum = 0;
                for (var k = 0; k < inner; k++)
                {
                    expected += (a[(m * inner) + k] - aZero) * aScale * w[(k * columns) + n] * wScale[n];
                    sum += (a[(m * inner) + k] - 128) * (long)t[0][(n * inner) + k];
                }

                var graph = (sum * F(v[0], n)) + F(v[1], n) + ((res[(m * columns) + n] - 128) * F(v[2], n));
                Assert.True(Math.Abs(graph - expected) <= 1e-4 * (1 + Math.Abs(expected)), $"({m}, {n}): {graph} against {expected}");
            }
        }

        // An int8 output (a QuantizeLinear after the activation): its stored zero point and 1/scale per column.
        var q = GraphCompiler.Int8GemmGraphVectors(t, null, (0.01, -111));
        Assert.All(Enumerable.Range(0, columns), n => Assert.Equal((-111f, 100f, 0f), (F(q[3], n), F(q[4], n), F(q[2], n))));
        Assert.All(Enumerable.Range(0, columns), n => Assert.Equal(F(v[0], n), F(q[0], n)));
    }

    [Fact]
    public void The_gemm_route_is_the_graph_unless_set_to_cublaslt_and_refuses_other_words()
    {
        Assert.Equal(Int8GemmChoice.Graph, GraphCompiler.ParseInt8Gemm(null));
        Assert.Equal(Int8GemmChoice.Cublaslt, GraphCompiler.ParseInt8Gemm(" cuBLASLt "));
        Assert.Equal(Int8GemmChoice.Graph, GraphCompiler.ParseInt8Gemm("graph"));
        var e = Assert.Throws<BatchwiseException>(() => GraphCompiler.ParseInt8Gemm("cudnn"));
        Assert.Equal("BATCHWISE_INT8_GEMM 'cudnn' is not graph or cublaslt", e.Message);
    }
}
