namespace Batchwise.Engines;

/// <summary>
/// Where a request's tensor bytes already are when they need not be copied into a managed array first: memory another
/// process shares with the server (Triton's system and CUDA shared memory). An engine that can read such memory itself
/// copies it straight into its device input (<see cref="IStagedRun.TryCopyInput"/>); any other reads
/// <see cref="Tensor.Data"/>, which copies the bytes once into a managed array (the path every engine had before).
/// The memory stays valid while the request is in progress (the server holds the region until it answers).
/// </summary>
public abstract class TensorSource
{
    /// <summary>Creates a source of <paramref name="byteCount"/> bytes.</summary>
    protected TensorSource(long byteCount) => ByteCount = byteCount;

    /// <summary>The tensor's size in bytes.</summary>
    public long ByteCount { get; }

    /// <summary>The target an engine wrote these bytes to, when this source reads a delivered output back from it (else null).</summary>
    public TensorTarget? DeliveredTo { get; internal init; }

    /// <summary>Copies the bytes into <paramref name="target"/> (exactly <see cref="ByteCount"/> bytes): the fallback path.</summary>
    public abstract void CopyTo(Span<byte> target);
}

/// <summary>Bytes in host memory mapped into this process (a system shared memory region), read in place.</summary>
public sealed unsafe class HostTensorSource : TensorSource
{
    /// <summary>Wraps <paramref name="byteCount"/> bytes at <paramref name="pointer"/>; <paramref name="pageLocked"/> when they are registered with the GPU driver.</summary>
    public HostTensorSource(IntPtr pointer, long byteCount, bool pageLocked)
        : base(byteCount)
    {
        Pointer = pointer;
        PageLocked = pageLocked;
    }

    /// <summary>The first byte.</summary>
    public IntPtr Pointer { get; }

    /// <summary>True when the range is page-locked for the GPU (copies to the device run asynchronously from it).</summary>
    public bool PageLocked { get; }

    /// <inheritdoc/>
    public override void CopyTo(Span<byte> target)
    {
        if (target.Length != ByteCount)
        {
            throw new ArgumentException($"The source holds {ByteCount} bytes; the target holds {target.Length}", nameof(target));
        }

        new ReadOnlySpan<byte>((void*)Pointer, checked((int)ByteCount)).CopyTo(target);
    }
}

/// <summary>Bytes in device memory of GPU <see cref="Device"/> (a CUDA shared memory region opened in this process).</summary>
public sealed class DeviceTensorSource : TensorSource
{
    private readonly IDeviceMemory _memory;
    private readonly long _offset;

    /// <summary>Wraps <paramref name="byteCount"/> bytes at <paramref name="offset"/> of <paramref name="memory"/>.</summary>
    public DeviceTensorSource(IDeviceMemory memory, long offset, long byteCount)
        : base(byteCount)
    {
        ArgumentNullException.ThrowIfNull(memory);
        _memory = memory;
        _offset = offset;
    }

    /// <summary>The GPU the bytes are on.</summary>
    public int Device => _memory.Device;

    /// <summary>The device address of the first byte (valid in this process's primary context of <see cref="Device"/>).</summary>
    public ulong Pointer => _memory.Pointer + (ulong)_offset;

    /// <summary>Device to host, synchronously (the fallback for an engine that cannot read device memory).</summary>
    public override void CopyTo(Span<byte> target)
    {
        if (target.Length != ByteCount)
        {
            throw new ArgumentException($"The source holds {ByteCount} bytes; the target holds {target.Length}", nameof(target));
        }

        _memory.Read(_offset, target);
    }
}

/// <summary>
/// An optional capability of an <see cref="IEngineSession"/> on a GPU: page-locks a range of host memory another
/// process shares (cuMemHostRegister), so copies from it to the device run asynchronously with no staging copy.
/// </summary>
public interface IHostMemoryRegistration
{
    /// <summary>Registers the range; null with <paramref name="failure"/> set when the driver refuses (the caller falls back to copying).</summary>
    IDisposable? TryRegister(IntPtr pointer, long bytes, out string? failure);
}
