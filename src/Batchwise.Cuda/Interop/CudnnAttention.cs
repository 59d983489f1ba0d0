using System.Runtime.InteropServices;

namespace Batchwise.Cuda.Interop;

/// <summary>
/// cuDNN's fused scaled-dot-product attention forward (inference, half data, float compute) built through the backend
/// (graph) API as cudnn-frontend's composite SDPA node builds it for is_inference=true:
/// O = softmax(Q K^T * scale [+ bias]) V, the softmax spelled as max / sub / exp / sum / (log + add: the virtual stats) / div.
/// Q, K, V and O are [batch, heads, seq, headDim] with any strides (element units), so they can be read out of an
/// interleaved QKV buffer and written straight into [batch, seq, heads, headDim]; the optional additive bias is a half
/// [batch, 1, 1, seqKv] tensor (a padding mask as 0 / -10000), or [batch, 1, seqQ, seqKv] with
/// <c>biasPerRow</c> (a mask that varies by query). It holds the first <c>candidates</c> of heuristics mode A's
/// configurations that finalize (one by default; or only the configuration at <c>onlyConfiguration</c> in the heuristics'
/// list), the first chosen until <see cref="Choose"/> keeps another (the planner times them: <see cref="ExecuteCandidate"/>);
/// every descriptor they were built from lives as long as they do.
/// </summary>
internal sealed unsafe class CudnnAttention : IDisposable
{
    private const long UidQ = 1, UidK = 2, UidV = 3, UidO = 4, UidBias = 5, UidScale = 6;

    private readonly List<NativeHandle> _descriptors = [];
    private readonly List<CudnnBackendEngineConfig> _configs = [];
    private readonly List<CudnnBackendPlan> _candidates = [];
    private readonly bool _bias;
    private float* _scale;

    /// <summary>
    /// Builds the graph and up to <paramref name="candidates"/> plans on <paramref name="handle"/> (only the heuristics'
    /// configuration at <paramref name="onlyConfiguration"/> where that is not negative); cuDNN's refusal of every one as a
    /// <see cref="CudaException"/>.
    /// </summary>
    public CudnnAttention(CudnnHandle handle, int batch, int heads, int seqQ, int seqKv, int headDim, long[] qStrides, long[] kStrides, long[] vStrides, long[] oStrides, float scale, bool bias, bool biasPerRow = false, int candidates = 1, int onlyConfiguration = -1)
    {
        _bias = bias;
        _scale = (float*)NativeMemory.Alloc(sizeof(float));
        *_scale = scale;
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

            var matmul = KeepOp(Cudnn.BackendMatmulOf(single));
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
            ops.Add(KeepOp(Cudnn.BackendMatmulOperationOf(matmul, q, kt, s)));
            var scaled = Virtual(single, scores, scoreStrides);
            ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(mul, s, scaleTensor, scaled)));
            var last = scaled;
            if (biasTensor is not null)
            {
                var biased = Virtual(single, scores, scoreStrides);
                ops.Add(KeepOp(Cudnn.BackendPointwiseOperationOf(add, last, biasTensor, biased)));
                last = biased;
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
            ops.Add(KeepOp(Cudnn.BackendMatmulOperationOf(matmul, p, v, o)));

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
    /// built), O, the bias (ignored when built without one) and a workspace of <see cref="WorkspaceBytes"/>.
    /// </summary>
    public CudnnBackendVariantPack Pack(ulong q, ulong k, ulong v, ulong o, ulong bias, ulong workspace)
    {
        ObjectDisposedException.ThrowIf(_scale == null, this);
        ulong[] pointers = _bias ? [q, k, v, o, bias, (ulong)_scale] : [q, k, v, o, (ulong)_scale];
        long[] uids = _bias ? [UidQ, UidK, UidV, UidO, UidBias, UidScale] : [UidQ, UidK, UidV, UidO, UidScale];
        return Cudnn.BackendVariantPackOf(uids, pointers, workspace);
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
