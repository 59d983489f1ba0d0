using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>Converts float32 weights and activations to float16. Operators off the allow-list (Softmax, LayerNormalization, reductions, Exp/Log/Pow, anything not listed) stay in float32 with Casts at the boundaries; Resize's roi and scales stay float32; inputs and outputs stay float32 unless told otherwise.</summary>
public sealed class Fp16Conversion : IModelTransform
{
    /// <summary>Operators computed in float16: those that are exact or well-conditioned in half precision.</summary>
    public static readonly IReadOnlySet<string> HalfOps = new HashSet<string>(StringComparer.Ordinal)
    {
        "Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu",
        "HardSigmoid", "HardSwish", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization",
        "Concat", "Split", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Gather", "Resize", "Identity",
        "Pad", "Expand", "Tile", "Shape", "Size", "Neg", "Abs", "Max", "Min", "Dropout", "Where", "Erf", "PRelu", "DepthToSpace", "SpaceToDepth",
    };

    // Inputs that keep their type whatever the node computes in: coordinates and scales of Resize, the condition of Where.
    private static readonly Dictionary<string, int[]> Float32Inputs = new(StringComparer.Ordinal)
    {
        ["Resize"] = [1, 2],
    };

    /// <summary>Keep float32 graph inputs and outputs (Casts inside the model), so callers need not change.</summary>
    public bool KeepIoFp32 { get; init; } = true;

    /// <summary>Operators forced to stay float32, in addition to those off the allow-list.</summary>
    public IReadOnlySet<string> KeepFp32Ops { get; init; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>Also keep in float32 every operator that ONNX Runtime's CPU provider has no float16 kernel for (found by loading the converted model), instead of leaving ORT to insert its own Casts.</summary>
    public bool MatchOrtCpuKernels { get; init; }

    /// <inheritdoc/>
    public string Name => "fp16";

    /// <summary>Operators of a float16 model that ONNX Runtime's CPU provider runs in float32: it loads the model and looks for the Casts its InsertCastTransformer adds around operators that lack a float16 kernel.</summary>
    public static SortedSet<string> OrtCpuFloat32Ops(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"batchwise-fp16-check-{Guid.NewGuid():N}.onnx");
        try
        {
            using (var so = new Microsoft.ML.OnnxRuntime.SessionOptions { OptimizedModelFilePath = path, GraphOptimizationLevel = Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_BASIC })
            using (new Microsoft.ML.OnnxRuntime.InferenceSession(model.ToBytes(), so))
            {
            }

            var optimized = OnnxModel.Load(path);
            var inserted = optimized.Graph.Node.Where(n => n.OpType == "Cast" && n.Name.StartsWith("InsertedPrecisionFreeCast", StringComparison.Ordinal)).SelectMany(n => n.Output).ToHashSet(StringComparer.Ordinal);
            return new SortedSet<string>(optimized.Graph.Node.Where(n => n.OpType != "Cast" && n.Input.Any(inserted.Contains)).Select(n => n.OpType), StringComparer.Ordinal);
        }
        catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException e)
        {
            throw new BatchwiseException($"ONNX Runtime cannot load the float16 model: {OrtFailure.Detail(e)}", "Run without --fp16 and report this with --verbose.", e);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (MatchOrtCpuKernels)
        {
            // Convert a copy, ask ORT which operators it would run in float32, keep those in float32 and repeat
            // (an operator between two float32 ones may then be the next to lack a kernel), then convert for real.
            var demoted = new SortedSet<string>(KeepFp32Ops, StringComparer.Ordinal);
            for (var round = 0; round < 8; round++)
            {
                var trial = OnnxModel.FromProto(model.Proto.Clone(), model.Name);
                new Fp16Conversion { KeepIoFp32 = KeepIoFp32, KeepFp32Ops = demoted }.Apply(trial);
                var more = OrtCpuFloat32Ops(trial);
                if (more.IsSubsetOf(demoted))
                {
                    break;
                }

                demoted.UnionWith(more);
            }

            return new Fp16Conversion { KeepIoFp32 = KeepIoFp32, KeepFp32Ops = demoted }.Apply(model) + "; matched to ONNX Runtime CPU float16 kernels";
        }

        var graph = model.Graph;
        if (model.Opset < 13)
        {
            throw new BatchwiseException($"--fp16 needs opset 13 or newer; '{model.Name}' uses opset {model.Opset}", "Convert it first with OpsetConversion(13) (`batchwise optimize --fp16` does this by itself).");
        }

        // Element types of every value, as ONNX Runtime computes them.
        var types = ModelProbe.Run(model, SeededInputs.Create(model, 1)).ToDictionary(p => p.Key, p => p.Value.ElementType, StringComparer.Ordinal);
        var inits = GraphSurgery.Initializers(graph);
        foreach (var t in graph.Initializer)
        {
            types[t.Name] = GraphSurgery.TypeOf(t);
        }

        foreach (var i in model.Inputs)
        {
            types[i.Name] = i.ElementType;
        }

        var names = GraphSurgery.Names(graph);

        // Which precision each float value lives in once converted: true = float16.
        var half = new Dictionary<string, bool>(StringComparer.Ordinal);
        foreach (var i in model.Inputs.Where(i => i.ElementType == ElementType.Float))
        {
            half[i.Name] = !KeepIoFp32;
        }

        var casts = new Dictionary<(string, bool), string>();
        var halfInits = new Dictionary<string, string>(StringComparer.Ordinal);
        var newNodes = new List<OnnxProto.NodeProto>();
        int halfNodes = 0, floatNodes = 0;
        var kept = new SortedSet<string>(StringComparer.Ordinal);

        string Want(string value, bool wantHalf)
        {
            if (value.Length == 0 || !types.TryGetValue(value, out var type) || (type != ElementType.Float && type != ElementType.Float16))
            {
                return value;
            }

            if (inits.TryGetValue(value, out var init) && type == ElementType.Float)
            {
                if (!wantHalf)
                {
                    return value;
                }

                if (!halfInits.TryGetValue(value, out var h))
                {
                    h = GraphSurgery.Unique(names, value + "_fp16");
                    graph.Initializer.Add(GraphSurgery.HalfTensor(h, init.Dims, init.ToFloats()));
                    halfInits[value] = h;
                }

                return h;
            }

            var isHalf = half.TryGetValue(value, out var x) ? x : type == ElementType.Float16;
            if (isHalf == wantHalf)
            {
                return value;
            }

            if (!casts.TryGetValue((value, wantHalf), out var cast))
            {
                cast = GraphSurgery.Unique(names, value + (wantHalf ? "_to_fp16" : "_to_fp32"));
                newNodes.Add(GraphSurgery.Node("Cast", GraphSurgery.Unique(names, "cast_" + cast), [value], [cast], GraphSurgery.IntAttr("to", wantHalf ? (long)ElementType.Float16 : (long)ElementType.Float)));
                casts[(value, wantHalf)] = cast;
            }

            return cast;
        }

        foreach (var node in graph.Node.ToList())
        {
            var floatOutputs = node.Output.Where(o => types.TryGetValue(o, out var t) && t == ElementType.Float).ToList();
            var touchesFloat = floatOutputs.Count > 0 || node.Input.Any(i => types.TryGetValue(i, out var t) && t == ElementType.Float);
            if (node.OpType == "Cast")
            {
                // A Cast to float now casts to half; its input may be anything.
                if (GraphSurgery.Int(node, "to", 0) == (long)ElementType.Float)
                {
                    GraphSurgery.SetInt(node, "to", (long)ElementType.Float16);
                    half[node.Output[0]] = true;
                }

                newNodes.Add(node);
                continue;
            }

            var toHalf = touchesFloat && node.Domain.Length == 0 && HalfOps.Contains(node.OpType) && !KeepFp32Ops.Contains(node.OpType);
            if (touchesFloat && !toHalf)
            {
                kept.Add(node.OpType);
                floatNodes++;
            }
            else if (toHalf)
            {
                halfNodes++;
            }

            var fixedInputs = Float32Inputs.TryGetValue(node.OpType, out var f) ? f : [];
            for (var i = 0; i < node.Input.Count; i++)
            {
                node.Input[i] = Want(node.Input[i], toHalf && !fixedInputs.Contains(i));
            }

            foreach (var o in floatOutputs)
            {
                half[o] = toHalf;
            }

            newNodes.Add(node);
        }

        graph.Node.Clear();
        graph.Node.AddRange(newNodes);

        // Graph inputs and outputs.
        foreach (var input in graph.Input.Where(i => !inits.ContainsKey(i.Name) && i.Type?.TensorType?.ElemType == (int)ElementType.Float && !KeepIoFp32))
        {
            input.Type.TensorType.ElemType = (int)ElementType.Float16;
        }

        var producers = GraphSurgery.Producers(graph);
        foreach (var output in graph.Output.Where(o => half.TryGetValue(o.Name, out var h) && h))
        {
            if (!KeepIoFp32)
            {
                output.Type.TensorType.ElemType = (int)ElementType.Float16;
                continue;
            }

            // The producer writes a half value under a new name; a Cast restores the float32 output under the old one.
            var inner = GraphSurgery.Unique(names, output.Name + "_fp16");
            foreach (var n in graph.Node)
            {
                for (var i = 0; i < n.Input.Count; i++)
                {
                    if (n.Input[i] == output.Name)
                    {
                        n.Input[i] = inner;
                    }
                }
            }

            var p = producers[output.Name];
            p.Output[p.Output.IndexOf(output.Name)] = inner;
            graph.Node.Add(GraphSurgery.Node("Cast", GraphSurgery.Unique(names, "cast_" + output.Name), [inner], [output.Name], GraphSurgery.IntAttr("to", (long)ElementType.Float)));
        }

        graph.ValueInfo.Clear();
        GraphSurgery.TopologicalSort(graph);
        new DeadNodeRemoval().Apply(model);
        model.Validate();
        var ortFloat32 = OrtCpuFloat32Ops(model);
        var ortNote = ortFloat32.Count == 0 ? "ONNX Runtime CPU has float16 kernels for all of them" : $"ONNX Runtime CPU has no float16 kernel for {string.Join(", ", ortFloat32)} (runs them in float32 with its own Casts)";
        return $"{ortNote}; {halfNodes} nodes in float16, {floatNodes} kept in float32 ({(kept.Count == 0 ? "none" : string.Join(", ", kept))}), {casts.Count} Casts inserted; inputs/outputs {(KeepIoFp32 ? "float32" : "float16")}";
    }
}
