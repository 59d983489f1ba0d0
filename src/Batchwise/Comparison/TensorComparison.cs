using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Comparison;

/// <summary>How close two outputs must be, with numpy.allclose semantics: |a - b| ≤ Atol + Rtol·|b| for every element (b the reference).</summary>
/// <param name="Rtol">Relative tolerance.</param>
/// <param name="Atol">Absolute tolerance.</param>
public sealed record Tolerance(double Rtol, double Atol)
{
    /// <summary>ONNX's backend-test defaults: rtol 1e-3, atol 1e-7.</summary>
    public static Tolerance OnnxBackendTest { get; } = new(1e-3, 1e-7);

    /// <summary>Checks the values are usable (non-negative, finite).</summary>
    public Tolerance Validated()
    {
        if (!(Rtol >= 0) || !(Atol >= 0) || double.IsInfinity(Rtol) || double.IsInfinity(Atol))
        {
            throw new BatchwiseException($"Tolerances must be finite and non-negative (rtol {Rtol}, atol {Atol})", "Pass e.g. --rtol 1e-4 --atol 1e-5.");
        }

        return this;
    }
}

/// <summary>
/// How an int8 candidate is judged instead of element by element (rounding to 256 levels puts most elements past any
/// float tolerance): its direction (cosine) and, for classifier-like outputs, its top-1 agreement; an output that is dead
/// (all ~0 or constant) in the candidate and not in the reference fails.
/// </summary>
/// <param name="MinCosine">Lowest cosine similarity that passes.</param>
/// <param name="MinTop1">Lowest share of rows with the same arg-max that passes (classifier-like outputs).</param>
public sealed record Agreement(double MinCosine, double MinTop1)
{
    /// <summary>Issue 19's bar for int8 against fp32: cosine ≥ 0.99, top-1 agreement ≥ 99%.</summary>
    public static Agreement Int8 { get; } = new(0.99, 0.99);

    /// <summary>The rule in words, for notes: "cosine ≥ 0.99 and top-1 agreement ≥ 99%".</summary>
    public string Describe() => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"cosine ≥ {MinCosine} and top-1 agreement ≥ {MinTop1 * 100:0.#}%");
}

/// <summary>Top-k agreement of a classifier-like output: over its rows (all dimensions but the last), how often two tensors pick the same classes.</summary>
/// <param name="Rows">Rows compared (product of all dimensions but the last).</param>
/// <param name="Classes">Size of the last dimension.</param>
/// <param name="Top1">Share of rows whose arg-max is the same (0-1).</param>
/// <param name="Top5">Share of rows whose five largest classes are the same set, order ignored (0-1); null with fewer than 5 classes.</param>
public sealed record TopKAgreement(long Rows, long Classes, double Top1, double? Top5);

/// <summary>
/// How far an output (the candidate, a) is from a reference (b), element by element, computed in float64.
/// </summary>
/// <remarks>
/// Definitions (a = candidate, b = reference, over all N elements):
/// <list type="bullet">
/// <item>MaxAbsError = max |a−b|; MeanAbsError = Σ|a−b| / N.</item>
/// <item>MaxRelError = max |a−b| / max(|b|, ε) with ε = 1e-3 · max|b| (ε = 1 when b is all zeros): elements whose
/// reference is near zero compared with the output's own scale are measured against that scale, where a plain
/// |a−b|/|b| would blow up on rounding noise.</item>
/// <item>Cosine = a·b / (‖a‖‖b‖); 1 when both are all zeros, 0 when only one is; NaN when an element is NaN or infinite in
/// one tensor and not the same in the other (the finite elements alone would hide it).</item>
/// <item>Mismatches = elements with |a−b| &gt; Atol + Rtol·|b| (numpy.allclose); NaN matches NaN and an infinity matches
/// the same infinity. Passed = shapes equal and no mismatches.</item>
/// <item>TopK: for float outputs of rank 2 ([batch, classes]), or rank 3 ([batch, tokens, classes]) named like logits,
/// probabilities or scores, with at least 2 classes.</item>
/// </list>
/// </remarks>
public sealed record TensorComparison
{
    private static readonly string[] ClassifierNames = ["logit", "prob", "score", "softmax", "class"];

    /// <summary>Output name.</summary>
    public required string Name { get; init; }

    /// <summary>The reference's element type and shape, e.g. float32 [8, 1000].</summary>
    public required string Reference { get; init; }

    /// <summary>The candidate's element type and shape.</summary>
    public required string Candidate { get; init; }

    /// <summary>Number of elements compared.</summary>
    public long Elements { get; init; }

    /// <summary>Largest |a−b|.</summary>
    public double MaxAbsError { get; init; }

    /// <summary>Largest |a−b| / max(|b|, ε), ε = 1e-3·max|b|.</summary>
    public double MaxRelError { get; init; }

    /// <summary>Mean |a−b|.</summary>
    public double MeanAbsError { get; init; }

    /// <summary>Cosine similarity of the two tensors as flat vectors.</summary>
    public double Cosine { get; init; }

    /// <summary>Elements outside the tolerance.</summary>
    public long Mismatches { get; init; }

    /// <summary>Flat index of the element with the largest |a−b|, or -1.</summary>
    public long WorstIndex { get; init; } = -1;

    /// <summary>Reference value at <see cref="WorstIndex"/>.</summary>
    public double WorstReference { get; init; }

    /// <summary>Candidate value at <see cref="WorstIndex"/>.</summary>
    public double WorstCandidate { get; init; }

    /// <summary>Top-1/top-5 agreement for classifier-like outputs, else null.</summary>
    public TopKAgreement? TopK { get; init; }

    /// <summary>True when the shapes match and every element is within tolerance.</summary>
    public bool Passed { get; init; }

    /// <summary>Why it failed outright (shape or type mismatch), else null.</summary>
    public string? Problem { get; init; }

    /// <summary>The rtol and atol it was judged against.</summary>
    public required Tolerance Tolerance { get; init; }

    /// <summary>Compares a candidate output with a reference output.</summary>
    /// <param name="name">Output name, for reports.</param>
    /// <param name="candidate">The output under test (a).</param>
    /// <param name="reference">The trusted output (b).</param>
    /// <param name="tolerance">rtol/atol.</param>
    /// <param name="requireSameElementType">Fail when element types differ (conformance); off when comparing e.g. fp16 with fp32 models.</param>
    public static TensorComparison Compare(string name, Tensor candidate, Tensor reference, Tolerance tolerance, bool requireSameElementType = false)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(tolerance);
        var result = new TensorComparison { Name = name, Reference = reference.ToString(), Candidate = candidate.ToString(), Tolerance = tolerance };
        if (!candidate.Shape.SequenceEqual(reference.Shape))
        {
            return result with { Problem = $"shape {Tensor.ShapeText(candidate.Shape)} differs from the reference's {Tensor.ShapeText(reference.Shape)}" };
        }

        if (requireSameElementType && candidate.ElementType != reference.ElementType)
        {
            return result with { Problem = $"element type {candidate.ElementType.ShortName()} differs from the reference's {reference.ElementType.ShortName()}" };
        }

        var a = candidate.ToDoubles();
        var b = reference.ToDoubles();
        var n = a.Length;
        var scale = 0.0;
        foreach (var v in b)
        {
            if (double.IsFinite(v))
            {
                scale = Math.Max(scale, Math.Abs(v));
            }
        }

        var eps = scale > 0 ? 1e-3 * scale : 1.0;
        double maxAbs = 0, maxRel = 0, sumAbs = 0, dot = 0, na = 0, nb = 0;
        long mismatches = 0, worst = -1, finiteCount = 0;
        for (var i = 0; i < n; i++)
        {
            var (x, y) = (a[i], b[i]);
            if (!double.IsFinite(x) || !double.IsFinite(y))
            {
                // NaN matches NaN, +inf matches +inf (numpy.allclose with equal_nan); anything else is an infinite error.
                var same = (double.IsNaN(x) && double.IsNaN(y)) || x.Equals(y);
                if (!same)
                {
                    mismatches++;
                    if (!double.IsPositiveInfinity(maxAbs))
                    {
                        worst = i;
                    }

                    maxAbs = maxRel = double.PositiveInfinity;
                }

                continue;
            }

            var d = Math.Abs(x - y);
            finiteCount++;
            sumAbs += d;
            dot += x * y;
            na += x * x;
            nb += y * y;
            if (d > maxAbs || worst < 0)
            {
                maxAbs = Math.Max(maxAbs, d);
                worst = i;
            }

            maxRel = Math.Max(maxRel, d / Math.Max(Math.Abs(y), eps));
            if (d > tolerance.Atol + (tolerance.Rtol * Math.Abs(y)))
            {
                mismatches++;
            }
        }

        // A NaN or infinity where the reference has none (or another one) leaves the cosine undefined: NaN, so that no
        // cosine threshold passes an output that the finite elements alone would make look right.
        var cosine = double.IsPositiveInfinity(maxAbs) ? double.NaN
            : na == 0 && nb == 0 ? 1.0 : (na == 0 || nb == 0 ? 0.0 : dot / (Math.Sqrt(na) * Math.Sqrt(nb)));
        return result with
        {
            Elements = n,
            MaxAbsError = maxAbs,
            MaxRelError = maxRel,
            MeanAbsError = finiteCount == 0 ? 0 : sumAbs / finiteCount,
            Cosine = cosine,
            Mismatches = mismatches,
            WorstIndex = worst,
            WorstReference = worst >= 0 ? b[worst] : 0,
            WorstCandidate = worst >= 0 ? a[worst] : 0,
            TopK = IsClassifierLike(name, reference) && candidate.ElementType.IsFloatingPoint() ? TopKOf(a, b, reference.Shape[^1]) : null,
            Passed = mismatches == 0,
        };
    }

    /// <summary>
    /// This comparison judged by <paramref name="rule"/> instead of the tolerance (element mismatches are still reported):
    /// passed when the shapes match, the candidate is not dead where the reference is live, the cosine reaches the rule's
    /// and, for a classifier-like output, so does the top-1 agreement.
    /// </summary>
    public TensorComparison JudgedBy(Agreement rule, Tensor candidate, Tensor reference)
    {
        ArgumentNullException.ThrowIfNull(rule);
        ArgumentNullException.ThrowIfNull(candidate);
        ArgumentNullException.ThrowIfNull(reference);
        if (Problem is not null || !candidate.ElementType.IsFloatingPoint())
        {
            return this;
        }

        var c = System.Globalization.CultureInfo.InvariantCulture;
        var problem = Transforms.Verification.Dead(candidate) is { } dead && Transforms.Verification.Dead(reference) is null
            ? $"dead output: the candidate's is {dead}, the reference's is not"
            : !(Cosine >= rule.MinCosine) ? string.Create(c, $"cosine {Cosine:F4} is below {rule.MinCosine}")
            : TopK is { } k && k.Top1 < rule.MinTop1 ? string.Create(c, $"top-1 agreement {k.Top1 * 100:0.#}% is below {rule.MinTop1 * 100:0.#}%")
            : null;
        return this with { Passed = problem is null, Problem = problem };
    }

    /// <summary>
    /// True for float outputs shaped [batch, classes], or [batch, tokens, classes] when the name says so (logits, probabilities, scores),
    /// with at least 2 classes. Other rank-3 outputs (hidden states, detection heads) are not classifiers.
    /// </summary>
    public static bool IsClassifierLike(string name, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(output);
        if (!output.ElementType.IsFloatingPoint() || output.ElementCount == 0 || output.Shape.Length is not (2 or 3) || output.Shape[^1] < 2)
        {
            return false;
        }

        return output.Shape.Length == 2 || ClassifierNames.Any(n => name.Contains(n, StringComparison.OrdinalIgnoreCase));
    }

    private static TopKAgreement TopKOf(double[] a, double[] b, long classes)
    {
        var c = (int)classes;
        var rows = a.Length / c;
        long top1 = 0, top5 = 0;
        for (var r = 0; r < rows; r++)
        {
            var ra = a.AsSpan(r * c, c);
            var rb = b.AsSpan(r * c, c);
            if (ArgMax(ra) == ArgMax(rb))
            {
                top1++;
            }

            if (c >= 5 && TopIndices(ra, 5).SetEquals(TopIndices(rb, 5)))
            {
                top5++;
            }
        }

        return new TopKAgreement(rows, classes, rows == 0 ? 1 : (double)top1 / rows, c >= 5 ? (rows == 0 ? 1 : (double)top5 / rows) : null);
    }

    private static int ArgMax(ReadOnlySpan<double> row)
    {
        var best = 0;
        for (var i = 1; i < row.Length; i++)
        {
            // NaN never wins, so a NaN row picks its first finite maximum.
            if (row[i] > row[best] || double.IsNaN(row[best]))
            {
                best = i;
            }
        }

        return best;
    }

    private static HashSet<int> TopIndices(ReadOnlySpan<double> row, int k)
    {
        var indices = new int[row.Length];
        for (var i = 0; i < indices.Length; i++)
        {
            indices[i] = i;
        }

        var values = row.ToArray();
        // Largest first; ties broken by the lower index so both sides break them alike.
        Array.Sort(indices, (x, y) =>
        {
            var byValue = values[y].CompareTo(values[x]);
            return byValue != 0 ? byValue : x.CompareTo(y);
        });
        return indices.Take(k).ToHashSet();
    }
}
