namespace Batchwise.Server.SharedMemory;

/// <summary>
/// A registered shared memory region of either kind (system or CUDA): requests hold it while they read their inputs and
/// write their outputs; an unregister while a request holds it removes the name at once and releases the memory when
/// the last holder lets go.
/// </summary>
public abstract class SharedMemoryRegion
{
    private int _holders = 1; // the registry's own reference

    /// <summary>Creates a region of <paramref name="byteSize"/> bytes named <paramref name="name"/>.</summary>
    private protected SharedMemoryRegion(string name, long byteSize)
    {
        Name = name;
        ByteSize = byteSize;
    }

    /// <summary>The name requests use.</summary>
    public string Name { get; }

    /// <summary>The region's size in bytes.</summary>
    public long ByteSize { get; }

    /// <summary>"system" or "CUDA", as error messages name the region's kind.</summary>
    internal abstract string Kind { get; }

    /// <summary>True once released (registry and every request let go).</summary>
    internal bool IsUnmapped => Volatile.Read(ref _holders) == 0;

    /// <summary>Takes a hold for one request; false when the region was unregistered and released meanwhile.</summary>
    internal bool TryHold()
    {
        while (true)
        {
            var n = Volatile.Read(ref _holders);
            if (n == 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _holders, n + 1, n) == n)
            {
                return true;
            }
        }
    }

    /// <summary>
    /// Removes one region from <paramref name="regions"/> and lets go of the registry's hold on it (a name not there is a
    /// no-op, as in Triton), or every region for an empty name.
    /// </summary>
    internal static void Unregister<TRegion>(System.Collections.Concurrent.ConcurrentDictionary<string, TRegion> regions, string? name)
        where TRegion : SharedMemoryRegion
    {
        foreach (var n in string.IsNullOrEmpty(name) ? [.. regions.Keys] : new[] { name })
        {
            if (regions.TryRemove(n, out var region))
            {
                region.Release();
            }
        }
    }

    /// <summary>Lets go of one hold; the last one releases the memory.</summary>
    internal void Release()
    {
        if (Interlocked.Decrement(ref _holders) == 0)
        {
            ReleaseMemory();
        }
    }

    /// <summary>Checks that [offset, offset + size) lies inside the region, or a 400 naming the tensor and the region.</summary>
    internal void CheckRange(string what, long offset, long size)
    {
        if (offset < 0 || size < 0 || offset > ByteSize || size > ByteSize - offset)
        {
            throw InferenceError.BadRequest($"{what}: shared_memory_offset {offset} + shared_memory_byte_size {size} runs past the end of {Kind} shared memory region '{Name}' ({ByteSize} bytes)");
        }
    }

    /// <summary>
    /// The range [offset, offset + bytes) (checked by the caller) as a source an engine may read in place, for a request
    /// to <paramref name="model"/>; null where the region has none (the request's bytes are then read out with
    /// <see cref="Read"/>).
    /// </summary>
    internal virtual Engines.TensorSource? Source(long offset, long bytes, ServedModel model) => null;

    /// <summary>
    /// The range [offset, offset + bytes) (checked by the caller) as a target an engine may write an output to in place,
    /// for a request to <paramref name="model"/>; null where the region has none (the output is then copied in with
    /// <see cref="Write"/>).
    /// </summary>
    internal virtual Engines.TensorTarget? Target(long offset, long bytes, ServedModel model) => null;

    /// <summary>Copies <paramref name="target"/>.Length bytes from <paramref name="offset"/> (checked by the caller).</summary>
    internal abstract void Read(long offset, byte[] target);

    /// <summary>Copies <paramref name="source"/> to <paramref name="offset"/> (checked by the caller).</summary>
    internal abstract void Write(long offset, byte[] source);

    /// <summary>Unmaps or closes the memory (called once, by the last holder).</summary>
    private protected abstract void ReleaseMemory();
}
