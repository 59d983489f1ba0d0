using System.Buffers;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda;

/// <summary>
/// A staged run on the cuda engine: the caller writes its rows into the slot's page-locked input block; a run copies
/// them to the device asynchronously on the slot's stream (zeroing any rows padded up to a batch profile), replays the
/// plan and copies the caller's rows of every output back into the page-locked output block. Device pointers (CUDA
/// shared memory) replace either side with a device-to-device copy; rows in shared memory (CUDA, or a registered system
/// region) are read from and written to it directly, a buffer's rows in device memory (two or more) by one segment-copy
/// launch each way rather than one copy operation a row (<see cref="RowCopies"/>).
/// <para>
/// With a pipeline depth above 1 a run may go on a companion lane of a slot whose stream still executes an earlier run
/// (<see cref="SlotPool{TSlot}"/>): it writes only its own lane's staging blocks and segment table (the lane is free, so
/// no queued copy reads them), enqueues its whole run under the slot's <see cref="ExecutionSlot.Enqueuing"/> lock (its
/// copies into the arena follow the earlier run's last copy out of it on the stream) and waits for its own completion
/// event, never for the stream (that would wait for the run queued behind it too). Lanes share the slot's
/// <see cref="Planning.ExecutionContext"/> per plan, and so its CUDA graph: that graph captured the slot's one arena's
/// addresses, which are every lane's, and a graph exec launched twice into one stream runs its launches in order, each
/// after the copies enqueued before it; a second context per lane would capture the same addresses for nothing.
/// </para>
/// </summary>
internal sealed unsafe class CudaStagedRun : IStagedRun
{
    private readonly CudaSession _session;
    private readonly ExecutionPlan _plan;
    private readonly ExecutionSlot _slot;
    private readonly int _laneIndex;
    private readonly StagingLane _lane;
    private readonly Planning.ExecutionContext _context;
    private readonly long[] _inputBytes;
    private readonly long[] _inputOffsets;
    private readonly long[] _outputBytes;
    private readonly long[] _outputOffsets;
    private readonly ulong?[] _deviceInputs;
    private readonly ulong?[] _deviceOutputs;
    private readonly List<DirectRows>?[] _direct;
    private readonly List<DirectRows>?[] _directOutputs;
    private readonly List<DirectRows>?[] _inputPieces;
    private readonly List<DirectRows>?[] _outputPieces;
    private readonly bool[] _inputByKernel;
    private readonly bool[] _outputByKernel;
    private readonly byte[]?[] _constantOutputs;
    private readonly IntPtr _inputBlock;
    private readonly IntPtr _outputBlock;
    private bool _disposed;
    private bool _enqueued;
    private bool _completed;

    public CudaStagedRun(CudaSession session, ExecutionPlan plan, ExecutionSlot slot, int lane, Planning.ExecutionContext context, IReadOnlyList<long[]> inputShapes, int rows)
    {
        _session = session;
        _plan = plan;
        _slot = slot;
        _laneIndex = lane;
        _lane = slot.Lane(lane);
        _context = context;
        var inputs = session.Inputs;
        _inputBytes = [.. inputShapes.Select((s, i) => Tensor.ElementCountOf(s) * inputs[i].ElementType.SizeOf())];
        OutputShapes = [.. plan.Outputs.Select(o => rows >= 0 && o.Shape.Length > 0 ? (long[])[rows, .. o.Shape[1..]] : o.Shape)];
        _outputBytes = [.. plan.Outputs.Select((o, i) => Tensor.ElementCountOf(OutputShapes[i]) * o.Type.SizeOf())];
        _inputOffsets = Offsets(_inputBytes);
        _outputOffsets = Offsets(_outputBytes);
        _deviceInputs = new ulong?[_inputBytes.Length];
        _deviceOutputs = new ulong?[_outputBytes.Length];
        _direct = new List<DirectRows>?[_inputBytes.Length];
        _directOutputs = new List<DirectRows>?[_outputBytes.Length];
        _inputPieces = new List<DirectRows>?[_inputBytes.Length];
        _outputPieces = new List<DirectRows>?[_outputBytes.Length];
        _inputByKernel = new bool[_inputBytes.Length];
        _outputByKernel = new bool[_outputBytes.Length];
        _constantOutputs = [.. plan.Outputs.Select((o, i) => o.Constant is null ? null : Cut(o.Constant.CastTo(o.Type).ToTensor().Data, _outputBytes[i]))];
        (_inputBlock, _outputBlock) = _lane.Staging(_inputOffsets[^1], _outputOffsets[^1]);
    }

    public IReadOnlyList<long[]> OutputShapes { get; }

    public Memory<byte> Input(int index) => new PinnedRegion((byte*)_inputBlock + _inputOffsets[index], checked((int)_inputBytes[index])).Memory;

    public void SetDeviceInput(int index, ulong devicePointer) => _deviceInputs[index] = devicePointer;

    public void SetDeviceOutput(int index, ulong devicePointer) => _deviceOutputs[index] = devicePointer;

    /// <summary>
    /// Takes rows in device memory on this session's GPU (CUDA shared memory: copied device to device) and rows of at
    /// least <see cref="CudaSession.HostRowBytes"/> in page-locked host memory (a registered system shared memory region:
    /// copied to the device asynchronously, with no staging copy); anything else is refused and the caller writes it into
    /// the staging buffer.
    /// </summary>
    public bool TryCopyInput(int index, long byteOffset, TensorSource source)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(source);
        if (_plan.InputBuffers[index] < 0 || _deviceInputs[index] is not null || byteOffset < 0 || source.ByteCount > _inputBytes[index] - byteOffset)
        {
            return false;
        }

        DirectRows rows;
        switch (source)
        {
            case DeviceTensorSource d when d.Device == _session.DeviceOrdinal:
                rows = new DirectRows(byteOffset, source.ByteCount, 0, d.Pointer);
                break;
            case HostTensorSource { PageLocked: true } h when source.ByteCount >= _session.HostRowBytes:
                rows = new DirectRows(byteOffset, source.ByteCount, h.Pointer, 0);
                break;
            default:
                return false;
        }

        (_direct[index] ??= []).Add(rows);
        return true;
    }

    /// <summary>
    /// Writes rows to device memory on this session's GPU (CUDA shared memory: device to device) or rows of at least
    /// <see cref="CudaSession.HostRowBytes"/> to page-locked host memory (a registered system shared memory region: device
    /// to host with no staging copy); anything else is refused and the caller copies the rows out of the staging buffer.
    /// </summary>
    public bool TryCopyOutput(int index, long byteOffset, long byteCount, TensorTarget target)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(target);
        var o = _plan.Outputs[index];
        if (o.Constant is not null || _deviceOutputs[index] is not null || byteOffset < 0 || byteCount < 0 || byteCount > target.ByteCount || byteCount > _outputBytes[index] - byteOffset)
        {
            return false;
        }

        DirectRows rows;
        switch (target)
        {
            case DeviceTensorTarget d when d.Device == _session.DeviceOrdinal:
                rows = new DirectRows(byteOffset, byteCount, 0, d.Pointer);
                break;
            case HostTensorTarget { PageLocked: true } h when byteCount >= _session.HostRowBytes:
                rows = new DirectRows(byteOffset, byteCount, h.Pointer, 0);
                break;
            default:
                return false;
        }

        (_directOutputs[index] ??= []).Add(rows);
        return true;
    }

    public Task RunAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);

        // Enqueue and wait for this run's completion on the caller's thread: an error on the device surfaces as the task's
        // exception, never as a hang.
        _session.MakeCurrent();
        try
        {
            lock (_slot.Enqueuing)
            {
                _enqueued = true;
                Enqueue();
                CudaDriver.Record(_lane.Done, _context.Stream);
            }

            // Wait on this thread: the caller is a batch's own pool thread or a request's thread (a request run alone), and
            // a hop to another pool thread only to block there would add its latency to every run.
            CudaDriver.Synchronize(_lane.Done);
            _completed = true;
            return Task.CompletedTask;
        }
        catch (Exception e)
        {
            return Task.FromException(e);
        }
    }

    /// <summary>Enqueues the run on the slot's stream: inputs in, the plan, outputs out (the caller holds the enqueue lock).</summary>
    private void Enqueue()
    {
        var stream = _context.Stream;
        var (gather, scatter) = PlanSegments();
        for (var i = 0; i < _inputBytes.Length; i++)
        {
            var buffer = _plan.InputBuffers[i];
            if (buffer < 0)
            {
                continue;
            }

            var dst = _context.Pointer(buffer);
            var staging = (byte*)_inputBlock + _inputOffsets[i];
            if (_deviceInputs[i] is { } src)
            {
                CudaDriver.CopyDeviceToDevice(dst, src, _inputBytes[i], stream.Handle);
            }
            else if (_inputPieces[i] is { } pieces)
            {
                // Rows read in place (device memory, registered host memory) go straight to their offset (device rows in
                // the segment copy when it takes this buffer); the rows between them come from the staging buffer.
                foreach (var p in pieces)
                {
                    if (p.IsGap)
                    {
                        CudaDriver.CopyToDevice(dst + (ulong)p.Offset, staging + p.Offset, p.Bytes, stream);
                    }
                    else if (!p.OnDevice)
                    {
                        CudaDriver.CopyToDevice(dst + (ulong)p.Offset, (void*)p.HostPointer, p.Bytes, stream);
                    }
                    else if (!_inputByKernel[i])
                    {
                        CudaDriver.CopyDeviceToDevice(dst + (ulong)p.Offset, p.DevicePointer, p.Bytes, stream.Handle);
                    }
                }
            }
            else if (_inputBytes[i] > 0)
            {
                CudaDriver.CopyToDevice(dst, staging, _inputBytes[i], stream);
            }

            // Rows padded up to a batch profile read zeros, not the last run's data.
            var padded = _plan.Buffers[buffer].Bytes - _inputBytes[i];
            if (padded > 0)
            {
                CudaDriver.MemsetD8(dst + (ulong)_inputBytes[i], 0, padded, stream.Handle);
            }
        }

        LaunchSegments(gather, "gather");
        _context.Enqueue();
        LaunchSegments(scatter, "scatter");
        for (var i = 0; i < _outputBytes.Length; i++)
        {
            var o = _plan.Outputs[i];
            if (o.Constant is not null || _outputBytes[i] == 0)
            {
                continue;
            }

            var src = _context.Pointer(o.Buffer);
            var staging = (byte*)_outputBlock + _outputOffsets[i];
            if (_deviceOutputs[i] is { } dst)
            {
                CudaDriver.CopyDeviceToDevice(dst, src, _outputBytes[i], stream.Handle);
            }
            else if (_outputPieces[i] is { } pieces)
            {
                // Rows written in place (device memory, registered host memory) go straight there from the output (device
                // rows in the segment copy when it takes this buffer); the rows between them go to the staging buffer.
                foreach (var p in pieces)
                {
                    if (p.IsGap)
                    {
                        CudaDriver.CopyToHost(staging + p.Offset, src + (ulong)p.Offset, p.Bytes, stream);
                    }
                    else if (!p.OnDevice)
                    {
                        CudaDriver.CopyToHost((void*)p.HostPointer, src + (ulong)p.Offset, p.Bytes, stream);
                    }
                    else if (!_outputByKernel[i])
                    {
                        CudaDriver.CopyDeviceToDevice(p.DevicePointer, src + (ulong)p.Offset, p.Bytes, stream.Handle);
                    }
                }
            }
            else
            {
                CudaDriver.CopyToHost(staging, src, _outputBytes[i], stream);
            }
        }
    }

    /// <summary>
    /// Orders every buffer's in-place rows into pieces and, where the segment copy takes a buffer's device rows, writes
    /// them into the slot's segment table (inputs' entries, then outputs') and uploads it with one copy; returns each
    /// launch's table address, entries and blocks (no entries: no launch).
    /// </summary>
    private (Segments Gather, Segments Scatter) PlanSegments()
    {
        var entries = 0;
        for (var i = 0; i < _inputBytes.Length; i++)
        {
            if (_plan.InputBuffers[i] >= 0 && _deviceInputs[i] is null && _direct[i] is { } rows)
            {
                RowCopies.Pieces(rows, _inputBytes[i], _inputPieces[i] ??= []);
                _inputByKernel[i] = _session.RowsByKernel && RowCopies.ByKernel(_inputPieces[i]!);
                entries += _inputByKernel[i] ? RowCopies.DeviceRows(_inputPieces[i]!) : 0;
            }
        }

        for (var i = 0; i < _outputBytes.Length; i++)
        {
            if (_plan.Outputs[i].Constant is null && _outputBytes[i] > 0 && _deviceOutputs[i] is null && _directOutputs[i] is { } rows)
            {
                RowCopies.Pieces(rows, _outputBytes[i], _outputPieces[i] ??= []);
                _outputByKernel[i] = _session.RowsByKernel && RowCopies.ByKernel(_outputPieces[i]!);
                entries += _outputByKernel[i] ? RowCopies.DeviceRows(_outputPieces[i]!) : 0;
            }
        }

        if (entries == 0)
        {
            return (default, default);
        }

        var (host, device) = _lane.SegmentTable((long)entries * KernelSource.SegmentEntryWords);
        var table = new Span<ulong>((void*)host, entries * KernelSource.SegmentEntryWords);
        var count = 0;
        long blocks = 0;
        AddDeviceRows(table, ref count, ref blocks, gather: true);
        var gather = new Segments(device, count, blocks);
        var first = count;
        blocks = 0;
        AddDeviceRows(table, ref count, ref blocks, gather: false);
        var scatter = new Segments(device + ((ulong)first * KernelSource.SegmentEntryWords * 8), count - first, blocks);
        CudaDriver.CopyToDevice(device, (void*)host, (long)count * KernelSource.SegmentEntryWords * 8, _context.Stream);
        return (gather, scatter);
    }

    /// <summary>
    /// Writes into <paramref name="table"/> the device rows of every input (<paramref name="gather"/>: row to buffer) or
    /// output (row from buffer) whose rows the segment copy takes.
    /// </summary>
    private void AddDeviceRows(Span<ulong> table, ref int count, ref long blocks, bool gather)
    {
        var (pieces, byKernel) = gather ? (_inputPieces, _inputByKernel) : (_outputPieces, _outputByKernel);
        for (var i = 0; i < pieces.Length; i++)
        {
            if (!byKernel[i])
            {
                continue;
            }

            var buffer = _context.Pointer(gather ? _plan.InputBuffers[i] : _plan.Outputs[i].Buffer);
            foreach (var p in pieces[i]!)
            {
                if (p.OnDevice)
                {
                    var inBuffer = buffer + (ulong)p.Offset;
                    RowCopies.Add(table, ref count, ref blocks, gather ? p.DevicePointer : inBuffer, gather ? inBuffer : p.DevicePointer, p.Bytes);
                }
            }
        }
    }

    /// <summary>One segment-copy launch on the run's stream over <paramref name="segments"/> (none: nothing).</summary>
    private void LaunchSegments(Segments segments, string what)
    {
        if (segments.Count == 0)
        {
            return;
        }

        LaunchSegments(_session.CopySegmentsFunction, segments.Table, segments.Count, segments.Blocks, _context.Stream.Handle, what);
    }

    /// <summary>Launches the segment copy <paramref name="function"/> over <paramref name="count"/> entries of the device table at <paramref name="table"/>.</summary>
    internal static void LaunchSegments(IntPtr function, ulong table, int count, long blocks, IntPtr stream, string what)
    {
        long args = count; // the kernel's argument block: { int count; } padded to 8 bytes
        var parameters = stackalloc void*[2];
        parameters[0] = &table;
        parameters[1] = &args;
        CudaDriver.Launch(function, checked((uint)blocks), KernelSource.SegmentThreads, 0, stream, parameters, "segment copy (" + what + ")");
    }

    /// <summary>A segment-copy launch: its table's device address, entries and blocks.</summary>
    private readonly record struct Segments(ulong Table, int Count, long Blocks);

    public ReadOnlyMemory<byte> Output(int index) =>
        _constantOutputs[index] is { } constant ? constant : new PinnedRegion((byte*)_outputBlock + _outputOffsets[index], checked((int)_outputBytes[index])).Memory;

    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            if (_enqueued && !_completed)
            {
                // A run that failed part-way may have left copies on the stream that read this lane's staging memory: the
                // lane is handed on only once they are done (or the context is broken, when nothing runs any more).
                try
                {
                    _session.MakeCurrent();
                    lock (_slot.Enqueuing)
                    {
                        CudaDriver.Record(_lane.Done, _context.Stream);
                    }

                    CudaDriver.Synchronize(_lane.Done);
                }
                catch (CudaException)
                {
                    // The device reported an error: it already failed this run; the next run on the slot reports its own.
                }
            }

            _session.ReturnLane(_slot, _laneIndex);
        }
    }

    private static long[] Offsets(long[] sizes)
    {
        var layout = StagingLayout.Of(sizes);
        return [.. layout.Offsets, layout.TotalBytes];
    }

    private static byte[] Cut(byte[] data, long bytes) => data.Length == bytes ? data : data[..checked((int)bytes)];

    /// <summary>A region of page-locked memory as <see cref="Memory{T}"/> (valid while the run holds its slot).</summary>
    private sealed class PinnedRegion(byte* start, int length) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => new(start, length);

        public override MemoryHandle Pin(int elementIndex = 0) => new(start + elementIndex);

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
