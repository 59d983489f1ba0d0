using System.Collections.Frozen;

namespace Batchwise.Operators;

/// <summary>
/// The one table of operators: every other table (shape inference, cost model, constant folding, an engine's
/// attribute checks and host-valued inputs) is derived from these records. Adding an operator touches one place:
/// its record in the group file of its kind.
/// </summary>
public static class OperatorRegistry
{
    /// <summary>The domain name of Microsoft's contrib operators (ONNX Runtime).</summary>
    public const string Microsoft = "com.microsoft";

    private static readonly FrozenDictionary<(string Domain, string OpType), OperatorSchema> ByName = Build();

    /// <summary>Every operator, in the order the group files define them.</summary>
    public static IReadOnlyList<OperatorSchema> All { get; } = [.. ByName.Values.OrderBy(s => s.Domain, StringComparer.Ordinal).ThenBy(s => s.OpType, StringComparer.Ordinal)];

    /// <summary>The operator at <paramref name="opset"/> of its domain, or null when unknown or not defined at that opset.</summary>
    public static OperatorSchema? Find(string? domain, string opType, long opset) =>
        FindAny(domain, opType) is { } s && s.ExistsAt(opset) ? s : null;

    /// <summary>The operator whatever the opset, or null when unknown.</summary>
    public static OperatorSchema? FindAny(string? domain, string opType) => ByName.GetValueOrDefault((NormalizeDomain(domain), opType));

    /// <summary>The registry's spelling of a domain: empty for the default ONNX domain ("" or "ai.onnx").</summary>
    public static string NormalizeDomain(string? domain) => domain is null or "" or "ai.onnx" ? string.Empty : domain;

    private static FrozenDictionary<(string, string), OperatorSchema> Build()
    {
        var all = new Dictionary<(string, string), OperatorSchema>();
        foreach (var s in ElementwiseOperators.Records()
            .Concat(ShapeOperators.Records())
            .Concat(DataMovementOperators.Records())
            .Concat(ConvolutionOperators.Records())
            .Concat(MatrixOperators.Records())
            .Concat(NormalizationOperators.Records())
            .Concat(ReductionOperators.Records())
            .Concat(IndexingOperators.Records())
            .Concat(QuantizationOperators.Records()))
        {
            if (!all.TryAdd((s.Domain, s.OpType), s))
            {
                throw new InvalidOperationException($"operator {s.QualifiedName} is defined twice");
            }
        }

        return all.ToFrozenDictionary();
    }

    /// <summary>Starts a record of the default domain.</summary>
    internal static OperatorSchema Define(string opType, int[] versions) => new(string.Empty, opType, versions);

    /// <summary>Starts a record of another domain.</summary>
    internal static OperatorSchema Define(string domain, string opType, int[] versions) => new(domain, opType, versions);
}
