using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// What one staged run on an <see cref="ExecutionSlot"/> owns alone, so that a second run can be staged and queued on the
/// same stream while the first still executes: page-locked staging blocks, the segment table and a completion event.
/// A lane is handed to the next run only once its own run has completed, so the host never writes memory that a copy
/// still queued on the stream reads.
/// </summary>
internal sealed class StagingLane : IDisposable
{
    private PinnedHostMemory? _stagedInputs;
    private PinnedHostMemory? _stagedOutputs;
    private PinnedHostMemory? _segmentsHost;
    private DeviceMemory? _segmentsDevice;
    private CudaEvent? _done;

    /// <summary>
    /// Recorded after a run's last operation on the stream; waiting for it waits for that run alone, not for a run queued
    /// behind it (a stream synchronisation would).
    /// </summary>
    public CudaEvent Done => _done ??= CudaDriver.CreateEvent(timing: false);

    /// <summary>
    /// Page-locked blocks for staged runs (one for inputs, one for outputs), grown to the largest run seen: a server
    /// writes request rows here and copies to the device start from here, with no staging copy in between.
    /// </summary>
    public (IntPtr Inputs, IntPtr Outputs) Staging(long inputBytes, long outputBytes)
    {
        if (_stagedInputs is null || _stagedInputs.Bytes < inputBytes)
        {
            _stagedInputs?.Dispose();
            _stagedInputs = null;
            _stagedInputs = CudaDriver.AllocatePinned(Math.Max(inputBytes, 1));
        }

        if (_stagedOutputs is null || _stagedOutputs.Bytes < outputBytes)
        {
            _stagedOutputs?.Dispose();
            _stagedOutputs = null;
            _stagedOutputs = CudaDriver.AllocatePinned(Math.Max(outputBytes, 1));
        }

        return (_stagedInputs.DangerousGetHandle(), _stagedOutputs.DangerousGetHandle());
    }

    /// <summary>
    /// The table a staged run's segment copies read (<see cref="Kernels.KernelSource.CopySegments"/>): a page-locked block
    /// the host writes and a device block it is copied to, each of at least <paramref name="words"/> 64-bit words, grown
    /// to the largest seen.
    /// </summary>
    public (IntPtr Host, ulong Device) SegmentTable(long words)
    {
        var bytes = Math.Max(words, 1) * 8;
        if (_segmentsHost is null || _segmentsHost.Bytes < bytes)
        {
            _segmentsHost?.Dispose();
            _segmentsHost = null;
            _segmentsHost = CudaDriver.AllocatePinned(bytes);
            _segmentsDevice?.Dispose();
            _segmentsDevice = null;
            _segmentsDevice = CudaDriver.Allocate(bytes);
        }

        return (_segmentsHost.DangerousGetHandle(), _segmentsDevice!.Pointer);
    }

    public void Dispose()
    {
        _stagedInputs?.Dispose();
        _stagedOutputs?.Dispose();
        _segmentsHost?.Dispose();
        _segmentsDevice?.Dispose();
        _done?.Dispose();
    }
}
