using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// The cuDNN variant packs (tensor addresses) of one backend-graph step, one per set of addresses: made the first time a
/// set is seen and kept, since an execution context's buffers do not move; safe across the slots that run the step.
/// </summary>
internal sealed class VariantPacks : IDisposable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, CudnnBackendVariantPack> _packs = new(StringComparer.Ordinal);

    /// <summary>The pack for <paramref name="addresses"/>, made by <paramref name="make"/> the first time (then <paramref name="first"/> is true).</summary>
    public CudnnBackendVariantPack For(ulong[] addresses, Func<CudnnBackendVariantPack> make, out bool first)
    {
        var key = string.Join(',', addresses);
        lock (_lock)
        {
            first = !_packs.TryGetValue(key, out var pack);
            if (first)
            {
                pack = make();
                _packs[key] = pack;
            }

            return pack!;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var p in _packs.Values)
            {
                p.Dispose();
            }

            _packs.Clear();
        }
    }
}
