using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>Parameters and multiply-accumulates of a model at batch 1, from the shapes ONNX Runtime computes.</summary>
/// <param name="Parameters">Learned weights (float initializers of rank 1 or more).</param>
/// <param name="ConvMacs">MACs of Conv and ConvTranspose nodes.</param>
/// <param name="TotalMacs">MACs of Conv, ConvTranspose, Gemm, MatMul and recurrent (LSTM, GRU, RNN) nodes.</param>
/// <param name="SizeBytes">Serialized model size.</param>
public sealed record CostSummary(long Parameters, long ConvMacs, long TotalMacs, long SizeBytes)
{
    /// <summary>Counts a model's parameters and MACs at batch 1 (dynamic non-batch axes at <paramref name="dynamicSize"/>).</summary>
    public static CostSummary Of(OnnxModel model, long dynamicSize = SeededInputs.DefaultDynamicSize)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Of(model, SeededInputs.Create(model, 1, dynamicSize: dynamicSize));
    }

    /// <summary>Counts a model's parameters and MACs at the given input shapes (batch 1: optimize costs both sides at the same shapes).</summary>
    public static CostSummary Of(OnnxModel model, IReadOnlyList<long[]> inputShapes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShapes);
        return Of(model, new Benchmarking.InputGenerator(model, 42).Generate(inputShapes));
    }

    private static CostSummary Of(OnnxModel model, IReadOnlyList<Tensor> inputs)
    {
        var shapes = ModelProbe.Run(model, inputs).ToDictionary(p => p.Key, p => p.Value.Shape, StringComparer.Ordinal);
        for (var i = 0; i < inputs.Count; i++)
        {
            shapes[model.Inputs[i].Name] = inputs[i].Shape;
        }

        foreach (var t in model.Graph.Initializer)
        {
            shapes[t.Name] = [.. t.Dims];
        }

        long conv = 0, total = 0;
        foreach (var n in model.Graph.Node)
        {
            if (!shapes.TryGetValue(n.Output[0], out var y))
            {
                continue;
            }

            var outElements = Tensor.ElementCountOf(y);
            switch (n.OpType)
            {
                case "Conv" when shapes.TryGetValue(n.Input[1], out var w):
                    var macs = outElements * w.Skip(1).Aggregate(1L, (a, b) => a * b);
                    conv += macs;
                    total += macs;
                    break;
                case "ConvTranspose" when shapes.TryGetValue(n.Input[0], out var x) && shapes.TryGetValue(n.Input[1], out var w):
                    // Each input element meets out/group x kernel weights.
                    var transposed = Tensor.ElementCountOf(x) * w.Skip(1).Aggregate(1L, (p, q) => p * q);
                    conv += transposed;
                    total += transposed;
                    break;
                case "LSTM" or "GRU" or "RNN" when shapes.TryGetValue(n.Input[0], out var x) && shapes.TryGetValue(n.Input[1], out var w) && shapes.TryGetValue(n.Input[2], out var r) && x.Length == 3:
                    // Every step of every direction: the gates' input (W) and recurrent (R) matrix-vector products; layout 1 is batch-major.
                    var (steps, batch) = GraphSurgery.Int(n, "layout", 0) == 1 ? (x[1], x[0]) : (x[0], x[1]);
                    total += steps * batch * w[0] * w[1] * (w[2] + r[2]);
                    break;
                case "Gemm" when shapes.TryGetValue(n.Input[0], out var a):
                    total += outElements * (GraphSurgery.Int(n, "transA", 0) == 1 ? a[0] : a[^1]);
                    break;
                case "MatMul" or "MatMulInteger" when shapes.TryGetValue(n.Input[0], out var a):
                    total += outElements * a[^1];
                    break;
            }
        }

        return new CostSummary(CountParameters(model), conv, total, model.Proto.CalculateSize());
    }

    /// <summary>
    /// Learned weights whatever their precision and wherever they are stored: float and quantized initializers of rank 1
    /// or more and the tensors of Constant nodes (exporters that keep weights in Constant nodes), without BatchNormalization
    /// statistics, quantization scales and zero points, Resize's roi and scales, or int64 shapes and indices.
    /// </summary>
    public static long CountParameters(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph;
        // Dynamic int8's weight scales meet the activation's run-time scale in a Mul: scales, not weights.
        var runTimeScales = graph.Node.Where(n => n.OpType == "DynamicQuantizeLinear").Select(n => n.Output[1]).ToHashSet(StringComparer.Ordinal);
        var excluded = graph.Node.Where(n => n.OpType == "BatchNormalization").SelectMany(n => n.Input.Skip(3))
            .Concat(graph.Node.Where(n => n.OpType is "QuantizeLinear" or "DequantizeLinear" or "MatMulInteger").SelectMany(n => n.OpType == "MatMulInteger" ? n.Input.Skip(2) : n.Input.Skip(1)))
            .Concat(graph.Node.Where(n => n.OpType == "Mul" && n.Input.Any(runTimeScales.Contains)).SelectMany(n => n.Input))
            .Concat(graph.Node.Where(n => n.OpType is "Resize" or "Upsample").SelectMany(n => n.Input.Skip(1)))
            .ToHashSet(StringComparer.Ordinal);

        // Weights are floats, or int8/uint8 (quantized) and int32 (quantized biases); int64 tensors are shapes, axes and indices.
        static bool IsWeight(global::Onnx.TensorProto t) => t.Dims.Count > 0 && (((ElementType)t.DataType).IsFloatingPoint() || (ElementType)t.DataType is ElementType.Int8 or ElementType.UInt8 or ElementType.Int32);
        var initializers = graph.Initializer.Where(t => IsWeight(t) && !excluded.Contains(t.Name)).Sum(t => t.ElementCount());
        var constants = graph.Node.Where(n => n.OpType == "Constant" && n.Domain.Length == 0 && !excluded.Contains(n.Output[0]))
            .Select(n => n.Attribute.FirstOrDefault(a => a.Name == "value")?.T)
            .OfType<global::Onnx.TensorProto>()
            .Where(IsWeight)
            .Sum(t => t.ElementCount());
        return initializers + constants;
    }
}
