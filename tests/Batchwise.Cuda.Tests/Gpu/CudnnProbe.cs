using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// What the cuDNN probes set up alike: device 0's primary context made current, a stream, two timing events and a cuDNN
/// handle on the stream; <see cref="Fill"/> writes small half values of random sign (its kernel compiled on first use).
/// Call <see cref="Gpu.Require"/> first.
/// </summary>
internal sealed unsafe class CudnnProbe : IDisposable
{
    /// <summary>An NVRTC kernel filling half buffers with small values of random sign (probe_fill_half).</summary>
    private const string FillSource = """
        // Half values of random sign in [0.0625, 0.125): sums of a few thousand products stay far from fp16's range.
        extern "C" __global__ void probe_fill_half(unsigned short* p, unsigned long long n, unsigned int seed)
        {
            for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n; i += (unsigned long long)gridDim.x * blockDim.x)
            {
                unsigned int x = (unsigned int)(i * 2654435761ull) ^ seed;
                x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15;
                p[i] = (unsigned short)((x & 0x8000u) | 0x2c00u | (x & 0x3ffu));
            }
        }
        """;

    private CudaModule? _fillModule;
    private IntPtr _fill;

    public CudnnProbe()
    {
        Device = CudaDriver.Device(0);
        Context = new PrimaryContext(Device);
        Context.MakeCurrent();
        ComputeCapability = Gpu.ComputeCapability();
        Stream = CudaDriver.CreateStream();
        Start = CudaDriver.CreateEvent();
        End = CudaDriver.CreateEvent();
        Handle = Cudnn.Create(Stream);
    }

    public int Device { get; }

    public PrimaryContext Context { get; }

    /// <summary>The device's compute capability as NVRTC names it (90 on an H100).</summary>
    public int ComputeCapability { get; }

    public CudaStream Stream { get; }

    public CudaEvent Start { get; }

    public CudaEvent End { get; }

    public CudnnHandle Handle { get; }

    /// <summary>The probe's report heading: the device, its compute capability, cuDNN's version and the time.</summary>
    public string Heading(string what) => $"# {what}: {CudaDriver.DeviceName(Device)} (sm_{ComputeCapability}), cuDNN {Cudnn.Version()}, {DateTimeOffset.UtcNow:u}";

    /// <summary>Enqueues probe_fill_half over <paramref name="memory"/>'s halves on the stream.</summary>
    public void Fill(DeviceMemory memory, uint seed)
    {
        if (_fillModule is null)
        {
            _fillModule = CudaDriver.LoadModule(Nvrtc.CompileToCubin(FillSource, "probe_fill_half.cu", ComputeCapability));
            _fill = CudaDriver.GetFunction(_fillModule, "probe_fill_half");
        }

        ulong p = memory.Pointer;
        ulong n = (ulong)memory.Bytes / 2;
        var args = stackalloc void*[] { &p, &n, &seed };
        CudaDriver.Launch(_fill, 1024, 256, 0, Stream.Handle, args, "probe_fill_half");
    }

    /// <summary>Seconds of one <paramref name="enqueue"/> on the stream (<see cref="EventTiming.Best"/>).</summary>
    public double Time(Action enqueue) => EventTiming.Best(Stream, Start, End, enqueue);

    public void Dispose()
    {
        Handle.Dispose();
        _fillModule?.Dispose();
        End.Dispose();
        Start.Dispose();
        Stream.Dispose();
        Context.Dispose();
    }
}
