using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Analysis;

/// <summary>
/// Every layer's work for one model at one input size, at any batch size: FLOPs, bytes and GEMM M/N/K
/// per layer, scaled by the batch (activations and N grow with it, weights do not).
/// </summary>
public sealed class ModelWork
{
    private readonly IReadOnlyList<LayerTemplate> _layers;

    private ModelWork(string modelName, string inputDescription, IReadOnlyList<LayerTemplate> layers)
    {
        ModelName = modelName;
        InputDescription = inputDescription;
        _layers = layers;
    }

    /// <summary>The model's name.</summary>
    public string ModelName { get; }

    /// <summary>Input shapes at batch 1, for reports.</summary>
    public string InputDescription { get; }

    /// <summary>Number of layers (graph nodes).</summary>
    public int LayerCount => _layers.Count;

    /// <summary>One layer at batch 1: fixed bytes (weights) and per-sample FLOPs, activation bytes and N.</summary>
    internal sealed record LayerTemplate(string Name, string OpType, double FlopsPerSample, double ActivationBytesPerSample, double WeightBytes, long? M, long? NPerSample, long? K);

    /// <summary>Every layer's work at <paramref name="batchSize"/>.</summary>
    public IReadOnlyList<LayerWork> At(int batchSize) => _layers
        .Select(l => new LayerWork(l.Name, l.OpType, l.FlopsPerSample * batchSize, l.WeightBytes + (l.ActivationBytesPerSample * batchSize), l.M, l.NPerSample * batchSize, l.K))
        .ToList();

    /// <summary>Builds from per-layer work at batch 1 and the weights each layer reads (for tests and other cost models).</summary>
    public static ModelWork FromLayers(string modelName, string inputDescription, IEnumerable<(LayerWork AtBatchOne, double WeightBytes)> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        return new ModelWork(modelName, inputDescription, layers
            .Select(l => new LayerTemplate(l.AtBatchOne.Name, l.AtBatchOne.OpType, l.AtBatchOne.Flops, Math.Max(0, l.AtBatchOne.Bytes - l.WeightBytes), l.WeightBytes, l.AtBatchOne.GemmM, l.AtBatchOne.GemmN, l.AtBatchOne.GemmK))
            .ToList());
    }

    /// <summary>
    /// Analyses a model at an input size. Tensor shapes come from one batch-1 run through ONNX Runtime with
    /// every intermediate tensor exposed as an output (exact for any model ORT runs); FLOPs and bytes per
    /// operator follow the usual conventions (2 FLOPs per multiply-add; each input and output read or
    /// written once).
    /// </summary>
    public static ModelWork Analyze(OnnxModel model, InputSize? size)
    {
        ArgumentNullException.ThrowIfNull(model);
        var inputs = InputShapes.Zeros(model, 1, size);
        var shapes = ProbeShapes(model, inputs);
        var initializers = model.Graph.Initializer.ToDictionary(t => t.Name, t => (Shape: t.Dims.ToArray(), Type: (ElementType)t.DataType), StringComparer.Ordinal);
        var layers = new List<LayerTemplate>();
        foreach (var node in model.Graph.Node)
        {
            if (node.OpType is "Constant")
            {
                continue;
            }

            double weightBytes = 0, activationBytes = 0;
            var ins = new List<long[]?>();
            foreach (var name in node.Input)
            {
                if (string.IsNullOrEmpty(name))
                {
                    ins.Add(null);
                }
                else if (initializers.TryGetValue(name, out var w))
                {
                    weightBytes += Engines.Tensor.ElementCountOf(w.Shape) * SafeSize(w.Type);
                    ins.Add(w.Shape);
                }
                else if (shapes.TryGetValue(name, out var s))
                {
                    activationBytes += Engines.Tensor.ElementCountOf(s.Shape) * SafeSize(s.Type);
                    ins.Add(s.Shape);
                }
                else
                {
                    ins.Add(null);
                }
            }

            var outs = node.Output.Where(shapes.ContainsKey).Select(o => shapes[o]).ToList();
            activationBytes += outs.Sum(o => Engines.Tensor.ElementCountOf(o.Shape) * SafeSize(o.Type));
            var outElements = outs.Count > 0 ? Engines.Tensor.ElementCountOf(outs[0].Shape) : 0;
            var (flops, m, n, k) = FlopsOf(node, ins, outs.Count > 0 ? outs[0].Shape : null, outElements);
            layers.Add(new LayerTemplate(node.Name.Length > 0 ? node.Name : $"{node.OpType}_{layers.Count}", node.OpType, flops, activationBytes, weightBytes, m, n, k));
        }

        return new ModelWork(model.Name, InputShapes.Describe(model, size), layers);
    }

    private static (double Flops, long? M, long? N, long? K) FlopsOf(OnnxProto.NodeProto node, List<long[]?> ins, long[]? output, long outElements)
    {
        switch (node.OpType)
        {
            case "Conv" or "ConvTranspose" when ins.Count >= 2 && ins[1] is { Length: >= 3 } w && output is { Length: >= 3 }:
                {
                    // Implicit GEMM: M = output channels, N = batch x spatial outputs, K = in-channels/group x kernel.
                    var kernel = w.Skip(2).Aggregate(1L, (a, b) => a * b);
                    long m = output[1], n = outElements / output[1], k = w[1] * kernel;
                    var bias = ins.Count > 2 && ins[2] is not null ? outElements : 0;
                    if (node.OpType == "ConvTranspose")
                    {
                        // Each input element scatters into Cout/group x kernel outputs.
                        var input = ins[0] is { } pooled ? Engines.Tensor.ElementCountOf(pooled) : 0;
                        return ((2.0 * input * w[1] * kernel) + bias, w[1], input / Math.Max(1, w[0]), w[0]);
                    }

                    return ((2.0 * m * n * k) + bias, m, n, k);
                }

            case "MatMul" or "Gemm" when ins.Count >= 2 && ins[0] is { Length: >= 1 } a && ins[1] is { Length: >= 1 } && output is { Length: >= 1 }:
                {
                    var transA = node.OpType == "Gemm" && node.Attribute.Any(at => at.Name == "transA" && at.I != 0);
                    var k = a.Length == 1 ? a[0] : transA ? a[^2] : a[^1];
                    var m = output[^1];
                    var n = outElements / Math.Max(1, m);
                    var bias = node.OpType == "Gemm" && ins.Count > 2 && ins[2] is not null ? outElements : 0;
                    return ((2.0 * m * n * k) + bias, m, n, k);
                }

            case "MaxPool" or "AveragePool" or "GlobalAveragePool" or "GlobalMaxPool" or "ReduceMean" or "ReduceSum" or "ReduceMax":
                return (ins.Count > 0 && ins[0] is { } x ? Engines.Tensor.ElementCountOf(x) : outElements, null, null, null);
            case "Softmax" or "LayerNormalization" or "BatchNormalization" or "InstanceNormalization":
                return (5.0 * outElements, null, null, null);
            case "Reshape" or "Flatten" or "Squeeze" or "Unsqueeze" or "Shape" or "Identity" or "Transpose" or "Concat" or "Split" or "Slice" or "Gather" or "Cast" or "Expand" or "Resize":
                return (0, null, null, null);
            default:
                return (outElements, null, null, null);
        }
    }

    private static int SafeSize(ElementType t)
    {
        try
        {
            return t.SizeOf();
        }
        catch (BatchwiseException)
        {
            return 4;
        }
    }

    private static Dictionary<string, (long[] Shape, ElementType Type)> ProbeShapes(OnnxModel model, IReadOnlyList<Engines.Tensor> inputs)
    {
        var proto = model.Proto.Clone();
        var existing = proto.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var node in proto.Graph.Node)
        {
            foreach (var o in node.Output.Where(o => o.Length > 0 && existing.Add(o)))
            {
                proto.Graph.Output.Add(new OnnxProto.ValueInfoProto { Name = o });
            }
        }

        var probe = OnnxModel.FromProto(proto, model.Name);
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(probe.ToBytes(), new Microsoft.ML.OnnxRuntime.SessionOptions { GraphOptimizationLevel = Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_DISABLE_ALL });
        var handles = inputs.Select(t => System.Runtime.InteropServices.GCHandle.Alloc(t.Data, System.Runtime.InteropServices.GCHandleType.Pinned)).ToList();
        var values = inputs.Select((t, i) => OrtEngineSession.Wrap(t, handles[i].AddrOfPinnedObject())).ToList();
        try
        {
            var outputNames = session.OutputNames.ToList();
            using var runOptions = new Microsoft.ML.OnnxRuntime.RunOptions();
            using var results = session.Run(runOptions, model.Inputs.Select(i => i.Name).ToList(), values, outputNames);
            var shapes = new Dictionary<string, (long[] Shape, ElementType Type)>(StringComparer.Ordinal);
            for (var i = 0; i < outputNames.Count; i++)
            {
                if (results[i].IsTensor)
                {
                    var info = results[i].GetTensorTypeAndShape();
                    shapes[outputNames[i]] = (info.Shape, (ElementType)(int)info.ElementDataType);
                }
            }

            for (var i = 0; i < inputs.Count; i++)
            {
                shapes[model.Inputs[i].Name] = (inputs[i].Shape, inputs[i].ElementType);
            }

            return shapes;
        }
        catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException e)
        {
            throw new BatchwiseException($"Cannot infer the shapes of '{model.Name}' at {Engines.Tensor.ShapeText(inputs[0].Shape)}: {OrtEngine.FirstLine(e.Message)}", "Check --input-size matches what the model accepts.", e);
        }
        finally
        {
            values.ForEach(v => v.Dispose());
            handles.ForEach(h => h.Free());
        }
    }
}
