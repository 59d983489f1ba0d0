using System.Collections.Concurrent;
using Batchwise.Engines;

namespace Batchwise.Server.Tests.SharedMemory;

/// <summary>
/// CUDA IPC without a GPU, for the protocol's tests: "device memory" is host memory, a handle is 64 bytes naming an
/// allocation of this object, and it counts what was opened and closed. It is not a CUDA imitation of the data path
/// (the GPU tests in Batchwise.Cli.Tests run the driver's), only of what the server sees through ICudaIpc.
/// </summary>
internal sealed class HostCudaIpc(int deviceCount = 1) : ICudaIpc
{
    private readonly ConcurrentDictionary<Guid, Allocation> _allocations = new();
    private int _opened;
    private int _closed;

    public int DeviceCount => deviceCount;

    public int Opened => Volatile.Read(ref _opened);

    public int Closed => Volatile.Read(ref _closed);

    public int Allocated => _allocations.Count;

    public IDeviceMemory Open(ReadOnlySpan<byte> handle, int device)
    {
        var id = new Guid(handle[..16]);
        if (!_allocations.TryGetValue(id, out var a) || a.Device != device)
        {
            throw new BatchwiseException("CUDA driver call cuIpcOpenMemHandle failed with CUDA_ERROR_INVALID_VALUE: invalid argument", "test");
        }

        Interlocked.Increment(ref _opened);
        return new Mapping(this, a);
    }

    public IExportedDeviceMemory Allocate(int device, long bytes)
    {
        var a = new Allocation(this, Guid.NewGuid(), device, new byte[bytes]);
        _allocations[a.Id] = a;
        return a;
    }

    /// <summary>The bytes of the allocation whose handle is <paramref name="handle"/>.</summary>
    public byte[] Bytes(byte[] handle) => _allocations[new Guid(handle.AsSpan(0, 16))].Data;

    internal sealed class Allocation(HostCudaIpc owner, Guid id, int device, byte[] data) : IExportedDeviceMemory
    {
        public Guid Id => id;

        public byte[] Data => data;

        public int Device => device;

        public ulong Pointer => 0x7f0000000000UL;

        public long Bytes => data.Length;

        public byte[] IpcHandle()
        {
            var handle = new byte[ICudaIpc.HandleBytes];
            id.TryWriteBytes(handle);
            return handle;
        }

        public void Read(long offset, Span<byte> target) => data.AsSpan(checked((int)offset), target.Length).CopyTo(target);

        public void Write(long offset, ReadOnlySpan<byte> source) => source.CopyTo(data.AsSpan(checked((int)offset)));

        public void Dispose() => owner._allocations.TryRemove(id, out _);
    }

    private sealed class Mapping(HostCudaIpc owner, Allocation allocation) : IDeviceMemory
    {
        private int _disposed;

        public int Device => allocation.Device;

        public ulong Pointer => allocation.Pointer;

        public long Bytes => allocation.Bytes;

        public void Read(long offset, Span<byte> target)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
            allocation.Read(offset, target);
        }

        public void Write(long offset, ReadOnlySpan<byte> source)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
            allocation.Write(offset, source);
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                Interlocked.Increment(ref owner._closed);
            }
        }
    }
}
