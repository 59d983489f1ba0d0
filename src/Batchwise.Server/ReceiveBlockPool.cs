using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;

namespace Batchwise.Server;

/// <summary>
/// Kestrel's memory pool with 64 KB blocks instead of its 4 KB ones. Kestrel receives from a socket into the free part of
/// one block per call, so a 602 KB request took ~150 recv calls (each a system call, and for HTTP/2 each a pass of the
/// frame reader); with 64 KB blocks it takes ~10. Pipes and HTTP/2 request bodies take their segments from this pool too,
/// so a gRPC message lies in ~10 segments instead of ~150. Blocks are pinned (the pinned object heap) and reused; at most
/// <see cref="MaxRetainedBytes"/> of idle blocks are kept, the rest left to the GC.
/// </summary>
internal sealed class ReceiveBlockPool : MemoryPool<byte>
{
    /// <summary>Bytes in one block: what one receive can take at most.</summary>
    public const int BlockSize = 64 * 1024;

    /// <summary>Most bytes of idle blocks kept for reuse.</summary>
    public const long MaxRetainedBytes = 256L << 20;

    private readonly ConcurrentQueue<Block> _free = new();
    private int _retained;

    /// <inheritdoc/>
    public override int MaxBufferSize => BlockSize;

    /// <summary>Idle blocks held now.</summary>
    public int Retained => Volatile.Read(ref _retained);

    /// <inheritdoc/>
    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        if (minBufferSize > BlockSize)
        {
            // Kestrel asks for at most MaxBufferSize; anything larger gets a block of its own, never pooled.
            return new Block(null, GC.AllocateUninitializedArray<byte>(minBufferSize, pinned: true));
        }

        if (_free.TryDequeue(out var block))
        {
            Interlocked.Decrement(ref _retained);
            return block;
        }

        return new Block(this, GC.AllocateUninitializedArray<byte>(BlockSize, pinned: true));
    }

    private void Return(Block block)
    {
        if ((long)Interlocked.Increment(ref _retained) * BlockSize > MaxRetainedBytes)
        {
            Interlocked.Decrement(ref _retained);
            return;
        }

        _free.Enqueue(block);
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        _free.Clear();
        _retained = 0;
    }

    /// <summary>A pinned array; its memory pins without a GC handle (sockets pin every buffer they receive into).</summary>
    private sealed class Block(ReceiveBlockPool? pool, byte[] array) : IMemoryOwner<byte>
    {
        public Memory<byte> Memory { get; } = MemoryMarshal.CreateFromPinnedArray(array, 0, array.Length);

        public void Dispose() => pool?.Return(this);
    }

    /// <summary>The factory Kestrel asks for its pools (one per transport and per connection kind).</summary>
    internal sealed class Factory : IMemoryPoolFactory<byte>
    {
        public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => new ReceiveBlockPool();
    }
}
