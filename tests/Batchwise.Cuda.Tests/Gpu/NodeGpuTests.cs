using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>ONNX's own backend node tests (onnx/backend/test/data/node) for the operators the engine lists.</summary>
[Trait("Category", "GPU")]
public sealed class NodeGpuTests
{
    /// <summary>The operators of issues 3 and 15; a node test counts when every node of its model is one of these.</summary>
    private static readonly HashSet<string> Listed = new(StringComparer.Ordinal)
    {
        "Conv", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Add", "Sub", "Mul", "Div",
        "Pow", "Sqrt", "Exp", "Erf", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Split", "Slice", "Resize",
        "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Gemm", "MatMul", "Softmax", "LayerNormalization", "ReduceMean",
        "Gather", "Cast", "Shape", "Constant", "Identity", "Pad", "Expand", "Where",

        // Issue 15's operators (their node tests also run on the CPU: Planning/NodeTestsOnCpuTests).
        "ConvTranspose", "InstanceNormalization", "GroupNormalization", "TopK", "ArgMax", "ArgMin", "GatherElements", "GatherND",
        "ScatterND", "ScatterElements", "Tile", "CumSum", "DepthToSpace", "SpaceToDepth", "OneHot", "Trilu", "IsNaN", "IsInf",
        "BitShift", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "QLinearConv",
        "QLinearMatMul", "RNN", "GRU", "LSTM", "NonZero",
    };

    /// <summary>
    /// Cases the engine refuses on purpose: a variant of a listed operator it does not implement, each with its reason.
    /// Any other refusal of a case made only of listed operators fails the test (a lost operator must not pass as a skip).
    /// </summary>
    private static readonly (System.Text.RegularExpressions.Regex Case, string Why)[] KnownRefusals =
    [
        (new("^test_batchnorm_.*_training_mode$"), "BatchNormalization's training mode (running mean/variance outputs)"),
        (new("^test_cast(like)?_.*B?FLOAT16"), "float16 and bfloat16 tensors and casts (the engine computes fp16 inside, its graph edges are float32)"),
        (new("^test_cast(like)?_.*STRING"), "string tensors and casts to or from string (the engine keeps no strings on the device)"),
        (new("^test_identity_(opt|sequence)$"), "optional and sequence values (the engine runs tensors only)"),
        (new("_(e4m3fn|e5m2|e4m3fnuz|e5m2fnuz|int4|uint4|float4e2m1)"), "float8, int4 and float4 tensors"),
        (new("_blocked"), "blocked quantization (block_size)"),
        (new("^test_resize_.*(not_larger|not_smaller)"), "Resize keep_aspect_ratio_policy other than stretch"),
        (new("^test_resize_.*antialias"), "Resize antialias"),
    ];

    [Fact]
    public void Onnx_backend_node_tests_pass()
    {
        Gpu.Require();
        var root = Environment.GetEnvironmentVariable("BATCHWISE_ONNX_NODE_TESTS");
        if (string.IsNullOrEmpty(root) || !Directory.Exists(root))
        {
            Gpu.SkipOrFail("BATCHWISE_ONNX_NODE_TESTS names no onnx/backend/test/data/node folder");
            return;
        }

        var ran = 0;
        var failures = new List<string>();
        var skipped = new List<string>();
        var perOp = new SortedDictionary<string, (int Ran, int Passed)>(StringComparer.Ordinal);
        foreach (var dir in Directory.GetDirectories(root).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(dir);
            var modelPath = Path.Combine(dir, "model.onnx");
            if (!File.Exists(modelPath))
            {
                continue;
            }

            var proto = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(modelPath));
            var ops = proto.Graph.Node.Select(n => n.OpType).Distinct().ToList();
            if (ops.Count == 0 || !ops.All(Listed.Contains) || proto.Graph.Node.Any(n => n.Domain.Length > 0 && n.Domain != "ai.onnx"))
            {
                continue;
            }

            var op = proto.Graph.Node.Select(n => n.OpType).FirstOrDefault(o => o is not ("Constant" or "Shape" or "Identity")) ?? ops[0];
            OnnxModel model;
            try
            {
                model = OnnxModel.Load(modelPath);
            }
            catch (BatchwiseException e)
            {
                // Batchwise's ONNX reader refuses the file itself (opset 1, STRING tensors, sequences): not the engine's doing.
                skipped.Add($"{name}: not readable by Batchwise: {e.Message}");
                continue;
            }

            string? outcome;
            try
            {
                outcome = RunCase(dir, model);
            }
            catch (BatchwiseException e) when (e.Message.Contains("does not support", StringComparison.Ordinal) && KnownRefusals.FirstOrDefault(k => k.Case.IsMatch(name)) is { Why: { } why })
            {
                skipped.Add($"{name}: refused on purpose ({why}): {e.Message}");
                continue;
            }
            catch (Exception e)
            {
                // Any other refusal of a listed operator is a failure, not a skip.
                outcome = $"{e.GetType().Name}: {e.Message}";
            }

            ran++;
            var (r, p) = perOp.GetValueOrDefault(op);
            perOp[op] = (r + 1, p + (outcome is null ? 1 : 0));
            if (outcome is not null)
            {
                failures.Add($"{name}: {outcome}");
            }
        }

        Gpu.Report("node-tests.md", $"ran {ran}, passed {ran - failures.Count}, failed {failures.Count}, not run {skipped.Count} (unreadable files, or refused on purpose: see below)");
        Gpu.Report("node-tests.md", string.Empty);
        Gpu.Report("node-tests.md", "| operator | ran | passed |");
        Gpu.Report("node-tests.md", "|---|---|---|");
        foreach (var (op, (r, p)) in perOp)
        {
            Gpu.Report("node-tests.md", $"| {op} | {r} | {p} |");
        }

        Gpu.Report("node-tests.md", string.Empty);
        foreach (var f in failures)
        {
            Gpu.Report("node-tests.md", "- FAILED " + f.ReplaceLineEndings(" "));
        }

        foreach (var s in skipped)
        {
            Gpu.Report("node-tests.md", "- skipped " + s.ReplaceLineEndings(" "));
        }

        Assert.True(ran > 0, "no node test ran");
        Assert.True(failures.Count == 0, $"{failures.Count} of {ran} node tests failed: {string.Join("; ", failures.Take(20))}");
    }

    /// <summary>Runs one case; null when it passes, else what differs.</summary>
    private static string? RunCase(string dir, OnnxModel model)
    {
        using var session = new CudaEngine().Load(model, new EngineOptions());
        foreach (var set in Directory.GetDirectories(dir, "test_data_set_*").Order(StringComparer.Ordinal))
        {
            var inputs = Enumerable.Range(0, model.Inputs.Count).Select(i => NodeTestData.Read(Path.Combine(set, $"input_{i}.pb"), model.Inputs[i].ElementType)).ToList();
            var expected = Enumerable.Range(0, model.Outputs.Count).Select(i => NodeTestData.Read(Path.Combine(set, $"output_{i}.pb"), model.Outputs[i].ElementType)).ToList();
            var actual = session.Run(inputs);
            for (var i = 0; i < expected.Count; i++)
            {
                if (!expected[i].Shape.SequenceEqual(actual[i].Shape))
                {
                    return $"output {i} shape {Tensor.ShapeText(actual[i].Shape)}, expected {Tensor.ShapeText(expected[i].Shape)}";
                }

                if (expected[i].ElementType != actual[i].ElementType)
                {
                    return $"output {i} type {actual[i].ElementType}, expected {expected[i].ElementType}";
                }

                // bfloat16 within one unit in the last place: ONNX's data truncates float to bfloat16, the engine rounds
                // to nearest even (as ONNX Runtime and PyTorch do).
                var relative = expected[i].ElementType == ElementType.BFloat16 ? 1.0 / 128 : 1e-3;
                var a = actual[i].ToDoubles();
                var e = expected[i].ToDoubles();
                for (var j = 0; j < e.Length; j++)
                {
                    var ok = (double.IsNaN(a[j]) && double.IsNaN(e[j])) || a[j] == e[j] || Math.Abs(a[j] - e[j]) <= 1e-5 + (relative * Math.Abs(e[j]));
                    if (!ok)
                    {
                        return $"output {i}[{j}] = {a[j]}, expected {e[j]}";
                    }
                }
            }
        }

        return null;
    }
}
