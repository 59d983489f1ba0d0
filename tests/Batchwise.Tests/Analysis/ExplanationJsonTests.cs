using System.Text.Json;
using Batchwise.Analysis;
using Batchwise.Tests.Reports;

namespace Batchwise.Tests.Analysis;

public sealed class ExplanationJsonTests
{
    [Fact]
    public void Json_carries_curves_error_layers_and_verdict_in_the_documented_schema()
    {
        var e = HtmlReportTests.SampleExplanation();
        using var doc = JsonDocument.Parse(ExplanationJson.ToJson(e, new Dictionary<string, string> { ["model"] = "synthetic" }));
        var root = doc.RootElement;
        Assert.Equal("batchwise.explain", root.GetProperty("schema").GetString());
        Assert.Equal(1, root.GetProperty("schema_version").GetInt32());
        Assert.Equal(e.Predicted.Count, root.GetProperty("predicted").GetArrayLength());
        Assert.Equal(e.Measured.Count, root.GetProperty("measured").GetArrayLength());
        Assert.Equal(e.Predicted[0].Throughput, root.GetProperty("predicted")[0].GetProperty("throughput_samples_per_s").GetDouble());
        var error = root.GetProperty("error");
        Assert.True(error.GetProperty("off").GetBoolean());
        Assert.Equal(e.Error!.AtFirst, error.GetProperty("throughput_at_first").GetDouble(), 9);
        var gemm = root.GetProperty("top_layers").EnumerateArray().First(l => l.GetProperty("name").GetString() == "gemm");
        Assert.Equal(100, gemm.GetProperty("gemm_at_first").GetProperty("m").GetInt64());
        Assert.Equal(e.Verdict.Count, root.GetProperty("verdict").GetArrayLength());
        Assert.Equal(e.Ceilings.SaturationN, root.GetProperty("ceilings").GetProperty("saturation_n").GetDouble());
    }

    [Fact]
    public void Json_lists_every_layer_at_the_largest_batch_with_its_predicted_time_and_kind()
    {
        var work = ModelWork.FromLayers("two", "x [1, 8]",
        [
            ModelWork.Layer("dw", "Conv", 1e8, 1e6, 1e3, new GemmShape(96, 10_000, 9, Groups: 96), 10_000, LayerKind.DepthwiseConvolution),
            ModelWork.Layer("add", "Add", 1e3, 1e6, 0),
        ]);
        var e = Explainer.Explain(work, Synthetic.Gpu(), [1, 8], []);
        using var doc = JsonDocument.Parse(ExplanationJson.ToJson(e, new Dictionary<string, string>()));
        var layers = doc.RootElement.GetProperty("layers_at_last").EnumerateArray().ToList();
        Assert.Equal(["dw", "add"], layers.Select(l => l.GetProperty("name").GetString()));
        Assert.Equal("depthwise_convolution", layers[0].GetProperty("kind").GetString());
        Assert.Equal(e.Predicted[^1].Layers[1].Seconds, layers[1].GetProperty("seconds").GetDouble());
        Assert.Equal(e.Predicted[^1].Seconds - e.Predicted[^1].RunOverheadSeconds, layers.Sum(l => l.GetProperty("seconds").GetDouble()), 12);
    }

    [Fact]
    public void Int8_explanation_writes_the_float_curve_and_a_float_one_leaves_it_out()
    {
        var layer = ModelWork.Layer("conv", "Conv", 1e9, 1e3, 1e3, new GemmShape(64, 4096, 64));
        var int8Work = ModelWork.FromLayers("q", "x [1, 8]", [(layer.AtBatchOne with { Role = QuantizedRole.Int8 }, layer.WeightBytes)]);
        var floatWork = ModelWork.FromLayers("f", "x [1, 8]", [layer]);
        var context = new Dictionary<string, string>();
        using var int8 = JsonDocument.Parse(ExplanationJson.ToJson(Explainer.Explain(int8Work, Synthetic.Int8Gpu(), [1, 8], []), context));
        using var plain = JsonDocument.Parse(ExplanationJson.ToJson(Explainer.Explain(floatWork, Synthetic.Int8Gpu(), [1, 8], []), context));
        Assert.Equal(2, int8.RootElement.GetProperty("float_predicted").GetArrayLength());
        Assert.Equal(1400e12, int8.RootElement.GetProperty("ceilings").GetProperty("peak_flops_int8").GetDouble());
        Assert.False(int8.RootElement.TryGetProperty("float_measured", out _));
        Assert.False(plain.RootElement.TryGetProperty("float_predicted", out _));
    }
}
