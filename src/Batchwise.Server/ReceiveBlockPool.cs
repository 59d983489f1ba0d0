using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;

namespace Batchwise.Server;

/// <summary>
/// Kestrel's memory pool with large blocks (64 KB by default, <see cref="ServerOptions.ReceiveBlockBytes"/>) instead of
/// its 4 KB ones. Kestrel receives from a socket into the free part of one block per call, so a 602 KB request took ~150
/// recv calls (each a system call, and for HTTP/2 each a pass of the frame reader); with 64 KB blocks it takes ~10. Pipes
/// and HTTP/2 request bodies take their segments from this pool too, so a gRPC message lies in ~10 segments instead of
/// ~150; and Kestrel's HTTP/2 connection copies its socket input into its frame reader's pipe one block per round (the
/// copy waits for the frame reader after each), so the block size also sets how many such rounds a message takes.
/// Blocks are pinned (the pinned object heap) and reused; at most <see cref="MaxRetainedBytes"/> of idle blocks are
/// kept, the rest left to the GC.
/// </summary>
/// <param name="blockSize">Bytes in one block: what one receive can take at most.</param>
internal sealed class ReceiveBlockPool(int blockSize = ReceiveBlockPool.DefaultBlockSize) : MemoryPool<byte>
{
    /// <summary>The block size unless the server is told otherwise.</summary>
    public const int DefaultBlockSize = ServerOptions.DefaultReceiveBlockBytes;

    /// <summary>Smallest block size accepted (a block below HTTP/2's 16 KB frames would split every frame).</summary>
    public const int MinBlockSize = 16 * 1024;

    /// <summary>Largest block size accepted.</summary>
    public const int MaxBlockSize = 16 * 1024 * 1024;

    /// <summary>Most bytes of idle blocks kept for reuse.</summary>
    public const long MaxRetainedBytes = 256L << 20;

    private readonly ConcurrentQueue<Block> _free = new();
    private int _retained;

    /// <inheritdoc/>
    public override int MaxBufferSize => BlockSize;

    /// <summary>Bytes in one block: what one receive can take at most.</summary>
    public int BlockSize { get; } = blockSize is >= MinBlockSize and <= MaxBlockSize
        ? blockSize
        : throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, $"A receive block is {MinBlockSize}..{MaxBlockSize} bytes");

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
    /// <param name="blockSize">Bytes in each pool's blocks.</param>
    internal sealed class Factory(int blockSize = DefaultBlockSize) : IMemoryPoolFactory<byte>
    {
        public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => new ReceiveBlockPool(blockSize);
    }
}
