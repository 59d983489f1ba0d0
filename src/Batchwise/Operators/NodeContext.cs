using OnnxProto = Onnx;

namespace Batchwise.Operators;

/// <summary>
/// What shape inference (<see cref="InferenceContext"/>) and host evaluation (<see cref="EvaluationContext"/>) both see of
/// one node: the node, its schema at the model's opset, attributes with the registry's defaults, and how errors name it.
/// </summary>
internal abstract class NodeContext
{
    protected NodeContext(OnnxProto.NodeProto node, OperatorSchema schema, long opset)
    {
        Node = node;
        Schema = schema;
        Opset = opset;
        Attributes = new NodeAttributes(node, schema, opset);
    }

    public OnnxProto.NodeProto Node { get; }

    public OperatorSchema Schema { get; }

    /// <summary>The opset of the node's domain.</summary>
    public long Opset { get; }

    public NodeAttributes Attributes { get; }

    public string OpType => Node.OpType;

    public int InputCount => Node.Input.Count;

    /// <summary>Number of outputs the node declares (trailing optional ones may be empty names).</summary>
    public int OutputCount => Node.Output.Count;

    public string Where => string.IsNullOrEmpty(Node.Name) ? Node.OpType : $"{Node.OpType} node '{Node.Name}'";

    public bool HasOutput(int i) => i < Node.Output.Count && Node.Output[i].Length > 0;

    public long Int(string name) => Attributes.Int(name);

    public long Int(string name, long fallback) => Attributes.Int(name, fallback);

    public string String(string name) => Attributes.String(name);

    public long[]? Ints(string name) => Attributes.IntsOrDefault(name);

    public bool HasAttribute(string name) => Attributes.Has(name);

    /// <summary>The error of this node and stage, naming the node.</summary>
    public abstract BatchwiseException Fail(string what);

    /// <summary>A possibly negative axis made non-negative; out of range for <paramref name="rank"/> fails naming the node.</summary>
    public int Axis(long axis, int rank) => axis < -rank || axis >= Math.Max(rank, 1)
        ? throw Fail($"axis {axis} is out of range for rank {rank}")
        : (int)(axis < 0 ? axis + rank : axis);
}
