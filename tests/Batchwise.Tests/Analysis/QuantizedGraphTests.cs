using Batchwise.Analysis;
using Batchwise.Onnx;
using Batchwise.Tests.Transforms;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Tests.Analysis;

public sealed class QuantizedGraphTests
{
    private static OnnxModel QuantizedResNet()
    {
        var (_, model) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        new Int8Quantization(CalibrationData.Parse("random:1")).Apply(model);
        return model;
    }

    [Fact]
    public void Qdq_convolutions_run_int8_with_their_weight_and_input_dequantize_fused()
    {
        var model = QuantizedResNet();
        var roles = QuantizedGraph.Roles(model);
        var nodes = model.Graph.Node;
        var initializers = model.Graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        Assert.All(nodes.Select((n, i) => (n, i)).Where(x => x.n.OpType == "Conv"), x => Assert.Equal(QuantizedRole.Int8, roles[x.i]));
        Assert.All(nodes.Select((n, i) => (n, i)).Where(x => x.n.OpType == "DequantizeLinear" && initializers.Contains(x.n.Input[0])), x => Assert.Equal(QuantizedRole.Fused, roles[x.i]));

        // The model's input is float: its QuantizeLinear is a pass of its own; the residual Adds run int8 (QLinearAdd).
        var inputQ = nodes.Select((n, i) => (n, i)).Single(x => x.n.OpType == "QuantizeLinear" && x.n.Input[0] == model.Inputs[0].Name);
        Assert.Equal(QuantizedRole.QuantizePass, roles[inputQ.i]);
        Assert.All(nodes.Select((n, i) => (n, i)).Where(x => x.n.OpType == "Add"), x => Assert.Equal(QuantizedRole.Int8, roles[x.i]));
    }

    [Fact]
    public void Int8_layers_move_a_quarter_of_the_float_bytes_and_fused_nodes_nothing()
    {
        var model = QuantizedResNet();
        var work = ModelWork.Analyze(model, null);
        Assert.True(work.HasInt8);
        var int8 = work.At(4);
        var asFloat = work.AsFloat().At(4).ToDictionary(l => l.Name, StringComparer.Ordinal);
        var conv = int8.First(l => l.OpType == "Conv" && l.IsInt8);
        Assert.Equal(asFloat[conv.Name].Flops, conv.Flops);
        Assert.InRange(conv.Bytes / asFloat[conv.Name].Bytes, 0.2, 0.3);
        Assert.All(int8.Where(l => l.Role == QuantizedRole.Fused), l => Assert.Equal((0.0, 0.0, false), (l.Flops, l.Bytes, l.LaunchesKernel)));

        // The float model: no quantize nodes, every layer float.
        Assert.DoesNotContain(work.AsFloat().At(1), l => l.OpType is "QuantizeLinear" or "DequantizeLinear" || l.Role != QuantizedRole.Float);
    }

    [Fact]
    public void A_relu6_between_int8_layers_and_depthwise_layers_run_in_the_int8_layers()
    {
        // MobileNetV2 as optimize --int8 writes it: Conv -> Q -> DQ -> Clip -> Q -> DQ -> depthwise Conv; the Clip and
        // the pair before it join the expansion's epilogue, and the depthwise layer runs int8 as the cuda engine runs it.
        var (_, model) = TransformTestModels.CleanedUp("zoo:mobilenetv2?size=64");
        new Int8Quantization(CalibrationData.Parse("random:1")).Apply(model);
        var roles = QuantizedGraph.Roles(model);
        var nodes = model.Graph.Node;
        var (producer, consumers, _) = NodeLinks.Of(model);
        var clips = nodes.Select((n, i) => (n, i)).Where(x => x.n.OpType == "Clip" && consumers[x.n.Output[0]].All(c => nodes[c].OpType == "QuantizeLinear")).ToList();
        Assert.Contains(nodes.Select((n, i) => (n, i)), x => x.n.OpType == "Clip" && !clips.Contains(x)); // the last, read in float by the pooling: a pass
        Assert.NotEmpty(clips);
        var afterInt8 = clips.Where(x => producer.TryGetValue(x.n.Input[0], out var dq) && producer.TryGetValue(nodes[dq].Input[0], out var q) && producer.TryGetValue(nodes[q].Input[0], out var conv) && roles[conv] == QuantizedRole.Int8).ToList();
        Assert.NotEmpty(afterInt8);
        Assert.All(afterInt8, x => Assert.Equal(QuantizedRole.Fused, roles[x.i]));
        Assert.All(nodes.Select((n, i) => (n, i)).Where(x => x.n.OpType == "Conv" && x.n.Attribute.Any(a => a.Name == "group" && a.I > 1)), x => Assert.Equal(QuantizedRole.Int8, roles[x.i]));
    }

    [Fact]
    public void A_float_model_has_only_float_layers()
    {
        var model = ModelZoo.Build("zoo:mlp");
        Assert.False(QuantizedGraph.IsQuantized(model));
        Assert.All(QuantizedGraph.Roles(model), r => Assert.Equal(QuantizedRole.Float, r));
        var work = ModelWork.Analyze(model, null);
        Assert.False(work.HasInt8);
        Assert.Same(work, work.AsFloat());
    }
}
