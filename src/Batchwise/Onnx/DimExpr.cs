using System.Globalization;

namespace Batchwise.Onnx;

/// <summary>
/// A dimension during shape inference: a coefficient times a product of symbols (2*batch, batch*seq), so that
/// Reshape's -1 and Flatten stay exact with a symbolic batch. Sums of different symbols become one opaque symbol.
/// </summary>
internal readonly record struct DimExpr(long Coefficient, string Symbols)
{
    // Symbols are kept sorted and joined by a character that does not occur in dimension names.
    private const char Separator = '\u00b7';

    public bool IsConcrete => Symbols.Length == 0;

    public long Value => IsConcrete ? Coefficient : throw new InvalidOperationException($"{this} is symbolic");

    public static DimExpr Of(long value) => new(value, string.Empty);

    public static DimExpr Symbol(string name) => new(1, name.Replace(Separator, '_'));

    public static DimExpr FromDim(Dim d, IReadOnlyDictionary<string, long> values, string fallback) =>
        d.Value is { } v ? Of(v)
        : !string.IsNullOrEmpty(d.Symbol) && values.TryGetValue(d.Symbol, out var bound) ? Of(bound)
        : Symbol(string.IsNullOrEmpty(d.Symbol) ? fallback : d.Symbol);

    public static DimExpr operator *(DimExpr a, DimExpr b)
    {
        if ((a.IsConcrete && a.Coefficient == 0) || (b.IsConcrete && b.Coefficient == 0))
        {
            return Of(0);
        }

        var symbols = a.SymbolList.Concat(b.SymbolList).Order(StringComparer.Ordinal);
        return new(checked(a.Coefficient * b.Coefficient), string.Join(Separator, symbols));
    }

    public static DimExpr operator +(DimExpr a, DimExpr b) =>
        a.Symbols == b.Symbols ? Normalise(checked(a.Coefficient + b.Coefficient), a.Symbols)
        : a.IsConcrete && a.Coefficient == 0 ? b
        : b.IsConcrete && b.Coefficient == 0 ? a
        : Symbol($"({a}+{b})");

    public static DimExpr operator -(DimExpr a, DimExpr b) =>
        a.Symbols == b.Symbols ? Normalise(checked(a.Coefficient - b.Coefficient), a.Symbols)
        : b.IsConcrete && b.Coefficient == 0 ? a
        : Symbol($"({a}-{b})");

    /// <summary>Exact division (a / b), or an opaque symbol when b does not divide a.</summary>
    public DimExpr DivideBy(DimExpr b)
    {
        if (b.Coefficient != 0 && Coefficient % b.Coefficient == 0)
        {
            var remaining = SymbolList.ToList();
            if (b.SymbolList.All(remaining.Remove))
            {
                return Normalise(Coefficient / b.Coefficient, string.Join(Separator, remaining));
            }
        }

        return IsConcrete && b.IsConcrete && b.Coefficient != 0 ? Of(Coefficient / b.Coefficient) : Symbol($"({this}/{b})");
    }

    public DimExpr FloorDivide(DimExpr b) => IsConcrete && b.IsConcrete ? Of(Math.DivRem(Coefficient, b.Coefficient).Quotient) : DivideBy(b);

    public Dim ToDim() => IsConcrete ? Dim.Fixed(Coefficient) : Dim.Symbolic(ToString());

    public override string ToString() =>
        IsConcrete ? Coefficient.ToString(CultureInfo.InvariantCulture)
        : (Coefficient == 1 ? string.Empty : Coefficient.ToString(CultureInfo.InvariantCulture) + "*") + Symbols.Replace(Separator, '*');

    private IEnumerable<string> SymbolList => IsConcrete ? [] : Symbols.Split(Separator);

    private static DimExpr Normalise(long coefficient, string symbols) => coefficient == 0 ? Of(0) : new(coefficient, symbols);
}
