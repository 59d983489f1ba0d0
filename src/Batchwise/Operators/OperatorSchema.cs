using Batchwise.Analysis;

namespace Batchwise.Operators;

/// <summary>Infers a node's output types and shapes (symbolic dimensions allowed) from its inputs.</summary>
internal delegate SymbolicValue[] ShapeFunction(InferenceContext node);

/// <summary>Computes a node's outputs on the host from known input values (the reference implementation).</summary>
internal delegate HostTensor[] HostFunction(EvaluationContext node);

/// <summary>Counts a node's FLOPs (and its GEMM view) at concrete shapes; bytes are counted for every operator alike.</summary>
internal delegate OperatorWork CostFunction(CostContext node);

/// <summary>The arithmetic of one node: FLOPs, and the GEMM view for convolutions and matrix products.</summary>
internal readonly record struct OperatorWork(long Flops, GemmShape? Gemm = null);

/// <summary>
/// Everything Batchwise knows about one operator: domain, the opsets in which its signature changed, attributes with
/// types and defaults per opset, the inputs whose values (not only shapes) decide output shapes, symbolic shape
/// inference, a host reference implementation (constant folding), and cost. Engine lowerings are kept by each engine,
/// keyed by the same names.
/// </summary>
public sealed class OperatorSchema
{
    private readonly List<AttributeSpec> _attributes = [];
    private readonly List<(int Since, int Until, int[] Positions)> _hostInputs = [];

    internal OperatorSchema(string domain, string opType, int[] versions)
    {
        Domain = domain;
        OpType = opType;
        Versions = versions;
    }

    /// <summary>The operator's domain: empty for the default ONNX domain (ai.onnx), else e.g. com.microsoft.</summary>
    public string Domain { get; }

    /// <summary>The operator's name (op_type).</summary>
    public string OpType { get; }

    /// <summary>Domain-qualified name for messages (Conv, com.microsoft.FusedConv).</summary>
    public string QualifiedName => Domain.Length == 0 ? OpType : $"{Domain}.{OpType}";

    /// <summary>The opset versions in which the operator was introduced or its signature changed, ascending.</summary>
    public IReadOnlyList<int> Versions { get; }

    /// <summary>The opset from which the operator no longer exists (deprecated), or null.</summary>
    public int? RemovedIn { get; private set; }

    /// <summary>Every attribute of every version.</summary>
    public IReadOnlyList<AttributeSpec> Attributes => _attributes;

    /// <summary>What kind of work the operator does (what bounds it).</summary>
    public OpCategory Category { get; private set; } = OpCategory.Elementwise;

    /// <summary>A limitation worth saying in reports (e.g. a data-dependent output shape), or null.</summary>
    public string? Note { get; private set; }

    /// <summary>True when shape inference is implemented.</summary>
    public bool HasShapeInference => Infer is not null;

    /// <summary>True when the host reference implementation exists (the operator folds when its inputs are known).</summary>
    public bool HasHostEvaluation => Evaluate is not null;

    /// <summary>True when the cost model counts the operator's FLOPs.</summary>
    public bool HasCost => Cost is not null;

    /// <summary>True when the output shape depends on input values that are not host inputs (NonZero): inference gives a symbolic dimension.</summary>
    public bool HasDataDependentShape { get; private set; }

    /// <summary>True when the outputs depend only on the inputs' shapes, not their values (Shape, Size).</summary>
    public bool ReadsOnlyShapes { get; private set; }

    internal ShapeFunction? Infer { get; private set; }

    internal HostFunction? Evaluate { get; private set; }

    internal CostFunction? Cost { get; private set; }

    /// <summary>True when host evaluation is linear in the elements (views, casts, elementwise math), so it folds eagerly even for large constants.</summary>
    internal bool FoldsEagerly { get; private set; }

    /// <summary>True when the operator exists at <paramref name="opset"/> of its domain.</summary>
    public bool ExistsAt(long opset) => opset >= Versions[0] && (RemovedIn is null || opset < RemovedIn);

    /// <summary>The version in effect at <paramref name="opset"/> (the largest since-version not above it), or null.</summary>
    public int? VersionAt(long opset) => ExistsAt(opset) ? Versions.Last(v => v <= opset) : null;

    /// <summary>The attributes the operator has at <paramref name="opset"/>, with that opset's defaults.</summary>
    public IReadOnlyList<AttributeSpec> AttributesAt(long opset) => [.. _attributes.Where(a => a.AppliesAt(opset))];

    /// <summary>Input positions whose values must be known on the host at <paramref name="opset"/> (Reshape's shape, Slice's starts...).</summary>
    public IReadOnlyList<int> HostInputsAt(long opset) => [.. _hostInputs.Where(h => opset >= h.Since && opset <= h.Until).SelectMany(h => h.Positions).Distinct().Order()];

    /// <inheritdoc/>
    public override string ToString() => $"{QualifiedName} (opsets {string.Join(", ", Versions)}{(RemovedIn is { } r ? $"; removed in {r}" : string.Empty)})";

    // ---- fluent definition (used only while the registry is built) ----

    internal OperatorSchema WithAttributes(params AttributeSpec[] attributes)
    {
        _attributes.AddRange(attributes);
        return this;
    }

    internal OperatorSchema Removed(int opset)
    {
        RemovedIn = opset;
        return this;
    }

    /// <summary>Inputs at <paramref name="positions"/> are host-valued from opset <paramref name="since"/> to <paramref name="until"/>.</summary>
    internal OperatorSchema HostInputs(int[] positions, int since, int until = int.MaxValue)
    {
        _hostInputs.Add((since, until, positions));
        return this;
    }

    internal OperatorSchema Shape(ShapeFunction infer)
    {
        Infer = infer;
        return this;
    }

    internal OperatorSchema Host(HostFunction evaluate, bool eager = true)
    {
        Evaluate = evaluate;
        FoldsEagerly = eager;
        return this;
    }

    internal OperatorSchema Costs(OpCategory category, CostFunction cost)
    {
        Category = category;
        Cost = cost;
        return this;
    }

    internal OperatorSchema DependsOnlyOnShapes()
    {
        ReadsOnlyShapes = true;
        return this;
    }

    internal OperatorSchema Described(string note)
    {
        Note = note;
        return this;
    }

    internal OperatorSchema DataDependentShape(string note)
    {
        HasDataDependentShape = true;
        Note = note;
        return this;
    }
}
