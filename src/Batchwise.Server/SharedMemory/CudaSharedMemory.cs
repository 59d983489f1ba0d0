using System.Collections.Concurrent;
using Batchwise.Engines;

namespace Batchwise.Server.SharedMemory;

/// <summary>What a registered CUDA region looks like to a status call.</summary>
/// <param name="Name">The name requests use.</param>
/// <param name="DeviceId">The GPU the client's allocation is on.</param>
/// <param name="ByteSize">How many bytes of it the region spans.</param>
public sealed record CudaRegionStatus(string Name, long DeviceId, long ByteSize);

/// <summary>
/// One registered CUDA shared memory region: another process's device allocation, opened from its cudaIpcMemHandle_t
/// in this server's context on DEVICE_ID; its first BYTE_SIZE bytes are the region. Closed (cuIpcCloseMemHandle) when
/// unregistered and the last request holding it lets go.
/// </summary>
public sealed class CudaSharedMemoryRegion : SharedMemoryRegion
{
    private readonly IDeviceMemory _memory;

    internal CudaSharedMemoryRegion(string name, long deviceId, long byteSize, IDeviceMemory memory)
        : base(name, byteSize)
    {
        DeviceId = deviceId;
        _memory = memory;
    }

    /// <summary>The GPU the region is on.</summary>
    public long DeviceId { get; }

    /// <summary>The device address of the region's first byte (valid in this process's primary context of <see cref="DeviceId"/>).</summary>
    public ulong DevicePointer => _memory.Pointer;

    /// <inheritdoc/>
    internal override string Kind => "CUDA";

    /// <summary>The device memory itself: an engine on the same GPU copies it device to device into its input.</summary>
    internal override TensorSource? Source(long offset, long bytes, ServedModel model) => new DeviceTensorSource(_memory, offset, bytes);

    /// <summary>The device range as an output's target: a GPU engine copies its rows there device to device.</summary>
    internal override TensorTarget? Target(long offset, long bytes, ServedModel model) => new DeviceTensorTarget(_memory, offset, bytes);

    /// <summary>
    /// Device to host: the server's engines take host tensors, so an input in a CUDA region is copied to the host once
    /// (into the request's pooled buffer) before it runs, on either engine.
    /// </summary>
    internal override void Read(long offset, byte[] target) => _memory.Read(offset, target);

    /// <summary>Host to device: an output computed on the host (or copied back from the engine) is copied into the region.</summary>
    internal override void Write(long offset, byte[] source) => _memory.Write(offset, source);

    /// <inheritdoc/>
    private protected override void ReleaseMemory() => _memory.Dispose();
}

/// <summary>
/// The CUDA shared memory regions registered with the server (Triton's CUDA shared memory extension). Names are shared
/// with the system regions, as in Triton: a name registered as one kind cannot be registered as the other.
/// </summary>
public sealed class CudaSharedMemoryRegistry : IDisposable
{
    private readonly ConcurrentDictionary<string, CudaSharedMemoryRegion> _regions = new(StringComparer.Ordinal);
    private readonly SystemSharedMemoryRegistry _system;
    private readonly ICudaIpc? _ipc;
    private readonly string _unavailable;

    internal CudaSharedMemoryRegistry(SystemSharedMemoryRegistry system, ICudaIpc? ipc, string unavailableReason)
    {
        _system = system;
        _ipc = ipc;
        _unavailable = unavailableReason;
    }

    /// <summary>True where CUDA IPC works here (a driver and a GPU): only then is cuda_shared_memory listed as an extension.</summary>
    public bool IsAvailable => _ipc is not null;

    internal bool Contains(string name) => _regions.ContainsKey(name);

    /// <summary>
    /// Opens <paramref name="rawHandle"/> (a cudaIpcMemHandle_t) on <paramref name="deviceId"/> and registers its first
    /// <paramref name="byteSize"/> bytes as <paramref name="name"/>; a 400 naming what is wrong (no GPU here, a name
    /// taken, a handle of the wrong size or that does not open, a size past the allocation).
    /// </summary>
    public void Register(string name, ReadOnlySpan<byte> rawHandle, long deviceId, long byteSize)
    {
        if (_ipc is null)
        {
            // Triton's words for a server built without GPUs, and why this one has none.
            throw InferenceError.BadRequest($"failed to register CUDA shared memory region: '{name}', GPUs not supported ({_unavailable}); use system shared memory (/v2/systemsharedmemory) or send tensors in the request");
        }

        if (string.IsNullOrEmpty(name) || name.Length > 256)
        {
            throw InferenceError.BadRequest("'region name' is necessary to register cuda shared memory region (1 to 256 characters)");
        }

        if (rawHandle.Length != ICudaIpc.HandleBytes)
        {
            throw InferenceError.BadRequest($"cuda shared memory region '{name}': 'raw_handle' has {rawHandle.Length} bytes; it must be a cudaIpcMemHandle_t ({ICudaIpc.HandleBytes} bytes, from cudaIpcGetMemHandle)");
        }

        if (deviceId < 0 || deviceId >= _ipc.DeviceCount)
        {
            throw InferenceError.BadRequest($"cuda shared memory region '{name}': device_id {deviceId} does not exist; this server has {_ipc.DeviceCount} GPU(s) (0 to {_ipc.DeviceCount - 1})");
        }

        if (byteSize <= 0)
        {
            throw InferenceError.BadRequest($"cuda shared memory region '{name}': byte_size {byteSize} must be > 0");
        }

        lock (_system.RegisterGate)
        {
            if (_regions.ContainsKey(name) || _system.Contains(name))
            {
                throw AlreadyRegistered(name);
            }

            if (_regions.Count >= SystemSharedMemoryRegistry.MaxRegions)
            {
                throw new InferenceError(429, Grpc.Core.StatusCode.ResourceExhausted, $"cuda shared memory: {SystemSharedMemoryRegistry.MaxRegions} regions are registered already; unregister some first");
            }

            IDeviceMemory memory;
            try
            {
                memory = _ipc.Open(rawHandle, (int)deviceId);
            }
            catch (BatchwiseException e)
            {
                throw InferenceError.BadRequest($"failed to register shared memory region '{name}': cannot open its CUDA IPC handle on device {deviceId} ({e.Message}); the handle must come from cudaIpcGetMemHandle in another process on this host, with the memory still allocated");
            }

            if (byteSize > memory.Bytes)
            {
                memory.Dispose();
                throw InferenceError.BadRequest($"failed to register shared memory region '{name}': byte_size {byteSize} runs past the end of the {memory.Bytes}-byte device allocation the handle names; register at most its size");
            }

            _regions[name] = new CudaSharedMemoryRegion(name, deviceId, byteSize, memory);
        }
    }

    /// <summary>Unregisters one region (a name not registered as CUDA shared memory is a no-op, as Triton) or, for an empty name, every CUDA region.</summary>
    public void Unregister(string? name) => SharedMemoryRegion.Unregister(_regions, name);

    /// <summary>Every CUDA region (empty name) or the one named, or a 404 (Triton's NOT_FOUND) when that name is not a CUDA region.</summary>
    public IReadOnlyList<CudaRegionStatus> Status(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return [.. _regions.Values.OrderBy(r => r.Name, StringComparer.Ordinal).Select(r => new CudaRegionStatus(r.Name, r.DeviceId, r.ByteSize))];
        }

        if (_regions.TryGetValue(name, out var region))
        {
            return [new CudaRegionStatus(region.Name, region.DeviceId, region.ByteSize)];
        }

        throw InferenceError.NotFound(_system.Contains(name)
            ? $"The region named '{name}' is registered as system shared memory, not CUDA shared memory"
            : $"Unable to find cuda shared memory region: '{name}'");
    }

    /// <summary>Holds the region named for one request, or null when no CUDA region has that name.</summary>
    internal CudaSharedMemoryRegion? TryHold(string name) =>
        _regions.TryGetValue(name, out var region) && region.TryHold() ? region : null;

    /// <inheritdoc/>
    public void Dispose() => Unregister(null);

    internal static InferenceError AlreadyRegistered(string name) =>
        new(400, Grpc.Core.StatusCode.AlreadyExists, $"shared memory region '{name}' already in manager; unregister it first or pick another name");
}
