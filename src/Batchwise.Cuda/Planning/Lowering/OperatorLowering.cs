using System.Collections.Frozen;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Emits a node's device steps (or views) into the plan being built.</summary>
internal delegate void LowerFunction(GraphCompiler compiler, OnnxProto.NodeProto node, PlanValue?[] inputs, NodeAttributes attributes);

/// <summary>
/// Says what of a node (an attribute value, an optional output) the lowering cannot execute: a phrase for "does not
/// support ...", or null when it can run the node. Checked for every node when a model loads.
/// </summary>
internal delegate string? SupportCheck(OnnxProto.NodeProto node, NodeAttributes attributes, long opset);

/// <summary>How a lowering wants its inputs laid out before it runs.</summary>
internal enum InputLayout
{
    /// <summary>Row-major (NCHW) values in memory: channels-last values get transposed copies.</summary>
    Nchw,

    /// <summary>In memory in whatever order they are (the lowering reads channels-last values as they are).</summary>
    AsStored,

    /// <summary>As they are, pending elementwise chains included (elementwise operators extend them; Concat writes them into place).</summary>
    Pending,
}

/// <summary>One operator's CUDA lowering: the code that emits its steps, the input layout it wants, and what it refuses.</summary>
internal sealed record OperatorLowering(LowerFunction Lower, InputLayout Layout = InputLayout.Nchw, SupportCheck? Check = null);

/// <summary>
/// The lowering table: every operator the cuda engine executes, registered by the group file that lowers it
/// (Lowering/Convolution.cs, Pooling.cs, ...). The planner dispatches through it and <see cref="OperatorSupport"/>
/// derives the supported set from it, so an operator is supported exactly when a group registers it.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>Every lowered default-domain operator by name.</summary>
    public static FrozenDictionary<string, OperatorLowering> Lowerings { get; } = BuildLowerings();

    private static FrozenDictionary<string, OperatorLowering> BuildLowerings()
    {
        var all = new Dictionary<string, OperatorLowering>(StringComparer.Ordinal);
        foreach (var (op, lowering) in ViewLowerings()
            .Concat(ElementwiseLowerings())
            .Concat(ConvolutionLowerings())
            .Concat(PoolingLowerings())
            .Concat(NormalizationLowerings())
            .Concat(ReductionLowerings())
            .Concat(MatrixProductLowerings())
            .Concat(DataMovementLowerings())
            .Concat(IndexingLowerings())
            .Concat(QuantizationLowerings())
            .Concat(RecurrentLowerings()))
        {
            if (!all.TryAdd(op, lowering))
            {
                throw new InvalidOperationException($"operator {op} has two CUDA lowerings");
            }
        }

        return all.ToFrozenDictionary(StringComparer.Ordinal);
    }

    private void Lower(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        if (!Lowerings.TryGetValue(node.OpType, out var lowering))
        {
            throw new BatchwiseException($"The cuda engine does not support operator {node.OpType}", "Use --engine ort.");
        }

        if (node.OpType is "Conv" or "MatMul" or "Gemm" && TryLowerInt8(node, ins, attrs))
        {
            return; // int8 on tensor cores (Int8Convolution.cs)
        }

        if (TryLowerView(node, ins, attrs))
        {
            return;
        }

        // Relabelling operators keep a strided view a view where its strides allow (View), instead of a copy first.
        var relabels = node.OpType is "Reshape" or "Flatten" or "Squeeze" or "Unsqueeze";
        ins = lowering.Layout switch
        {
            InputLayout.Nchw => ins.Select(v => v is null || (relabels && v.ViewStrides is not null) ? v : Nchw(v)).ToArray(),
            InputLayout.AsStored => ins.Select(v => v is null ? null : Materialize(v)).ToArray(),
            _ => ins,
        };
        lowering.Lower(this, node, ins, attrs);
    }

    private static HostTensor Const(PlanValue? v, string what) =>
        v?.Constant ?? throw new BatchwiseException($"its '{what}' input must be known when the plan is built (a constant or computed from shapes)", "Make the input a constant or initializer.");

    private static void RequireFloat(PlanValue v)
    {
        if (v.Type is not ElementType.Float and not ElementType.Float16)
        {
            throw new BatchwiseException($"{v.Type.ShortName()} input is not supported (float32 only)", "Use float32 tensors.");
        }
    }
}
