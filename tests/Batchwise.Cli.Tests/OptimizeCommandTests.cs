using System.Text.Json;

namespace Batchwise.Cli.Tests;

public sealed class OptimizeCommandTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("bw-optimize-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Fact]
    public async Task Optimize_writes_a_loadable_model_a_report_and_json()
    {
        var output = Path.Combine(_dir.FullName, "mlp-int8.onnx");
        var json = Path.Combine(_dir.FullName, "report.json");
        var (code, stdout, stderr) = await CliRunner.RunAsync("optimize", "zoo:mlp", "-o", output, "--int8-dynamic", "--batch-sizes", "1,4", "--duration", "0.05", "--json", json);

        Assert.True(code == 0, stderr);
        Assert.Contains("int8-dynamic", stdout, StringComparison.Ordinal);
        Assert.Contains("cosine", stdout, StringComparison.Ordinal);
        Assert.Contains("speed-up", stdout, StringComparison.Ordinal);
        var model = Batchwise.Onnx.OnnxModel.Load(output);
        Assert.Contains(model.Graph.Node, n => n.OpType == "MatMulInteger");

        using var doc = JsonDocument.Parse(await File.ReadAllTextAsync(json));
        var root = doc.RootElement;
        Assert.Equal("mlp", root.GetProperty("model").GetString());
        Assert.Equal(4, root.GetProperty("steps").GetArrayLength());
        var agreement = root.GetProperty("agreement")[0];
        Assert.True(agreement.GetProperty("cosine").GetDouble() > 0.99);
        // Dynamic int8 may flip one near-tie row of the random-weight MLP (seen once on a loaded host): 3 of 4 rows at least.
        Assert.True(agreement.GetProperty("top1_agreement").GetDouble() >= 0.75);
        Assert.Equal(2, root.GetProperty("speed_after").GetArrayLength());
        Assert.True(root.GetProperty("speed_after")[1].GetProperty("throughput").GetDouble() > 0);
    }

    [Fact]
    public async Task Optimize_prunes_a_convnet_and_reports_macs_before_and_after()
    {
        var output = Path.Combine(_dir.FullName, "r18.onnx");
        var (code, stdout, stderr) = await CliRunner.RunAsync("optimize", "zoo:resnet18?size=32", "-o", output, "--prune", "0.5", "--batch-sizes", "1", "--duration", "0.05");
        Assert.True(code == 0, stderr);
        Assert.Contains("conv MACs", stdout, StringComparison.Ordinal);
        Assert.Matches(@"conv MACs\s*│[^│]+│[^│]+│\s*-\d", stdout);
    }

    [Theory]
    [InlineData("--prune", "1.5", "between 0 and 1")]
    [InlineData("--prune", "0", "between 0 and 1")]
    [InlineData("--input-size", "abc", "HEIGHTxWIDTH")]
    [InlineData("--calibration-method", "magic", "--calibration-method 'magic' is not one of minmax, percentile, entropy")]
    [InlineData("--batch-sizes", "1,x", "not a comma-separated list of positive integers")]
    [InlineData("--threads", "-1", "--threads '-1' is not an integer of at least 0")]
    [InlineData("--precision", "fp16", "--precision does not apply to it")]
    public async Task Bad_option_values_give_one_line_errors_and_exit_2(string option, string value, string expected)
    {
        var (code, _, stderr) = await CliRunner.RunAsync("optimize", "zoo:mlp", "-o", Path.Combine(_dir.FullName, "x.onnx"), option, value);
        Assert.Equal(2, code);
        Assert.Contains(expected, stderr, StringComparison.Ordinal);
        AssertOneError(stderr);
    }

    /// <summary>D8: the input's fault is reported as the input's, in ONNX Runtime's words, not as a Batchwise bug.</summary>
    [Fact]
    public async Task A_model_onnx_runtime_cannot_load_is_reported_with_its_reason_not_as_a_batchwise_bug()
    {
        // An attribute Relu does not have: Batchwise's reader ignores it, ONNX Runtime's schema check refuses the model.
        var model = Batchwise.Zoo.ModelZoo.Build("zoo:mlp");
        model.Graph.Node.First(n => n.OpType == "Relu").Attribute.Add(Batchwise.Zoo.GraphBuilder.Attr("alpha_typo", 1L));
        var input = Path.Combine(_dir.FullName, "typo.onnx");
        model.Save(input);
        var (code, _, stderr) = await CliRunner.RunAsync("optimize", input, "-o", Path.Combine(_dir.FullName, "x.onnx"), "--no-verify");
        Assert.Equal(2, code);
        Assert.DoesNotContain("Batchwise bug", stderr, StringComparison.Ordinal);
        Assert.Contains("ONNX Runtime cannot run the input model", stderr, StringComparison.Ordinal);
        Assert.Contains("alpha_typo", stderr, StringComparison.Ordinal);
        AssertOneError(stderr);
    }

    [Fact]
    public async Task Unknown_calibration_folder_is_a_one_line_error()
    {
        var (code, _, stderr) = await CliRunner.RunAsync("optimize", "zoo:mlp", "-o", Path.Combine(_dir.FullName, "x.onnx"), "--int8", "--calibration", "/no/such/dir");
        Assert.Equal(2, code);
        Assert.Contains("--calibration directory '/no/such/dir' not found", stderr, StringComparison.Ordinal);
        AssertOneError(stderr);
    }

    // The console wraps long lines at its width; one error means one "error:" and no stack trace.
    private static void AssertOneError(string stderr)
    {
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(stderr, "error:"));
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Int8_without_calibration_and_fp16_with_int8_are_refused()
    {
        var output = Path.Combine(_dir.FullName, "x.onnx");
        var (code, _, stderr) = await CliRunner.RunAsync("optimize", "zoo:mlp", "-o", output, "--int8");
        Assert.Equal(2, code);
        Assert.Contains("needs calibration data", stderr, StringComparison.Ordinal);
        (code, _, stderr) = await CliRunner.RunAsync("optimize", "zoo:mlp", "-o", output, "--fp16", "--int8", "--calibration", "random:2");
        Assert.Equal(2, code);
        Assert.Contains("not supported yet", stderr, StringComparison.Ordinal);
        (code, _, stderr) = await CliRunner.RunAsync("optimize", "zoo:mlp", "-o", output, "--int8-activations", "symmetric");
        Assert.Equal(2, code);
        Assert.Contains("--int8-activations applies to --int8 (static quantization) only", stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public async Task Int8_with_symmetric_activations_writes_zero_points_of_128_and_passes_verification()
    {
        var output = Path.Combine(_dir.FullName, "sym.onnx");
        var (code, stdout, stderr) = await CliRunner.RunAsync("optimize", "zoo:resnet18?size=32", "-o", output, "--int8", "--calibration", "random:2", "--int8-activations", "symmetric", "--batch-sizes", "1", "--duration", "0.05");
        Assert.True(code == 0, stderr);
        Assert.Contains("pass", stdout, StringComparison.Ordinal);
        var model = Batchwise.Onnx.OnnxModel.Load(output);
        Assert.All(model.Graph.Initializer.Where(t => t.Name.EndsWith("_zero_point", StringComparison.Ordinal) && t.DataType == (int)Batchwise.Onnx.ElementType.UInt8), z => Assert.Equal([128], z.RawData.ToByteArray()));
    }

    [Fact]
    public async Task No_verify_writes_the_model_exits_0_and_reports_it_unverified_not_failed()
    {
        var output = Path.Combine(_dir.FullName, "skipped.onnx");
        var json = Path.Combine(_dir.FullName, "skipped.json");
        var (code, stdout, stderr) = await CliRunner.RunAsync("optimize", "zoo:mlp", "--fp16", "-o", output, "--no-verify", "--json", json);
        Assert.True(code == 0, stderr);
        Assert.DoesNotContain("FAILED", stderr, StringComparison.Ordinal);
        Assert.Contains("verification skipped (--no-verify)", stdout, StringComparison.Ordinal);
        Assert.True(File.Exists(output));
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json));
        Assert.False(doc.RootElement.GetProperty("verified").GetBoolean());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, doc.RootElement.GetProperty("failure").ValueKind);
    }

    [Fact]
    public async Task Input_size_on_a_model_with_a_fixed_grid_names_the_node_and_exits_2()
    {
        var output = Path.Combine(_dir.FullName, "yolo.onnx");
        var (code, _, stderr) = await CliRunner.RunAsync("optimize", "zoo:yolov8n?size=64", "-o", output, "--input-size", "96x96", "--no-verify");
        Assert.Equal(2, code);
        Assert.Contains("--input-size 96x96 is not possible", stderr, StringComparison.Ordinal);
        Assert.Matches("(Add|Sub|Mul|Concat) '", stderr);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public async Task A_result_that_fails_verification_is_written_and_exits_3_with_one_line_why()
    {
        var output = Path.Combine(Path.GetTempPath(), $"bw-failed-{Guid.NewGuid():N}.onnx");
        try
        {
            var (code, stdout, stderr) = await CliRunner.RunAsync("optimize", "zoo:resnet18?size=32", "-o", output, "--prune", "0.5", "--min-cosine", "0.999", "--batch-sizes", "1", "--duration", "0.02");
            Assert.Equal(3, code);
            Assert.Contains("FAIL: cosine", stdout, StringComparison.Ordinal);
            Assert.Contains("verification FAILED: 'logits': cosine", stderr, StringComparison.Ordinal);
            AssertOneError(stderr);
            Assert.True(File.Exists(output));
        }
        finally
        {
            File.Delete(output);
        }
    }

    [Fact]
    public async Task Opset_converts_an_old_model_and_the_result_agrees()
    {
        var output = Path.Combine(Path.GetTempPath(), $"bw-opset-{Guid.NewGuid():N}.onnx");
        try
        {
            var (code, stdout, stderr) = await CliRunner.RunAsync("optimize", "zoo:mlp", "-o", output, "--opset", "21", "--batch-sizes", "1", "--duration", "0.02");
            Assert.True(code == 0, stderr);
            Assert.Contains("opset 17 -> 21", stdout, StringComparison.Ordinal);
            Assert.Equal(21, Batchwise.Onnx.OnnxModel.Load(output).Opset);
        }
        finally
        {
            File.Delete(output);
        }
    }
}
