using Batchwise.Analysis;
using Batchwise.Zoo;

namespace Batchwise.Tests.Analysis;

public sealed class ModelWorkTests
{
    [Fact]
    public void Mlp_gemm_rows_grow_with_the_batch()
    {
        var work = ModelWork.Analyze(ModelZoo.Build("zoo:mlp?features=64&hidden=32&classes=10"), null);
        var fc1 = work.At(4).First(l => l.OpType == "Gemm");
        Assert.Equal(new GemmShape(4, 32, 64), fc1.Gemm); // M = batch rows, N = features out, K = features in
        Assert.Equal(4, fc1.ParallelSize);
        Assert.Equal((2.0 * 4 * 32 * 64) + (4 * 32), fc1.Flops);

        // Weights (32x64 + 32 floats) once; input 4x64 and output 4x32 floats.
        Assert.Equal(4.0 * ((32 * 64) + 32 + (4 * 64) + (4 * 32)), fc1.Bytes);
        Assert.Equal(4.0 * ((32 * 64) + 32), fc1.WeightBytes);
    }

    [Fact]
    public void Products_of_weights_carry_their_weight_bytes_and_attentions_products_of_activations_none()
    {
        // BERT in float32, unfused: the projections and the MLP multiply by weights, the attention's two products
        // multiply activations (what explain's cold-weights table prices and what it leaves hot).
        var layers = ModelWork.Analyze(ModelZoo.Build("zoo:bert"), null).At(1).Where(l => l.OpType == "MatMul").ToList();
        Assert.Contains(layers, l => l.WeightBytes > 1e6);
        Assert.Contains(layers, l => l.WeightBytes == 0 && l.Flops > 0);
        Assert.All(layers.Where(l => l.WeightBytes > 0), l => Assert.True(l.WeightBytes < l.Bytes, l.Name));
    }

    [Fact]
    public void A_qdq_stem_is_one_kernel_reading_the_float_input_and_writing_int8_when_the_engine_fuses_stems()
    {
        var (_, model) = Transforms.TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        new Batchwise.Transforms.Int8Quantization(Batchwise.Transforms.CalibrationData.Parse("random:1")).Apply(model);
        var fused = ModelWork.Analyze(model, null, fusesEpilogues: true, fusesAttention: true, fusesStem: true);
        var apart = ModelWork.Analyze(model, null, fusesEpilogues: true, fusesAttention: true, fusesStem: false);

        // The stem convolution: the float32 input (3 x 64 x 64, 4 bytes) read and the pooled 64 x 16 x 16 written as
        // int8, both doubled (the caller halves float layers' bytes in fp16), plus at most its float weights and bias.
        var stem = fused.At(1).First(l => l.OpType == "Conv");
        Assert.True(stem.LaunchesKernel);
        Assert.InRange(stem.Bytes - ((2.0 * 4 * 3 * 64 * 64) + (2.0 * 64 * 16 * 16)), 0, (64 * 3 * 49 * 4) + (64 * 4));

        // Its QuantizeLinear, DequantizeLinear and MaxPool nodes are inside: no kernel, no bytes; the input needs no conversion.
        var inside = fused.At(1).TakeWhile(l => l.OpType != "Conv" || l == stem).Concat(fused.At(1).SkipWhile(l => l != stem).Skip(1).TakeWhile(l => l.OpType != "Conv")).Where(l => l != stem).ToList();
        Assert.Contains(inside, l => l.OpType == "MaxPool");
        Assert.All(inside, l => Assert.False(l.LaunchesKernel || l.Bytes > 0, $"{l.OpType} '{l.Name}' launches or moves bytes"));
        Assert.DoesNotContain(fused.FloatBoundaries, t => t.IsInput);
        Assert.Contains(apart.FloatBoundaries, t => t.IsInput);
        Assert.Contains(apart.At(1), l => l.OpType == "MaxPool" && l.LaunchesKernel);
    }

    [Fact]
    public void Resnet50_at_224_costs_the_published_4_1_gmacs()
    {
        var work = ModelWork.Analyze(ModelZoo.Build("zoo:resnet50"), null);
        var macs = work.At(1).Sum(l => l.IsGemm ? l.Flops / 2 : 0);
        Assert.InRange(macs, 4.0e9, 4.2e9);
        var stem = work.At(2).First(l => l.OpType == "Conv");
        Assert.Equal(new GemmShape(64, 2 * 112 * 112, 3 * 7 * 7), stem.Gemm);
        Assert.Equal(2 * 112 * 112, stem.ParallelSize);
    }

    [Fact]
    public void A_fusing_engine_runs_an_elementwise_chain_as_one_kernel_at_its_last_node()
    {
        // bert's decomposed LayerNorm and GELU: elementwise nodes read only by elementwise nodes are pending (no kernel, no
        // bytes); the chain's last node, read by something else, launches the one kernel.
        var model = ModelZoo.Build("zoo:bert");
        var plain = ModelWork.Analyze(model, null).At(4);
        var fused = ModelWork.Analyze(model, null, fusesEpilogues: true).At(4);
        var pendingNodes = Enumerable.Range(0, plain.Count).Where(i => plain[i].LaunchesKernel && !fused[i].LaunchesKernel && fused[i].Bytes == 0).ToList();
        Assert.NotEmpty(pendingNodes);
        Assert.All(pendingNodes, i => Assert.NotEqual("MatMul", plain[i].OpType));
        Assert.Contains(plain, l => l.OpType == "Erf");
        Assert.All(fused.Where(l => l.OpType == "Erf"), l => Assert.False(l.LaunchesKernel)); // GELU's Erf feeds its Add
        Assert.Contains(fused, l => l.OpType is "Add" or "Mul" or "Div" && l.LaunchesKernel);
    }

    [Fact]
    public void MobileNetV2s_relu6_runs_inside_the_depthwise_kernels_and_the_expanding_ones_as_they_load_in_half_precision()
    {
        // Each block: 1x1 expand -> BN -> Clip -> depthwise -> BN -> Clip -> 1x1 project. The cuda engine applies the
        // depthwise's Clip before its kernel writes (either precision) and, in half precision, the expand's as the depthwise
        // kernel loads; in float32 cuDNN's raw sum and the bias make the expand's a pass. (As the engine's CPU plans have
        // them: fp16 67 steps, 17 fewer than before session 38.)
        var model = ModelZoo.Build("zoo:mobilenetv2");
        var nodes = model.Graph.Node;
        var half = ModelWork.Analyze(model, null, fusesEpilogues: true, fusesAttention: true, fusesStem: true).At(4);
        var single = ModelWork.Analyze(model, null, fusesEpilogues: true).At(4);
        var clips = Enumerable.Range(0, nodes.Count).Where(i => nodes[i].OpType == "Clip").ToList();
        bool AfterDepthwise(int clip) => nodes[clip - 2] is { OpType: "Conv" } conv && conv.Attribute.Any(a => a.Name == "group" && a.I > 1);
        var afterDepthwise = clips.Where(AfterDepthwise).ToList();
        var beforeDepthwise = clips.Where(c => !AfterDepthwise(c) && nodes.Any(n => n.OpType == "Conv" && n.Input[0] == nodes[c].Output[0] && n.Attribute.Any(a => a.Name == "group" && a.I > 1))).ToList();
        Assert.Equal(17, afterDepthwise.Count);
        Assert.Equal(17, beforeDepthwise.Count);
        Assert.All(afterDepthwise, c => Assert.False(half[c].LaunchesKernel || single[c].LaunchesKernel));
        Assert.All(beforeDepthwise, c => Assert.True(single[c].LaunchesKernel && single[c].Bytes > 0));

        // The stem's (a 3x3 whose bias the chain adds: two values) stays a pass in half precision too; the 16 after a 1x1 do not.
        var stemClip = beforeDepthwise[0];
        Assert.True(half[stemClip].LaunchesKernel);
        Assert.All(beforeDepthwise.Skip(1), c => Assert.False(half[c].LaunchesKernel));
    }

    [Fact]
    public void Half_precision_attention_is_one_kernel_and_its_projections_one_product()
    {
        var model = ModelZoo.Build("zoo:bert");
        var plain = ModelWork.Analyze(model, null, fusesEpilogues: true).At(8);
        var fused = ModelWork.Analyze(model, null, fusesEpilogues: true, fusesAttention: true).At(8);
        LayerWork Of(IReadOnlyList<LayerWork> layers, string name) => layers.Single(l => l.Name == name);

        // Q, K and V (matmul, matmul_5, matmul_9 of one activation) are one GEMM of the summed N, reading the activation once.
        Assert.Equal(3 * Of(plain, "matmul").Gemm!.N, Of(fused, "matmul").Gemm!.N);
        Assert.Equal(Of(plain, "matmul").Flops + Of(plain, "matmul_5").Flops + Of(plain, "matmul_9").Flops, Of(fused, "matmul").Flops, 1e-6);
        Assert.True(Of(fused, "matmul").Bytes < Of(plain, "matmul").Bytes + Of(plain, "matmul_5").Bytes + Of(plain, "matmul_9").Bytes);
        Assert.False(Of(fused, "matmul_5").LaunchesKernel);

        // The block matmul_13 -> div -> add_14 -> softmax -> matmul_15 -> transpose_16 is one kernel with both products' FLOPs
        // that never writes the scores; the head-split transposes are views it reads.
        Assert.Equal(Of(plain, "matmul_13").Flops + Of(plain, "matmul_15").Flops, Of(fused, "matmul_13").Flops, 1e-6);
        Assert.True(Of(fused, "matmul_13").Bytes < Of(plain, "matmul_13").Bytes + Of(plain, "matmul_15").Bytes - Of(plain, "matmul_13").Bytes / 2);
        Assert.All(new[] { "div", "add_14", "softmax", "matmul_15", "transpose_16", "transpose", "transpose_8", "transpose_12" }, n =>
        {
            Assert.False(Of(fused, n).LaunchesKernel);
            Assert.Equal(0, Of(fused, n).Bytes);
        });
        Assert.Equal(plain.Sum(l => l.Flops), fused.Sum(l => l.Flops), 1e-3 * plain.Sum(l => l.Flops));
        Assert.True(fused.Count(l => l.LaunchesKernel) < 0.6 * plain.Count(l => l.LaunchesKernel));

        // Without it (fp32, or another engine) every node keeps its own kernel.
        Assert.True(Of(plain, "softmax").LaunchesKernel && Of(plain, "matmul_5").LaunchesKernel);
    }

    [Fact]
    public void A_fusing_engine_pays_nothing_for_bn_relu_and_residual_epilogues()
    {
        var plain = ModelWork.Analyze(ModelZoo.Build("zoo:resnet50"), null).At(8);
        var fused = ModelWork.Analyze(ModelZoo.Build("zoo:resnet50"), null, fusesEpilogues: true).At(8);

        var epilogues = fused.Where(l => l.OpType is "BatchNormalization" or "Relu" or "Add").ToList();
        Assert.NotEmpty(epilogues);
        Assert.All(epilogues, l => Assert.Equal(0, l.Bytes));
        Assert.All(epilogues, l => Assert.False(l.LaunchesKernel));
        Assert.Equal(plain.Where(l => l.IsGemm).Sum(l => l.Bytes), fused.Where(l => l.IsGemm).Sum(l => l.Bytes));
        Assert.True(fused.Sum(l => l.Bytes) < 0.6 * plain.Sum(l => l.Bytes));
    }

    [Fact]
    public void A_silu_chain_costs_one_pass_over_its_output()
    {
        var fused = ModelWork.Analyze(ModelZoo.Build("zoo:yolov8n?size=320"), null, fusesEpilogues: true).At(1);

        // Each Conv-BN-SiLU: BN and Sigmoid free, the closing Mul reads and writes its output once.
        var sigmoid = fused.First(l => l.OpType == "Sigmoid");
        var mul = fused.First(l => l.OpType == "Mul");
        Assert.Equal(0, sigmoid.Bytes);
        Assert.False(sigmoid.LaunchesKernel);
        Assert.True(mul.LaunchesKernel);
        Assert.Equal(2.0 * 16 * 160 * 160 * 4, mul.Bytes); // the stem's 16 x 160 x 160 floats, read and written
    }

    [Fact]
    public void Sequence_length_sets_the_rows_of_a_transformer()
    {
        var work = ModelWork.Analyze(ModelZoo.Build("zoo:bert?seq=16&layers=1"), null);
        var projection = work.At(3).First(l => l.OpType == "MatMul" && l.Gemm!.BatchCount == 1);
        Assert.Equal(3 * 16, projection.ParallelSize);
        Assert.Equal(3 * 16, projection.Gemm!.M);
    }

    [Fact]
    public void Input_size_cannot_change_a_fixed_size_model()
    {
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        var fixedSize = Record.Exception(() => ModelWork.Analyze(model, new InputSize(32, 32)));
        Assert.IsType<BatchwiseException>(fixedSize);
        Assert.Contains("fixed size", fixedSize.Message, StringComparison.Ordinal);
    }
}
