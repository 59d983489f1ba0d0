using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Attention blocks (MatMul, scale, mask, Softmax, MatMul) become one fused kernel in half-precision plans. Planned
/// without a GPU; the kernel runs on the CPU (<see cref="CpuKernelRunner"/>, its tensor-core product emulated from the
/// PTX fragment layout) against ONNX Runtime in float32. The GPU tests run the same graphs on the device.
/// </summary>
public sealed class AttentionPlanTests
{
    internal static ExecutionPlan Compile(Precision precision, OnnxModel model, IReadOnlyList<Tensor> inputs)
    {
        return new NoGpuTarget(precision).Compile(model, inputs);
    }

    /// <summary>ViT-style: Transpose of K, MatMul, Mul by the scale, Softmax over the last axis, MatMul with V (70 tokens: two key tiles, a partial query tile; head 40, padded to 48).</summary>
    internal static OnnxModel VitStyle(bool probsAlsoOutput = false)
    {
        var g = new GraphBuilder("attention_vit", 17);
        var q = g.Input("q", ElementType.Float, 1L, 2L, 70L, 40L);
        var k = g.Input("k", ElementType.Float, 1L, 2L, 70L, 40L);
        var v = g.Input("v", ElementType.Float, 1L, 2L, 70L, 40L);
        var kt = g.Node("Transpose", [k], GraphBuilder.Attr("perm", 0L, 1L, 3L, 2L));
        var probs = g.Node("Softmax", [g.Node("Mul", [g.Node("MatMul", [q, kt]), g.Scalar(1f / MathF.Sqrt(40f))])], GraphBuilder.Attr("axis", -1L));
        g.Output(g.Rename(g.Node("MatMul", [probs, v]), "y"), ElementType.Float, 1L, 2L, 70L, 40L);
        if (probsAlsoOutput)
        {
            g.Output(g.Rename(probs, "probs"), ElementType.Float, 1L, 2L, 70L, 70L);
        }

        return g.Build("attention_vit");
    }

    /// <summary>BERT-style: K^T as given, Div by sqrt(head), an additive padding mask [batch, 1, 1, keys] from an input.</summary>
    internal static OnnxModel BertStyle()
    {
        var g = new GraphBuilder("attention_bert", 17);
        var q = g.Input("q", ElementType.Float, 2L, 2L, 20L, 16L);
        var kt = g.Input("kt", ElementType.Float, 2L, 2L, 16L, 20L);
        var v = g.Input("v", ElementType.Float, 2L, 2L, 20L, 16L);
        var mask = g.Input("mask", ElementType.Float, 2L, 1L, 1L, 20L);
        var scores = g.Node("Add", [g.Node("Div", [g.Node("MatMul", [q, kt]), g.Scalar(4f)]), mask]);
        var probs = g.Node("Softmax", [scores], GraphBuilder.Attr("axis", 3L));
        g.Output(g.Rename(g.Node("MatMul", [probs, v]), "y"), ElementType.Float, 2L, 2L, 20L, 16L);
        return g.Build("attention_bert");
    }

    /// <summary>Rank 3 at opset 11 (Softmax's axis 2 is the last): 33 queries, 90 keys, head 24, values 8 wide, a constant [33, 90] bias added, no scale.</summary>
    internal static OnnxModel RankThree()
    {
        var g = new GraphBuilder("attention_rank3", 11);
        var q = g.Input("q", ElementType.Float, 3L, 33L, 24L);
        var kt = g.Input("kt", ElementType.Float, 3L, 24L, 90L);
        var v = g.Input("v", ElementType.Float, 3L, 90L, 8L);
        var bias = g.Weight("bias", [33, 90], 2f);
        var probs = g.Node("Softmax", [g.Node("Add", [g.Node("MatMul", [q, kt]), bias])], GraphBuilder.Attr("axis", 2L));
        g.Output(g.Rename(g.Node("MatMul", [probs, v]), "y"), ElementType.Float, 3L, 33L, 8L);
        return g.Build("attention_rank3", 11);
    }

    /// <summary>
    /// Rank 3 ([heads, tokens, d]): Q, K (transposed in the graph, or K^T given as [heads, d, keys] when
    /// <paramref name="kTransposed"/>), V [heads, keys, dv], a Mul by <paramref name="scale"/> (none when 0), an optional
    /// additive mask input of shape <paramref name="mask"/>. The kernel's shapes: query and key tails, heads 64 to 128,
    /// widths that are not a multiple of 8 (the element-by-element paths).
    /// </summary>
    internal static OnnxModel Sized(long heads, long sq, long sk, long d, long dv, float scale, long[]? mask, bool kTransposed = false)
    {
        var g = new GraphBuilder("attention_sized", 17);
        var q = g.Input("q", ElementType.Float, heads, sq, d);
        var kt = kTransposed
            ? g.Input("kt", ElementType.Float, heads, d, sk)
            : g.Node("Transpose", [g.Input("k", ElementType.Float, heads, sk, d)], GraphBuilder.Attr("perm", 0L, 2L, 1L));
        var v = g.Input("v", ElementType.Float, heads, sk, dv);
        var scores = g.Node("MatMul", [q, kt]);
        if (scale != 0)
        {
            scores = g.Node("Mul", [scores, g.Scalar(scale)]);
        }

        if (mask is not null)
        {
            scores = g.Node("Add", [scores, g.Input("mask", ElementType.Float, [.. mask.Cast<object>()])]);
        }

        g.Output(g.Rename(g.Node("MatMul", [g.Node("Softmax", [scores], GraphBuilder.Attr("axis", -1L)), v]), "y"), ElementType.Float, heads, sq, dv);
        return g.Build("attention_sized");
    }

    internal static IReadOnlyList<Tensor> Inputs(OnnxModel model, int seed)
    {
        var rng = new Random(seed);
        return model.Inputs.Select(spec =>
        {
            var shape = spec.Shape.Select(d => d.Value!.Value).ToArray();
            var n = (int)Tensor.ElementCountOf(shape);
            // A padding mask [.., 1, keys]: 0 for kept keys, -10000 for the last few keys of the second sequence. A full
            // mask [queries, keys]: -inf at random, and every key of query 3 (whose output is then NaN, as a softmax
            // over nothing but -inf is).
            float[] values = spec.Name != "mask"
                ? [.. Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 4) - 2))]
                : shape[^2] == 1
                    ? [.. Enumerable.Range(0, n).Select(i => i >= n / 2 && i % (n / 2) >= 14 ? -10000f : 0f)]
                    : [.. Enumerable.Range(0, n).Select(i => i / shape[^1] == 3 || rng.Next(5) == 0 ? float.NegativeInfinity : (float)(rng.NextDouble() - 0.5))];
            return Tensor.From<float>(ElementType.Float, shape, values);
        }).ToList();
    }

    public static TheoryData<string> Cases() => new(["vit", "bert", "rank3", "head64_tails_mask", "head64_padding_128_keys", "head64_four_key_tiles", "head32_three_key_tiles", "head80_padding", "head128", "head20_kt_given"]);

    internal static OnnxModel Case(string name) => name switch
    {
        "vit" => VitStyle(),
        "bert" => BertStyle(),
        "rank3" => RankThree(),
        // Two query tiles (the second partial), two key tiles (the second partial), a full mask with -inf and a NaN row.
        "head64_tails_mask" => Sized(2, 70, 100, 64, 64, 0.125f, [70, 100]),
        // Head 64, 128 keys (two whole key tiles), a padding mask broadcast over queries: BERT's shape, two query tiles.
        "head64_padding_128_keys" => Sized(2, 70, 128, 64, 64, 0.125f, [1, 128]),
        // Head 64 with its own query tile: four key tiles (the last of 8 keys), so stages are refilled with tile j + 2.
        "head64_four_key_tiles" => Sized(1, 20, 200, 64, 64, 0.125f, [1, 200]),
        // Head 32: its own query tile at 128 rows too; three key tiles, two query tiles at 64 rows, one at 128.
        "head32_three_key_tiles" => Sized(1, 100, 150, 32, 32, 0.2f, [1, 150]),
        // Head 80 (key tiles of 64): three key tiles, the last of 2 keys; a padding mask broadcast over queries.
        "head80_padding" => Sized(1, 20, 130, 80, 80, 1f / MathF.Sqrt(80), [1, 130]),
        // Head 128 (key tiles of 32): a partial second key tile, no scale, no mask.
        "head128" => Sized(2, 17, 45, 128, 128, 0, null),
        // K^T given as [heads, d, keys] and widths of 20 and 12: every operand and the output element by element.
        "head20_kt_given" => Sized(2, 24, 40, 20, 12, 0.2f, null, kTransposed: true),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void An_attention_block_in_half_precision_is_one_kernel_and_matches_onnx_runtime(string name) =>
        PlannedAttentionMatchesOnnxRuntime(name, new NoGpuTarget(Precision.Fp16), expectedBlock: 128);

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_128_row_block_matches_onnx_runtime_and_heads_over_80_keep_64_rows(string name)
    {
        var head = name switch { "head128" => 128, _ => 0 };
        PlannedAttentionMatchesOnnxRuntime(name, new NoGpuTarget(Precision.Fp16) { AttentionRows = 128 }, expectedBlock: head > 80 ? 128 : 256);
    }

    private static void PlannedAttentionMatchesOnnxRuntime(string name, NoGpuTarget target, int expectedBlock)
    {
        var model = Case(name);
        var inputs = Inputs(model, 7);
        var plan = target.Compile(model, inputs);
        var fused = Assert.Single(plan.Steps, s => s.Node.Contains("fused attention", StringComparison.Ordinal));
        Assert.Equal(expectedBlock, Assert.IsType<KernelStep>(fused).Block);
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("Softmax", StringComparison.Ordinal));
        Assert.Null(CpuKernelRunner.CannotRun(plan));
        CpuKernelRunner.Require();

        var actual = CpuKernelRunner.Run(plan, inputs)[0].ToDoubles();
        var expected = DataDependentPlanTests.OnOnnxRuntime(model, [.. inputs])[0].ToDoubles();
        Assert.Equal(expected.Length, actual.Length);
        double dot = 0, na = 0, ne = 0, worst = 0;
        var nans = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            // NaN where the reference has NaN (a row masked entirely), nowhere else.
            Assert.True(double.IsNaN(expected[i]) == double.IsNaN(actual[i]), $"{name}: element {i} is {actual[i]}, ONNX Runtime gives {expected[i]}");
            if (double.IsNaN(expected[i]))
            {
                nans++;
                continue;
            }

            dot += actual[i] * expected[i];
            na += actual[i] * actual[i];
            ne += expected[i] * expected[i];
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        }

        // Query 3's row of each head is masked entirely in the one case with a full mask.
        Assert.Equal(name == "head64_tails_mask" ? 2 * 64 : 0, nans);
        var cosine = dot / Math.Sqrt(na * ne);
        Assert.True(cosine >= 0.9995 && worst <= 3e-2, $"{name}: cosine {cosine}, max abs error {worst}");
    }

    [Fact]
    public void Keys_transposed_in_the_graph_are_read_where_they_are_and_a_given_k_transpose_is_copied_once()
    {
        // Steps planned for the MatMul besides the fused kernel are operand copies.
        static int Copies(ExecutionPlan plan) => plan.Steps.Count(s => s.Node.StartsWith("MatMul", StringComparison.Ordinal) && !s.Node.Contains("fused attention", StringComparison.Ordinal));
        var transposed = Sized(2, 70, 100, 64, 64, 0.125f, [70, 100]);
        Assert.Equal(0, Copies(Compile(Precision.Fp16, transposed, Inputs(transposed, 1))));
        var given = Sized(2, 24, 40, 16, 16, 0.25f, null, kTransposed: true);
        Assert.Equal(1, Copies(Compile(Precision.Fp16, given, Inputs(given, 1))));
    }

    [Fact]
    public void A_softmax_whose_probabilities_are_also_an_output_is_not_fused()
    {
        var model = VitStyle(probsAlsoOutput: true);
        var e = Assert.ThrowsAny<BatchwiseException>(() => Compile(Precision.Fp16, model, Inputs(model, 1)));
        Assert.Contains(NoGpuTarget.NoLibraries, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Float32_plans_keep_the_matrix_products_on_cublaslt()
    {
        var model = VitStyle();
        var e = Assert.ThrowsAny<BatchwiseException>(() => Compile(Precision.Fp32, model, Inputs(model, 1)));
        Assert.Contains(NoGpuTarget.NoLibraries, e.Message, StringComparison.Ordinal);
    }
}
