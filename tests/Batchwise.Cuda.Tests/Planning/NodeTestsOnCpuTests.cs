using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// ONNX's own backend node tests (Debian's libonnx-testdata) for the operators of issue 15, planned without a GPU and run
/// on the CPU through <see cref="CpuKernelRunner"/>: the lowering and kernel semantics against ONNX's expected outputs.
/// Cases whose plans need cuDNN or cuBLASLt run only in the GPU test (NodeGpuTests).
/// </summary>
public sealed class NodeTestsOnCpuTests
{
    /// <summary>The operators of issue 15 the engine lowers; a node test counts when one of these is in it and every node is lowered.</summary>
    private static readonly HashSet<string> Issue15 = new(StringComparer.Ordinal)
    {
        "InstanceNormalization", "GroupNormalization", "TopK", "ArgMax", "ArgMin", "GatherElements", "GatherND", "ScatterND",
        "ScatterElements", "Tile", "CumSum", "DepthToSpace", "SpaceToDepth", "OneHot", "Trilu", "IsNaN", "IsInf", "BitShift",
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "QLinearConv",
        "QLinearMatMul", "Resize", "MaxPool", "RNN", "GRU", "LSTM", "NonZero",
    };

    /// <summary>Cases refused on purpose, each with the words its refusal must contain.</summary>
    private static readonly (System.Text.RegularExpressions.Regex Case, string Why)[] KnownRefusals =
    [
        (new("_(e4m3fn|e5m2|e4m3fnuz|e5m2fnuz|int4|uint4|float4e2m1)"), "tensors"),
        (new("_blocked"), "block_size"),
        (new("^test_resize_.*not_larger|^test_resize_.*not_smaller"), "keep_aspect_ratio_policy"),
        (new("^test_resize_.*antialias"), "antialias"),
    ];

    [Fact]
    public void Onnx_node_tests_of_issue_15_operators_pass_on_the_cpu()
    {
        CpuKernelRunner.Require();

        var root = Environment.GetEnvironmentVariable("BATCHWISE_ONNX_NODE_TESTS") is { Length: > 0 } r ? r : "/usr/share/libonnx-testdata/data/node";
        if (!Directory.Exists(root))
        {
            Assert.False(Environment.GetEnvironmentVariable("BATCHWISE_REQUIRE_TEST_TOOLS") == "1", $"BATCHWISE_REQUIRE_TEST_TOOLS=1, yet {root} is missing (apt-get install libonnx-testdata)");
            Assert.Skip($"{root} is missing (apt-get install libonnx-testdata)");
        }

        var cases = new List<(string Name, OnnxModel Model, ExecutionPlan Plan, List<(List<Tensor> Inputs, List<Tensor> Expected)> Sets)>();
        var failures = new List<string>();
        var notHere = 0;
        foreach (var dir in Directory.GetDirectories(root).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(dir);
            var modelPath = Path.Combine(dir, "model.onnx");
            if (!File.Exists(modelPath))
            {
                continue;
            }

            var proto = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(modelPath));
            var ops = proto.Graph.Node.Select(n => n.OpType).ToHashSet(StringComparer.Ordinal);
            if (!ops.Overlaps(Issue15) || !ops.All(o => OperatorSupport.Lowered.Contains(o) || o == "Constant") || proto.Graph.Node.Any(n => n.Domain.Length > 0))
            {
                continue;
            }

            OnnxModel model;
            try
            {
                model = OnnxModel.Load(modelPath);
                OperatorSupport.Validate(model);
            }
            catch (BatchwiseException e) when (e.Message.Contains("Batchwise reads opsets", StringComparison.Ordinal))
            {
                // Batchwise's ONNX reader refuses the file itself (an opset before 7): not the engine's doing.
                continue;
            }
            catch (BatchwiseException e)
            {
                if (!KnownRefusals.Any(k => k.Case.IsMatch(name) && e.Message.Contains(k.Why, StringComparison.Ordinal)))
                {
                    failures.Add($"{name}: refused: {e.Message}");
                }

                continue;
            }

            var sets = Directory.GetDirectories(dir, "test_data_set_*").Order(StringComparer.Ordinal).Select(set => (
                Enumerable.Range(0, model.Inputs.Count).Select(i => NodeTestData.Read(Path.Combine(set, $"input_{i}.pb"), model.Inputs[i].ElementType)).ToList(),
                Enumerable.Range(0, model.Outputs.Count).Select(i => NodeTestData.Read(Path.Combine(set, $"output_{i}.pb"), model.Outputs[i].ElementType)).ToList())).ToList();
            if (sets.Count == 0)
            {
                continue;
            }

            try
            {
                var init = model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t));
                var plan = new GraphCompiler(model, new NoGpuTarget()).Compile(sets[0].Item1, init, GraphCompiler.HostValueInputs(model));
                if (CpuKernelRunner.CannotRun(plan) is not null)
                {
                    notHere++;
                    continue;
                }

                cases.Add((name, model, plan, sets));
            }
            catch (Exception e) when (OperatorCaseModels.NeedsLibraries(e))
            {
                notHere++;
            }
            catch (BatchwiseException e)
            {
                failures.Add($"{name}: planning failed: {e.Message}");
            }
        }

        CpuKernelRunner.Prepare(cases.Select(c => c.Plan));
        foreach (var (name, model, plan, sets) in cases)
        {
            foreach (var (inputs, expected) in sets)
            {
                var actual = CpuKernelRunner.Run(plan, inputs, CpuKernelRunner.Continuation(model, new NoGpuTarget(), inputs));
                if (Difference(actual, expected) is { } difference)
                {
                    failures.Add($"{name}: {difference}");
                    break;
                }
            }
        }

        Assert.True(cases.Count > 0, "no node test ran");
        Assert.True(failures.Count == 0, $"{failures.Count} of {cases.Count} node tests failed ({notHere} need cuDNN or cuBLASLt): {string.Join("; ", failures)}");
    }

    /// <summary>
    /// ONNX's bfloat16 CastLike node tests in their expanded form (a Cast): their data stores bfloat16 as uint16, which
    /// <see cref="NodeTestData.Read"/> reads as the bfloat16 the model declares.
    /// </summary>
    [Theory]
    [InlineData("test_castlike_BFLOAT16_to_FLOAT_expanded")]
    [InlineData("test_castlike_FLOAT_to_BFLOAT16_expanded")]
    public void Bfloat16_castlike_node_tests_pass_on_the_cpu(string name)
    {
        CpuKernelRunner.Require();

        var root = Environment.GetEnvironmentVariable("BATCHWISE_ONNX_NODE_TESTS") is { Length: > 0 } r ? r : "/usr/share/libonnx-testdata/data/node";
        var dir = Path.Combine(root, name);
        if (!Directory.Exists(dir))
        {
            Assert.False(Environment.GetEnvironmentVariable("BATCHWISE_REQUIRE_TEST_TOOLS") == "1", $"BATCHWISE_REQUIRE_TEST_TOOLS=1, yet {dir} is missing (apt-get install libonnx-testdata)");
            Assert.Skip($"{dir} is missing (apt-get install libonnx-testdata)");
        }

        var model = OnnxModel.Load(Path.Combine(dir, "model.onnx"));
        OperatorSupport.Validate(model);
        var set = Path.Combine(dir, "test_data_set_0");
        var inputs = Enumerable.Range(0, model.Inputs.Count).Select(i => NodeTestData.Read(Path.Combine(set, $"input_{i}.pb"), model.Inputs[i].ElementType)).ToList();
        var expected = Enumerable.Range(0, model.Outputs.Count).Select(i => NodeTestData.Read(Path.Combine(set, $"output_{i}.pb"), model.Outputs[i].ElementType)).ToList();
        var init = model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t));
        var plan = new GraphCompiler(model, new NoGpuTarget()).Compile(inputs, init, GraphCompiler.HostValueInputs(model));
        var difference = Difference(CpuKernelRunner.Run(plan, inputs), expected);
        Assert.True(difference is null, $"{name}: {difference}");
    }

    private static string? Difference(List<Tensor> actual, List<Tensor> expected)
    {
        for (var i = 0; i < expected.Count; i++)
        {
            if (!expected[i].Shape.SequenceEqual(actual[i].Shape) || expected[i].ElementType != actual[i].ElementType)
            {
                return $"output {i} is {actual[i].ElementType.ShortName()} {Tensor.ShapeText(actual[i].Shape)}, expected {expected[i].ElementType.ShortName()} {Tensor.ShapeText(expected[i].Shape)}";
            }

            // bfloat16 within one unit in the last place: ONNX's data truncates float to bfloat16, the engine rounds to
            // nearest even (as ONNX Runtime and PyTorch do).
            var relative = expected[i].ElementType == ElementType.BFloat16 ? 1.0 / 128 : 1e-3;
            var a = actual[i].ToDoubles();
            var e = expected[i].ToDoubles();
            for (var j = 0; j < e.Length; j++)
            {
                if (!((double.IsNaN(a[j]) && double.IsNaN(e[j])) || a[j] == e[j] || Math.Abs(a[j] - e[j]) <= 1e-5 + (relative * Math.Abs(e[j]))))
                {
                    return $"output {i}[{j}] = {a[j]}, expected {e[j]}";
                }
            }
        }

        return null;
    }
}
