using System.Collections.Concurrent;

namespace Batchwise.Server;

/// <summary>
/// Pinned byte arrays of exactly the size a request tensor needs, reused across requests so a steady stream of
/// same-shaped requests allocates no tensor memory: a request's inputs are read straight into them (HTTP binary data,
/// shared memory regions) and they go back to the pool once the response is written. Arrays below
/// <see cref="MinPooledBytes"/> are allocated as usual (cheap, and not worth holding); the pool keeps at most
/// <see cref="MaxRetainedBytes"/> in all, dropping the rest to the GC.
/// </summary>
internal sealed class TensorBufferPool(long maxRetainedBytes)
{
    /// <summary>Arrays smaller than this are not pooled.</summary>
    public const int MinPooledBytes = 16 * 1024;

    private readonly ConcurrentDictionary<int, ConcurrentQueue<byte[]>> _free = new();
    private long _retained;

    /// <summary>The pool the server's protocol front ends share (256 MiB of idle buffers at most).</summary>
    public static TensorBufferPool Shared { get; } = new(256L << 20);

    /// <summary>Most bytes kept idle in the pool.</summary>
    public long MaxRetainedBytes { get; } = maxRetainedBytes;

    /// <summary>Bytes idle in the pool now.</summary>
    public long RetainedBytes => Interlocked.Read(ref _retained);

    /// <summary>A pinned array of exactly <paramref name="length"/> bytes (its contents are whatever the last user left).</summary>
    public byte[] Rent(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (length >= MinPooledBytes && _free.TryGetValue(length, out var queue) && queue.TryDequeue(out var array))
        {
            Interlocked.Add(ref _retained, -length);
            return array;
        }

        return GC.AllocateUninitializedArray<byte>(length, pinned: true);
    }

    /// <summary>Gives an array back; the caller must hold no reference to it any more.</summary>
    public void Return(byte[] array)
    {
        ArgumentNullException.ThrowIfNull(array);
        if (array.Length < MinPooledBytes)
        {
            return;
        }

        if (Interlocked.Add(ref _retained, array.Length) > MaxRetainedBytes)
        {
            Interlocked.Add(ref _retained, -array.Length);
            return;
        }

        _free.GetOrAdd(array.Length, _ => new ConcurrentQueue<byte[]>()).Enqueue(array);
    }
}

/// <summary>
/// The pooled arrays one request holds: rented while it is decoded, given back in <see cref="Dispose"/> once its response
/// has been written (never earlier: the engine and the response may read them until then).
/// </summary>
internal sealed class RequestBuffers(TensorBufferPool pool) : IDisposable
{
    private List<byte[]>? _rented;

    /// <summary>A pooled array of exactly <paramref name="length"/> bytes, owned by this request until it is disposed.</summary>
    public byte[] Rent(int length)
    {
        var array = pool.Rent(length);
        (_rented ??= []).Add(array);
        return array;
    }

    /// <summary>Returns every array to the pool.</summary>
    public void Dispose()
    {
        if (_rented is null)
        {
            return;
        }

        foreach (var a in _rented)
        {
            pool.Return(a);
        }

        _rented = null;
    }
}
