using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Transforms;

namespace Batchwise.Tests.Transforms;

/// <summary>A QOperator-format model rewritten in QDQ form means the same: ONNX Runtime runs both to within a quantization step.</summary>
public sealed class QOperatorToQdqTests
{
    [Fact]
    public void A_qoperator_model_in_qdq_form_gives_what_it_gave()
    {
        var model = QOperatorModels.Classifier();
        var rewritten = OnnxModel.FromProto(model.Proto.Clone(), model.Name);
        var summary = new QOperatorToQdq().Apply(rewritten);
        Assert.StartsWith("rewrote 4 QOperator node(s)", summary, StringComparison.Ordinal);
        Assert.DoesNotContain(rewritten.Graph.Node, QOperatorToQdq.Rewrites);
        Assert.Equal(2, rewritten.Graph.Node.Count(n => n.OpType == "Conv"));
        Assert.Contains(rewritten.Graph.Node, n => n.OpType == "DequantizeLinear" && n.Attribute.Any(a => a.Name == "axis" && a.I == 0)); // the per-channel weight scales

        var inputs = Inputs();
        using var before = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        using var after = new OrtEngine().Load(rewritten, new EngineOptions { GraphOptimization = "disabled" });
        var (want, got) = (before.Run(inputs)[0].ToDoubles(), after.Run(inputs)[0].ToDoubles());
        Assert.True(want.Distinct().Count() > 8, "the output is nearly constant: the case checks nothing");

        // The output is on the pooling's grid (0.01): within a step of it everywhere (float rounding at ties).
        Assert.All(Enumerable.Range(0, want.Length), i => Assert.True(Math.Abs(want[i] - got[i]) <= 0.0101, $"[{i}] {got[i]} where the QOperator model gives {want[i]}"));
    }

    [Fact]
    public void One_weight_zero_point_beside_per_channel_scales_is_spread_over_the_channels()
    {
        var model = QOperatorModels.Classifier();
        var zero = model.Graph.Initializer.Single(t => t.Name == "w1z");
        zero.Dims.Clear(); // one zero point for the 64 per-channel scales, as QLinearConv allows
        zero.RawData = Google.Protobuf.ByteString.CopyFrom([0]);
        var rewritten = OnnxModel.FromProto(model.Proto.Clone(), model.Name);
        new QOperatorToQdq().Apply(rewritten);
        var spread = rewritten.Graph.Initializer.Single(t => t.Name.EndsWith("/w_zero_points", StringComparison.Ordinal));
        Assert.Equal([64L], spread.Dims);

        var inputs = Inputs();
        using var before = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        using var after = new OrtEngine().Load(rewritten, new EngineOptions { GraphOptimization = "disabled" });
        var (want, got) = (before.Run(inputs)[0].ToDoubles(), after.Run(inputs)[0].ToDoubles());
        Assert.All(Enumerable.Range(0, want.Length), i => Assert.True(Math.Abs(want[i] - got[i]) <= 0.0101, $"[{i}] {got[i]} where the QOperator model gives {want[i]}"));
    }

    private static List<Tensor> Inputs()
    {
        var rng = new Random(8);
        return [Tensor.From<float>(ElementType.Float, [2, 64, 6, 6], [.. Enumerable.Range(0, 2 * 64 * 36).Select(_ => (float)((rng.NextDouble() * 3) - 1.5))])];
    }

    [Fact]
    public void A_channels_last_pooling_is_kept_and_named()
    {
        var model = QOperatorModels.Classifier();
        model.Graph.Node.Single(n => n.OpType == "QLinearGlobalAveragePool").Attribute.Single(a => a.Name == "channels_last").I = 1;
        var summary = new QOperatorToQdq().Apply(model);
        Assert.Contains("kept 1", summary, StringComparison.Ordinal);
        Assert.Contains("channels_last = 1", summary, StringComparison.Ordinal);
    }
}
