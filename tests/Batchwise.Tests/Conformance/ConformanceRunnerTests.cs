using Batchwise.Comparison;
using Batchwise.Conformance;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;
using OnnxProto = Onnx;

namespace Batchwise.Tests.Conformance;

public sealed class ConformanceRunnerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bw-node-").FullName;

    /// <summary>Writes four node-test-style cases: one that passes, one with a wrong expected output, one ONNX Runtime cannot load, one with an opset Batchwise does not read.</summary>
    internal static void WriteCases(string dir)
    {
        var x = Tensor.From<float>(ElementType.Float, [2, 3], [-1, 0, 1, -2.5f, 2.5f, 3]);

        var relu = Unary("Relu", "test_relu_generated");
        NodeTestSuite.WriteCase(dir, "test_relu_generated", relu, [x], [Tensor.From<float>(ElementType.Float, [2, 3], [0, 0, 1, 0, 2.5f, 3])]);

        var sigmoid = Unary("Sigmoid", "test_sigmoid_wrong");
        var wrong = Tensor.From<float>(ElementType.Float, [2, 3], x.AsSpan<float>().ToArray().Select(v => (float)(1 / (1 + Math.Exp(-v)))).ToArray());
        wrong.AsSpan<float>()[4] += 0.01f;
        NodeTestSuite.WriteCase(dir, "test_sigmoid_wrong", sigmoid, [x], [wrong]);

        var custom = Unary("Frobnicate", "test_frobnicate");
        custom.Graph.Node[0].Domain = "com.example";
        custom.Proto.OpsetImport.Add(new OnnxProto.OperatorSetIdProto { Domain = "com.example", Version = 1 });
        NodeTestSuite.WriteCase(dir, "test_frobnicate", custom, [x], [x]);

        var future = Unary("Relu", "test_relu_opset99");
        future.Proto.OpsetImport[0].Version = 99;
        NodeTestSuite.WriteCase(dir, "test_relu_opset99", future, [x], [x]);
    }

    [Fact]
    public void Generated_cases_pass_fail_are_unsupported_or_skipped_as_they_should()
    {
        WriteCases(_dir);
        var cases = NodeTestSuite.Discover(_dir);
        Assert.Equal(["test_frobnicate", "test_relu_generated", "test_relu_opset99", "test_sigmoid_wrong"], cases.Select(c => c.Name));
        Assert.Equal(["com.example.Frobnicate"], cases[0].Ops);

        var report = new ConformanceRunner(new OrtEngine(), new EngineOptions(), Tolerance.OnnxBackendTest).Run(_dir, cases);
        var byName = report.Cases.ToDictionary(c => c.Name);
        Assert.Equal(CaseStatus.Passed, byName["test_relu_generated"].Status);
        Assert.Equal(CaseStatus.Failed, byName["test_sigmoid_wrong"].Status);
        Assert.Contains("1 of 6 elements", byName["test_sigmoid_wrong"].Reason, StringComparison.Ordinal);
        Assert.Equal(CaseStatus.Unsupported, byName["test_frobnicate"].Status);
        Assert.Equal(CaseStatus.Skipped, byName["test_relu_opset99"].Status);
        Assert.Contains("opset 99", byName["test_relu_opset99"].Reason, StringComparison.Ordinal);

        Assert.Equal(new OperatorSummary("total", 2, 1, 1, 1, 1), report.Total);
        var relu = Assert.Single(report.Operators, o => o.Op == "Relu");
        Assert.Equal(new OperatorSummary("Relu", 1, 1, 0, 0, 1), relu);
    }

    [Fact]
    public void Ops_filter_keeps_cases_whose_operators_are_all_listed_and_the_name_filter_applies()
    {
        WriteCases(_dir);
        Assert.Equal(["test_relu_generated", "test_relu_opset99"], NodeTestSuite.Discover(_dir, ops: OperatorSets.Parse("Relu")).Select(c => c.Name));
        Assert.Equal(3, NodeTestSuite.Discover(_dir, ops: OperatorSets.Parse("cuda-issue-3")).Count);
        Assert.Equal(["test_sigmoid_wrong"], NodeTestSuite.Discover(_dir, filter: new System.Text.RegularExpressions.Regex("wrong$")).Select(c => c.Name));
    }

    [Fact]
    public void Looser_tolerance_lets_the_off_by_a_hundredth_case_pass()
    {
        WriteCases(_dir);
        var testCase = NodeTestSuite.Discover(_dir).Single(c => c.Name == "test_sigmoid_wrong");
        Assert.Equal(CaseStatus.Passed, new ConformanceRunner(new OrtEngine(), new EngineOptions(), new Tolerance(0, 0.02)).RunCase(testCase).Status);
    }

    [Fact]
    public void Ops_presets_and_names_parse_and_nonsense_is_refused()
    {
        var set = OperatorSets.Parse("cuda-issue-3,Mod");
        Assert.Contains("Conv", set);
        Assert.Contains("Where", set);
        Assert.Contains("Mod", set);
        Assert.Equal(43, set.Count);
        Assert.Throws<BatchwiseException>(() => OperatorSets.Parse("Conv;Relu"));
        Assert.Throws<BatchwiseException>(() => OperatorSets.Parse(","));
    }

    [Fact]
    public void Debian_node_tests_pass_on_onnx_runtime()
    {
        TestTools.Require(Directory.Exists(NodeTestSuite.DebianDirectory), $"{NodeTestSuite.DebianDirectory} is absent (apt-get install libonnx-testdata; .ci/run installs it)");
        var cases = NodeTestSuite.Discover(NodeTestSuite.DebianDirectory, new System.Text.RegularExpressions.Regex("^test_(relu|conv_with_strides_padding|softmax_axis_1|gemm_default_no_bias|gather_0)$"));
        Assert.Equal(5, cases.Count);
        var report = new ConformanceRunner(new OrtEngine(), new EngineOptions(), Tolerance.OnnxBackendTest).Run(NodeTestSuite.DebianDirectory, cases);
        Assert.All(report.Cases, c => Assert.True(c.Status == CaseStatus.Passed, $"{c.Name}: {c.Status} {c.Reason}"));
    }

    [Fact]
    public void A_missing_folder_is_a_clear_error()
    {
        var e = Assert.Throws<BatchwiseException>(() => NodeTestSuite.Discover(Path.Combine(_dir, "nope")));
        Assert.Contains("not found", e.Message, StringComparison.Ordinal);
    }

    private static OnnxModel Unary(string op, string name)
    {
        var g = new GraphBuilder(name);
        var x = g.Input("x", ElementType.Float, 2L, 3L);
        var y = g.Rename(g.Node(op, [x]), "y");
        g.Output(y, ElementType.Float, 2L, 3L);
        return g.Build(name, opset: 17);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
