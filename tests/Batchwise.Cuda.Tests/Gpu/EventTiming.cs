using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>GPU time of library calls for the probes, measured with CUDA events on one stream.</summary>
internal static class EventTiming
{
    /// <summary>
    /// Seconds of one <paramref name="enqueue"/>: a warm-up, then repeats between two events (at least 3 ms a trial),
    /// best of 3 trials. The events time the stream, so a call whose host side is slower than its kernels is timed with
    /// the gaps between them.
    /// </summary>
    public static double Best(CudaStream stream, CudaEvent start, CudaEvent end, Action enqueue)
    {
        enqueue();
        CudaDriver.Synchronize(stream);
        CudaDriver.Record(start, stream);
        enqueue();
        CudaDriver.Record(end, stream);
        var once = Math.Max(CudaDriver.ElapsedSeconds(start, end), 1e-6);
        var repeats = (int)Math.Clamp(Math.Ceiling(0.003 / once), 1, 200);
        var best = double.MaxValue;
        for (var trial = 0; trial < 3; trial++)
        {
            CudaDriver.Record(start, stream);
            for (var i = 0; i < repeats; i++)
            {
                enqueue();
            }

            CudaDriver.Record(end, stream);
            best = Math.Min(best, CudaDriver.ElapsedSeconds(start, end) / repeats);
        }

        return best;
    }
}
