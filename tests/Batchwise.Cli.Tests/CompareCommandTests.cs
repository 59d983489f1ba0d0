using System.Text.Json;

namespace Batchwise.Cli.Tests;

public sealed class CompareCommandTests
{
    [Fact]
    public async Task One_model_through_the_same_engine_twice_passes_with_exit_0()
    {
        var (code, output, err) = await CliRunner.RunAsync("compare", "zoo:mlp", "--engines", "ort,ort", "--batch-size", "4");
        Assert.True(code == 0, err);
        Assert.Contains("probabilities", output, StringComparison.Ordinal);
        Assert.Contains("float32 [4, 10]", output, StringComparison.Ordinal);
        Assert.Contains("PASS: all 1 outputs within rtol 1e-04, atol 1e-05", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Two_different_models_past_tolerance_exit_3_and_a_loose_tolerance_exits_0()
    {
        var (code, output, _) = await CliRunner.RunAsync("compare", "zoo:mlp?seed=0", "zoo:mlp?seed=1", "-b", "2");
        Assert.Equal(3, code);
        Assert.Contains("FAIL: 1 of 1 outputs past", output, StringComparison.Ordinal);
        Assert.Contains("worst at flat index", output, StringComparison.Ordinal);

        // Softmax probabilities differ by less than 1 everywhere.
        var (loose, _, _) = await CliRunner.RunAsync("compare", "zoo:mlp?seed=0", "zoo:mlp?seed=1", "-b", "2", "--atol", "1");
        Assert.Equal(0, loose);
    }

    [Fact]
    public async Task Json_output_holds_the_metrics_per_output()
    {
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.json");
        try
        {
            var (code, _, err) = await CliRunner.RunAsync("compare", "zoo:mlp?seed=0", "zoo:mlp?seed=1", "--seed", "5", "--json", path);
            Assert.True(code == 3, err);
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            Assert.False(root.GetProperty("passed").GetBoolean());
            Assert.Equal(5, root.GetProperty("seed").GetInt32());
            var output = root.GetProperty("outputs")[0];
            Assert.Equal("probabilities", output.GetProperty("name").GetString());
            Assert.True(output.GetProperty("max_abs_error").GetDouble() > 0);
            // Two differently seeded MLPs give different softmax rows: positive vectors, so 0 < cosine < 1.
            Assert.InRange(output.GetProperty("cosine").GetDouble(), 1e-9, 1 - 1e-9);
            Assert.Equal("batchwise.compare", root.GetProperty("schema").GetString());
            Assert.Equal(1, output.GetProperty("top_k").GetProperty("rows").GetInt32());
            Assert.Equal("ort", root.GetProperty("candidate").GetProperty("engine").GetProperty("engine").GetString());
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("ort,,cuda", "is not one engine or two")]
    [InlineData("ort,ort,ort", "is not one engine or two")]
    [InlineData("ort,nosuch", "Unknown engine 'nosuch'")]
    public async Task A_bad_engines_list_is_a_user_error(string engines, string message)
    {
        var (code, _, err) = await CliRunner.RunAsync("compare", "zoo:mlp", "--engines", engines);
        Assert.Equal(2, code);
        Assert.Contains(message, err.ReplaceLineEndings(" "), StringComparison.Ordinal);
    }

    [Fact]
    public async Task One_model_on_one_engine_has_nothing_to_compare()
    {
        var (code, _, err) = await CliRunner.RunAsync("compare", "zoo:mlp", "--engines", "ort");
        Assert.Equal(2, code);
        Assert.Contains("Nothing to compare", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_model_file_is_a_user_error()
    {
        var (code, _, err) = await CliRunner.RunAsync("compare", "/nonexistent/model.onnx", "--engines", "ort,ort");
        Assert.Equal(2, code);
        Assert.Contains("not found", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_file_that_is_not_a_model_is_a_user_error()
    {
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.onnx");
        await File.WriteAllTextAsync(path, "not a model at all");
        try
        {
            var (code, _, err) = await CliRunner.RunAsync("compare", path, "--engines", "ort,ort");
            Assert.Equal(2, code);
            Assert.Contains("not an ONNX model", err.ReplaceLineEndings(" "), StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task A_shape_for_an_unknown_input_is_a_user_error()
    {
        var (code, _, err) = await CliRunner.RunAsync("compare", "zoo:mlp", "--engines", "ort,ort", "--shape", "pixels:1,3");
        Assert.Equal(2, code);
        Assert.Contains("'pixels'", err, StringComparison.Ordinal);
    }
}

public sealed class CompareInputsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bw-compare-inputs-").FullName;

    [Fact]
    public async Task Inputs_from_npy_files_are_used_instead_of_random_ones()
    {
        var x = Batchwise.Engines.Tensor.From<float>(Batchwise.Onnx.ElementType.Float, [3, 64], Enumerable.Range(0, 192).Select(i => i / 100f).ToArray());
        Batchwise.Comparison.InputFiles.WriteNpy(Path.Combine(_dir, "input.npy"), x);
        var (code, output, err) = await CliRunner.RunAsync("compare", "zoo:mlp", "--engines", "ort,ort", "--inputs", _dir, "-b", "3");
        Assert.True(code == 0, err);
        Assert.Contains("input: float32 [3, 64], npy data", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_input_file_of_the_wrong_type_is_a_user_error()
    {
        var x = Batchwise.Engines.Tensor.From<long>(Batchwise.Onnx.ElementType.Int64, [1, 64], new long[64]);
        Batchwise.Comparison.InputFiles.WriteNpy(Path.Combine(_dir, "input.npy"), x);
        var (code, _, err) = await CliRunner.RunAsync("compare", "zoo:mlp", "--engines", "ort,ort", "--inputs", _dir);
        Assert.Equal(2, code);
        Assert.Contains("is int64; the model wants float32", err.ReplaceLineEndings(" "), StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task A_batch_size_a_fixed_batch_model_cannot_run_is_refused_not_replaced()
    {
        var g = new Batchwise.Zoo.GraphBuilder("fixed", 0);
        var x = g.Input("x", Batchwise.Onnx.ElementType.Float, 1L, 4L);
        g.Output(g.Rename(g.Node("Relu", [x]), "y"), Batchwise.Onnx.ElementType.Float, 1L, 4L);
        var path = Path.Combine(Path.GetTempPath(), $"bw-fixed-{Guid.NewGuid():N}.onnx");
        g.Build("fixed").Save(path);
        try
        {
            var (code, _, err) = await CliRunner.RunAsync("compare", path, "--engines", "ort,ort", "-b", "2");
            Assert.Equal(2, code);
            Assert.Contains("runs only batch 1 (input 'x' has its first dimension fixed at 1", err, StringComparison.Ordinal);

            // Without -b it runs the batch fixed in the file and prints it.
            var (ok, output, err1) = await CliRunner.RunAsync("compare", path, "--engines", "ort,ort");
            Assert.True(ok == 0, err1);
            Assert.Contains("float32 [1, 4]", output, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_quantized_model_is_judged_by_the_int8_bar_against_a_float_one_or_on_another_engine_but_not_on_the_same()
    {
        Assert.True(Commands.CompareCommand.JudgedAsInt8(Engines.Precision.Int8, false, false, sameEngine: true));
        Assert.True(Commands.CompareCommand.JudgedAsInt8(Engines.Precision.Fp32, true, false, sameEngine: true));
        Assert.True(Commands.CompareCommand.JudgedAsInt8(Engines.Precision.Fp16, true, true, sameEngine: false)); // ort against cuda
        Assert.False(Commands.CompareCommand.JudgedAsInt8(Engines.Precision.Fp32, true, true, sameEngine: true));
        Assert.False(Commands.CompareCommand.JudgedAsInt8(Engines.Precision.Fp16, false, false, sameEngine: false));
    }
}
