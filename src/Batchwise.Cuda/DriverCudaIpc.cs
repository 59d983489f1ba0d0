using System.Collections.Concurrent;
using Batchwise.Cuda.Interop;
using Batchwise.Engines;

namespace Batchwise.Cuda;

/// <summary>
/// CUDA inter-process memory through the driver API: handles opened with cuIpcOpenMemHandle (lazy peer access) and
/// memory allocated with cuMemAlloc and exported with cuIpcGetMemHandle, each in the primary context of its device
/// (the context the cuda engine runs in, so its pointers are valid there too).
/// </summary>
public sealed class DriverCudaIpc : ICudaIpc
{
    private static readonly ConcurrentDictionary<int, PrimaryContext> Contexts = new();

    private DriverCudaIpc(int deviceCount) => DeviceCount = deviceCount;

    /// <inheritdoc/>
    public int DeviceCount { get; }

    /// <summary>The driver's IPC, or null where there is no NVIDIA GPU or driver.</summary>
    public static ICudaIpc? TryCreate()
    {
        try
        {
            return new DriverCudaIpc(CudaDriver.DeviceCount());
        }
        catch (BatchwiseException)
        {
            return null;
        }
    }

    /// <summary>The driver's IPC, or the one-line reason there is none.</summary>
    public static ICudaIpc Create() => new DriverCudaIpc(CudaDriver.DeviceCount());

    /// <inheritdoc/>
    public IDeviceMemory Open(ReadOnlySpan<byte> handle, int device)
    {
        var context = ContextOf(device);
        context.MakeCurrent();
        var mapping = CudaDriver.OpenIpcHandle(handle);
        try
        {
            var (start, bytes) = CudaDriver.AddressRange(mapping.Pointer);

            // The handle names a whole allocation, so the opened pointer is its start; anything else would be a driver surprise.
            var usable = bytes - (long)(mapping.Pointer - start);
            return new OpenedMemory(context, mapping, usable);
        }
        catch
        {
            mapping.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public IExportedDeviceMemory Allocate(int device, long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        var context = ContextOf(device);
        context.MakeCurrent();
        return new AllocatedMemory(context, CudaDriver.Allocate(bytes));
    }

    private static PrimaryContext ContextOf(int device)
    {
        // Device() checks the ordinal (a one-line error naming the GPUs there are).
        var d = CudaDriver.Device(device);
        return Contexts.GetOrAdd(d, static d => new PrimaryContext(d));
    }

    private abstract class Memory(PrimaryContext context, long bytes) : IDeviceMemory
    {
        protected PrimaryContext Context { get; } = context;

        public int Device => Context.Device;

        public abstract ulong Pointer { get; }

        public long Bytes { get; } = bytes;

        public void Read(long offset, Span<byte> target)
        {
            Check(offset, target.Length);
            Context.MakeCurrent();
            CudaDriver.CopyToHostSync(target, Pointer + (ulong)offset);
        }

        public void Write(long offset, ReadOnlySpan<byte> source)
        {
            Check(offset, source.Length);
            Context.MakeCurrent();
            CudaDriver.CopyToDeviceSync(Pointer + (ulong)offset, source);
        }

        public abstract void Dispose();

        private void Check(long offset, long length)
        {
            // The callers check ranges against what the client registered; this is the last guard against reading past the mapping.
            if (offset < 0 || length < 0 || offset > Bytes || length > Bytes - offset)
            {
                throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset}+{length}) is outside the {Bytes}-byte device allocation");
            }
        }
    }

    private sealed class OpenedMemory(PrimaryContext context, IpcMapping mapping, long bytes) : Memory(context, bytes)
    {
        public override ulong Pointer => mapping.Pointer;

        public override void Dispose()
        {
            Context.MakeCurrent();
            mapping.Dispose();
        }
    }

    private sealed class AllocatedMemory(PrimaryContext context, DeviceMemory memory) : Memory(context, memory.Bytes), IExportedDeviceMemory
    {
        public override ulong Pointer => memory.Pointer;

        public byte[] IpcHandle()
        {
            Context.MakeCurrent();
            return CudaDriver.IpcHandle(memory.Pointer);
        }

        public override void Dispose()
        {
            Context.MakeCurrent();
            memory.Dispose();
        }
    }
}
