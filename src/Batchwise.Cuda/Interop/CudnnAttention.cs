using System.Runtime.InteropServices;

namespace Batchwise.Cuda.Interop;

/// <summary>
/// cuDNN's fused scaled-dot-product attention forward (inference, half data, float compute) built through the backend
/// (graph) API as cudnn-frontend's composite SDPA node builds it for is_inference=true:
/// O = softmax(Q K^T * scale [+ bias]) V, the softmax spelled as max / sub / exp / sum / (log + add: the virtual stats) / div.
/// Q, K, V and O are [batch, heads, seq, headDim] with any strides (element units), so they can be read out of an
/// interleaved QKV buffer and written straight into [batch, seq, heads, headDim]; the optional additive bias is a half
/// [batch, 1, 1, seqKv] tensor (a padding mask as 0 / -10000), or [batch, 1, seqQ, seqKv] with
/// <c>biasPerRow</c> (a mask that varies by query); or, with <c>sequenceLengths</c>, no bias but cudnn-frontend's padding
/// mask: two int32 arrays of <c>batch</c> lengths (queries, then keys) in one buffer, the products' M / N / K overridden by
/// them and every score outside (row &lt; query length, key &lt; key length) set to -inf. It holds the first <c>candidates</c> of heuristics mode A's
/// configurations that finalize (one by default; or only the configuration at <c>onlyConfiguration</c> in the heuristics'
/// list), the first chosen until <see cref="Choose"/> keeps another (the planner times them: <see cref="ExecuteCandidate"/>);
/// every descriptor they were built from lives as long as they do.
/// </summary>
internal sealed unsafe class CudnnAttention : IDisposable
{
    private const long UidQ = 1, UidK = 2, UidV = 3, UidO = 4, UidBias = 5, UidScale = 6, UidSeqQ = 7, UidSeqKv = 8, UidNegativeInfinity = 9;

    private readonly List<NativeHandle> _descriptors = [];
    private readonly List<CudnnBackendEngineConfig> _configs = [];
    private readonly List<CudnnBackendPlan> _candidates = [];
    private readonly bool _bias;
    private readonly bool _lengths;
    private readonly int _batch;
    private float* _scale; // [scale, -inf]: the by-value scalars

    /// <summary>
    /// Builds the graph and up to <paramref name="candidates"/> plans on <paramref name="handle"/> (only the heuristics'
    /// configuration at <paramref name="onlyConfiguration"/> where that is not negative); cuDNN's refusal of every one as a
    /// <see cref="CudaException"/>.
    /// </summary>
    public CudnnAttention(CudnnHandle handle, int batch, int heads, int seqQ, int seqKv, int headDim, long[] qStrides, long[] kStrides, long[] vStrides, long[] oStrides, float scale, bool bias, bool biasPerRow = false, int candidates = 1, int onlyConfiguration = -1, bool sequenceLengths = false)
    {
        if (bias && sequenceLengths)
        {
            throw new ArgumentException("An attention graph takes a bias or sequence lengths, not both", nameof(sequenceLengths));
        }

        _bias = bias;
        _lengths = sequenceLengths;
        _batch = batch;
        _scale = (float*)NativeMemory.Alloc(2 * sizeof(float));
        _scale[0] = scale;
        _scale[1] = float.NegativeInfinity;
        try
        {
            long b = batch, h = heads, sq = seqQ, skv = seqKv, d = headDim;
            const int half = Cudnn.CUDNN_DATA_HALF, single = Cudnn.CUDNN_DATA_FLOAT;
            long[] scores = [b, h, sq, skv], scoreStrides = [h * sq * skv, sq * skv, skv, 1];
            long[] rows = [b, h, sq, 1], rowStrides = [h * sq, sq, 1, 1];
            var nextVirtual = 100L;

            CudnnBackendTensor Keep(CudnnBackendTensor t)
            {
                _descriptors.Add(t);
                return t;
            }

            T KeepOp<T>(T op)
                where T : NativeHandle
            {
                _descriptors.Add(op);
                return op;
            }

            CudnnBackendTensor Virtual(int type, long[] dims, long[] strides) => Keep(Cudnn.BackendTensorOf(nextVirtual++, type, dims, strides, true));

            // The backend wants K^T: K's [b, h, skv, d] seen as [b, h, d, skv] by swapping the last two dims and strides.
            var q = Keep(Cudnn.BackendTensorOf(UidQ, half, [b, h, sq, d], qStrides, false));
            var kt = Keep(Cudnn.BackendTensorOf(UidK, half, [b, h, d, skv], [kStrides[0], kStrides[1], kStrides[3], kStrides[2]], false));
            var v = Keep(Cudnn.BackendTensorOf(UidV, half, [b, h, skv, d], vStrides, false));
            var o = Keep(Cudnn.BackendTensorOf(UidO, half, [b, h, sq, d], oStrides, false));
            var scaleTensor = Keep(Cudnn.BackendTensorOf(UidScale, single, [1, 1, 1, 1], [1, 1, 1, 1], false, isByValue: true));
            var biasRows = biasPerRow ? sq : 1;
            var biasTensor = bias ? Keep(Cudnn.BackendTensorOf(UidBias, half, [b, 1, biasRows, skv], [biasRows * skv, biasRows * skv, skv, 1], false)) : null;

            var queryLengths = sequenceLengths ? Keep(Cudnn.BackendTensorOf(UidSeqQ, Cudnn.CUDNN_DATA_INT32, [b, 1, 1, 1], [1, 1, 1, 1], false)) : null;
            var keyLengths = sequenceLengths ? Keep(Cudnn.BackendTensorOf(UidSeqKv, Cudnn.CUDNN_DATA_INT32, [b, 1, 1, 1], [1, 1, 1, 1], false)) : null;
            var matmul = KeepOp(Cudnn.BackendMatmulOf(single));
            var scoresMatmul = sequenceLengths ? KeepOp(Cudnn.BackendMatmulOf(single, paddingValue: 0.0)) : matmul;
            var mul = KeepOp(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_MUL));
            var add = KeepOp(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_ADD));
            var sub = KeepOp(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_SUB));
            var exp = KeepOp(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_EXP));
            var log = KeepOp(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_LOG));
            var div = KeepOp(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_DIV));
            var max = KeepOp(Cudnn.BackendReductionOf(Cudnn.CUDNN_REDUCE_TENSOR_MAX, single));
            var sum = KeepOp(Cudnn.BackendReductionOf(Cudnn.CUDNN_REDUCE_TENSOR_ADD, single));

            var ops = new List<NativeHandle>();

            // bmm1: S = Q K^T (float), then S * scale, then (optionally) S + bias.
            var s = Virtual(single, scores, scoreStrides);
            ops.Add(KeepOp(Cudnn.BackendMatmulOperationOf(scoresMatmul, q, kt, s, queryLengths, keyLengths)));
            var scaled = Virtual(single, scores, scoreStrides);
            ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(mul, s, scaleTensor, scaled)));
            var last = scaled;
            if (biasTensor is not null)
            {
                var biased = Virtual(single, scores, scoreStrides);
                ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(add, last, biasTensor, biased)));
                last = biased;
            }

            if (queryLengths is not null && keyLengths is not null)
            {
                // cudnn-frontend's padding mask: keep (row < seq_q && column < seq_kv), else -inf.
                const int int32 = Cudnn.CUDNN_DATA_INT32, boolean = Cudnn.CUDNN_DATA_BOOLEAN;
                var row = Virtual(int32, scores, scoreStrides);
                ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(KeepOp(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_GEN_INDEX, int32, axis: 2)), last, null, row)));
                var column = Virtual(int32, scores, scoreStrides);
                ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(KeepOp(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_GEN_INDEX, int32, axis: 3)), last, null, column)));
                var lessThan = KeepOp(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_CMP_LT, boolean));
                var rowKept = Virtual(boolean, scores, scoreStrides);
                ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(lessThan, row, queryLengths, rowKept)));
                var columnKept = Virtual(boolean, scores, scoreStrides);
                ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(lessThan, column, keyLengths, columnKept)));
                var kept = Virtual(boolean, scores, scoreStrides);
                ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(KeepOp(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_LOGICAL_AND, boolean)), rowKept, columnKept, kept)));
                var negativeInfinity = Keep(Cudnn.BackendTensorOf(UidNegativeInfinity, single, [1, 1, 1, 1], [1, 1, 1, 1], false, isByValue: true));
                var masked = Virtual(single, scores, scoreStrides);
                ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(KeepOp(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_BINARY_SELECT)), last, negativeInfinity, masked, kept)));
                last = masked;
            }

            // Softmax as cudnn-frontend's CompositeSoftmaxNode spells it: M = max(S); E = exp(S - M); Z = sum(E);
            // stats = M + log(Z) (virtual: the frontend adds it even for inference); P = E / Z in the i/o type.
            var m = Virtual(single, rows, rowStrides);
            ops.Add(KeepOp(Cudnn.BackendReductionOperationOf(max, last, m)));
            var centered = Virtual(single, scores, scoreStrides);
            ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(sub, last, m, centered)));
            var e = Virtual(single, scores, scoreStrides);
            ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(exp, centered, null, e)));
            var z = Virtual(single, rows, rowStrides);
            ops.Add(KeepOp(Cudnn.BackendReductionOperationOf(sum, e, z)));
            var logZ = Virtual(single, rows, rowStrides);
            ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(log, z, null, logZ)));
            var stats = Virtual(single, rows, rowStrides);
            ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(add, m, logZ, stats)));
            var p = Virtual(half, scores, scoreStrides);
            ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(div, e, z, p)));

            // bmm2: O = P V.
            ops.Add(KeepOp(Cudnn.BackendMatmulOperationOf(matmul, p, v, o, mOverride: queryLengths, kOverride: keyLengths)));

            var graph = KeepOp(Cudnn.BackendGraphOf(handle, ops));
            _configs.AddRange(Cudnn.BackendConfigsOf(graph));
            Offered = [.. _configs.Select(c => Cudnn.BackendEngineOf(c).GlobalIndex)];
            if (onlyConfiguration >= _configs.Count)
            {
                throw new CudaException("cuDNN", "cudnnBackendGetAttribute(ENGINEHEUR_RESULTS)", 3000, $"CUDNN_STATUS_NOT_SUPPORTED: the heuristics offer {_configs.Count} attention configurations, not {onlyConfiguration + 1}");
            }

            // Each plan keeps its place in the heuristics' whole list (what a timing cache stores), also when built alone.
            var offset = Math.Max(onlyConfiguration, 0);
            _candidates.AddRange(Cudnn.BackendPlansOf(handle, onlyConfiguration < 0 ? _configs : [_configs[onlyConfiguration]], "the attention graph", Math.Max(1, candidates))
                .Select(c => c with { Configuration = c.Configuration + offset }));
        }
        catch
        {
            Release();
            throw;
        }
    }

    /// <summary>Bytes of device workspace an execution of the chosen plan needs (of any candidate's, while more than one is held).</summary>
    public long WorkspaceBytes => _candidates.Max(c => c.WorkspaceBytes);

    /// <summary>cuDNN's global index of the engine behind the chosen plan.</summary>
    public long EngineGlobalIndex => _candidates[0].Engine;

    /// <summary>Whether that engine compiles its kernel at run time (CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION).</summary>
    public bool RuntimeCompiled => _candidates[0].RuntimeCompiled;

    /// <summary>The chosen plan's place in the heuristics' list of configurations (what a timing cache keeps).</summary>
    public int Configuration => _candidates[0].Configuration;

    /// <summary>How many plans are held (<see cref="Choose"/> keeps one).</summary>
    public int CandidateCount => _candidates.Count;

    /// <summary>Keeps candidate <paramref name="index"/> (in build order) as the plan and releases the others.</summary>
    public void Choose(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _candidates.Count);
        var kept = _candidates[index];
        foreach (var other in _candidates.Where((_, i) => i != index))
        {
            other.Plan.Dispose();
        }

        _candidates.Clear();
        _candidates.Add(kept);
    }

    /// <summary>The global indices of every engine configuration heuristics mode A offered, best first.</summary>
    public IReadOnlyList<long> Offered { get; } = [];

    /// <summary>
    /// A variant pack for these addresses (the caller owns it): device addresses of Q, K, V (element 0 of each, strides as
    /// built), O, the mask (the bias, or the 2 x batch int32 sequence lengths; ignored when built without either) and a
    /// workspace of <see cref="WorkspaceBytes"/>.
    /// </summary>
    public CudnnBackendVariantPack Pack(ulong q, ulong k, ulong v, ulong o, ulong mask, ulong workspace)
    {
        ObjectDisposedException.ThrowIf(_scale == null, this);
        List<ulong> pointers = [q, k, v, o, (ulong)_scale];
        List<long> uids = [UidQ, UidK, UidV, UidO, UidScale];
        if (_bias)
        {
            pointers.Add(mask);
            uids.Add(UidBias);
        }
        else if (_lengths)
        {
            pointers.AddRange([mask, mask + ((ulong)_batch * sizeof(int)), (ulong)(_scale + 1)]);
            uids.AddRange([UidSeqQ, UidSeqKv, UidNegativeInfinity]);
        }

        return Cudnn.BackendVariantPackOf([.. uids], [.. pointers], workspace);
    }

    /// <summary>Enqueues the attention on the handle's stream with the addresses of <paramref name="pack"/> (<see cref="Pack"/>).</summary>
    public void Execute(CudnnHandle handle, CudnnBackendVariantPack pack) => Cudnn.BackendExecute(handle, _candidates[0].Plan, pack);

    /// <summary>Enqueues candidate <paramref name="index"/> (in build order) with the addresses of <paramref name="pack"/> (a workspace of <see cref="WorkspaceBytes"/>).</summary>
    public void ExecuteCandidate(CudnnHandle handle, CudnnBackendVariantPack pack, int index) => Cudnn.BackendExecute(handle, _candidates[index].Plan, pack);

    /// <summary>Releases the plan and every descriptor; safe to call more than once (steps of one plan may share it).</summary>
    public void Dispose() => Release();

    private void Release()
    {
        foreach (var candidate in _candidates)
        {
            candidate.Plan.Dispose();
        }

        _candidates.Clear();
        Cudnn.ReleaseGraph(_configs, _descriptors);
        if (_scale != null)
        {
            NativeMemory.Free(_scale);
            _scale = null;
        }
    }
}
