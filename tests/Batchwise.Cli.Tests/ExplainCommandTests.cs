using Batchwise.Analysis;

namespace Batchwise.Cli.Tests;

/// <summary>explain end to end on small zoo models, with synthetic ceilings in a private cache so no calibration runs.</summary>
[Collection(nameof(BatchwiseCacheDirectory))]
public sealed class ExplainCommandTests : IDisposable
{
    private readonly BatchwiseCacheDirectory _cache = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("bw-explain-cli-").FullName;

    public void Dispose()
    {
        _cache.Dispose();
        Directory.Delete(_dir, true);
    }

    [Fact]
    public async Task Explain_mlp_prints_curve_layers_and_a_verdict_with_numbers()
    {
        var (code, output, err) = await CliRunner.RunAsync("explain", "zoo:mlp", "--batch-sizes", "1,4,16", "--duration", "0.02");
        Assert.True(code == 0, err);
        Assert.Contains("test CPU via ort", output, StringComparison.Ordinal);
        Assert.Contains("Verdict", output, StringComparison.Ordinal);
        Assert.Contains("Measured:", output, StringComparison.Ordinal);
        Assert.Contains("Prediction error:", output, StringComparison.Ordinal);
        var verdict = output.ReplaceLineEndings(" ");
        Assert.Contains("rows (M) = 1 per sample", verdict, StringComparison.Ordinal); // a fully connected layer's rows are the batch
        Assert.Contains("b≈64", verdict, StringComparison.Ordinal); // so it fills N = 64 at b = 64
    }

    [Fact]
    public async Task Explain_in_int8_quantizes_the_model_and_checks_the_int8_gain_against_a_measured_fp32_sweep()
    {
        var (code, output, err) = await CliRunner.RunAsync("explain", "zoo:mlp", "--precision", "int8", "--batch-sizes", "1,4", "--duration", "0.02");
        Assert.True(code == 0, err);
        var verdict = output.ReplaceLineEndings(" ");
        Assert.Contains("Int8 (2 layers int8, the rest fp32;", verdict, StringComparison.Ordinal);
        Assert.Contains("no int8 ceiling was measured on test CPU via ort", verdict, StringComparison.Ordinal); // the cache's synthetic ceilings have none
        Assert.Contains("Measured at b=4: int8", verdict, StringComparison.Ordinal);
        Assert.Matches("the measurement (confirms|contradicts) that int8", verdict);
        Assert.DoesNotContain("Input 64", verdict, StringComparison.Ordinal); // the input-size lever is the float model's
    }

    [Fact]
    public async Task Explain_small_resnet_writes_an_html_report()
    {
        var report = Path.Combine(_dir, "r18.html");
        var (code, output, err) = await CliRunner.RunAsync("explain", "zoo:resnet18?size=64", "--batch-sizes", "1,2", "--duration", "0.02", "--top", "3", "--report", report);
        Assert.True(code == 0, err);
        Assert.Contains($"wrote {report}", output, StringComparison.Ordinal);
        var html = await File.ReadAllTextAsync(report, TestContext.Current.CancellationToken);
        Assert.Contains("<svg", html, StringComparison.Ordinal);
        Assert.Contains("resnet18", html, StringComparison.Ordinal);
        Assert.Contains("Input 64→32", output.ReplaceLineEndings(" "), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Explain_uses_a_bench_file_instead_of_measuring()
    {
        var bench = Path.Combine(_dir, "bench.json");
        var (benchCode, _, benchErr) = await CliRunner.RunAsync("bench", "zoo:mlp", "--batch-sizes", "1,8", "--duration", "0.1", "--warmup", "0.05", "--json", bench);
        Assert.True(benchCode == 0, benchErr);
        var measured = BenchFile.Read(bench).Points;
        var (code, output, err) = await CliRunner.RunAsync("explain", "zoo:mlp", "--bench", bench);
        Assert.True(code == 0, err);
        Assert.Contains($"Measured: {Units.Rate(measured[0].Throughput)}/s at b=1, {Units.Rate(measured[1].Throughput)}/s at b=8", output.ReplaceLineEndings(" "), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Explain_takes_ceilings_from_a_file_and_needs_no_device_to_predict()
    {
        // Ceilings recorded on a GPU machine: the cuda engine explained here, where no GPU is.
        var file = Path.Combine(_dir, "h100.json");
        new CeilingsCache(_dir).Write(file, new DeviceCeilings
        {
            Engine = "cuda",
            Device = "Recorded GPU 80GB",
            Machine = "gpu-host",
            PeakFlops = 50e12,
            BandwidthBytesPerSecond = 3e12,
            RunOverheadSeconds = 8e-6,
            OpOverheadSeconds = 1e-6,
            SaturationN = 16_384,
            MeasuredAt = DateTimeOffset.UtcNow,
        });
        var (code, output, err) = await CliRunner.RunAsync("explain", "zoo:mlp", "--engine", "cuda", "--ceilings-file", file, "--no-measure", "--batch-sizes", "1,64");
        Assert.True(code == 0, err);
        Assert.Contains("Recorded GPU 80GB via cuda", output, StringComparison.Ordinal);
        Assert.Contains(file, output, StringComparison.Ordinal);
        Assert.Contains("Predicted:", output.ReplaceLineEndings(" "), StringComparison.Ordinal);

        var (both, _, bothErr) = await CliRunner.RunAsync("explain", "zoo:mlp", "--ceilings-file", file, "--recalibrate", "--no-measure");
        Assert.NotEqual(0, both);
        Assert.Contains("--ceilings-file and --recalibrate both say where the ceilings come from", bothErr, StringComparison.Ordinal);
        var (missing, _, missingErr) = await CliRunner.RunAsync("explain", "zoo:mlp", "--ceilings-file", Path.Combine(_dir, "none.json"), "--no-measure");
        Assert.NotEqual(0, missing);
        Assert.Contains("not found", missingErr, StringComparison.Ordinal);
        var summary = Path.Combine(_dir, "summary.json");
        await File.WriteAllTextAsync(summary, """{"schema": "batchwise.devices", "schema_version": 1, "devices": []}""", TestContext.Current.CancellationToken);
        var (notCeilings, _, notCeilingsErr) = await CliRunner.RunAsync("explain", "zoo:mlp", "--ceilings-file", summary, "--no-measure");
        Assert.NotEqual(0, notCeilings);
        Assert.Contains("is not a ceilings file", notCeilingsErr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Explain_takes_the_measured_points_of_an_earlier_explain_report()
    {
        var report = Path.Combine(_dir, "first.json");
        var (firstCode, _, firstErr) = await CliRunner.RunAsync("explain", "zoo:mlp", "--batch-sizes", "1,8", "--duration", "0.05", "--json", report);
        Assert.True(firstCode == 0, firstErr);
        var measured = BenchFile.Read(report).Points;
        Assert.Equal([1, 8], measured.Select(p => p.BatchSize));
        var (code, output, err) = await CliRunner.RunAsync("explain", "zoo:mlp", "--bench", report);
        Assert.True(code == 0, err);
        Assert.Contains($"Measured: {Units.Rate(measured[0].Throughput)}/s at b=1, {Units.Rate(measured[1].Throughput)}/s at b=8", output.ReplaceLineEndings(" "), StringComparison.Ordinal);

        var predicted = Path.Combine(_dir, "predicted.json");
        var (noMeasureCode, _, noMeasureErr) = await CliRunner.RunAsync("explain", "zoo:mlp", "--batch-sizes", "1,8", "--no-measure", "--json", predicted);
        Assert.True(noMeasureCode == 0, noMeasureErr);
        var (emptyCode, _, emptyErr) = await CliRunner.RunAsync("explain", "zoo:mlp", "--bench", predicted);
        Assert.NotEqual(0, emptyCode);
        Assert.Contains("is an explain report without measured points", emptyErr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bench_writes_an_html_report()
    {
        var report = Path.Combine(_dir, "bench.html");
        var (code, output, err) = await CliRunner.RunAsync("bench", "zoo:mlp", "--batch-sizes", "1,2", "--duration", "0.1", "--warmup", "0", "--report", report);
        Assert.True(code == 0, err);
        Assert.Contains($"wrote {report}", output, StringComparison.Ordinal);
        var html = await File.ReadAllTextAsync(report, TestContext.Current.CancellationToken);
        Assert.Contains("<svg", html, StringComparison.Ordinal);
        Assert.Contains("concurrency 1", html, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Predict_only_runs_no_sweep()
    {
        var (code, output, err) = await CliRunner.RunAsync("explain", "zoo:bert?seq=8&layers=1", "--no-measure", "--batch-sizes", "1,2");
        Assert.True(code == 0, err);
        Assert.DoesNotContain("Measured:", output, StringComparison.Ordinal);
        Assert.Contains("Predicted:", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--batch-sizes", "0", "--batch-sizes '0'")]
    [InlineData("--input-size", "big", "--input-size 'big' is not a size: SIZE or HEIGHTxWIDTH")]
    [InlineData("--top", "0", "--top '0'")]
    [InlineData("--bench", "/nonexistent/bench.json", "not found")]
    [InlineData("--precision", "fp16", "--precision fp16 does not apply to the ort engine")] // EngineOptionRules, before any ceiling is read
    [InlineData("--device", "-1", "--device '-1'")]
    public async Task Bad_options_are_one_line_errors(string option, string value, string expected)
    {
        var (code, _, err) = await CliRunner.RunAsync("explain", "zoo:mlp", option, value, "--no-measure");
        Assert.Equal(2, code);
        Assert.Contains(expected, err.ReplaceLineEndings(" "), StringComparison.Ordinal);
        Assert.StartsWith("error:", err, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal); // no stack trace without --verbose
    }

    [Fact]
    public async Task Missing_model_is_a_one_line_error()
    {
        var (code, _, err) = await CliRunner.RunAsync("explain", "/nonexistent/model.onnx", "--no-measure");
        Assert.Equal(2, code);
        Assert.Contains("not found", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_rectangular_zoo_model_gets_the_half_size_lever()
    {
        var (code, output, err) = await CliRunner.RunAsync("explain", "zoo:resnet18?size=128x96", "--no-measure", "--batch-sizes", "1,2");
        Assert.True(code == 0, err);
        Assert.Contains("Input 128x96→64x48", OneLine(output), StringComparison.Ordinal); // height x width, as written
    }

    [Fact]
    [Trait("Category", "GPU")]
    public async Task Explain_on_the_cuda_engine_predicts_with_the_gpu_probes_ceiling_for_the_precision_asked()
    {
        GpuTest.Require();

        var (code, output, err) = await CliRunner.RunAsync("explain", "zoo:resnet18?size=64", "--engine", "cuda", "--batch-sizes", "1,8", "--duration", "0.1", "--tf32");
        Assert.True(code == 0, err);
        var text = OneLine(output);
        Assert.Contains("TFLOP/s fp32 GEMM", text, StringComparison.Ordinal);
        Assert.Contains("predicting in tf32", text, StringComparison.Ordinal);
        Assert.Contains("(cuda graph)", text, StringComparison.Ordinal);
        Assert.Contains("tf32 rate by N", text, StringComparison.Ordinal);

        var (code16, output16, err16) = await CliRunner.RunAsync("explain", "zoo:resnet18?size=64", "--engine", "cuda", "--batch-sizes", "1,8", "--no-measure", "--precision", "fp16", "--no-cuda-graph");
        Assert.True(code16 == 0, err16);
        Assert.Contains("predicting in fp16", OneLine(output16), StringComparison.Ordinal);
        Assert.Contains("(stream)", OneLine(output16), StringComparison.Ordinal);
    }

    /// <summary>The console wraps long lines at word boundaries: compare text with every run of white space as one space.</summary>
    private static string OneLine(string output) => System.Text.RegularExpressions.Regex.Replace(output, @"\s+", " ");

    [Fact]
    public async Task Explain_refuses_a_dynamic_size_it_was_not_given_and_takes_shape_as_bench_does()
    {
        var model = Batchwise.Zoo.ModelZoo.Build("zoo:mlp");
        model.Graph.Input[0].Type.TensorType.Shape.Dim[1] = new global::Onnx.TensorShapeProto.Types.Dimension { DimParam = "features" };
        var path = Path.Combine(_dir, "dynamic-mlp.onnx");
        model.Save(path);

        var (code, _, err) = await CliRunner.RunAsync("explain", path, "--no-measure", "--batch-sizes", "1,2");
        Assert.Equal(2, code);
        Assert.Contains("dimension 1 ('features')", err, StringComparison.Ordinal);
        Assert.Contains("--shape features=128", err, StringComparison.Ordinal);

        var (ok, output, err1) = await CliRunner.RunAsync("explain", path, "--no-measure", "--batch-sizes", "1,2", "--shape", "features=64");
        Assert.True(ok == 0, err1);
        Assert.Contains("[1, 64]", output, StringComparison.Ordinal);
    }
}
