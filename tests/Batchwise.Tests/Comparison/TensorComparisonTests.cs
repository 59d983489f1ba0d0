using Batchwise.Comparison;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Tests.Comparison;

public sealed class TensorComparisonTests
{
    private static readonly Tolerance Tight = new(1e-5, 1e-6);

    [Fact]
    public void Known_inputs_give_known_errors_and_cosine()
    {
        var reference = Floats([4], 1, 2, 3.5f, 4);
        var candidate = Floats([4], 1, 2, 3, 4);
        var c = TensorComparison.Compare("y", candidate, reference, Tight);

        Assert.Equal(0.5, c.MaxAbsError, 12);
        Assert.Equal(0.125, c.MeanAbsError, 12);
        Assert.Equal(0.5 / 3.5, c.MaxRelError, 12);
        var dot = 1 + 4 + (3 * 3.5) + 16;
        var expectedCosine = dot / (Math.Sqrt(1 + 4 + 9 + 16) * Math.Sqrt(1 + 4 + (3.5 * 3.5) + 16));
        Assert.Equal(expectedCosine, c.Cosine, 12);
        Assert.Equal(1, c.Mismatches);
        Assert.Equal(2, c.WorstIndex);
        Assert.Equal(3.5, c.WorstReference);
        Assert.Equal(3.0, c.WorstCandidate);
        Assert.False(c.Passed);
        Assert.Null(c.TopK);
    }

    [Fact]
    public void Relative_error_is_floored_at_a_thousandth_of_the_outputs_scale()
    {
        // The reference element 0 is tiny next to the output's scale (1000): its error is measured against ε = 1.
        var reference = Floats([2], 0, 1000);
        var candidate = Floats([2], 0.01f, 1000);
        var c = TensorComparison.Compare("y", candidate, reference, Tight);
        Assert.Equal(0.01, c.MaxRelError, 6);
    }

    [Fact]
    public void Tolerance_follows_numpy_allclose_against_the_reference()
    {
        var reference = Floats([1], 100);
        // |a-b| = 0.11 ≤ atol 0.01 + rtol 0.001·100 = 0.11: passes, exactly at the bound.
        Assert.True(TensorComparison.Compare("y", Doubles(100.11), reference, new Tolerance(1e-3, 0.01 + 1e-9)).Passed);
        Assert.False(TensorComparison.Compare("y", Doubles(100.12), reference, new Tolerance(1e-3, 0.01)).Passed);

        // Asymmetric like numpy: rtol scales |b| (the reference), not |a|.
        var small = Floats([1], 1);
        Assert.False(TensorComparison.Compare("y", Doubles(2), small, new Tolerance(0.6, 0)).Passed);
        Assert.True(TensorComparison.Compare("y", Doubles(1), Doubles(2), new Tolerance(0.6, 0)).Passed);
    }

    [Fact]
    public void Nan_matches_nan_and_infinity_matches_the_same_infinity()
    {
        var reference = Floats([3], float.NaN, float.PositiveInfinity, 1);
        Assert.True(TensorComparison.Compare("y", Floats([3], float.NaN, float.PositiveInfinity, 1), reference, Tight).Passed);

        var bad = TensorComparison.Compare("y", Floats([3], 0, float.PositiveInfinity, 1), reference, Tight);
        Assert.False(bad.Passed);
        Assert.Equal(1, bad.Mismatches);
        Assert.Equal(0, bad.WorstIndex);
        Assert.True(double.IsPositiveInfinity(bad.MaxAbsError));
    }

    [Fact]
    public void A_nan_the_reference_does_not_have_makes_the_cosine_undefined()
    {
        var reference = Floats([4], 1, 2, 3, 4);
        var candidate = Floats([4], 1, 2, 3, float.NaN);
        var c = TensorComparison.Compare("y", candidate, reference, Tight);
        Assert.True(double.IsNaN(c.Cosine), $"cosine {c.Cosine} over the finite elements would pass a NaN output");
        Assert.False(c.Cosine >= 0.999);
        Assert.Equal(1.0, TensorComparison.Compare("y", reference, reference, Tight).Cosine, 12);
    }

    [Fact]
    public void Shape_mismatch_fails_with_the_reason()
    {
        var c = TensorComparison.Compare("y", Floats([2, 1], 1, 2), Floats([1, 2], 1, 2), Tight);
        Assert.False(c.Passed);
        Assert.Contains("[2, 1]", c.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Element_type_mismatch_fails_only_when_required()
    {
        var half = Tensor.From<Half>(ElementType.Float16, [2], [(Half)1, (Half)2]);
        var single = Floats([2], 1, 2);
        Assert.True(TensorComparison.Compare("y", half, single, Tight).Passed);
        var strict = TensorComparison.Compare("y", half, single, Tight, requireSameElementType: true);
        Assert.False(strict.Passed);
        Assert.Contains("float16", strict.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Zero_tensors_have_cosine_one_and_one_zero_side_has_cosine_zero()
    {
        Assert.Equal(1.0, TensorComparison.Compare("y", Floats([2], 0, 0), Floats([2], 0, 0), Tight).Cosine);
        Assert.Equal(0.0, TensorComparison.Compare("y", Floats([2], 0, 0), Floats([2], 1, 0), Tight).Cosine);
    }

    [Fact]
    public void Top1_and_top5_agreement_count_rows_of_a_classifier_output()
    {
        // 3 rows of 6 classes. Row 0: same order. Row 1: top-1 differs, top-5 set equal. Row 2: top-5 set differs.
        var reference = Floats([3, 6], 6, 5, 4, 3, 2, 1, /**/ 6, 5, 4, 3, 2, 1, /**/ 6, 5, 4, 3, 2, 1);
        var candidate = Floats([3, 6], 6, 5, 4, 3, 2, 1, /**/ 5, 6, 4, 3, 2, 1, /**/ 6, 5, 4, 3, 0, 1.5f);
        var c = TensorComparison.Compare("logits", candidate, reference, Tight);
        Assert.NotNull(c.TopK);
        Assert.Equal(3, c.TopK.Rows);
        Assert.Equal(6, c.TopK.Classes);
        Assert.Equal(2.0 / 3, c.TopK.Top1, 12);
        Assert.Equal(2.0 / 3, c.TopK.Top5!.Value, 12);
    }

    [Fact]
    public void Top5_is_absent_below_five_classes_and_images_are_not_classifiers()
    {
        var c = TensorComparison.Compare("y", Floats([2, 3], 1, 2, 3, 3, 2, 1), Floats([2, 3], 1, 2, 3, 1, 2, 3), Tight);
        Assert.Equal(0.5, c.TopK!.Top1);
        Assert.Null(c.TopK.Top5);

        var image = Tensor.Zeros(ElementType.Float, [1, 3, 4, 4]);
        Assert.Null(TensorComparison.Compare("y", image, image, Tight).TopK);

        // Rank 3: token logits count per token; hidden states do not count.
        var tokens = Floats([1, 2, 3], 1, 2, 3, 3, 2, 1);
        Assert.Equal(2, TensorComparison.Compare("logits", tokens, tokens, Tight).TopK!.Rows);
        Assert.Null(TensorComparison.Compare("last_hidden_state", tokens, tokens, Tight).TopK);
    }

    [Fact]
    public void Negative_tolerance_is_a_user_error()
    {
        Assert.Throws<BatchwiseException>(() => new Tolerance(-1, 0).Validated());
        Assert.Throws<BatchwiseException>(() => new Tolerance(0, double.NaN).Validated());
    }

    private static Tensor Floats(long[] shape, params float[] values) => Tensor.From<float>(ElementType.Float, shape, values);

    private static Tensor Doubles(params double[] values) => Tensor.From<double>(ElementType.Double, [values.Length], values);

    [Fact]
    public void Int8_agreement_fails_a_dead_candidate_output_even_when_close_in_absolute_terms()
    {
        var reference = Floats([2, 4], [0.001f, 0.002f, 0.003f, 0.004f, 0.004f, 0.003f, 0.002f, 0.001f]);
        var dead = Tensor.From<float>(ElementType.Float, [2, 4], new float[8]);
        var c = TensorComparison.Compare("logits", dead, reference, new Tolerance(0, 0.01)).JudgedBy(Agreement.Int8, dead, reference);
        Assert.False(c.Passed);
        Assert.StartsWith("dead output: the candidate's is all ~0", c.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Int8_agreement_fails_on_low_cosine_or_a_changed_top1_and_passes_otherwise()
    {
        // The first row's two leading classes swap places; the second, large row keeps the cosine at 0.9996.
        var reference = Floats([2, 4], [10f, 9f, 1f, 1f, 50f, 1f, 1f, 1f]);
        var close = Floats([2, 4], [10.1f, 8.9f, 1.02f, 0.98f, 50.2f, 1.01f, 0.99f, 1f]);
        var swapped = Floats([2, 4], [9f, 10f, 1f, 1f, 50f, 1f, 1f, 1f]);
        var tolerance = new Tolerance(1e-4, 1e-5);
        Assert.True(TensorComparison.Compare("logits", close, reference, tolerance).JudgedBy(Agreement.Int8, close, reference).Passed);
        var changed = TensorComparison.Compare("logits", swapped, reference, tolerance).JudgedBy(Agreement.Int8, swapped, reference);
        Assert.False(changed.Passed);
        Assert.Equal("top-1 agreement 50% is below 99%", changed.Problem);
        var opposite = Floats([2, 4], [-10f, -9f, -1f, -1f, -50f, -1f, -1f, -1f]);
        Assert.StartsWith("cosine -1.0000 is below 0.99", TensorComparison.Compare("logits", opposite, reference, tolerance).JudgedBy(Agreement.Int8, opposite, reference).Problem, StringComparison.Ordinal);
    }
}
