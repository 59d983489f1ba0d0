using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Attention as torch's TorchScript exporter writes scaled_dot_product_attention with a mask (Hugging Face transformers 5
/// models with SDPA attention): Q and K^T each scaled by sqrt(scale), the product, the boolean mask turned additive by
/// Where(mask, 0, -inf) (that Where and its constants written after the product), Add, Softmax, the "safe softmax" tail
/// Where(IsNaN(p), 0, p), the product with V. The whole chain is one fused kernel; a row masked entirely gives zeros
/// where the tail is there and NaN where it is not, as ONNX Runtime does. Planned without a GPU; the kernels run on the
/// CPU against ONNX Runtime in float32.
/// </summary>
public sealed class SdpaAttentionPlanTests
{
    /// <summary>A Constant node of one float (shape [1]), placed in the graph where it is created, as torch's exporter places them.</summary>
    internal static string ConstantNode(GraphBuilder g, float value)
    {
        var t = new OnnxProto.TensorProto { DataType = (int)ElementType.Float };
        t.Dims.Add(1);
        t.FloatData.Add(value);
        return g.Node("Constant", [], GraphBuilder.Attr("value", t));
    }

    /// <summary>
    /// torch's SDPA export from the scaled operands on: MatMul, [Add of Where(<paramref name="boolMask"/>, 0, -inf)],
    /// [Add of <paramref name="floatMask"/>], Softmax, [Where(IsNaN(p), <paramref name="tailValue"/>, p) when
    /// <paramref name="safe"/>], MatMul with V.
    /// </summary>
    internal static string Sdpa(GraphBuilder g, string q, string kt, string v, string? boolMask = null, string? floatMask = null, bool safe = true, float tailValue = 0f)
    {
        var scores = g.Node("MatMul", [q, kt]);
        if (boolMask is not null)
        {
            scores = g.Node("Add", [scores, g.Node("Where", [boolMask, ConstantNode(g, 0f), ConstantNode(g, float.NegativeInfinity)])]);
        }

        if (floatMask is not null)
        {
            scores = g.Node("Add", [scores, floatMask]);
        }

        var p = g.Node("Softmax", [scores], GraphBuilder.Attr("axis", -1L));
        if (safe)
        {
            p = g.Node("Where", [g.Node("IsNaN", [p]), ConstantNode(g, tailValue), p]);
        }

        return g.Node("MatMul", [p, v]);
    }

    /// <summary>
    /// Hugging Face ViT (transformers 5, SDPA) as exported: q, k, v projections [B, N, C] -> Reshape [B, N, H, D] ->
    /// Transpose (K: (0, 2, 3, 1)) -> Mul by sqrt(1/sqrt(D)) each -> SDPA with the bidirectional mask, an Expand of a
    /// constant true to [B, 1, N, N] (all keys kept: the additive mask folds to zeros) and the safe-softmax tail ->
    /// Transpose(0, 2, 1, 3) -> Reshape [B, N, C].
    /// </summary>
    internal static OnnxModel HuggingFaceVit(long b, long n, long h, long d)
    {
        var c = h * d;
        var g = new GraphBuilder("hf_vit_sdpa", 17);
        var one = g.Int64s("one", [1]);
        var mask = g.Node("Expand", [g.Node("Equal", [one, one]), g.Int64s("mask_shape", [b, 1, n, n])]);
        var shape = g.Int64s("head_shape", [b, n, h, d]);
        string Heads(string name, params long[] perm) => g.Node("Transpose", [g.Node("Reshape", [g.Input(name, ElementType.Float, b, n, c), shape])], GraphBuilder.Attr("perm", perm));
        var s = g.Scalar(MathF.Sqrt(1f / MathF.Sqrt(d)));
        var q = g.Node("Mul", [Heads("q", 0, 2, 1, 3), s]);
        var kt = g.Node("Mul", [Heads("k", 0, 2, 3, 1), s]);
        var o = Sdpa(g, q, kt, Heads("v", 0, 2, 1, 3), boolMask: mask);
        g.Output(g.Rename(g.Node("Reshape", [g.Node("Transpose", [o], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L)), g.Int64s("out_shape", [b, n, c])]), "y"), ElementType.Float, b, n, c);
        return g.Build("hf_vit_sdpa");
    }

    /// <summary>
    /// GPT-2 (transformers 5, SDPA) as exported: the causal mask (key index &lt;= query index, from Range) And the padding
    /// mask (attention_mask [B, N] int64 as bool, [B, 1, 1, N]; without <paramref name="padding"/> the causal mask alone,
    /// a constant; without <paramref name="causal"/> the padding mask alone) -> [B, 1, N, N] bool, computed on the device; the packed
    /// projection [B, N, 3C] split on its last axis -> Reshape [B, N, H, D] -> Transpose (K: (0, 2, 3, 1)) -> Mul by
    /// sqrt(1/sqrt(D)) each -> SDPA with that mask and the safe-softmax tail -> Transpose(0, 2, 1, 3) -> Reshape [B, N, C].
    /// </summary>
    internal static OnnxModel Gpt2(long b, long n, long h, long d, bool padding = true, bool causal = true)
    {
        var c = h * d;
        var g = new GraphBuilder("gpt2_sdpa", 17);
        var qkv = g.Input("qkv", ElementType.Float, b, n, 3 * c);
        var keep = padding
            ? g.Node("Cast", [g.Node("Reshape", [g.Input("attention_mask", ElementType.Int64, b, n), g.Int64s("padding_shape", [b, 1, 1, n])])], GraphBuilder.Attr("to", (long)ElementType.Bool))
            : null;
        string Causal()
        {
            var positions = g.Node("Range", [g.Int64s("start", [0], []), g.Int64s("limit", [n], []), g.Int64s("delta", [1], [])]);
            return g.Node("LessOrEqual", [g.Node("Unsqueeze", [positions, g.Int64s("key_axes", [0])]), g.Node("Unsqueeze", [positions, g.Int64s("query_axes", [1])])]);
        }

        var mask = !causal ? keep! : keep is null ? Causal() : g.Node("And", [Causal(), keep]);

        var parts = g.NodeN("Split", [qkv], 3, GraphBuilder.Attr("axis", 2L));
        var shape = g.Int64s("head_shape", [b, n, h, d]);
        string Heads(string x, params long[] perm) => g.Node("Transpose", [g.Node("Reshape", [x, shape])], GraphBuilder.Attr("perm", perm));
        var s = g.Scalar(MathF.Sqrt(1f / MathF.Sqrt(d)));
        var q = g.Node("Mul", [Heads(parts[0], 0, 2, 1, 3), s]);
        var kt = g.Node("Mul", [Heads(parts[1], 0, 2, 3, 1), s]);
        var o = Sdpa(g, q, kt, Heads(parts[2], 0, 2, 1, 3), boolMask: mask);
        g.Output(g.Rename(g.Node("Reshape", [g.Node("Transpose", [o], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L)), g.Int64s("out_shape", [b, n, c])]), "y"), ElementType.Float, b, n, c);
        return g.Build("gpt2_sdpa");
    }

    /// <summary>
    /// [heads, sq, d] attention with an additive mask input [sq, sk] (row 3 all -inf: <see cref="AttentionPlanTests.Inputs"/>)
    /// and the safe-softmax tail (or not, or with a tail value other than 0).
    /// </summary>
    internal static OnnxModel MaskedRows(long heads, long sq, long sk, long d, bool safe, float tailValue = 0f)
    {
        var g = new GraphBuilder("masked_rows", 17);
        var q = g.Input("q", ElementType.Float, heads, sq, d);
        var kt = g.Node("Transpose", [g.Input("k", ElementType.Float, heads, sk, d)], GraphBuilder.Attr("perm", 0L, 2L, 1L));
        var v = g.Input("v", ElementType.Float, heads, sk, d);
        var mask = g.Input("mask", ElementType.Float, sq, sk);
        g.Output(g.Rename(Sdpa(g, g.Node("Mul", [q, g.Scalar(1f / MathF.Sqrt(d))]), kt, v, floatMask: mask, safe: safe, tailValue: tailValue), "y"), ElementType.Float, heads, sq, d);
        return g.Build("masked_rows");
    }

    /// <summary>
    /// Inputs for <paramref name="model"/>: <see cref="AttentionPlanTests.Inputs"/>, and for GPT-2's attention_mask ones
    /// but the first <paramref name="leftPadding"/> tokens of the last sequence (its first queries see no key at all).
    /// </summary>
    internal static IReadOnlyList<Tensor> Inputs(OnnxModel model, int seed, int leftPadding = 3)
    {
        var generated = AttentionPlanTests.Inputs(model, seed);
        return [.. model.Inputs.Select((spec, i) =>
        {
            if (spec.ElementType != ElementType.Int64)
            {
                return generated[i];
            }

            var shape = spec.Shape.Select(x => x.Value!.Value).ToArray();
            var (rows, n) = (shape[0], shape[1]);
            return Tensor.From<long>(ElementType.Int64, shape, [.. Enumerable.Range(0, (int)(rows * n)).Select(k => k / n == rows - 1 && k % n < leftPadding ? 0L : 1L)]);
        })];
    }

    public static TheoryData<string> Cases() => new(["hf_vit", "gpt2_causal_padding", "gpt2_causal_only", "gpt2_causal_padding_80", "gpt2_padding_only_64", "masked_row_safe", "masked_row_plain"]);

    internal static OnnxModel Case(string name) => name switch
    {
        // 50 tokens, 3 heads of 32, two images.
        "hf_vit" => HuggingFaceVit(2, 50, 3, 32),
        // 40 tokens, 2 heads of 48, two sequences, the second left-padded by 3 (queries 0-2 masked entirely).
        "gpt2_causal_padding" => Gpt2(2, 40, 2, 48),
        // The causal mask alone: a [N, N] boolean constant, uploaded once.
        "gpt2_causal_only" => Gpt2(1, 70, 2, 32, padding: false),
        // Head 64 and 80 tokens: two query tiles and two key tiles, the second of each partial.
        "gpt2_causal_padding_80" => Gpt2(2, 80, 2, 64),
        // The padding mask alone, [B, 1, 1, N] bool, broadcast over the queries.
        "gpt2_padding_only_64" => Gpt2(2, 64, 2, 64, causal: false),
        // Two query tiles, two key tiles, a full mask with -inf at random and query 3 masked entirely.
        "masked_row_safe" => MaskedRows(2, 70, 100, 64, safe: true),
        "masked_row_plain" => MaskedRows(2, 70, 100, 64, safe: false),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void An_sdpa_export_with_a_mask_is_one_kernel_and_matches_onnx_runtime(string name)
    {
        var model = Case(name);
        var inputs = Inputs(model, 5);
        var plan = AttentionPlanTests.Compile(Precision.Fp16, model, inputs);
        var steps = plan.Steps.Select(s => s.Node).ToList();
        var fused = Assert.Single(plan.Steps, s => s.Node.Contains("fused attention", StringComparison.Ordinal));
        Assert.Contains("Softmax", fused.Node, StringComparison.Ordinal);
        Assert.Equal(name is not "masked_row_plain", fused.Node.Contains("IsNaN + Where", StringComparison.Ordinal));

        // Nothing else but the input and output conversions: a boolean mask is read as it is (GPT-2's And of the causal
        // and padding masks, or the padding mask's Cast, computed into it where the kernel reads it), no additive half copy of it.
        var others = steps.Where(s => !s.Contains("fused attention", StringComparison.Ordinal) && !s.StartsWith("input ", StringComparison.Ordinal) && !s.StartsWith("output ", StringComparison.Ordinal)).ToList();
        Assert.True(others.Count == (name.Contains("padding", StringComparison.Ordinal) ? 1 : 0), string.Join("; ", steps));

        // HF ViT's mask adds nothing (all true, Where(mask, 0, -inf)): dropped, the kernel reads none. The others read one.
        var kernel = (KernelStep)fused;
        Assert.Equal(name != "hf_vit", kernel.Buffers[^1] >= 0);
        Assert.Equal(name.StartsWith("gpt2", StringComparison.Ordinal), kernel.Source.Contains("const unsigned char* __restrict__ mask", StringComparison.Ordinal));

        AssertMatchesOnnxRuntime(name, model, inputs, plan);
    }

    /// <summary>
    /// Hugging Face BERT / DistilBERT (transformers 5, SDPA) as exported: attention_mask [B, N] -> [B, 1, 1, N] -> bool ->
    /// Expand [B, 1, N, N], read by every layer's Where(mask, 0, -inf); two layers here, the second's Q the first's output.
    /// With <paramref name="queryAnd"/> the padding is first And-ed with q_idx >= 0 over [1, 1, N, 1] (all true), as
    /// transformers 5's bidirectional mask functions write it (the exported BERT of session 46 does); with
    /// <paramref name="indexed"/> the padding is read as that export reads it: the boolean mask flattened to [B * N, 1]
    /// and gathered by the indices b * N + k over [B, 1, 1, N], reshaped twice and cast to bool again.
    /// </summary>
    internal static OnnxModel ExpandedPaddingMask(long b, long h, long n, long d, bool queryAnd = false, bool indexed = false)
    {
        var g = new GraphBuilder("expanded_padding_mask", 17);
        var keep = indexed
            ? g.Node("Cast", [g.Node("Reshape", [
                g.Node("Reshape", [
                    g.Node("Gather", [
                        g.Node("Flatten", [g.Node("Cast", [g.Input("attention_mask", ElementType.Int64, b, n)], GraphBuilder.Attr("to", (long)ElementType.Bool))], GraphBuilder.Attr("axis", 2L)),
                        g.Int64s("padding_index", [.. Enumerable.Range(0, (int)(b * n)).Select(i => (long)i)], [b, 1, 1, n])]),
                    g.Int64s("flat", [b * n])]),
                g.Int64s("padding_shape", [b, 1, 1, n])])], GraphBuilder.Attr("to", (long)ElementType.Bool))
            : g.Node("Cast", [g.Node("Reshape", [g.Input("attention_mask", ElementType.Int64, b, n), g.Int64s("padding_shape", [b, 1, 1, n])])], GraphBuilder.Attr("to", (long)ElementType.Bool));
        if (queryAnd)
        {
            var queries = g.Node("Reshape", [g.Node("Range", [g.Int64s("start", [0], []), g.Int64s("limit", [n], []), g.Int64s("delta", [1], [])]), g.Int64s("query_shape", [1, 1, n, 1])]);
            keep = g.Node("And", [g.Node("GreaterOrEqual", [queries, g.Int64s("zero", [0], [])]), keep]);
        }

        var mask = g.Node("Expand", [keep, g.Int64s("mask_shape", [b, 1, n, n])]);
        var kt = g.Node("Transpose", [g.Input("k", ElementType.Float, b, h, n, d)], GraphBuilder.Attr("perm", 0L, 1L, 3L, 2L));
        var v = g.Input("v", ElementType.Float, b, h, n, d);
        var scale = g.Scalar(1f / MathF.Sqrt(d));
        var first = Sdpa(g, g.Node("Mul", [g.Input("q", ElementType.Float, b, h, n, d), scale]), kt, v, boolMask: mask);
        var second = Sdpa(g, g.Node("Mul", [first, scale]), kt, v, boolMask: mask);
        g.Output(g.Rename(second, "y"), ElementType.Float, b, h, n, d);
        return g.Build("expanded_padding_mask");
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void An_expanded_padding_mask_is_read_through_broadcast_strides_by_every_layer(bool queryAnd, bool indexed)
    {
        // Two sequences of 40 tokens (the second's first 3 keys masked), 2 heads of 32; the And with an all-true
        // constant over queries changes nothing, so it too leaves the padding read per key; a Gather of every entry in
        // order is the mask relabelled, no copy.
        var model = ExpandedPaddingMask(2, 2, 40, 32, queryAnd, indexed);
        var inputs = Inputs(model, 8);
        var plan = AttentionPlanTests.Compile(Precision.Fp16, model, inputs);
        var steps = plan.Steps.Select(s => s.Node).ToList();
        Assert.DoesNotContain(steps, s => s.StartsWith("Gather", StringComparison.Ordinal));
        if (indexed)
        {
            // The mask is written once (the first Cast, as the Flatten reads it); the Gather, the reshapes, the second
            // Cast and the And read it as it is.
            Assert.Single(steps, s => s.StartsWith("Flatten", StringComparison.Ordinal));
            Assert.DoesNotContain(steps, s => s.Split(' ')[0] is "Cast" or "Reshape" or "And" or "Expand");
        }
        var fused = plan.Steps.Where(s => s.Node.Contains("fused attention", StringComparison.Ordinal)).Cast<KernelStep>().ToList();
        Assert.Equal(2, fused.Count);

        // Both kernels read the [2, 1, 1, 40] mask itself (80 bytes: the Cast's result, computed while the Expand was
        // planned), stride 0 along queries; no [2, 1, 40, 40] copy is made.
        Assert.Equal(fused[0].Buffers[^1], fused[1].Buffers[^1]);
        Assert.True(fused[0].Buffers[^1] >= 0, string.Join("; ", steps));
        Assert.True(plan.Buffers[fused[0].Buffers[^1]].Bytes == 80, $"the mask read is {plan.Buffers[fused[0].Buffers[^1]].Bytes} bytes; steps: {string.Join("; ", steps)}");
        Assert.DoesNotContain(plan.Buffers, b => b.Bytes == 2 * 40 * 40);
        Assert.Contains("const unsigned char* __restrict__ mask", fused[0].Source, StringComparison.Ordinal);
        AssertMatchesOnnxRuntime("expanded_padding_mask", model, inputs, plan);
    }

    [Fact]
    public void A_safe_softmax_tail_with_another_value_or_another_reader_is_not_fused()
    {
        var other = MaskedRows(2, 20, 30, 16, safe: true, tailValue: 1f);
        var e = Assert.ThrowsAny<BatchwiseException>(() => AttentionPlanTests.Compile(Precision.Fp16, other, Inputs(other, 1)));
        Assert.Contains(NoGpuTarget.NoLibraries, e.Message, StringComparison.Ordinal);

        var g = new GraphBuilder("isnan_read", 17);
        var q = g.Input("q", ElementType.Float, 2L, 20L, 16L);
        var kt = g.Input("kt", ElementType.Float, 2L, 16L, 30L);
        var v = g.Input("v", ElementType.Float, 2L, 30L, 16L);
        var p = g.Node("Softmax", [g.Node("MatMul", [q, kt])], GraphBuilder.Attr("axis", -1L));
        var isNaN = g.Node("IsNaN", [p]);
        g.Output(g.Rename(g.Node("MatMul", [g.Node("Where", [isNaN, ConstantNode(g, 0f), p]), v]), "y"), ElementType.Float, 2L, 20L, 16L);
        g.Output(g.Rename(isNaN, "nan"), ElementType.Bool, 2L, 20L, 30L);
        var read = g.Build("isnan_read");
        e = Assert.ThrowsAny<BatchwiseException>(() => AttentionPlanTests.Compile(Precision.Fp16, read, Inputs(read, 1)));
        Assert.Contains(NoGpuTarget.NoLibraries, e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Against ONNX Runtime in float32: NaN exactly where it has NaN, exact zeros where it has zeros (rows masked entirely
    /// behind the safe-softmax tail), cosine and max abs error over the rest.
    /// </summary>
    internal static void AssertMatchesOnnxRuntime(string name, OnnxModel model, IReadOnlyList<Tensor> inputs, ExecutionPlan plan, (int Nans, int Zeros)? expect = null)
    {
        Assert.Null(CpuKernelRunner.CannotRun(plan));
        CpuKernelRunner.Require();

        var actual = CpuKernelRunner.Run(plan, inputs)[0].ToDoubles();
        var expected = DataDependentPlanTests.OnOnnxRuntime(model, [.. inputs])[0].ToDoubles();
        Assert.Equal(expected.Length, actual.Length);
        double dot = 0, na = 0, ne = 0, worst = 0;
        var (nans, zeros) = (0, 0);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(double.IsNaN(expected[i]) == double.IsNaN(actual[i]), $"{name}: element {i} is {actual[i]}, ONNX Runtime gives {expected[i]}");
            if (double.IsNaN(expected[i]))
            {
                nans++;
                continue;
            }

            if (expected[i] == 0)
            {
                Assert.True(actual[i] == 0, $"{name}: element {i} is {actual[i]}, ONNX Runtime gives 0");
                zeros++;
            }

            dot += actual[i] * expected[i];
            na += actual[i] * actual[i];
            ne += expected[i] * expected[i];
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        }

        // Rows masked entirely: query 3 of each head (masked_row cases), queries 0-2 of the padded sequence (GPT-2; 2 heads of 48 or 64).
        var (expectNans, expectZeros) = expect ?? name switch
        {
            "masked_row_plain" => (2 * 64, 0),
            "masked_row_safe" => (0, 2 * 64),
            "gpt2_causal_padding" => (0, 3 * 2 * 48),
            "gpt2_causal_padding_80" => (0, 3 * 2 * 64),
            _ => (0, 0),
        };
        Assert.Equal(expectNans, nans);
        Assert.Equal(expectZeros, zeros);
        var cosine = dot / Math.Sqrt(na * ne);
        Assert.True(cosine >= 0.9995 && worst <= 3e-2, $"{name}: cosine {cosine}, max abs error {worst}");
    }
}
