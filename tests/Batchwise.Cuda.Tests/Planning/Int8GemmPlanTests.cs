using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
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

    [Fact]
    public void The_gemm_route_is_cublaslt_unless_set_to_graph_and_refuses_other_words()
    {
        Assert.Equal(Int8GemmChoice.Cublaslt, GraphCompiler.ParseInt8Gemm(null));
        Assert.Equal(Int8GemmChoice.Cublaslt, GraphCompiler.ParseInt8Gemm(" cuBLASLt "));
        Assert.Equal(Int8GemmChoice.Graph, GraphCompiler.ParseInt8Gemm("graph"));
        var e = Assert.Throws<BatchwiseException>(() => GraphCompiler.ParseInt8Gemm("cudnn"));
        Assert.Equal("BATCHWISE_INT8_GEMM 'cudnn' is not cublaslt or graph", e.Message);
    }
}
