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
}
