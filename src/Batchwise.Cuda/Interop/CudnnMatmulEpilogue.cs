namespace Batchwise.Cuda.Interop;

/// <summary>
/// A half product with its epilogue in one cuDNN graph (backend API, runtime fusion): Y = act(A B [+ bias]), A [batch, M,
/// K], B [batch or 1, K, N], Y [batch, M, N] with any strides (element units), the bias a half row of N broadcast over the
/// rest, the product and the epilogue in float, the activation one of cuDNN's pointwise modes (GELU_FWD is erf's GELU,
/// exact, which cuBLASLt's epilogues do not have). Plans for the first <c>candidates</c> engine configurations of
/// heuristics mode A that finalize are built, so a caller can time them and keep the fastest; every descriptor they
/// were built from lives as long as they do.
/// </summary>
internal sealed class CudnnMatmulEpilogue : IDisposable
{
    private const long UidA = 1, UidB = 2, UidBias = 3, UidY = 4;

    private readonly List<NativeHandle> _descriptors = [];
    private readonly List<CudnnBackendEngineConfig> _configs = [];
    private readonly List<CudnnBackendPlan> _plans = [];
    private readonly bool _bias;

    /// <summary>Builds the graph and up to <paramref name="candidates"/> plans on <paramref name="handle"/> from the configurations heuristics mode <paramref name="heuristicsMode"/> offers; cuDNN's refusal (no configuration finalizes) as a <see cref="CudaException"/>.</summary>
    public CudnnMatmulEpilogue(CudnnHandle handle, long batch, long m, long n, long k, long[] aStrides, long[] bStrides, long[] yStrides, bool bias, int? activation, int candidates = 1, int heuristicsMode = Cudnn.CUDNN_HEUR_MODE_A)
    {
        _bias = bias;
        try
        {
            const int half = Cudnn.CUDNN_DATA_HALF, single = Cudnn.CUDNN_DATA_FLOAT;
            long[] dims = [batch, m, n], strides = [m * n, n, 1];
            var nextVirtual = 100L;

            T Keep<T>(T descriptor)
                where T : NativeHandle
            {
                _descriptors.Add(descriptor);
                return descriptor;
            }

            var a = Keep(Cudnn.BackendTensorOf(UidA, half, [batch, m, k], aStrides, false));
            var b = Keep(Cudnn.BackendTensorOf(UidB, half, [bStrides[0] == 0 ? 1 : batch, k, n], bStrides[0] == 0 ? [k * n, bStrides[1], bStrides[2]] : bStrides, false));
            var y = Keep(Cudnn.BackendTensorOf(UidY, half, dims, yStrides, false));
            var ops = new List<NativeHandle>();
            var steps = (bias ? 1 : 0) + (activation is null ? 0 : 1);
            CudnnBackendTensor Next() => steps-- > 0 ? Keep(Cudnn.BackendTensorOf(nextVirtual++, single, dims, strides, true)) : y;

            var product = Next();
            ops.Add(Keep(Cudnn.BackendMatmulOperationOf(Keep(Cudnn.BackendMatmulOf(single)), a, b, product)));
            var last = product;
            if (bias)
            {
                var biasTensor = Keep(Cudnn.BackendTensorOf(UidBias, half, [1, 1, n], [n, n, 1], false));
                var biased = Next();
                ops.Add(Keep(Cudnn.BackendPointwiseOperationOf(Keep(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_ADD)), last, biasTensor, biased)));
                last = biased;
            }

            if (activation is { } mode)
            {
                ops.Add(Keep(Cudnn.BackendPointwiseOperationOf(Keep(Cudnn.BackendPointwiseOf(mode)), last, null, Next())));
            }

            var graph = Keep(Cudnn.BackendGraphOf(handle, ops));
            _configs.AddRange(Cudnn.BackendConfigsOf(graph, heuristicsMode));
            Offered = [.. _configs.Select(c => Cudnn.BackendEngineOf(c).GlobalIndex)];
            _plans.AddRange(Cudnn.BackendPlansOf(handle, _configs, "the product and its epilogue", candidates));
        }
        catch
        {
            Release();
            throw;
        }
    }

    /// <summary>The plans built, best first by cuDNN's heuristics.</summary>
    public int Candidates => _plans.Count;

    /// <summary>The global indices of every engine configuration heuristics mode A offered, best first.</summary>
    public IReadOnlyList<long> Offered { get; } = [];

    /// <summary>Bytes of device workspace candidate <paramref name="candidate"/> needs.</summary>
    public long WorkspaceBytes(int candidate = 0) => _plans[candidate].WorkspaceBytes;

    /// <summary>cuDNN's global engine index behind candidate <paramref name="candidate"/> and whether it compiles its kernel at run time.</summary>
    public (long Engine, bool RuntimeCompiled) EngineOf(int candidate = 0) => (_plans[candidate].Engine, _plans[candidate].RuntimeCompiled);

    /// <summary>A variant pack for these device addresses (the caller owns it): A, B, the bias (ignored when built without one), Y and a workspace.</summary>
    public CudnnBackendVariantPack Pack(ulong a, ulong b, ulong bias, ulong y, ulong workspace)
    {
        ulong[] pointers = _bias ? [a, b, bias, y] : [a, b, y];
        long[] uids = _bias ? [UidA, UidB, UidBias, UidY] : [UidA, UidB, UidY];
        return Cudnn.BackendVariantPackOf(uids, pointers, workspace);
    }

    /// <summary>Enqueues candidate <paramref name="candidate"/> on the handle's stream with the addresses of <paramref name="pack"/>.</summary>
    public void Execute(CudnnHandle handle, CudnnBackendVariantPack pack, int candidate = 0) => Cudnn.BackendExecute(handle, _plans[candidate].Plan, pack);

    /// <summary>Releases the plans and every descriptor; safe to call more than once.</summary>
    public void Dispose() => Release();

    private void Release()
    {
        foreach (var p in _plans)
        {
            p.Plan.Dispose();
        }

        _plans.Clear();
        Cudnn.ReleaseGraph(_configs, _descriptors);
    }
}
