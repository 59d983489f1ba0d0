using System.Text.Json;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cli.Tests;

public sealed class BenchCommandTests : IDisposable
{
    private static readonly string[] Quick = ["--duration", "60ms", "--warmup", "0", "--max-windows", "3"];
    private readonly string _dir = Directory.CreateTempSubdirectory("bw-bench-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Bench_on_zoo_mlp_prints_the_table_and_knee_and_writes_json_and_csv()
    {
        var json = Path.Combine(_dir, "r.json");
        var csv = Path.Combine(_dir, "r.csv");
        var (code, output, err) = await Run(["bench", "zoo:mlp", "-b", "1,2,4", "--json", json, "--csv", csv, .. Quick]);
        Assert.True(code == 0, err);
        Assert.Contains("samples/s", output, StringComparison.Ordinal);
        Assert.Contains("knee", output, StringComparison.Ordinal);
        Assert.Contains("engine ort", output, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(await File.ReadAllTextAsync(json, TestContext.Current.CancellationToken));
        Assert.Equal("batchwise.bench", doc.RootElement.GetProperty("schema").GetString());
        Assert.Equal(3, doc.RootElement.GetProperty("points").GetArrayLength());
        Assert.Equal(4, (await File.ReadAllLinesAsync(csv, TestContext.Current.CancellationToken)).Length);
        Assert.Contains("[3/3] b=4 c=1", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Profile_on_an_engine_without_layer_timings_is_one_error_line_before_the_sweep()
    {
        var (code, output, err) = await Run(["bench", "zoo:mlp", "-b", "1", "--profile", .. Quick]);
        Assert.Equal(2, code);
        Assert.Contains("--profile: engine 'ort' has no per-layer timings", err + output, StringComparison.Ordinal);
        Assert.DoesNotContain("[1/1]", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Transfers_on_the_ort_engine_is_one_error_line_saying_the_cpu_has_none()
    {
        var (code, output, err) = await Run(["bench", "zoo:mlp", "-b", "1", "--transfers", .. Quick]);
        Assert.Equal(2, code);
        var text = (err + output).Trim();
        Assert.Contains("--transfers does not apply to the ort engine", text, StringComparison.Ordinal);
        Assert.Contains("on the CPU there is nothing to transfer", text, StringComparison.Ordinal);
        Assert.DoesNotContain("[1/1]", err, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Queue_on_the_ort_engine_is_one_error_line_saying_what_to_drop()
    {
        var (code, output, err) = await Run(["bench", "zoo:mlp", "-b", "1", "--queue", "4", .. Quick]);
        var text = err + output;
        Assert.Equal(2, code);
        Assert.Contains("--queue 4: this engine runs each inference to its end before the next", text, StringComparison.Ordinal);
        Assert.Contains("Drop --queue", text, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_queue_of_zero_is_refused_naming_the_option()
    {
        var (code, output, err) = await Run(["bench", "zoo:mlp", "-b", "1", "--queue", "0", .. Quick]);
        Assert.NotEqual(0, code);
        Assert.Contains("--queue", err + output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Help_lists_transfers_and_says_the_default_is_compute_only()
    {
        var (code, output, _) = await Run(["bench", "--help"]);
        Assert.Equal(0, code);
        Assert.Contains("--transfers", output, StringComparison.Ordinal);
        Assert.Contains("GPU compute alone", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Concurrency_adds_points_and_a_knee_per_level()
    {
        var json = Path.Combine(_dir, "c.json");
        var (code, _, err) = await Run(["bench", "zoo:mlp", "-b", "1,2", "-c", "1,2", "--json", json, .. Quick]);
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(await File.ReadAllTextAsync(json, TestContext.Current.CancellationToken));
        Assert.Equal(4, doc.RootElement.GetProperty("points").GetArrayLength());
        Assert.Equal(2, doc.RootElement.GetProperty("knees").GetArrayLength());
    }

    [Fact]
    public async Task Fixed_batch_model_runs_b1_and_says_batching_is_impossible()
    {
        var path = Save(FixedBatch(), "fixed.onnx");
        var (code, output, err) = await Run(["bench", path, .. Quick]);
        Assert.True(code == 0, err);
        Assert.Contains("batching is impossible for this file", output, StringComparison.Ordinal);
        Assert.Contains("dynamic batch axis", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Fixed_batch_model_with_batch_sizes_is_an_error()
    {
        var path = Save(FixedBatch(), "fixed.onnx");
        await AssertUserError(["bench", path, "-b", "1,8", .. Quick], "Batching is impossible for 'fixed'");
    }

    [Fact]
    public async Task Dynamic_dimension_without_shape_names_input_dimension_and_flag()
    {
        var path = Save(Tokens(), "tokens.onnx");
        var err = await AssertUserError(["bench", path, .. Quick], "'input_ids' [batch, seq] dimension 1 ('seq')");
        Assert.Contains("--shape seq=128", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dynamic_dimension_with_shape_runs()
    {
        var path = Save(Tokens(), "tokens.onnx");
        var (code, output, err) = await Run(["bench", path, "-b", "1,2", "--shape", "seq=8", .. Quick]);
        Assert.True(code == 0, err);
        Assert.Contains("knee", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Npy_input_is_used()
    {
        var npy = Path.Combine(_dir, "x.npy");
        await File.WriteAllBytesAsync(npy, Npy(Enumerable.Repeat(0.5f, 64).ToArray(), "(64,)"), TestContext.Current.CancellationToken);
        var json = Path.Combine(_dir, "n.json");
        var (code, _, err) = await Run(["bench", "zoo:mlp", "-b", "2", "--input", $"input={npy}", "--json", json, .. Quick]);
        Assert.True(code == 0, err);
        Assert.Contains("npy data", await File.ReadAllTextAsync(json, TestContext.Current.CancellationToken), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Unknown engine 'warp'", "--engine", "warp")]
    [InlineData("--batch-sizes '1,x'", "--batch-sizes", "1,x")]
    [InlineData("--batch-sizes '0'", "--batch-sizes", "0")]
    [InlineData("--concurrency '-1'", "--concurrency", "-1")]
    [InlineData("--shape 'seq'", "--shape", "seq")]
    [InlineData("--shape binds 'seq'", "--shape", "seq=8")]
    [InlineData("--duration 'soon'", "--duration", "soon")]
    [InlineData("--stability-tolerance must lie between 0 and 1", "--stability-tolerance", "150%")]
    [InlineData("--ep 'tpu'", "--ep", "tpu")]
    [InlineData("--graph-optimization 'max'", "--graph-optimization", "max")]
    [InlineData("--threads 'many'", "--threads", "many")]
    [InlineData("--input 'oops'", "--input", "oops")]
    [InlineData("Input data file 'missing.npy' not found", "--input", "input=missing.npy")]
    [InlineData("--precision fp16 does not apply to the ort engine: it runs the model in the precision it is stored in", "--precision", "fp16")]
    public async Task Bad_option_is_a_one_line_error_with_exit_code_2(string expected, string option, string value)
    {
        var quick = Quick.Chunk(2).Where(pair => pair[0] != option).SelectMany(pair => pair);
        await AssertUserError(["bench", "zoo:mlp", option, value, .. quick], expected);
    }

    [Fact]
    public async Task Missing_model_file_is_a_one_line_error()
    {
        await AssertUserError(["bench", Path.Combine(_dir, "nope.onnx"), .. Quick], "not found");
    }

    [Fact]
    public async Task Unknown_zoo_model_is_a_one_line_error()
    {
        await AssertUserError(["bench", "zoo:resnet9000", .. Quick], "No zoo model named 'resnet9000'");
    }

    [Fact]
    public async Task Json_into_a_missing_folder_fails_before_measuring()
    {
        await AssertUserError(["bench", "zoo:mlp", "--json", Path.Combine(_dir, "no", "r.json"), .. Quick], "does not exist");
    }

    private static async Task<string> AssertUserError(string[] args, string expected)
    {
        var (code, output, err) = await Run(args);
        Assert.True(code == 2, $"exit {code}; out: {output}; err: {err}");
        Assert.Contains(expected, err, StringComparison.Ordinal);
        Assert.Single(err.Trim().Split('\n'));
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal);
        return err;
    }

    private static Task<(int ExitCode, string Out, string Err)> Run(string[] args) => CliRunner.RunAsync(args);

    private string Save(OnnxModel model, string name)
    {
        var path = Path.Combine(_dir, name);
        model.Save(path);
        return path;
    }

    private static OnnxModel FixedBatch()
    {
        var g = new GraphBuilder("fixed", 0);
        var x = g.Input("x", ElementType.Float, 1L, 4L);
        g.Output(g.Rename(g.Node("Relu", [x]), "y"), ElementType.Float, 1L, 4L);
        return g.Build("fixed");
    }

    private static OnnxModel Tokens()
    {
        var g = new GraphBuilder("tokens", 0);
        var ids = g.Input("input_ids", ElementType.Int64, "batch", "seq");
        var emb = g.Weight("embeddings", [100, 4], 1f);
        g.Output(g.Rename(g.Node("Gather", [emb, ids]), "hidden"), ElementType.Float, "batch", "seq", 4L);
        return g.Build("tokens");
    }

    private static byte[] Npy(float[] values, string shape)
    {
        var header = $"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}";
        header = header.PadRight(header.Length + ((64 - ((10 + header.Length + 1) % 64)) % 64)) + "\n";
        using var ms = new MemoryStream();
        ms.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0]);
        ms.Write(BitConverter.GetBytes((ushort)header.Length));
        ms.Write(System.Text.Encoding.ASCII.GetBytes(header));
        ms.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        return ms.ToArray();
    }
}
