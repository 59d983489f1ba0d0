using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// The layout operators around an attention block as exporters write them (timm's packed QKV: Reshape, Transpose,
/// Split or Gather, Squeeze, K transposed again, Q and K^T scaled by sqrt(scale); Hugging Face's separate projections:
/// Reshape, Transpose; the output through Transpose(0, 2, 1, 3) and Reshape) are planned as strided views: no copy
/// steps, the fused kernel reads the projection's buffer through strides and writes O in [B, N, H, D]. Planned without
/// a GPU; the kernels run on the CPU against ONNX Runtime in float32.
/// </summary>
public sealed class AttentionViewPlanTests
{
    /// <summary>
    /// timm's attention after its qkv Linear: qkv [B, N, 3C] -> Reshape [B, N, 3, H, D] -> Transpose(2, 0, 3, 1, 4) ->
    /// unbind (Split + Squeeze, or Gather at 0, 1, 2) -> q * s, k^T * s (s = sqrt(1/sqrt(D)), torch's SDPA export) ->
    /// MatMul, Softmax, MatMul -> Transpose(0, 2, 1, 3) -> Reshape [B, N, C]. <paramref name="alsoOutputV"/> also
    /// makes V (a view) a graph output's input, so it is copied for that use.
    /// </summary>
    internal static OnnxModel Timm(long b, long n, long h, long d, bool gather = false, bool alsoOutputV = false)
    {
        var c = h * d;
        var g = new GraphBuilder("timm_attention", 5);
        var qkv = g.Input("qkv", ElementType.Float, b, n, 3 * c);
        var packed = g.Node("Transpose", [g.Node("Reshape", [qkv, g.Int64s("qkv_shape", [b, n, 3, h, d])])], GraphBuilder.Attr("perm", 2L, 0L, 3L, 1L, 4L));
        string[] parts = gather
            ? [.. Enumerable.Range(0, 3).Select(i => g.Node("Gather", [packed, g.Int64s($"index{i}", [i], [])], GraphBuilder.Attr("axis", 0L)))]
            : [.. g.NodeN("Split", [packed], 3, GraphBuilder.Attr("axis", 0L)).Select(p => g.Node("Squeeze", [p, g.Int64s("axes_" + p, [0])]))];
        var s = MathF.Sqrt(1f / MathF.Sqrt(d));
        var q = g.Node("Mul", [parts[0], g.Scalar(s)]);
        var kt = g.Node("Mul", [g.Node("Transpose", [parts[1]], GraphBuilder.Attr("perm", 0L, 1L, 3L, 2L)), g.Scalar(s)]);
        var probs = g.Node("Softmax", [g.Node("MatMul", [q, kt])], GraphBuilder.Attr("axis", -1L));
        var o = g.Node("Transpose", [g.Node("MatMul", [probs, parts[2]])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L));
        g.Output(g.Rename(g.Node("Reshape", [o, g.Int64s("out_shape", [b, n, c])]), "y"), ElementType.Float, b, n, c);
        if (alsoOutputV)
        {
            g.Output(g.Rename(g.Node("Neg", [parts[2]]), "minus_v"), ElementType.Float, b, h, n, d);
        }

        return g.Build("timm_attention");
    }

    /// <summary>
    /// Hugging Face ViT's eager attention after its q, k, v Linears ([B, N, C] each): Reshape [B, N, H, D] ->
    /// Transpose(0, 2, 1, 3) (K: Transpose(0, 2, 3, 1), the exporter's two transposes merged) -> MatMul -> Mul by the
    /// scale -> Softmax -> Cast to float (softmax's dtype=float32) -> MatMul -> Transpose(0, 2, 1, 3) -> Reshape [B, N, C].
    /// </summary>
    internal static OnnxModel HuggingFace(long b, long n, long h, long d, bool cast = true)
    {
        var c = h * d;
        var g = new GraphBuilder("hf_attention", 6);
        var shape = g.Int64s("head_shape", [b, n, h, d]);
        string Heads(string name, params long[] perm) => g.Node("Transpose", [g.Node("Reshape", [g.Input(name, ElementType.Float, b, n, c), shape])], GraphBuilder.Attr("perm", perm));
        var q = Heads("q", 0, 2, 1, 3);
        var kt = Heads("k", 0, 2, 3, 1);
        var v = Heads("v", 0, 2, 1, 3);
        var probs = g.Node("Softmax", [g.Node("Mul", [g.Node("MatMul", [q, kt]), g.Scalar(1f / MathF.Sqrt(d))])], GraphBuilder.Attr("axis", -1L));
        if (cast)
        {
            probs = g.Node("Cast", [probs], GraphBuilder.Attr("to", (long)ElementType.Float));
        }

        var o = g.Node("Transpose", [g.Node("MatMul", [probs, v])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L));
        g.Output(g.Rename(g.Node("Reshape", [o, g.Int64s("out_shape", [b, n, c])]), "y"), ElementType.Float, b, n, c);
        return g.Build("hf_attention");
    }

    /// <summary>
    /// GPT-2's packed projection split on its last axis: qkv [B, N, 3C] -> Split(axis 2) (or three Slices) -> Reshape [B, N, H, D] each
    /// (a view reshaped through its strides) -> Transpose (K: (0, 2, 3, 1)) -> MatMul -> Div by sqrt(D) -> Softmax ->
    /// MatMul -> Transpose(0, 2, 1, 3) -> Reshape [B, N, C] (no causal mask here).
    /// </summary>
    internal static OnnxModel PackedLastAxis(long b, long n, long h, long d, bool slices = false)
    {
        var c = h * d;
        var g = new GraphBuilder("gpt2_attention", 7);
        var qkv = g.Input("qkv", ElementType.Float, b, n, 3 * c);
        var parts = slices
            ? [.. Enumerable.Range(0, 3).Select(i => g.Node("Slice", [qkv, g.Int64s($"starts{i}", [i * c]), g.Int64s($"ends{i}", [(i + 1) * c]), g.Int64s($"axes{i}", [-1])]))]
            : g.NodeN("Split", [qkv], 3, GraphBuilder.Attr("axis", 2L));
        var shape = g.Int64s("head_shape", [b, n, h, d]);
        string Heads(string x, params long[] perm) => g.Node("Transpose", [g.Node("Reshape", [x, shape])], GraphBuilder.Attr("perm", perm));
        var (q, kt, v) = (Heads(parts[0], 0, 2, 1, 3), Heads(parts[1], 0, 2, 3, 1), Heads(parts[2], 0, 2, 1, 3));
        var scores = g.Node("Div", [g.Node("MatMul", [q, kt]), g.Scalar(MathF.Sqrt(d))]);
        var o = g.Node("Transpose", [g.Node("MatMul", [g.Node("Softmax", [scores], GraphBuilder.Attr("axis", -1L)), v])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L));
        g.Output(g.Rename(g.Node("Reshape", [o, g.Int64s("out_shape", [b, n, c])]), "y"), ElementType.Float, b, n, c);
        return g.Build("gpt2_attention");
    }

    public static TheoryData<string> Cases() => new(["timm_split", "timm_gather", "hf", "hf_no_cast", "packed_last_axis", "packed_slices"]);

    internal static OnnxModel Case(string name) => name switch
    {
        // 70 tokens (a partial query tile, two key tiles), 2 heads of 64; then two images of 20 tokens.
        "timm_split" => Timm(1, 70, 2, 64),
        "timm_gather" => Timm(2, 20, 2, 64, gather: true),
        // 3 heads of 32 (padded head 32), 50 tokens.
        "hf" => HuggingFace(2, 50, 3, 32),
        "hf_no_cast" => HuggingFace(1, 33, 2, 64, cast: false),
        "packed_last_axis" => PackedLastAxis(2, 40, 2, 48),
        "packed_slices" => PackedLastAxis(1, 30, 2, 32, slices: true),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_layout_operators_around_attention_are_views_and_the_result_matches_onnx_runtime(string name)
    {
        var model = Case(name);
        var inputs = AttentionPlanTests.Inputs(model, 3);
        var plan = AttentionPlanTests.Compile(Precision.Fp16, model, inputs);

        // Inputs converted to half, the fused kernel, the output converted back: nothing else.
        Assert.Single(plan.Steps, s => s.Node.Contains("fused attention", StringComparison.Ordinal));
        var others = plan.Steps.Where(s => !s.Node.Contains("fused attention", StringComparison.Ordinal) && !s.Node.StartsWith("input ", StringComparison.Ordinal) && !s.Node.StartsWith("output ", StringComparison.Ordinal));
        Assert.Empty(others.Select(s => s.Node));
        Assert.Equal(model.Inputs.Count + 2, plan.Steps.Count);
        AssertMatchesOnnxRuntime(name, model, inputs, plan);
    }

    [Fact]
    public void A_view_read_by_another_operator_is_copied_for_it_alone()
    {
        var model = Timm(1, 40, 2, 32, alsoOutputV: true);
        var inputs = AttentionPlanTests.Inputs(model, 4);
        var plan = AttentionPlanTests.Compile(Precision.Fp16, model, inputs);
        Assert.Single(plan.Steps, s => s.Node.Contains("fused attention", StringComparison.Ordinal));

        // V's row-major copy is made where Neg's pending result is written out (for the graph output), after the
        // attention kernel, which read V through strides.
        var steps = plan.Steps.Select(s => s.Node).ToList();
        var attention = steps.FindIndex(s => s.Contains("fused attention", StringComparison.Ordinal));
        var copy = steps.FindIndex(s => s == "output minus_v");
        Assert.True(copy > attention, string.Join("; ", steps));
        AssertMatchesOnnxRuntime("timm_v_output", model, inputs, plan);
    }

    [Fact]
    public void Float32_plans_copy_as_before()
    {
        var model = Timm(1, 40, 2, 32);
        var e = Assert.ThrowsAny<BatchwiseException>(() => AttentionPlanTests.Compile(Precision.Fp32, model, AttentionPlanTests.Inputs(model, 1)));
        Assert.Contains(NoGpuTarget.NoLibraries, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(new long[] { 2, 3, 4 }, new long[] { 12, 4, 1 }, new long[] { 6, 4 }, new long[] { 4, 1 })]
    [InlineData(new long[] { 2, 3, 4 }, new long[] { 12, 4, 1 }, new long[] { 2, 1, 12, 1 }, new long[] { 12, 12, 1, 1 })]
    [InlineData(new long[] { 1, 3, 4 }, new long[] { 7, 1, 3 }, new long[] { 3, 4 }, new long[] { 1, 3 })]
    [InlineData(new long[] { 4, 5, 6 }, new long[] { 5, 1, 20 }, new long[] { 20, 6 }, new long[] { 1, 20 })]
    [InlineData(new long[] { 2, 3, 4 }, new long[] { 4, 8, 1 }, new long[] { 2, 12 }, null)]
    [InlineData(new long[] { 2, 3, 4 }, new long[] { 1, 2, 6 }, new long[] { 24 }, null)]
    public void Strided_views_are_reshaped_through_strides_where_the_elements_are_evenly_spaced(long[] shape, long[] strides, long[] target, long[]? expected)
    {
        Assert.Equal(expected, GraphCompiler.Restride(shape, strides, target));
    }

    internal static void AssertMatchesOnnxRuntime(string name, OnnxModel model, IReadOnlyList<Tensor> inputs, ExecutionPlan plan)
    {
        Assert.Null(CpuKernelRunner.CannotRun(plan));
        CpuKernelRunner.Require();

        var actual = CpuKernelRunner.Run(plan, inputs);
        var expected = DataDependentPlanTests.OnOnnxRuntime(model, [.. inputs]);
        Assert.Equal(expected.Count, actual.Count);
        for (var o = 0; o < expected.Count; o++)
        {
            var (e, a) = (expected[o].ToDoubles(), actual[o].ToDoubles());
            Assert.Equal(e.Length, a.Length);
            double dot = 0, na = 0, ne = 0, worst = 0;
            for (var i = 0; i < e.Length; i++)
            {
                dot += a[i] * e[i];
                na += a[i] * a[i];
                ne += e[i] * e[i];
                worst = Math.Max(worst, Math.Abs(a[i] - e[i]));
            }

            var cosine = dot / Math.Sqrt(na * ne);
            Assert.True(cosine >= 0.9995 && worst <= 3e-2, $"{name} output {o}: cosine {cosine}, max abs error {worst}");
        }
    }
}
