using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Tests.Operators;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Tests.Operators;

/// <summary>
/// The registry's one-node operator cases (tests/Batchwise.Tests/Operators/OperatorCases.cs) as models for the cuda
/// engine: host-valued inputs as initializers, the others as graph inputs with seeded values, output types from shape
/// inference, and ONNX Runtime's outputs as the reference.
/// </summary>
internal static class OperatorCaseModels
{
    /// <summary>Cases of operators the cuda engine lowers (the others are refused at load, with a reason).</summary>
    public static IEnumerable<string> Lowered => OperatorCases.All.Values.Where(c => c.Domain.Length == 0 && Cuda.Planning.OperatorSupport.Lowered.Contains(c.OpType)).Select(c => c.Name);

    /// <summary>
    /// Cases of lowered operators the engine still refuses at load (an attribute value or an optional output), each with
    /// the words its refusal must contain; any other refusal of a lowered operator's case is a failure.
    /// </summary>
    public static IReadOnlyDictionary<string, string> KnownRefusals { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["Dropout"] = "the mask output",
        ["Resize-not-larger"] = "keep_aspect_ratio_policy",
    };

    /// <summary>Why the engine refuses the model at load (when the case is a known refusal), or null when it accepts it.</summary>
    public static string? Refusal(OnnxModel model)
    {
        try
        {
            Cuda.Planning.OperatorSupport.Validate(model);
            return null;
        }
        catch (BatchwiseException e) when (KnownRefusals.TryGetValue(model.Name, out var expected) && e.Message.Contains(expected, StringComparison.Ordinal))
        {
            return "refused, as expected: " + e.Message;
        }
    }

    /// <summary>True when planning failed for want of cuDNN or cuBLASLt (a GPU test runs those cases).</summary>
    public static bool NeedsLibraries(Exception e) => e switch
    {
        DllNotFoundException => true,

        // The library resolver's own error (after a first DllNotFoundException, later loads report it so).
        BatchwiseException b when b.Message.Contains("cuDNN 9 library not found", StringComparison.Ordinal) || b.Message.Contains("cuBLASLt library not found", StringComparison.Ordinal) => true,
        InvalidOperationException { Message: Planning.NoGpuTarget.NoLibraries } => true,
        _ => e.InnerException is { } inner && NeedsLibraries(inner),
    };

    /// <summary>The case's model, its graph inputs' values in order, and ONNX Runtime's outputs.</summary>
    public static (OnnxModel Model, List<Tensor> Inputs, IReadOnlyList<Tensor> Expected) Build(string name)
    {
        var (model, inputs, _) = BuildModel(OperatorCases.All[name]);
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        return (model, inputs, ort.Run(inputs));
    }

    /// <summary>
    /// A recurrent case in layout 1 (<see cref="OperatorCases.RecurrentLayout1"/>, which ONNX Runtime's CPU kernels
    /// refuse): its model, its graph inputs' values, and the registry's host reference as the expected outputs (the
    /// registry's own tests check that reference against ONNX Runtime on the same values transposed to layout 0).
    /// </summary>
    public static (OnnxModel Model, List<Tensor> Inputs, IReadOnlyList<Tensor> Expected) BuildLayout1(string name)
    {
        var c = OperatorCases.RecurrentLayout1[name];
        var (model, inputs, values) = BuildModel(c);
        var node = model.Graph.Node[0];
        var outputs = global::Batchwise.Operators.HostEvaluator.TryEvaluate(node, c.Opset, [.. node.Input.Select(i => i.Length == 0 ? null : ConcreteValue.Of(values[i]))], whenNeeded: true, maxElements: long.MaxValue)
            ?? throw new InvalidOperationException($"the host reference cannot evaluate {name}");
        return (model, inputs, [.. outputs.Select(o => o.ToTensor())]);
    }

    /// <summary>The case's one-node model, its graph inputs' values in order, and every input's value by name.</summary>
    private static (OnnxModel Model, List<Tensor> Inputs, Dictionary<string, HostTensor> Values) BuildModel(OperatorCase c)
    {
        var random = new Random(c.Name.Aggregate(17, (h, ch) => (h * 31) + ch));
        var schema = OperatorRegistry.Find(c.Domain, c.OpType, c.Opset) ?? throw new InvalidOperationException($"{c.OpType} is not in the registry at opset {c.Opset}");
        var hostInputs = schema.HostInputsAt(c.Opset);
        var graph = new OnnxProto.GraphProto { Name = c.Name };
        var node = new OnnxProto.NodeProto { OpType = c.OpType, Domain = c.Domain, Name = "node" };
        node.Attribute.AddRange(c.Attributes);
        var inputs = new List<Tensor>();
        var values = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
        for (var i = 0; i < c.Inputs.Length; i++)
        {
            var input = c.Inputs[i];
            if (input.Type == ElementType.Undefined)
            {
                node.Input.Add(string.Empty);
                continue;
            }

            var inputName = $"in{i}";
            var value = input.Values is { } given
                ? HostTensor.Create(input.Type, input.Shape, k => given[k])
                : HostTensor.Create(input.Type, input.Shape, _ => input.Type.IsFloatingPoint() ? input.Low + ((input.High - input.Low) * random.NextDouble()) : random.NextInt64((long)input.Low, (long)input.High + 1));
            node.Input.Add(inputName);
            values[inputName] = value;
            if (hostInputs.Contains(i))
            {
                graph.Initializer.Add(value.ToProto(inputName));
                continue;
            }

            var info = new OnnxProto.ValueInfoProto { Name = inputName, Type = new OnnxProto.TypeProto { TensorType = new OnnxProto.TypeProto.Types.Tensor { ElemType = (int)input.Type, Shape = new OnnxProto.TensorShapeProto() } } };
            info.Type.TensorType.Shape.Dim.AddRange(input.Shape.Select(d => new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = d }));
            graph.Input.Add(info);
            inputs.Add(value.ToTensor());
        }

        for (var k = 0; k < c.Outputs; k++)
        {
            node.Output.Add($"out{k}");
            graph.Output.Add(new OnnxProto.ValueInfoProto { Name = $"out{k}" });
        }

        graph.Node.Add(node);
        var proto = new OnnxProto.ModelProto { IrVersion = 8, Graph = graph };
        proto.OpsetImport.Add(new OnnxProto.OperatorSetIdProto { Domain = string.Empty, Version = c.Opset });
        var inferred = ShapeInference.Run(OnnxModel.FromProto(proto, c.Name));
        foreach (var o in proto.Graph.Output)
        {
            var shape = new OnnxProto.TensorShapeProto();
            // A data-dependent size (NonZero's count) stays a named dimension.
            shape.Dim.AddRange(inferred[o.Name].Dims.Select(d => d.Value is { } v ? new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = v } : new OnnxProto.TensorShapeProto.Types.Dimension { DimParam = "count" }));
            o.Type = new OnnxProto.TypeProto { TensorType = new OnnxProto.TypeProto.Types.Tensor { ElemType = (int)inferred[o.Name].ElementType, Shape = shape } };
        }

        return (OnnxModel.FromProto(proto, c.Name), inputs, values);
    }

    /// <summary>
    /// What differs between an engine's outputs and the reference, or null when they agree: floating point within
    /// <paramref name="tolerance"/> of the reference's largest magnitude (NaN where it has NaN), integers exactly or
    /// within <paramref name="integerSlack"/> (a requantized value may round the other way at a tie).
    /// </summary>
    public static string? Difference(IReadOnlyList<Tensor> actual, IReadOnlyList<Tensor> expected, double tolerance, long integerSlack = 0, bool compareIntegers = true)
    {
        if (actual.Count != expected.Count)
        {
            return $"{actual.Count} outputs, expected {expected.Count}";
        }

        for (var i = 0; i < expected.Count; i++)
        {
            if (!actual[i].Shape.SequenceEqual(expected[i].Shape) || actual[i].ElementType != expected[i].ElementType)
            {
                return $"output {i} is {actual[i].ElementType.ShortName()} {Tensor.ShapeText(actual[i].Shape)}, expected {expected[i].ElementType.ShortName()} {Tensor.ShapeText(expected[i].Shape)}";
            }

            var floating = expected[i].ElementType.IsFloatingPoint();
            if (!floating && !compareIntegers)
            {
                continue;
            }

            var a = actual[i].ToDoubles();
            var e = expected[i].ToDoubles();
            var scale = e.Where(double.IsFinite).Select(Math.Abs).DefaultIfEmpty(0).Max();
            for (var j = 0; j < e.Length; j++)
            {
                var ok = floating
                    ? (double.IsNaN(e[j]) && double.IsNaN(a[j])) || a[j] == e[j] || Math.Abs(a[j] - e[j]) <= tolerance * Math.Max(scale, 1e-3)
                    : Math.Abs(a[j] - e[j]) <= integerSlack;
                if (!ok)
                {
                    return $"output {i}[{j}] = {a[j]}, expected {e[j]}";
                }
            }
        }

        return null;
    }
}
