using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// A recognised attention block (<see cref="TryLowerAttention"/>) run by cuDNN's fused scaled-dot-product attention
/// instead of the engine's own kernel (BATCHWISE_ATTENTION=cudnn; <see cref="CudnnAttention"/>): half operands whose
/// heads are as wide for K and V, at most 128 and a multiple of 8, every stride but the last and every offset a multiple
/// of 8 elements, the last contiguous, and a mask (if any) per batch item and key. The mask becomes a half bias [batch,
/// keys] (one small kernel), and where the graph's "safe softmax" tail zeroes rows masked entirely, a second small kernel
/// zeroes those batch items' output after cuDNN (whose softmax gives NaN there). Anything cuDNN refuses (its heuristics
/// offer no engine that finalizes) keeps the own kernel.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>cuDNN attention plans by shape (null where cuDNN refused it), shared by the blocks of this plan.</summary>
    private readonly Dictionary<string, CudnnAttention?> _cudnnAttentions = new(StringComparer.Ordinal);

    /// <summary>The half bias made from a mask, by the mask's buffer and how it is read: BERT's layers read one mask, so one bias kernel serves them all (values are written once, so a buffer read the same way gives the same bias).</summary>
    private readonly Dictionary<(int MaskBuffer, string View), int> _cudnnAttentionBiases = [];

    /// <summary>BATCHWISE_ATTENTION: own (the engine's fused kernel; the default) or cudnn (cuDNN's fused attention where it takes the block).</summary>
    internal static bool AttentionByCudnnFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_ATTENTION")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "own" => false,
        "cudnn" => true,
        var other => throw new BatchwiseException($"BATCHWISE_ATTENTION '{other}' is not own or cudnn", "Unset it (the engine's own fused attention kernel), or set BATCHWISE_ATTENTION=cudnn (cuDNN's fused attention where it takes the block)."),
    };

    /// <summary>
    /// Emits the block as cuDNN's attention into <paramref name="y"/>: Q, K (as [.., key, d]) and V with their
    /// (batch, head, row, column) strides and offsets in elements, O's strides, the mask's (condition or half values,
    /// strides, offset, the boolean's two values). False, with nothing emitted, where it does not qualify.
    /// </summary>
    private bool TryEmitCudnnAttention(PlanValue y, (PlanValue Value, long[] Strides, long Offset)[] qkv, long[] outStrides, long batch, long heads, long rows, long keys, long d, double scale, (PlanValue Value, long[] Strides, long Offset, (double WhenTrue, double WhenFalse)? Select)? mask, bool zeroEmptyRows)
    {
        static bool Aligned(long[] strides, long offset) => strides[^1] == 1 && strides[..^1].All(s => s % 8 == 0) && offset % 8 == 0;

        // An axis of extent 1 has no stride that matters (the planner writes 0 there): cuDNN gets one past the others' span.
        long[] Packed(long[] strides, long inner)
        {
            long[] extents = [batch, heads, inner, d];
            var span = 1 + Enumerable.Range(0, 4).Sum(i => (extents[i] - 1) * Math.Abs(strides[i]));
            return [.. strides.Select((x, i) => extents[i] == 1 ? (span + 7) / 8 * 8 : x)];
        }

        qkv = [(qkv[0].Value, Packed(qkv[0].Strides, rows), qkv[0].Offset), (qkv[1].Value, Packed(qkv[1].Strides, keys), qkv[1].Offset), (qkv[2].Value, Packed(qkv[2].Strides, keys), qkv[2].Offset)];
        outStrides = Packed(outStrides, rows);
        if (d % 8 != 0 || d > 128 || St(y) != ElementType.Float16 || !qkv.All(o => St(o.Value) == ElementType.Float16 && Aligned(o.Strides, o.Offset))
            || !Aligned(outStrides, 0) || Math.Max(batch, heads) > int.MaxValue || Math.Max(rows, keys) > int.MaxValue
            || (mask is { } m && ((heads > 1 && m.Strides[1] != 0) || (rows > 1 && m.Strides[2] != 0))))
        {
            return false;
        }

        var shape = new CudnnAttentionShape((int)batch, (int)heads, (int)rows, (int)keys, (int)d, qkv[0].Strides, qkv[1].Strides, qkv[2].Strides, outStrides, [qkv[0].Offset, qkv[1].Offset, qkv[2].Offset], (float)scale, mask is not null);
        CudnnAttention? attention = null;
        if (!_target.PlansMatmulsWithoutLibrary)
        {
            // One cuDNN plan (its engine compiled at run time) for the plan's blocks of one shape: offsets are applied to
            // the addresses, so BERT's layers share it.
            var key = FormattableString.Invariant($"{shape.Batch},{shape.Heads},{shape.Rows},{shape.Keys},{shape.HeadDim};{string.Join(',', shape.Q)};{string.Join(',', shape.K)};{string.Join(',', shape.V)};{string.Join(',', shape.O)};{shape.Scale:R};{shape.Bias}");
            if (!_cudnnAttentions.TryGetValue(key, out attention))
            {
                try
                {
                    attention = new CudnnAttention(_target.PlanningCudnn, shape.Batch, shape.Heads, shape.Rows, shape.Keys, shape.HeadDim, shape.Q, shape.K, shape.V, shape.O, shape.Scale, shape.Bias);
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
            var view = FormattableString.Invariant($"{St(mk.Value)},{batch},{keys},{maskBatchStride},{mk.Strides[3]},{mk.Offset},{mk.Select}");
            if (!_cudnnAttentionBiases.TryGetValue((maskBuffer, view), out bias))
            {
                var b = Temp(ElementType.Float16, [batch, keys]);
                Emit(new KernelStep(_node + " (bias)", KernelSource.AttentionBias(St(mk.Value), batch, keys, maskBatchStride, mk.Strides[3], mk.Offset, mk.Select), batch * keys, KernelSource.BlockSize, [Dev(b), maskBuffer]));
                bias = Dev(b);
                _cudnnAttentionBiases[(maskBuffer, view)] = bias;
            }
        }

        Emit(new CudnnAttentionStep(_node + " (cuDNN)", [Dev(y), Dev(qkv[0].Value), Dev(qkv[1].Value), Dev(qkv[2].Value), bias], shape, attention));
        if (attention is not null)
        {
            ReserveWorkspace(attention.WorkspaceBytes);
        }

        if (zeroEmptyRows && mask is not null)
        {
            Emit(new KernelStep(_node + " (rows masked entirely)", KernelSource.AttentionZeroMaskedBatches(keys, heads, rows, d, outStrides), batch * KernelSource.AttentionZeroThreads, KernelSource.AttentionZeroThreads, [Dev(y), bias]));
        }

        return true;
    }
}
