using Batchwise.Analysis;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Tests.Analysis;

public sealed class CostModelTests
{
    // Published multiply-accumulates at the default input (torchvision's model cards; Ultralytics reports 2 x MACs as FLOPs;
    // BERT-base at 128 tokens: 12 x (4 x 128 x 768^2 + 2 x 128^2 x 768 + 2 x 128 x 768 x 3072)).
    [Theory]
    [InlineData("resnet50", 4.09e9, 0.03)]
    [InlineData("resnet18", 1.814e9, 0.03)]
    [InlineData("mobilenetv2", 0.3008e9, 0.05)]
    [InlineData("yolov8n", 8.7e9 / 2, 0.10)]
    [InlineData("bert", 11.17e9, 0.03)]
    public void Macs_at_batch_1_match_the_published_architecture(string name, double published, double tolerance)
    {
        var cost = CostModel.Compute(ModelZoo.BuildStructure(name), batchSize: 1);
        Assert.InRange(cost.Macs, published * (1 - tolerance), published * (1 + tolerance));
        Assert.True(cost.Flops >= 2 * cost.Macs);
    }

    [Fact]
    public void Macs_grow_linearly_with_batch_and_with_input_area()
    {
        var model = ModelZoo.BuildStructure("resnet18");
        var one = CostModel.Compute(model, 1);
        var eight = CostModel.Compute(model, 8);
        Assert.Equal(8 * one.Macs, eight.Macs);

        // Conv MACs scale with area: 448^2 is 4x the area of 224^2 (the final Gemm does not grow).
        var large = CostModel.Compute(ModelZoo.BuildStructure("resnet18?size=448"), 1);
        var gemm = one.Nodes.Single(n => n.OpType == "Gemm").Macs;
        Assert.Equal(4 * (one.Macs - gemm), large.Macs - gemm);
    }

    [Fact]
    public void Conv_has_the_implicit_gemm_view()
    {
        var cost = CostModel.Compute(ModelZoo.BuildStructure("resnet50"), 4);
        var stem = cost.Nodes.First(n => n.OpType == "Conv");
        Assert.Equal(new GemmShape(M: 64, N: 4 * 112 * 112, K: 3 * 7 * 7), stem.Gemm);
        Assert.Equal(2 * stem.Gemm!.Macs, stem.Flops);
        Assert.Equal(64 * 3 * 7 * 7 * 4, stem.WeightBytes);
        Assert.Equal(4 * 3 * 224 * 224 * 4, stem.ActivationBytesRead);
        Assert.Equal(4 * 64 * 112 * 112 * 4, stem.ActivationBytesWritten);
        Assert.Equal(OpCategory.Gemm, stem.Category);
    }

    [Fact]
    public void Depthwise_conv_has_k_of_one_channel_and_groups_equal_to_channels()
    {
        var cost = CostModel.Compute(ModelZoo.BuildStructure("mobilenetv2"), 1);
        var depthwise = cost.Nodes.First(n => n.OpType == "Conv" && n.Gemm!.Groups > 1);
        Assert.Equal(9, depthwise.Gemm!.K);
        Assert.Equal(depthwise.Gemm.M, depthwise.Gemm.Groups);
        Assert.Equal(32, depthwise.Gemm.M);
        Assert.Equal(112 * 112, depthwise.Gemm.N);
    }

    [Fact]
    public void Matmuls_in_bert_fold_tokens_into_m_and_attention_is_batched_over_heads()
    {
        var cost = CostModel.Compute(ModelZoo.BuildStructure("bert?seq=64&layers=2"), 3);
        var matmuls = cost.Nodes.Where(n => n.OpType == "MatMul").Select(n => n.Gemm!).ToList();
        Assert.Contains(new GemmShape(M: 3 * 64, N: 768, K: 768), matmuls);
        Assert.Contains(new GemmShape(M: 3 * 64, N: 3072, K: 768), matmuls);
        Assert.Contains(new GemmShape(M: 64, N: 64, K: 64, BatchCount: 3 * 12), matmuls);
        Assert.Equal(2 * (6 + 2), matmuls.Count); // per layer: Q, K, V, output, two feed-forward; scores and context

        // The embedding lookup reads the rows it gathers, not the 94 MB table.
        var lookup = cost.Nodes.First(n => n.OpType == "Gather");
        Assert.Equal(3 * 64 * 768 * 4, lookup.WeightBytes);
    }

    [Fact]
    public void Arithmetic_intensity_of_a_linear_layer_grows_with_batch()
    {
        var model = ModelZoo.BuildStructure("resnet18");
        var fc1 = CostModel.Compute(model, 1).Nodes.Single(n => n.OpType == "Gemm");
        var fc64 = CostModel.Compute(model, 64).Nodes.Single(n => n.OpType == "Gemm");
        Assert.Equal(fc1.WeightBytes, fc64.WeightBytes);
        Assert.True(fc64.ArithmeticIntensity > 30 * fc1.ArithmeticIntensity, $"{fc1.ArithmeticIntensity} -> {fc64.ArithmeticIntensity}");
        Assert.Equal(new GemmShape(M: 64, N: 1000, K: 512), fc64.Gemm);
    }

    [Fact]
    public void Fp16_halves_the_bytes_but_not_the_flops()
    {
        var model = ModelZoo.BuildStructure("mobilenetv2?size=96");
        var fp32 = CostModel.Compute(model, 2);
        var fp16 = CostModel.Compute(model, 2, options: new CostOptions { FloatType = ElementType.Float16 });
        Assert.Equal(fp32.Flops, fp16.Flops);
        Assert.Equal(fp32.Bytes, 2 * fp16.Bytes);
        Assert.Equal(fp32.ParameterBytes, 2 * fp16.ParameterBytes);
        Assert.Equal(fp32.ParameterBytes, 4 * ModelZoo.BuildStructure("mobilenetv2?size=96").Graph.Initializer.Sum(t => t.ElementCount()));
    }

    [Fact]
    public void Views_and_shape_arithmetic_launch_no_kernel()
    {
        var cost = CostModel.Compute(ModelZoo.BuildStructure("yolov8n?size=320"), 1);
        Assert.All(cost.Nodes.Where(n => n.OpType is "Reshape" or "Flatten"), n => Assert.False(n.LaunchesKernel));
        Assert.All(cost.Nodes.Where(n => n.OpType is "Reshape"), n => Assert.Equal(0, n.Bytes));
        Assert.True(cost.Nodes.Single(n => n.OpType == "Softmax").LaunchesKernel);
        Assert.Equal(cost.Nodes.Count(n => n.OpType is not ("Reshape" or "Flatten")), cost.KernelCount);
    }

    [Fact]
    public void A_dimension_left_symbolic_is_named_in_the_error()
    {
        var e = Assert.Throws<BatchwiseException>(() => CostModel.Compute(ModelZoo.BuildStructure("resnet18"), new Dictionary<string, long>()));
        Assert.Contains("batch", e.Hint, StringComparison.Ordinal);
        Assert.Contains("Conv node 'conv'", e.Message, StringComparison.Ordinal);
        Assert.Contains("[batch, 64, 112, 112]", e.Message, StringComparison.Ordinal);
    }

    /// <summary>A convolution, an operator nobody knows, a ReLU reading it, and a convolution after.</summary>
    internal static OnnxModel WithUnknownOperator()
    {
        var g = new GraphBuilder("mystery");
        var x = g.Input("x", ElementType.Float, "batch", 3L, 16L, 16L);
        var conv = g.Node("Conv", [x, g.Weight("w", [8, 3, 3, 3], 0.1f)], GraphBuilder.Attr("pads", 1L, 1L, 1L, 1L));
        var mystery = g.Node("Mystery", [conv]);
        var relu = g.Node("Relu", [mystery]);
        g.Output(g.Node("Conv", [relu, g.Weight("w2", [4, 8, 1, 1], 0.1f)]), ElementType.Float, "batch", 4L, 16L, 16L);
        var proto = g.Build("mystery").Proto;
        proto.Graph.Node.Single(n => n.OpType == "Mystery").Domain = "com.example";
        proto.OpsetImport.Add(new global::Onnx.OperatorSetIdProto { Domain = "com.example", Version = 1 });
        return OnnxModel.FromProto(proto, "mystery");
    }

    [Fact]
    public void An_unknown_operator_and_what_reads_it_are_marked_and_the_rest_is_costed()
    {
        var cost = CostModel.Compute(WithUnknownOperator(), 2);

        var first = cost.Nodes[0];
        Assert.Equal(OpCategory.Gemm, first.Category);
        Assert.Equal(2L * 8 * 16 * 16 * 3 * 3 * 3, first.Macs);
        var mystery = cost.Nodes[1];
        Assert.Equal(OpCategory.Unknown, mystery.Category);
        Assert.Equal("com.example.Mystery", mystery.OpType);
        Assert.Contains("com.example.Mystery", mystery.Uncosted, StringComparison.Ordinal);
        Assert.All(cost.Nodes.Skip(2), n => Assert.Contains("no inferred shape", n.Uncosted, StringComparison.Ordinal));
        Assert.Equal(3, cost.Uncosted.Count);
        Assert.Equal(first.Macs, cost.Macs);
    }
}
