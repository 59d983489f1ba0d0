namespace Batchwise.Engines;

/// <summary>
/// An optional capability of an <see cref="IPreparedRun"/> that moves its data on every run (a GPU engine with
/// <see cref="EngineOptions.IncludeTransfers"/>): the last run's time split into upload, compute and download, as trtexec
/// reports H2D latency, GPU compute time and D2H latency. Bench records the split beside the total.
/// </summary>
public interface ITransferTiming
{
    /// <summary>The phases of the last <see cref="IPreparedRun.Run"/>, or null when it moved no data (compute-only run).</summary>
    TransferTimes? LastTransferTimes { get; }
}

/// <summary>One run's phases, each measured by device events on the run's own stream.</summary>
/// <param name="HostToDeviceSeconds">Copying the inputs from page-locked host memory to the device (H2D).</param>
/// <param name="ComputeSeconds">The execution plan itself (the time a compute-only run reports).</param>
/// <param name="DeviceToHostSeconds">Copying the outputs back to page-locked host memory (D2H).</param>
public sealed record TransferTimes(double HostToDeviceSeconds, double ComputeSeconds, double DeviceToHostSeconds)
{
    /// <summary>The three phases together: what the run reports as its time.</summary>
    public double TotalSeconds => HostToDeviceSeconds + ComputeSeconds + DeviceToHostSeconds;
}
