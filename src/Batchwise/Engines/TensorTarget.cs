using Batchwise.Onnx;

namespace Batchwise.Engines;

/// <summary>
/// Where one request's rows of an output go instead of a managed array: memory another process shares with the server
/// (Triton's system and CUDA shared memory). An engine that can write there itself does so from its own output memory
/// (<see cref="IOutputTargets"/>, <see cref="IStagedRun.TryCopyOutput"/>); the request's output tensor then reads the
/// bytes back from the target (<see cref="Readback"/>) only if something asks for them. The memory stays valid while the
/// request is in progress (the server holds the region until it answers).
/// </summary>
public abstract class TensorTarget
{
    /// <summary>Creates a target of <paramref name="byteCount"/> bytes (the most the rows may take).</summary>
    protected TensorTarget(long byteCount) => ByteCount = byteCount;

    /// <summary>The bytes available.</summary>
    public long ByteCount { get; }

    /// <summary>Copies <paramref name="rows"/> to the start of the target (at most <see cref="ByteCount"/> bytes: checked by the caller).</summary>
    public abstract void CopyFrom(ReadOnlySpan<byte> rows);

    /// <summary>The first <paramref name="bytes"/> bytes of the target as a source (what a delivered output tensor reads back).</summary>
    public abstract TensorSource Readback(long bytes);
}

/// <summary>Host memory mapped into this process (a system shared memory region), written in place.</summary>
public sealed unsafe class HostTensorTarget : TensorTarget
{
    /// <summary>Wraps <paramref name="byteCount"/> bytes at <paramref name="pointer"/>; <paramref name="pageLocked"/> when they are registered with the GPU driver.</summary>
    public HostTensorTarget(IntPtr pointer, long byteCount, bool pageLocked)
        : base(byteCount)
    {
        Pointer = pointer;
        PageLocked = pageLocked;
    }

    /// <summary>The first byte.</summary>
    public IntPtr Pointer { get; }

    /// <summary>True when the range is page-locked for the GPU (copies from the device run asynchronously into it).</summary>
    public bool PageLocked { get; }

    /// <inheritdoc/>
    public override void CopyFrom(ReadOnlySpan<byte> rows)
    {
        if (rows.Length > ByteCount)
        {
            throw new ArgumentException($"{rows.Length} bytes do not fit the target's {ByteCount}", nameof(rows));
        }

        rows.CopyTo(new Span<byte>((void*)Pointer, rows.Length));
    }

    /// <inheritdoc/>
    public override TensorSource Readback(long bytes) => new HostTensorSource(Pointer, Math.Min(bytes, ByteCount), PageLocked) { DeliveredTo = this };
}

/// <summary>Device memory of GPU <see cref="Device"/> (a CUDA shared memory region opened in this process).</summary>
public sealed class DeviceTensorTarget : TensorTarget
{
    private readonly IDeviceMemory _memory;
    private readonly long _offset;

    /// <summary>Wraps <paramref name="byteCount"/> bytes at <paramref name="offset"/> of <paramref name="memory"/>.</summary>
    public DeviceTensorTarget(IDeviceMemory memory, long offset, long byteCount)
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

    /// <summary>Host to device, synchronously (for an engine whose outputs are in host memory).</summary>
    public override void CopyFrom(ReadOnlySpan<byte> rows)
    {
        if (rows.Length > ByteCount)
        {
            throw new ArgumentException($"{rows.Length} bytes do not fit the target's {ByteCount}", nameof(rows));
        }

        _memory.Write(_offset, rows);
    }

    /// <inheritdoc/>
    public override TensorSource Readback(long bytes) => new DeviceTensorSource(_memory, _offset, Math.Min(bytes, ByteCount)) { DeliveredTo = this };
}

/// <summary>One request's rows of one output, to be written to <paramref name="Target"/> by the engine.</summary>
/// <param name="Output">The output's index (model order).</param>
/// <param name="FirstRow">The request's first row in the batch's output (axis 0).</param>
/// <param name="RowCount">Its rows; -1 for the whole output (a model without a batch axis runs one request at a time).</param>
/// <param name="Target">Where they go.</param>
public sealed record OutputRows(int Output, long FirstRow, long RowCount, TensorTarget Target)
{
    /// <summary>Where the rows lie in an output of <paramref name="shape"/> and <paramref name="totalBytes"/>: null when the shape has no such rows.</summary>
    public (long Offset, long Bytes)? Span(long[] shape, long totalBytes)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (RowCount < 0)
        {
            return FirstRow == 0 ? (0, totalBytes) : null;
        }

        if (shape.Length == 0 || shape[0] <= 0 || FirstRow < 0 || FirstRow + RowCount > shape[0])
        {
            return null;
        }

        var rowBytes = totalBytes / shape[0];
        return (FirstRow * rowBytes, RowCount * rowBytes);
    }
}

/// <summary>
/// An optional capability of an <see cref="IEngineSession"/> whose outputs are in host memory (ort): a run that copies
/// chosen rows of its outputs straight from the engine's own output memory to their targets, without a managed copy
/// first. Rows that do not fit their target are left out (not delivered): the caller copies them
/// from the output tensor, or reports them. An output every row of which was delivered comes back as a tensor that reads
/// them back from their targets.
/// </summary>
public interface IOutputTargets
{
    /// <summary>Runs one batch (as <see cref="IEngineSession.Run"/>), writing <paramref name="direct"/> to their targets; <paramref name="delivered"/>[i] says whether direct[i] was.</summary>
    IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, IReadOnlyList<OutputRows> direct, bool[] delivered, CancellationToken cancellationToken = default);
}

/// <summary>An output's rows spread over several targets, read back in row order (a batch output every row of which was delivered).</summary>
public sealed class DeliveredRowsSource : TensorSource
{
    private readonly IReadOnlyList<(long Offset, long Bytes, TensorTarget Target)> _rows;

    private DeliveredRowsSource(IReadOnlyList<(long Offset, long Bytes, TensorTarget Target)> rows, long byteCount)
        : base(byteCount) => _rows = rows;

    /// <inheritdoc/>
    public override void CopyTo(Span<byte> target)
    {
        if (target.Length != ByteCount)
        {
            throw new ArgumentException($"The source holds {ByteCount} bytes; the target holds {target.Length}", nameof(target));
        }

        foreach (var (offset, bytes, t) in _rows)
        {
            t.Readback(bytes).CopyTo(target.Slice(checked((int)offset), checked((int)bytes)));
        }
    }

    /// <summary>
    /// An output of <paramref name="shape"/> as a tensor that reads its rows back from the targets they were delivered
    /// to, or null when some of its rows went to none (it is then read as usual).
    /// </summary>
    public static Tensor? Delivered(ElementType type, long[] shape, IEnumerable<OutputRows> delivered)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(delivered);
        if (type == ElementType.String)
        {
            return null;
        }

        var total = Tensor.ElementCountOf(shape) * type.SizeOf();
        var rows = new List<(long Offset, long Bytes, TensorTarget Target)>();
        foreach (var r in delivered)
        {
            if (r.Span(shape, total) is not { } span)
            {
                return null;
            }

            rows.Add((span.Offset, span.Bytes, r.Target));
        }

        rows.Sort((a, b) => a.Offset.CompareTo(b.Offset));
        long at = 0;
        foreach (var (offset, bytes, _) in rows)
        {
            if (offset != at)
            {
                return null;
            }

            at += bytes;
        }

        return rows.Count == 0 || at != total ? null
            : rows.Count == 1 ? new Tensor(type, shape, rows[0].Target.Readback(total))
            : new Tensor(type, shape, new DeliveredRowsSource(rows, total));
    }
}
