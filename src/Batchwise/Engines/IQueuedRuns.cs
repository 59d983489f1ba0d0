namespace Batchwise.Engines;

/// <summary>
/// An optional capability of an <see cref="IPreparedRun"/> on a device with its own queue (a GPU engine's stream): several
/// runs enqueued back to back before the host waits, as a CUDA-graph replay loop (PyTorch's, trtexec's throughput) is
/// timed. The device never idles between them for the host to see a run end and enqueue the next. Bench uses it with
/// <c>--queue N</c> (<see cref="Benchmarking.BenchmarkOptions.Queue"/>).
/// </summary>
public interface IQueuedRuns
{
    /// <summary>
    /// Enqueues <paramref name="runs"/> runs back to back and waits for the last; returns their time in seconds as the
    /// engine measures it (device events before the first and after the last). The outputs are the last run's.
    /// </summary>
    double RunQueued(int runs);
}
