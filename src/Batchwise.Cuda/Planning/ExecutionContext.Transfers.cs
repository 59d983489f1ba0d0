using Batchwise.Cuda.Interop;
using Batchwise.Engines;

namespace Batchwise.Cuda.Planning;

/// <summary>End-to-end runs of an execution context: inputs uploaded from page-locked memory, the plan, outputs downloaded.</summary>
internal sealed partial class ExecutionContext
{
    private HostStaging? _staging;

    /// <summary>This context's page-locked staging, allocated on first use and kept for the context's life.</summary>
    public HostStaging Staging => _staging ??= new HostStaging(_plan);

    /// <summary>
    /// Stages <paramref name="inputs"/> in page-locked memory and uploads them once, so the device holds them even for
    /// runs that do not copy (a per-layer profile).
    /// </summary>
    public void StageInputs(IReadOnlyList<Tensor> inputs)
    {
        Staging.Stage(inputs);
        Staging.EnqueueUpload(this);
        CudaDriver.Synchronize(Stream);
    }

    /// <summary>
    /// One end-to-end run, all on this context's stream: H2D of the staged inputs, the plan (graph replay once captured),
    /// D2H of the outputs into the staging block; waits for the last copy (an event, not the device) and returns the
    /// three phases as the events between them measured.
    /// </summary>
    public TransferTimes RunWithTransfers()
    {
        var s = Staging;
        CaptureIfDue();
        CudaDriver.Record(s.Start, Stream);
        s.EnqueueUpload(this);
        CudaDriver.Record(s.Uploaded, Stream);
        EnqueuePlan();
        CudaDriver.Record(s.Computed, Stream);
        s.EnqueueDownload(this);
        CudaDriver.Record(s.Downloaded, Stream);

        // ElapsedSeconds waits on its end event: the first call waits for the download, the others find theirs done.
        var d2h = CudaDriver.ElapsedSeconds(s.Computed, s.Downloaded);
        return new TransferTimes(CudaDriver.ElapsedSeconds(s.Start, s.Uploaded), CudaDriver.ElapsedSeconds(s.Uploaded, s.Computed), d2h);
    }
}
