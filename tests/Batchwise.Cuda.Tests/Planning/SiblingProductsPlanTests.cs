using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Separate Q, K and V projections of one activation (Hugging Face's BERT, DistilBERT and ViT: a Linear each) run as one
/// product over the concatenated weights where all three feed a fused attention block; the attention kernel reads
/// each projection through strides of that one result. Planned without a GPU; the kernels (and the product, as a
/// reference loop) run on the CPU against ONNX Runtime in float32.
/// </summary>
public sealed class SiblingProductsPlanTests
{
    /// <summary>
    /// x [B, N, C] -> three MatMuls by [C, C] weights (each + a bias [C] where <paramref name="biases"/> says) -> Reshape
    /// [B, N, H, D] -> Transpose (K: (0, 2, 3, 1)) -> MatMul, Mul by the scale, Softmax, MatMul -> Transpose(0, 2, 1, 3)
    /// -> Reshape [B, N, C]. <paramref name="extraOutput"/> adds a fourth product of x, a graph output of its own.
    /// </summary>
    internal static OnnxModel Projections(long b, long n, long h, long d, bool[] biases, bool extraOutput = false)
    {
        var c = h * d;
        var g = new GraphBuilder("separate_projections", 17);
        var x = g.Input("x", ElementType.Float, b, n, c);
        var shape = g.Int64s("head_shape", [b, n, h, d]);
        string Heads(int i, params long[] perm)
        {
            var y = g.Node("MatMul", [x, g.Weight($"w{i}", [c, c], 0.2f)]);
            if (biases[i])
            {
                y = g.Node("Add", [y, g.Weight($"b{i}", [c], 0.5f)]);
            }

            return g.Node("Transpose", [g.Node("Reshape", [y, shape])], GraphBuilder.Attr("perm", perm));
        }

        var (q, kt, v) = (Heads(0, 0, 2, 1, 3), Heads(1, 0, 2, 3, 1), Heads(2, 0, 2, 1, 3));
        var probs = g.Node("Softmax", [g.Node("Mul", [g.Node("MatMul", [q, kt]), g.Scalar(1f / MathF.Sqrt(d))])], GraphBuilder.Attr("axis", -1L));
        var o = g.Node("Transpose", [g.Node("MatMul", [probs, v])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L));
        g.Output(g.Rename(g.Node("Reshape", [o, g.Int64s("out_shape", [b, n, c])]), "y"), ElementType.Float, b, n, c);
        if (extraOutput)
        {
            g.Output(g.Rename(g.Node("MatMul", [x, g.Weight("w3", [c, c], 0.2f)]), "side"), ElementType.Float, b, n, c);
        }

        return g.Build("separate_projections");
    }

    private static ExecutionPlan Compile(OnnxModel model, IReadOnlyList<Tensor> inputs) =>
        new NoGpuTarget(Precision.Fp16, hostMatmuls: true).Compile(model, inputs);

    private static IReadOnlyList<string> Products(ExecutionPlan plan) =>
        [.. plan.Steps.Where(s => s is MatmulStep).Select(s => s.Node)];

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Separate_projections_feeding_attention_are_one_product_read_through_strides(bool withBias)
    {
        // 3 heads of 32, 50 tokens, two sequences: the product is [100, 288] over K = 96.
        var model = Projections(2, 50, 3, 32, [withBias, withBias, withBias]);
        var inputs = AttentionPlanTests.Inputs(model, 5);
        var plan = Compile(model, inputs);

        var product = Assert.Single(Products(plan));
        Assert.EndsWith("(one product)", product, StringComparison.Ordinal);
        Assert.Single(plan.Steps, s => s.Node.Contains("fused attention", StringComparison.Ordinal));

        // The input converted to half, the product, the fused kernel, the output converted back: no copies of the views.
        Assert.Equal(4, plan.Steps.Count);
        AttentionViewPlanTests.AssertMatchesOnnxRuntime(withBias ? "projections_bias" : "projections_no_bias", model, inputs, plan);
    }

    [Fact]
    public void Projections_with_and_without_a_bias_stay_separate()
    {
        var model = Projections(1, 20, 2, 16, [true, false, true]);
        var inputs = AttentionPlanTests.Inputs(model, 6);
        var plan = Compile(model, inputs);
        Assert.Equal(3, Products(plan).Count);
        Assert.DoesNotContain(Products(plan), p => p.Contains("one product", StringComparison.Ordinal));
        AttentionViewPlanTests.AssertMatchesOnnxRuntime("projections_mixed", model, inputs, plan);
    }

    [Fact]
    public void A_sibling_product_that_does_not_feed_attention_runs_on_its_own()
    {
        var model = Projections(1, 24, 2, 16, [true, true, true], extraOutput: true);
        var inputs = AttentionPlanTests.Inputs(model, 7);
        var plan = Compile(model, inputs);
        var products = Products(plan);
        Assert.Equal(2, products.Count);
        Assert.Single(products, p => p.EndsWith("(one product)", StringComparison.Ordinal));
        AttentionViewPlanTests.AssertMatchesOnnxRuntime("projections_side_output", model, inputs, plan);
    }
}
