using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Attention blocks planned for cuDNN's fused attention (BATCHWISE_ATTENTION=cudnn) on a machine without a GPU: which
/// blocks it takes (half, heads a multiple of 8 up to 128, a mask per batch item and key) and which keep the own kernel,
/// the padding bias made from a boolean or an additive mask, the batch items masked entirely zeroed after it where the
/// "safe softmax" tail asks; cuDNN's step computed by its definition and the small kernels on the CPU, against ONNX
/// Runtime in float32.
/// </summary>
public sealed class CudnnAttentionPlanTests
{
    private static ExecutionPlan Compile(OnnxModel model, IReadOnlyList<Tensor> inputs, bool lengths = false, int multiprocessors = 132) =>
        new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { Attention = AttentionChoice.Cudnn, AttentionSequenceLengths = lengths, Multiprocessors = multiprocessors }.Compile(model, inputs);

    public static TheoryData<string, int> Cases() => new()
    {
        { "bert", 1 },
        { "vit", 1 },
        // Heads of 24 for Q and K, 8 for V: cuDNN's attention takes one width.
        { "rank3", 0 },
        { "head64_padding_128_keys", 1 },
        { "head80_padding", 1 },
        { "head128", 1 },
        { "head32_three_key_tiles", 1 },
        // A full mask [queries, keys]: a bias per query and key. A head of 20 is not a multiple of 8: the own kernel.
        { "head64_tails_mask", 1 },
        { "head20_kt_given", 0 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Blocks_cudnn_takes_match_onnx_runtime_and_the_rest_keep_the_own_kernel(string name, int cudnnSteps)
    {
        var model = AttentionPlanTests.Case(name);
        var inputs = AttentionPlanTests.Inputs(model, 7);
        var plan = Compile(model, inputs);
        Assert.Equal(cudnnSteps, plan.Steps.Count(s => s is CudnnAttentionStep));
        Assert.Equal(1 - cudnnSteps, plan.Steps.Count(s => s is KernelStep && s.Node.EndsWith("(fused attention)", StringComparison.Ordinal)));
        // head64_tails_mask masks query 3 of both heads entirely: NaN there, as ONNX's Softmax gives.
        SdpaAttentionPlanTests.AssertMatchesOnnxRuntime(name, model, inputs, plan, (name == "head64_tails_mask" ? 2 * 64 : 0, 0));
    }

    [Theory]
    [InlineData(3)]
    [InlineData(64)]
    public void A_boolean_padding_mask_becomes_a_bias_and_a_sequence_masked_entirely_gives_zeros(int maskedKeys)
    {
        // GPT-2's padding mask alone ([B, 1, 1, N] bool, Where(mask, 0, -inf), the safe-softmax tail), 2 heads of 64; the
        // second sequence's first 3 keys masked, or all 64 of them (its output is zeros, as the tail makes it).
        var model = SdpaAttentionPlanTests.Gpt2(2, 64, 2, 64, causal: false);
        var inputs = SdpaAttentionPlanTests.Inputs(model, 5, leftPadding: maskedKeys);
        var plan = Compile(model, inputs);
        var step = Assert.Single(plan.Steps.OfType<CudnnAttentionStep>());
        Assert.True(step.Shape.Bias);
        Assert.Single(plan.Steps, s => s.Node.EndsWith("(bias)", StringComparison.Ordinal));
        Assert.Single(plan.Steps, s => s.Node.EndsWith("(rows masked entirely)", StringComparison.Ordinal));
        SdpaAttentionPlanTests.AssertMatchesOnnxRuntime($"gpt2_padding_{maskedKeys}", model, inputs, plan, (0, maskedKeys == 64 ? 64 * 2 * 64 : 0));
        if (maskedKeys == 64)
        {
            var y = CpuKernelRunner.Run(plan, inputs)[0].ToDoubles();
            Assert.All(y[(y.Length / 2)..], x => Assert.Equal(0, x));
        }
    }

    [Fact]
    public void A_causal_mask_becomes_a_bias_per_query_and_key()
    {
        // GPT-2's causal and padding mask [B, 1, N, N]: cuDNN reads it as a half bias [B, N, N], made once.
        var model = SdpaAttentionPlanTests.Gpt2(2, 40, 2, 48);
        var inputs = SdpaAttentionPlanTests.Inputs(model, 5);
        var plan = Compile(model, inputs);
        var step = Assert.Single(plan.Steps.OfType<CudnnAttentionStep>());
        Assert.True(step.Shape.Bias && step.Shape.BiasPerRow);
        var bias = Assert.Single(plan.Steps.OfType<KernelStep>(), s => s.Node.EndsWith("(bias)", StringComparison.Ordinal));
        Assert.Equal((uint)((2 * 40 * 40) + bias.Block - 1) / (uint)bias.Block, bias.Grid);
        SdpaAttentionPlanTests.AssertMatchesOnnxRuntime("gpt2_causal_padding", model, inputs, plan);
    }

    [Fact]
    public void A_bias_per_query_zeroes_just_the_rows_its_mask_empties()
    {
        // Causal with the second sequence's first 3 keys padded: its queries 0-2 see no key (zeros, as the safe-softmax
        // tail makes them); every other row is attended as usual.
        var model = SdpaAttentionPlanTests.Gpt2(2, 64, 2, 64);
        var inputs = SdpaAttentionPlanTests.Inputs(model, 5, leftPadding: 3);
        var plan = Compile(model, inputs);
        Assert.True(Assert.Single(plan.Steps.OfType<CudnnAttentionStep>()).Shape.BiasPerRow);
        Assert.Single(plan.Steps, s => s.Node.EndsWith("(rows masked entirely)", StringComparison.Ordinal));
        SdpaAttentionPlanTests.AssertMatchesOnnxRuntime("gpt2_causal_padding_3", model, inputs, plan, (0, 3 * 2 * 64));
        var y = CpuKernelRunner.Run(plan, inputs)[0].ToDoubles();
        const int c = 2 * 64;
        for (var r = 0; r < 64; r++)
        {
            var row = y.AsSpan(((64 + r) * c), c).ToArray();
            Assert.Equal(r < 3, row.All(x => x == 0));
        }
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(2 * 2, 1)]
    [InlineData((2 * 2) + 1, 0)]
    [InlineData(132, 0)]
    public void Auto_gives_cudnn_blocks_of_as_many_batch_head_pairs_as_multiprocessors(int multiprocessors, int cudnnSteps)
    {
        // BERT's case: 2 sequences, 2 heads: 4 (batch, head) pairs.
        var model = AttentionPlanTests.Case("bert");
        var inputs = AttentionPlanTests.Inputs(model, 7);
        var plan = new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { Attention = AttentionChoice.Auto, Multiprocessors = multiprocessors }.Compile(model, inputs);
        Assert.Equal(cudnnSteps, plan.Steps.Count(s => s is CudnnAttentionStep));
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 0)]
    public void Auto_keeps_the_own_kernel_where_the_mask_varies_by_query(bool causal, int cudnnSteps)
    {
        // GPT-2's padding mask alone is read per key (cuDNN, as for BERT); with its causal mask it would be a bias per
        // query, which ran 0.9-1.5% slower than the own kernel on GPT-2 and Llama at b=64 (session 47): auto keeps that.
        var model = SdpaAttentionPlanTests.Gpt2(2, 64, 2, 64, causal: causal);
        var inputs = SdpaAttentionPlanTests.Inputs(model, 5);
        var plan = new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { Attention = AttentionChoice.Auto, Multiprocessors = 4 }.Compile(model, inputs);
        Assert.Equal(cudnnSteps, plan.Steps.Count(s => s is CudnnAttentionStep));
        Assert.Equal(1 - cudnnSteps, plan.Steps.Count(s => s is KernelStep && s.Node.EndsWith("(fused attention)", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void An_expanded_padding_mask_is_read_per_key_by_every_layer_through_one_bias(bool queryAnd)
    {
        var model = SdpaAttentionPlanTests.ExpandedPaddingMask(2, 2, 40, 32, queryAnd);
        var inputs = SdpaAttentionPlanTests.Inputs(model, 8);
        var plan = Compile(model, inputs);
        Assert.Equal(2, plan.Steps.Count(s => s is CudnnAttentionStep));
        Assert.All(plan.Steps.OfType<CudnnAttentionStep>(), s => Assert.False(s.Shape.BiasPerRow));
        // Both layers read one mask: one bias kernel, its buffer read by both cuDNN steps.
        var bias = Assert.Single(plan.Steps, s => s.Node.EndsWith("(bias)", StringComparison.Ordinal));
        Assert.All(plan.Steps.OfType<CudnnAttentionStep>(), s => Assert.Equal(bias.Buffers[0], s.Buffers[4]));
        SdpaAttentionPlanTests.AssertMatchesOnnxRuntime("expanded_padding_mask", model, inputs, plan);
    }

    public static TheoryData<string, long[][], int> PaddingMasks() => new()
    {
        // Every key kept, then the second sequence right-padded: prefixes, cuDNN computes every item.
        { "prefixes", [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], 132 },
        // Left padding (GPT-2's), keys kept out of order, and an item with no key: the own kernel computes those, its
        // grid one tile a block, or (one multiprocessor: a grid of 4 blocks) each block looping over the tiles.
        { "left_padded", [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], 132 },
        { "holes_and_none", [[1, 0, 1, 1, 0], [0, 0, 0, 0, 0]], 132 },
        { "holes_and_none_looped", [[1, 0, 1, 1, 0], [0, 0, 0, 0, 0]], 1 },
    };

    [Theory]
    [MemberData(nameof(PaddingMasks))]
    public void A_padding_mask_goes_as_sequence_lengths_and_the_own_kernel_computes_the_items_that_are_no_kept_prefix(string name, long[][] pattern, int multiprocessors)
    {
        // Two layers (4 heads of 32) read one expanded padding mask over 40 keys (the pattern's five values, each for 8 keys in a row):
        // one lengths kernel serves both cuDNN steps; each layer's own kernel then computes the flagged items.
        const int b = 2, h = 4, n = 40;
        var model = SdpaAttentionPlanTests.ExpandedPaddingMask(b, h, n, 32);
        var inputs = SdpaAttentionPlanTests.Inputs(model, 8).Select(t => t.ElementType != ElementType.Int64 ? t
            : Tensor.From<long>(ElementType.Int64, [b, n], [.. Enumerable.Range(0, b * n).Select(i => pattern[i / n][i % n / 8])])).ToList();
        var plan = Compile(model, inputs, lengths: true, multiprocessors);
        Assert.All(plan.Steps.OfType<CudnnAttentionStep>(), s => Assert.True(s.Shape.SequenceLengths && !s.Shape.Bias));
        var lengths = Assert.Single(plan.Steps, s => s.Node.EndsWith("(sequence lengths)", StringComparison.Ordinal));
        Assert.All(plan.Steps.OfType<CudnnAttentionStep>(), s => Assert.Equal(lengths.Buffers[0], s.Buffers[4]));
        var fixups = plan.Steps.Where(s => s.Node.EndsWith("(items not a kept prefix)", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, fixups.Count);
        Assert.All(fixups, s => Assert.Equal(lengths.Buffers[0], s.Buffers[5]));
        // 2 items x 4 heads x 1 tile of 64 rows: 8 tiles, a block each on 132 multiprocessors, 2 each on one (4 blocks).
        Assert.All(fixups, s => Assert.Equal(Math.Min(8u, 4u * (uint)multiprocessors), ((KernelStep)s).Grid));
        Assert.DoesNotContain(plan.Steps, s => s.Node.EndsWith("(bias)", StringComparison.Ordinal) || s.Node.EndsWith("(rows masked entirely)", StringComparison.Ordinal));

        // The reference cuDNN step writes NaN for an item it is given no key of: the own kernel must overwrite it (zeros
        // for the item with none, as the safe-softmax tail makes them).
        var none = pattern.Count(p => p.All(x => x == 0));
        SdpaAttentionPlanTests.AssertMatchesOnnxRuntime("padding_lengths_" + name, model, inputs, plan, (0, none * h * n * 32));
    }

    [Theory]
    [InlineData(null, true)]
    [InlineData("", true)]
    [InlineData("lengths", true)]
    [InlineData(" Bias ", false)]
    public void The_attention_mask_setting_defaults_to_sequence_lengths(string? text, bool lengths) =>
        Assert.Equal(lengths, GraphCompiler.AttentionMaskFrom(text));

    [Fact]
    public void An_attention_mask_setting_other_than_lengths_or_bias_is_refused_naming_both()
    {
        var e = Assert.Throws<BatchwiseException>(() => GraphCompiler.AttentionMaskFrom("prefix"));
        Assert.Contains("BATCHWISE_ATTENTION_MASK 'prefix'", e.Message, StringComparison.Ordinal);
        Assert.Contains("BATCHWISE_ATTENTION_MASK=bias", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void The_own_choice_keeps_the_own_kernel_and_auto_is_the_default()
    {
        var model = AttentionPlanTests.Case("bert");
        var inputs = AttentionPlanTests.Inputs(model, 7);
        var plan = new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { Attention = AttentionChoice.Own, Multiprocessors = 1 }.Compile(model, inputs);
        Assert.DoesNotContain(plan.Steps, s => s is CudnnAttentionStep);
        Assert.Single(plan.Steps, s => s.Node.EndsWith("(fused attention)", StringComparison.Ordinal));
        if (Environment.GetEnvironmentVariable("BATCHWISE_ATTENTION") is null)
        {
            Assert.Equal(AttentionChoice.Auto, GraphCompiler.AttentionFromEnvironment);
        }
    }
}

/// <summary>The settings that shape the timed searches: how many candidates, on what data; bad values refused in one line.</summary>
public sealed class TacticSearchSettingsTests
{
    [Theory]
    [InlineData(null, 8)]
    [InlineData(" ", 8)]
    [InlineData("1", 1)]
    [InlineData("8", 8)]
    public void Attention_configurations_default_to_eight_and_take_one_to_eight(string? text, int expected) =>
        Assert.Equal(expected, GraphCompiler.AttentionConfigsFrom(text));

    [Theory]
    [InlineData("0")]
    [InlineData("9")]
    [InlineData("all")]
    public void Attention_configurations_out_of_range_are_refused_naming_the_variable(string text)
    {
        var e = Assert.Throws<BatchwiseException>(() => GraphCompiler.AttentionConfigsFrom(text));
        Assert.Contains("BATCHWISE_ATTENTION_CONFIGS", e.Message, StringComparison.Ordinal);
        Assert.Contains("from 1", e.Hint, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, 8)]
    [InlineData("32", 32)]
    public void Matmul_candidates_default_to_eight(string? text, int expected) => Assert.Equal(expected, GraphCompiler.MatmulCandidatesFrom(text));

    [Theory]
    [InlineData("0")]
    [InlineData("65")]
    public void Matmul_candidates_out_of_range_are_refused(string text) =>
        Assert.Contains("BATCHWISE_MATMUL_CANDIDATES", Assert.Throws<BatchwiseException>(() => GraphCompiler.MatmulCandidatesFrom(text)).Message, StringComparison.Ordinal);

    [Theory]
    [InlineData(null, false)]
    [InlineData("zeros", false)]
    [InlineData(" Random ", true)]
    public void Tactic_data_is_zeros_unless_random_is_asked_for(string? text, bool random) => Assert.Equal(random, GraphCompiler.TacticDataIsRandom(text));

    [Fact]
    public void Tactic_data_other_than_zeros_or_random_is_refused() =>
        Assert.Contains("BATCHWISE_TACTIC_DATA 'noise'", Assert.Throws<BatchwiseException>(() => GraphCompiler.TacticDataIsRandom("noise")).Message, StringComparison.Ordinal);
}
