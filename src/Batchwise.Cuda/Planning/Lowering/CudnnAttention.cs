using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Who runs a recognised attention block of a half plan (BATCHWISE_ATTENTION).</summary>
internal enum AttentionChoice
{
    /// <summary>
    /// cuDNN's fused attention where the block has at least as many (batch item, head) pairs as the device has
    /// multiprocessors and its mask (if any) is alike for every query, the own kernel otherwise: the default. On an H100
    /// (sessions 46-47, same run) cuDNN's took ViT-S and HF ViT at b=64 6-9% faster end to end, BERT and DistilBERT at
    /// b=64 (a padding mask read per key) 4.5% and 5.6%; with a bias per query (GPT-2's and Llama's causal masks) it was
    /// 0.9% and 1.5% slower than the own kernel, so those keep it; at b=1 (6 or 12 pairs) the runs did not separate it
    /// from the cold-build effect, so small blocks keep the kernel whose b=1 rows the peer table has passed with.
    /// </summary>
    Auto,

    /// <summary>The engine's own fused attention kernel always.</summary>
    Own,

    /// <summary>cuDNN's fused attention wherever it takes the block.</summary>
    Cudnn,
}

/// <summary>
/// A recognised attention block (<see cref="TryLowerAttention"/>) run by cuDNN's fused scaled-dot-product attention
/// instead of the engine's own kernel (<see cref="AttentionChoice"/>; <see cref="CudnnAttention"/>): half operands whose
/// heads are as wide for K and V, at most 128 and a multiple of 8, every stride but the last and every offset a multiple
/// of 8 elements, the last contiguous, and a mask (if any) alike for every head. A boolean mask alike for every query
/// that keeps keys as 0 and drops them as -inf (or at most <see cref="KernelSource.AttentionDropBias"/>) becomes sequence
/// lengths (<see cref="AttentionMaskFromEnvironment"/>): one small kernel a run finds each item's kept prefix, cuDNN
/// skips what lies past it, and the own kernel (its flagged form) computes after cuDNN the items whose mask is no such
/// prefix (kept keys out of order, or none). Any other mask becomes a half bias [batch, keys], or [batch, queries, keys]
/// where it varies by query (Hugging Face's masks are materialised so), made by one small kernel once for the blocks
/// reading it; where the graph's "safe softmax" tail zeroes rows masked entirely, a second small kernel zeroes those
/// rows of the output after cuDNN (whose softmax gives NaN there). Anything cuDNN refuses (its heuristics offer no
/// engine that finalizes) keeps the own kernel.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>cuDNN attention plans by shape (null where cuDNN refused it), shared by the blocks of this plan.</summary>
    private readonly Dictionary<string, CudnnAttention?> _cudnnAttentions = new(StringComparer.Ordinal);

    /// <summary>The half bias (or the sequence lengths) made from a mask, by the mask's buffer and how it is read: BERT's layers read one mask, so one kernel serves them all (values are written once, so a buffer read the same way gives the same bias).</summary>
    private readonly Dictionary<(int MaskBuffer, string View), int> _cudnnAttentionBiases = [];

    /// <summary>BATCHWISE_ATTENTION: auto (the default: cuDNN's fused attention for large blocks), own (the engine's fused kernel) or cudnn (cuDNN's wherever it takes the block).</summary>
    internal static AttentionChoice AttentionFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_ATTENTION")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => AttentionChoice.Auto,
        "own" => AttentionChoice.Own,
        "cudnn" => AttentionChoice.Cudnn,
        var other => throw new BatchwiseException($"BATCHWISE_ATTENTION '{other}' is not auto, own or cudnn", "Unset it (cuDNN's fused attention for blocks of as many (batch, head) pairs as multiprocessors whose mask is alike for every query, the own kernel otherwise), or set BATCHWISE_ATTENTION=own (the engine's kernel always) or cudnn (cuDNN's wherever it takes the block)."),
    };

    /// <summary>
    /// BATCHWISE_ATTENTION_MASK: lengths (the default: a per-key padding mask that keeps each item's first keys given to
    /// cuDNN's attention as sequence lengths) or bias (every mask as a half bias).
    /// </summary>
    internal static bool AttentionMaskFromEnvironment => AttentionMaskFrom(Environment.GetEnvironmentVariable("BATCHWISE_ATTENTION_MASK"));

    /// <summary><see cref="AttentionMaskFromEnvironment"/> from the variable's text (true: lengths); anything else refused in one line.</summary>
    internal static bool AttentionMaskFrom(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "lengths" => true,
        "bias" => false,
        var other => throw new BatchwiseException($"BATCHWISE_ATTENTION_MASK '{other}' is not lengths or bias", "Unset it (a padding mask that keeps each item's first keys goes to cuDNN's attention as sequence lengths), or set BATCHWISE_ATTENTION_MASK=bias (every mask as a half bias)."),
    };

    /// <summary>
    /// Whether a boolean mask's two values are 0 (kept) and at most <see cref="KernelSource.AttentionDropBias"/> (dropped),
    /// one each: what <see cref="KernelSource.AttentionSequenceLengths"/> reads as kept keys.
    /// </summary>
    private static bool KeepsOrDrops((double WhenTrue, double WhenFalse)? select) => select is var (t, f)
        && ((t == 0 && f <= KernelSource.AttentionDropBias) || (f == 0 && t <= KernelSource.AttentionDropBias));

    /// <summary>
    /// Whether <see cref="IPlanTarget.Attention"/> gives a block of <paramref name="batch"/> x <paramref name="heads"/>
    /// (batch item, head) pairs to cuDNN, its mask read as a bias per query where <paramref name="biasPerQuery"/>.
    /// </summary>
    private bool AttentionGoesToCudnn(long batch, long heads, bool biasPerQuery) => _target.Attention switch
    {
        AttentionChoice.Cudnn => true,
        AttentionChoice.Auto => batch * heads >= _target.Multiprocessors && !biasPerQuery,
        _ => false,
    };

    /// <summary>
    /// Emits the block as cuDNN's attention into <paramref name="y"/>: Q, K (as [.., key, d]) and V with their
    /// (batch, head, row, column) strides and offsets in elements, O's strides, the mask's (condition or half values,
    /// strides, offset, the boolean's two values). False, with nothing emitted, where it does not qualify or the choice
    /// (<see cref="AttentionGoesToCudnn"/>) keeps the own kernel. <paramref name="flagged"/>: where the mask went as
    /// sequence lengths, their buffer, whose flags name the items the caller's own kernel must compute after cuDNN; else -1.
    /// </summary>
    private bool TryEmitCudnnAttention(PlanValue y, (PlanValue Value, long[] Strides, long Offset)[] qkv, long[] outStrides, long batch, long heads, long rows, long keys, long d, double scale, (PlanValue Value, long[] Strides, long Offset, (double WhenTrue, double WhenFalse)? Select)? mask, bool zeroEmptyRows, out int flagged)
    {
        flagged = -1;
        static bool Aligned(long[] strides, long offset) => strides[^1] == 1 && strides[..^1].All(s => s % 8 == 0) && offset % 8 == 0;

        // An axis of extent 1 has no stride that matters (the planner writes 0 there): cuDNN gets one past the others' span.
        long[] Packed(long[] strides, long inner)
        {
            long[] extents = [batch, heads, inner, d];
            var span = ElementSpan(extents, strides);
            return [.. strides.Select((x, i) => extents[i] == 1 ? (span + 7) / 8 * 8 : x)];
        }

        qkv = [(qkv[0].Value, Packed(qkv[0].Strides, rows), qkv[0].Offset), (qkv[1].Value, Packed(qkv[1].Strides, keys), qkv[1].Offset), (qkv[2].Value, Packed(qkv[2].Strides, keys), qkv[2].Offset)];
        outStrides = Packed(outStrides, rows);
        if (_target.ComputeCapability < 80 || d % 8 != 0 || d > 128 || St(y) != ElementType.Float16 || !qkv.All(o => St(o.Value) == ElementType.Float16 && Aligned(o.Strides, o.Offset))
            || !Aligned(outStrides, 0) || Math.Max(batch, heads) > int.MaxValue || Math.Max(rows, keys) > int.MaxValue
            || (mask is { } m && heads > 1 && m.Strides[1] != 0))
        {
            return false;
        }

        // A mask alike for every query (a padding mask read through broadcast strides) is a bias per batch item and key;
        // one materialised [batch, 1, queries, keys] (or a causal one) a bias per query too.
        var biasRows = mask is { } mr && rows > 1 && mr.Strides[2] != 0 ? rows : 1;
        if (!AttentionGoesToCudnn(batch, heads, biasRows > 1))
        {
            return false;
        }

        var lengths = mask is { } ml && biasRows == 1 && _target.AttentionSequenceLengths && KeepsOrDrops(ml.Select) && batch * 3 <= int.MaxValue;
        var shape = new CudnnAttentionShape((int)batch, (int)heads, (int)rows, (int)keys, (int)d, qkv[0].Strides, qkv[1].Strides, qkv[2].Strides, outStrides, [qkv[0].Offset, qkv[1].Offset, qkv[2].Offset], (float)scale, mask is not null && !lengths, biasRows > 1, lengths);
        CudnnAttention? attention = null;
        if (!_target.PlansMatmulsWithoutLibrary)
        {
            // One cuDNN plan (its engine compiled at run time) for the plan's blocks of one shape: offsets are applied to
            // the addresses, so BERT's layers share it.
            var key = FormattableString.Invariant($"{shape.Batch},{shape.Heads},{shape.Rows},{shape.Keys},{shape.HeadDim};{string.Join(',', shape.Q)};{string.Join(',', shape.K)};{string.Join(',', shape.V)};{string.Join(',', shape.O)};{shape.Scale:R};{shape.Bias};{shape.BiasPerRow}") + (shape.SequenceLengths ? ";lengths" : string.Empty);
            if (!_cudnnAttentions.TryGetValue(key, out attention))
            {
                try
                {
                    attention = TimedLibrary("cudnn_attention", () => ChosenCudnnAttention(shape, key));
                }
                catch (CudaException)
                {
                    attention = null; // cuDNN's heuristics offer nothing that finalizes for this shape: the own kernel takes it
                }

                _cudnnAttentions[key] = attention;
            }

            if (attention is null)
            {
                return false;
            }
        }

        var bias = -1;
        if (mask is { } mk)
        {
            var maskBatchStride = batch > 1 ? mk.Strides[0] : 0;
            var maskBuffer = Dev(mk.Value);
            var maskRowStride = biasRows > 1 ? mk.Strides[2] : 0;
            var view = FormattableString.Invariant($"{St(mk.Value)},{batch},{biasRows},{keys},{maskBatchStride},{maskRowStride},{mk.Strides[3]},{mk.Offset},{mk.Select}") + (lengths ? FormattableString.Invariant($";lengths,{rows}") : string.Empty);
            if (!_cudnnAttentionBiases.TryGetValue((maskBuffer, view), out bias))
            {
                if (lengths)
                {
                    var l = Temp(ElementType.Int32, [3 * batch]);
                    Emit(new KernelStep(_node + " (sequence lengths)", KernelSource.AttentionSequenceLengths(St(mk.Value), batch, rows, keys, maskBatchStride, mk.Strides[3], mk.Offset, mk.Select), batch * KernelSource.AttentionZeroThreads, KernelSource.AttentionZeroThreads, [Dev(l), maskBuffer]));
                    bias = Dev(l);
                }
                else
                {
                    var b = Temp(ElementType.Float16, [batch, biasRows, keys]);
                    Emit(new KernelStep(_node + " (bias)", KernelSource.AttentionBias(St(mk.Value), batch, biasRows, keys, maskBatchStride, maskRowStride, mk.Strides[3], mk.Offset, mk.Select), batch * biasRows * keys, KernelSource.BlockSize, [Dev(b), maskBuffer]));
                    bias = Dev(b);
                }

                _cudnnAttentionBiases[(maskBuffer, view)] = bias;
            }
        }

        Emit(new CudnnAttentionStep(_node + " (cuDNN)", [Dev(y), Dev(qkv[0].Value), Dev(qkv[1].Value), Dev(qkv[2].Value), bias], shape, attention));
        if (attention is not null)
        {
            ReserveWorkspace(attention.WorkspaceBytes);
        }

        if (lengths)
        {
            flagged = bias;
        }
        else if (zeroEmptyRows && mask is not null)
        {
            Emit(new KernelStep(_node + " (rows masked entirely)", KernelSource.AttentionZeroMaskedRows(keys, heads, rows, biasRows, d, outStrides), batch * biasRows * KernelSource.AttentionZeroThreads, KernelSource.AttentionZeroThreads, [Dev(y), bias]));
        }

        return true;
    }

    /// <summary>
    /// How many of cuDNN's attention configurations a plan times, keeping the fastest: BATCHWISE_ATTENTION_CONFIGS (1 to
    /// 8; 1 takes the heuristics' first that finalizes, untimed), else 8 where tactics are timed. Session 48's probe (H100,
    /// BERT's shape, b=64): with a bias the first was the fastest of five (27.2 us); without one the second ran 22.3 us
    /// against the first's 29.2.
    /// </summary>
    internal static int AttentionConfigsFromEnvironment => AttentionConfigsFrom(Environment.GetEnvironmentVariable("BATCHWISE_ATTENTION_CONFIGS"));

    /// <summary><see cref="AttentionConfigsFromEnvironment"/> from the variable's text; a value out of range is refused in one line.</summary>
    internal static int AttentionConfigsFrom(string? text) => EnvironmentSetting.ParseInt("BATCHWISE_ATTENTION_CONFIGS", text, DefaultAttentionConfigs, 1, 8,
        $"Unset it (the fastest of cuDNN's first {DefaultAttentionConfigs} attention configurations, timed when the plan is built) or set a whole number from 1 (the heuristics' first, untimed) to 8.");

    /// <summary>The default of <see cref="AttentionConfigsFromEnvironment"/>.</summary>
    internal const int DefaultAttentionConfigs = 8;

    /// <summary>
    /// cuDNN's attention plan for <paramref name="shape"/>: the heuristics' first configuration that finalizes where
    /// tactics are not timed or one configuration is asked for; else the configuration stored for it (this session's
    /// choices, a saved engine, the device's timing cache), built alone; else the fastest of the first
    /// <see cref="IPlanTarget.AttentionConfigs"/> that finalize, timed on scratch operands (CUDA events, a captured replay,
    /// median), and stored. A <see cref="CudaException"/> where none finalizes.
    /// </summary>
    private CudnnAttention ChosenCudnnAttention(CudnnAttentionShape shape, string shapeKey)
    {
        CudnnAttention Build(int candidates, int only = -1) => new(_target.PlanningCudnn, shape.Batch, shape.Heads, shape.Rows, shape.Keys, shape.HeadDim, shape.Q, shape.K, shape.V, shape.O, shape.Scale, shape.Bias, shape.BiasPerRow, candidates, only, shape.SequenceLengths);
        var configs = _target.AttentionConfigs;
        if (_target.Tactics is not { } cache || configs <= 1)
        {
            return Build(1);
        }

        var key = FormattableString.Invariant($"cudnn-sdpa|configs={configs}|{shapeKey}") + TacticSearchSuffix;
        var storeKey = "timed|" + key;
        int? stored = _target.Choices.TryGet(storeKey, out var bytes) && bytes.Length == sizeof(int) ? BitConverter.ToInt32(bytes)
            : cache.TryGet(key, out var cached) ? cached.Algo : null;
        if (stored is { } configuration && configuration >= 0)
        {
            try
            {
                var alone = Build(1, configuration);
                _target.Choices.Set(storeKey, BitConverter.GetBytes(configuration));
                return alone;
            }
            catch (CudaException)
            {
                // The stored configuration no longer finalizes here: time afresh below.
            }
        }

        var attention = Build(configs);
        try
        {
            var (index, milliseconds) = attention.CandidateCount == 1 ? (0, double.NaN) : TimeCudnnAttention(attention, shape);
            attention.Choose(Math.Max(index, 0));
            cache.Set(key, new TacticChoice(attention.Configuration, 0, attention.WorkspaceBytes, milliseconds));
            _target.Choices.Set(storeKey, BitConverter.GetBytes(attention.Configuration));
            return attention;
        }
        catch
        {
            attention.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The fastest of <paramref name="attention"/>'s candidates (<see cref="FastestCandidate"/>'s rule) on scratch Q, K,
    /// V, O and mask buffers as long as the strides reach (<see cref="ScratchOperand"/>'s data; a bias of zeros, or
    /// sequence lengths that keep every query and key: a full batch), and its time; index -1 when none ran.
    /// </summary>
    private static (int Index, double Milliseconds) TimeCudnnAttention(CudnnAttention attention, CudnnAttentionShape shape)
    {
        long Span(long[] strides, int rows) => ElementSpan([shape.Batch, shape.Heads, rows, shape.HeadDim], strides);
        using var stream = CudaDriver.CreateStream();
        using var q = ScratchOperand(Span(shape.Q, shape.Rows), 2, stream);
        using var k = ScratchOperand(Span(shape.K, shape.Keys), 2, stream);
        using var v = ScratchOperand(Span(shape.V, shape.Keys), 2, stream);
        using var o = ScratchOperand(Span(shape.O, shape.Rows), 2, stream);
        // The mask as a full batch gives it: sequence lengths that keep every query and key, or a bias of zeros.
        using var mask = CudaDriver.Allocate(shape.SequenceLengths ? 2L * shape.Batch * sizeof(int) : Math.Max(1L, (long)shape.Batch * (shape.BiasPerRow ? shape.Rows : 1) * shape.Keys) * 2);
        if (shape.SequenceLengths)
        {
            int[] full = [.. Enumerable.Repeat(shape.Rows, shape.Batch), .. Enumerable.Repeat(shape.Keys, shape.Batch)];
            CudaDriver.CopyToDeviceSync(mask.Pointer, System.Runtime.InteropServices.MemoryMarshal.AsBytes(full.AsSpan()));
        }
        else
        {
            CudaDriver.MemsetD8(mask.Pointer, 0, mask.Bytes, stream.Handle);
        }

        using var workspace = CudaDriver.Allocate(Math.Max(attention.WorkspaceBytes, 256));
        using var pack = attention.Pack(q.Pointer, k.Pointer, v.Pointer, o.Pointer, mask.Pointer, workspace.Pointer);
        using var handle = Cudnn.Create(stream);
        using var start = CudaDriver.CreateEvent();
        using var end = CudaDriver.CreateEvent();
        return FastestCandidate(attention.CandidateCount, i => MedianMilliseconds(stream, start, end, () => attention.ExecuteCandidate(handle, pack, i)));
    }

    /// <summary>Elements from the first of a strided view to one past its last: 1 + the sum of (extent - 1) x |stride| over its axes.</summary>
    private static long ElementSpan(long[] extents, long[] strides) => 1 + extents.Select((e, i) => (e - 1) * Math.Abs(strides[i])).Sum();
}
