namespace Batchwise.Operators;

/// <summary>
/// A parsed Einsum equation: each operand's labels (an ellipsis expanded to one label per broadcast dimension,
/// right-aligned across operands) and the output's labels (explicit after "->", or implicit: the ellipsis
/// dimensions, then the letters used once, lowercase before uppercase as ONNX Runtime orders them).
/// Letters are labels 'a'..'z', 'A'..'Z'; ellipsis dimensions are labels from <see cref="EllipsisBase"/> up.
/// </summary>
internal sealed class EinsumEquation
{
    /// <summary>The first label of the ellipsis dimensions (outside the letters).</summary>
    public const int EllipsisBase = 1000;

    private EinsumEquation(int[][] inputs, int[] output)
    {
        Inputs = inputs;
        Output = output;
    }

    /// <summary>Each operand's labels, one per dimension.</summary>
    public int[][] Inputs { get; }

    /// <summary>The output's labels, one per dimension.</summary>
    public int[] Output { get; }

    /// <summary>Every distinct label: the output's first, then the summed ones in order of appearance.</summary>
    public int[] AllLabels => [.. Output.Concat(Inputs.SelectMany(i => i)).Distinct()];

    /// <summary>Labels summed over (in no output dimension).</summary>
    public int[] Summed => [.. AllLabels.Where(l => !Output.Contains(l))];

    /// <summary>Parses <paramref name="equation"/> for operands of the given ranks; <paramref name="fail"/> builds the error naming the node.</summary>
    public static EinsumEquation Parse(string equation, int[] ranks, Func<string, Exception> fail)
    {
        var text = equation.Replace(" ", string.Empty, StringComparison.Ordinal);
        var arrow = text.IndexOf("->", StringComparison.Ordinal);
        var left = arrow < 0 ? text : text[..arrow];
        var terms = left.Split(',');
        if (terms.Length != ranks.Length)
        {
            throw fail($"equation '{equation}' names {terms.Length} operand(s), the node has {ranks.Length}");
        }

        // The ellipsis covers the dimensions the letters do not; its rank is the largest over the operands.
        var ellipsisRanks = new int[terms.Length];
        for (var i = 0; i < terms.Length; i++)
        {
            var letters = Letters(terms[i], equation, fail);
            var hasEllipsis = terms[i].Contains("...", StringComparison.Ordinal);
            ellipsisRanks[i] = ranks[i] - letters.Length;
            if (hasEllipsis ? ellipsisRanks[i] < 0 : ellipsisRanks[i] != 0)
            {
                throw fail($"operand {i} has rank {ranks[i]}, equation '{equation}' gives it {letters.Length} letter(s){(hasEllipsis ? " and an ellipsis" : string.Empty)}");
            }
        }

        var ellipsisRank = ellipsisRanks.DefaultIfEmpty(0).Max();
        int[] Expand(string term, int rank)
        {
            var labels = new List<int>();
            for (var k = 0; k < term.Length; k++)
            {
                if (term[k] == '.')
                {
                    labels.AddRange(Enumerable.Range(EllipsisBase + ellipsisRank - rank, rank));
                    k += 2;
                }
                else
                {
                    labels.Add(term[k]);
                }
            }

            return [.. labels];
        }

        var inputs = terms.Select((t, i) => Expand(t, ellipsisRanks[i])).ToArray();
        int[] output;
        if (arrow >= 0)
        {
            var right = text[(arrow + 2)..];
            var letters = Letters(right, equation, fail);
            if (letters.Distinct().Count() != letters.Length)
            {
                throw fail($"equation '{equation}' repeats a letter in its output");
            }

            foreach (var l in letters.Where(l => !inputs.Any(i => i.Contains(l))))
            {
                throw fail($"equation '{equation}' has output letter '{l}' that no operand has");
            }

            output = Expand(right, right.Contains("...", StringComparison.Ordinal) ? ellipsisRank : 0);
            if (!right.Contains("...", StringComparison.Ordinal) && ellipsisRank > 0)
            {
                throw fail($"equation '{equation}' drops the ellipsis dimensions from its output");
            }
        }
        else
        {
            var counts = inputs.SelectMany(i => i).Where(l => l < EllipsisBase).GroupBy(l => l).ToDictionary(g => g.Key, g => g.Count());
            output = [.. Enumerable.Range(EllipsisBase, ellipsisRank), .. counts.Where(p => p.Value == 1).Select(p => p.Key).OrderBy(l => char.IsLower((char)l) ? 0 : 1).ThenBy(l => l)];
        }

        return new EinsumEquation(inputs, output);
    }

    /// <summary>The size of every label, from the operands' shapes (1 broadcasts); throws when two sizes differ.</summary>
    public Dictionary<int, T> Sizes<T>(IReadOnlyList<T[]> shapes, Func<T, bool> isOne, Func<T, T, bool> conflict, Func<string, Exception> fail)
    {
        var sizes = new Dictionary<int, T>();
        for (var i = 0; i < Inputs.Length; i++)
        {
            for (var k = 0; k < Inputs[i].Length; k++)
            {
                var (label, dim) = (Inputs[i][k], shapes[i][k]);
                if (!sizes.TryGetValue(label, out var known) || isOne(known))
                {
                    sizes[label] = dim;
                }
                else if (!isOne(dim) && conflict(known, dim))
                {
                    throw fail($"label {Name(label)} has sizes {known} and {dim}");
                }
            }
        }

        return sizes;
    }

    /// <summary>A label as the equation writes it (a letter, or ellipsis dimension k).</summary>
    public static string Name(int label) => label >= EllipsisBase ? $"'...'[{label - EllipsisBase}]" : $"'{(char)label}'";

    private static char[] Letters(string term, string equation, Func<string, Exception> fail)
    {
        var withoutEllipsis = term.Replace("...", string.Empty, StringComparison.Ordinal);
        if (term.Length - withoutEllipsis.Length > 3)
        {
            throw fail($"equation '{equation}' has more than one ellipsis in a term");
        }

        foreach (var ch in withoutEllipsis.Where(ch => !char.IsAsciiLetter(ch)))
        {
            throw fail($"equation '{equation}' has '{ch}', which is not a letter or an ellipsis");
        }

        return withoutEllipsis.ToCharArray();
    }
}
