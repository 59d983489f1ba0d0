using System.Text.Json;
using Batchwise.Conformance;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cli.Tests;

public sealed class ConformanceCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bw-node-cli-").FullName;

    public ConformanceCommandTests()
    {
        EngineRegistry.Register("refuses-everything", () => new RefusingEngine());
        var x = Tensor.From<float>(ElementType.Float, [4], [-1, 0, 1, 2]);
        NodeTestSuite.WriteCase(_dir, "test_relu_ok", Unary("Relu"), [x], [Tensor.From<float>(ElementType.Float, [4], [0, 0, 1, 2])]);
        NodeTestSuite.WriteCase(_dir, "test_neg_wrong", Unary("Neg"), [x], [x]);
    }

    [Fact]
    public async Task A_failing_case_makes_exit_code_3_and_is_listed_with_its_reason()
    {
        var (code, output, err) = await CliRunner.RunAsync("conformance", _dir, "--engine", "ort");
        Assert.True(code == 3, err);
        Assert.Contains("test_neg_wrong: test_data_set_0: output 'y': 3 of 4 elements", output, StringComparison.Ordinal);
        Assert.Contains("total: 2 cases on ort", output, StringComparison.Ordinal);
        Assert.Contains("ran 2, passed 1, failed 1, unsupported 0, skipped 0", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Ops_filter_runs_only_listed_operators_and_exits_0_when_all_pass()
    {
        var path = Path.Combine(_dir, "report.json");
        var (code, output, err) = await CliRunner.RunAsync("conformance", _dir, "--ops", "cuda-issue-3", "--json", path);
        Assert.True(code == 0, err);
        Assert.Contains("ran 1, passed 1, failed 0", output, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        Assert.Equal(1, doc.RootElement.GetProperty("total").GetProperty("passed").GetInt32());
        var op = doc.RootElement.GetProperty("operators")[0];
        Assert.Equal("Relu", op.GetProperty("op").GetString());
        Assert.Equal("passed", doc.RootElement.GetProperty("cases")[0].GetProperty("status").GetString());
    }

    [Fact]
    public async Task List_shows_the_selected_cases_without_running_them()
    {
        var (code, output, _) = await CliRunner.RunAsync("conformance", _dir, "--list", "--filter", "neg");
        Assert.Equal(0, code);
        Assert.Contains("test_neg_wrong\tNeg\t1 data set(s)", output, StringComparison.Ordinal);
        Assert.Contains("1 cases", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Copy_to_writes_the_selected_cases_which_then_run_from_there()
    {
        var target = Path.Combine(_dir, "copied");
        var (code, output, err) = await CliRunner.RunAsync("conformance", _dir, "--ops", "Relu", "--copy-to", target);
        Assert.True(code == 0, err);
        Assert.Contains("copied 1 cases", output, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(target, "test_relu_ok", "test_data_set_0", "output_0.pb")));
        var (again, rerun, _) = await CliRunner.RunAsync("conformance", target);
        Assert.Equal(0, again);
        Assert.Contains("ran 1, passed 1", rerun, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--filter", "(", "is not a regular expression")]
    [InlineData("--ops", "Conv;Relu", "neither an operator name nor a preset")]
    [InlineData("--engine", "nosuch", "Unknown engine 'nosuch'")]
    [InlineData("--filter", "^nothing$", "No node test cases")]
    public async Task Bad_options_are_user_errors(string option, string value, string message)
    {
        var (code, _, err) = await CliRunner.RunAsync("conformance", _dir, option, value);
        Assert.Equal(2, code);
        Assert.Contains(message, err.ReplaceLineEndings(" "), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_run_where_no_case_ran_does_not_pass()
    {
        var (code, output, _) = await CliRunner.RunAsync("conformance", _dir, "--filter", "relu", "--engine", "refuses-everything");
        Assert.Equal(3, code);
        Assert.Contains("unsupported 1", output, StringComparison.Ordinal);
        Assert.Contains("no case ran", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_folder_is_a_user_error()
    {
        var (code, _, err) = await CliRunner.RunAsync("conformance", Path.Combine(_dir, "nope"));
        Assert.Equal(2, code);
        Assert.Contains("not found", err, StringComparison.Ordinal);
    }

    private static OnnxModel Unary(string op)
    {
        var g = new GraphBuilder(op);
        var x = g.Input("x", ElementType.Float, 4L);
        var y = g.Rename(g.Node(op, [x]), "y");
        g.Output(y, ElementType.Float, 4L);
        return g.Build(op.ToLowerInvariant());
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>An engine that refuses every model at load, as an engine lacking an operator does.</summary>
    private sealed class RefusingEngine : IEngine
    {
        public string Name => "refuses-everything";

        public EngineDescription Describe(EngineOptions options) => new(Name, "0", "none", new Dictionary<string, string>());

        public IEngineSession Load(OnnxModel model, EngineOptions options) => throw new BatchwiseException($"Operator {model.Graph.Node[0].OpType} is not supported by {Name}");
    }
}
