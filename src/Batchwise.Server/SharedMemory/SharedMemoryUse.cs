namespace Batchwise.Server.SharedMemory;

/// <summary>A tensor's place in a registered region: the region (held), the offset in it and the bytes given.</summary>
internal sealed record SharedMemoryRef(SharedMemoryRegion Region, long Offset, long ByteSize);

/// <summary>
/// The shared memory one request uses: every region it names is held from parsing until its response is written,
/// so an unregister meanwhile cannot unmap it under the request.
/// </summary>
internal sealed class SharedMemoryUse(SystemSharedMemoryRegistry? registry) : IDisposable
{
    private readonly List<SharedMemoryRegion> _held = [];

    /// <summary>For callers without a registry: any region named is a 400.</summary>
    public static readonly SharedMemoryUse None = new(null);

    /// <summary>
    /// The reference the shared_memory_* parameters make for <paramref name="what"/> (an input or output), or null when
    /// they name no region; a 400 for a size or offset without a region, an unknown region, or a range past its end.
    /// </summary>
    public SharedMemoryRef? Resolve(string what, string? region, IntegerParameter? byteSize, IntegerParameter? offset)
    {
        if (region is null)
        {
            return byteSize is not null || offset is not null
                ? throw InferenceError.BadRequest($"{what}: shared_memory_byte_size or shared_memory_offset is given without shared_memory_region")
                : null;
        }

        if (registry is null)
        {
            throw InferenceError.BadRequest($"{what}: this server takes no shared memory");
        }

        if (byteSize is not { Value: { } size } || size < 0 || size > long.MaxValue)
        {
            throw InferenceError.BadRequest($"{what}: shared_memory_byte_size is {byteSize?.Text ?? "missing"}; give the tensor's size in bytes (an integer >= 0)");
        }

        var at = 0L;
        if (offset is { } o)
        {
            at = o.Value is { } v && v >= 0 && v <= long.MaxValue ? (long)v : throw InferenceError.BadRequest($"{what}: shared_memory_offset is {o.Text}; give a byte offset (an integer >= 0)");
        }

        var held = registry.Hold(what, region);
        _held.Add(held);
        held.CheckRange(what, at, (long)size);
        return new SharedMemoryRef(held, at, (long)size);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var r in _held)
        {
            r.Release();
        }

        _held.Clear();
    }
}
