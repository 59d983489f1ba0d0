namespace Batchwise.Engines;

/// <summary>
/// Device memory of one GPU that the host reads and writes by synchronous copies: a region another process shared
/// (opened from its cudaIpcMemHandle_t) or one this process allocated. Disposing closes or frees it.
/// </summary>
public interface IDeviceMemory : IDisposable
{
    /// <summary>The device ordinal the memory is on.</summary>
    int Device { get; }

    /// <summary>The device address of the first byte (valid in this process's primary context of <see cref="Device"/>).</summary>
    ulong Pointer { get; }

    /// <summary>How many bytes the allocation spans (for an opened handle: the exporter's whole allocation).</summary>
    long Bytes { get; }

    /// <summary>Copies <paramref name="target"/>.Length bytes at <paramref name="offset"/> to the host (device to host, synchronous).</summary>
    void Read(long offset, Span<byte> target);

    /// <summary>Copies <paramref name="source"/> to <paramref name="offset"/> (host to device, synchronous).</summary>
    void Write(long offset, ReadOnlySpan<byte> source);
}

/// <summary>Device memory this process allocated, which another process can open through its IPC handle.</summary>
public interface IExportedDeviceMemory : IDeviceMemory
{
    /// <summary>The 64-byte cudaIpcMemHandle_t (cuIpcGetMemHandle) another process opens this allocation with.</summary>
    byte[] IpcHandle();
}

/// <summary>
/// CUDA inter-process memory (what Triton's CUDA shared memory extension rests on): open a handle another process
/// exported, or allocate memory and export it. The CUDA project implements it with the driver API.
/// </summary>
public interface ICudaIpc
{
    /// <summary>Size in bytes of a cudaIpcMemHandle_t.</summary>
    public const int HandleBytes = 64;

    /// <summary>How many GPUs the driver sees.</summary>
    int DeviceCount { get; }

    /// <summary>Opens <paramref name="handle"/> (64 bytes) on <paramref name="device"/>; a <see cref="BatchwiseException"/> names what failed.</summary>
    IDeviceMemory Open(ReadOnlySpan<byte> handle, int device);

    /// <summary>Allocates <paramref name="bytes"/> on <paramref name="device"/> for another process to open.</summary>
    IExportedDeviceMemory Allocate(int device, long bytes);
}

/// <summary>Where the server and the load generator find CUDA IPC: the host registers it (the CLI registers the driver API's); none means no CUDA shared memory.</summary>
public static class CudaIpc
{
    private static Func<ICudaIpc?>? _source;

    /// <summary>Registers the source; it returns null (or throws <see cref="BatchwiseException"/>) where no GPU or driver answers.</summary>
    public static void Register(Func<ICudaIpc?> source) => Volatile.Write(ref _source, source);

    /// <summary>The registered CUDA IPC, or null when none is registered or no GPU answers.</summary>
    public static ICudaIpc? TryCreate() => TryCreate(out _);

    /// <summary>As <see cref="TryCreate()"/>, with the reason when there is none (for a one-line error).</summary>
    public static ICudaIpc? TryCreate(out string reason)
    {
        var source = Volatile.Read(ref _source);
        if (source is null)
        {
            reason = "this build has no CUDA support registered";
            return null;
        }

        try
        {
            var ipc = source();
            reason = ipc is null ? "no NVIDIA GPU or driver answers" : string.Empty;
            return ipc;
        }
        catch (BatchwiseException e)
        {
            reason = e.Message;
            return null;
        }
    }
}
