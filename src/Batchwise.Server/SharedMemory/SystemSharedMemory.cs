using System.Collections.Concurrent;
using System.IO.MemoryMappedFiles;
using Batchwise.Engines;

namespace Batchwise.Server.SharedMemory;

/// <summary>What a registered region looks like to a status call.</summary>
/// <param name="Name">The name requests use.</param>
/// <param name="Key">The POSIX shared memory key (the object under /dev/shm).</param>
/// <param name="Offset">Where the region starts in the object, in bytes.</param>
/// <param name="ByteSize">How many bytes the region spans.</param>
public sealed record SystemRegionStatus(string Name, string Key, long Offset, long ByteSize);

/// <summary>
/// One registered system shared memory region: a read/write mapping of BYTE_SIZE bytes at OFFSET of the POSIX shared
/// memory object KEY (/dev/shm/KEY).
/// </summary>
public sealed class SystemSharedMemoryRegion : SharedMemoryRegion
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly Lock _registrationLock = new();
    private readonly unsafe byte* _mapping;
    private IDisposable? _registration;
    private bool _registrationTried;

    private unsafe SystemSharedMemoryRegion(string name, string key, long offset, long byteSize, MemoryMappedFile file, MemoryMappedViewAccessor view)
        : base(name, byteSize)
    {
        Key = key;
        Offset = offset;
        _file = file;
        _view = view;
        byte* mapping = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref mapping);
        _mapping = mapping;
    }

    /// <summary>True once the mapping is page-locked with the GPU driver (a cuda model read from it).</summary>
    internal bool IsPageLocked => Volatile.Read(ref _registration) is not null;

    /// <summary>
    /// The mapped bytes in place. For a model on an engine that can page-lock host memory (cuda), the whole mapping is
    /// registered with the driver on first use (copies to the device then run asynchronously straight from it); where the
    /// driver refuses, that is logged once and the engine's staging copy is used.
    /// </summary>
    internal override unsafe TensorSource? Source(long offset, long bytes, ServedModel model)
    {
        PageLock(model);
        return new HostTensorSource((IntPtr)At(offset), bytes, IsPageLocked);
    }

    /// <summary>
    /// The mapped bytes as an output's target, written in place by the engine (registered with the driver on first use,
    /// as for inputs, so a GPU engine copies its output rows straight into the region).
    /// </summary>
    internal override unsafe TensorTarget? Target(long offset, long bytes, ServedModel model)
    {
        PageLock(model);
        return new HostTensorTarget((IntPtr)At(offset), bytes, IsPageLocked);
    }

    /// <summary>Registers the whole mapping with the driver on first use by a model on an engine that can page-lock host memory (cuda).</summary>
    private unsafe void PageLock(ServedModel model)
    {
        if (model.HostRegistration is { } registrar && !Volatile.Read(ref _registrationTried))
        {
            lock (_registrationLock)
            {
                if (!_registrationTried && !IsUnmapped)
                {
                    // Tried is published only after the registration: a request that skips the lock on it must find the
                    // region page-locked already (it used to see tried first and take its rows through staging).
                    var registration = registrar.TryRegister((IntPtr)_mapping, _view.PointerOffset + ByteSize, out var failure);
                    Volatile.Write(ref _registration, registration);
                    Volatile.Write(ref _registrationTried, true);
                    model.Log?.Invoke(registration is not null
                        ? $"system shared memory region '{Name}' ({ByteSize} bytes) page-locked for {model.Name}: its inputs and outputs are copied between it and the device directly"
                        : $"system shared memory region '{Name}' could not be page-locked for {model.Name} ({failure}); its inputs are copied through the engine's staging buffers instead");
                }
            }
        }
    }

    /// <summary>The shared memory key.</summary>
    public string Key { get; }

    /// <summary>Where the region starts in the object.</summary>
    public long Offset { get; }

    /// <inheritdoc/>
    internal override string Kind => "system";

    /// <summary>Maps the region, or a 400 naming what is wrong (bad key, missing object, a range past its end).</summary>
    internal static SystemSharedMemoryRegion Map(string name, string key, long offset, long byteSize, string root)
    {
        if (string.IsNullOrEmpty(key) || key.TrimStart('/').Length == 0 || key.TrimStart('/').Contains('/', StringComparison.Ordinal) || key.TrimStart('/') is "." or ".." || key.Length > 255)
        {
            throw InferenceError.BadRequest($"system shared memory region '{name}': key '{key}' is not a POSIX shared memory name; use one name such as /input0 (an object under /dev/shm)");
        }

        if (offset < 0 || byteSize <= 0)
        {
            throw InferenceError.BadRequest($"system shared memory region '{name}': offset {offset} and byte_size {byteSize} must be >= 0 and > 0");
        }

        var path = Path.Combine(root, key.TrimStart('/'));

        // As shm_open (O_NOFOLLOW): a link planted under /dev/shm must not lead the server to another file.
        if (new FileInfo(path).LinkTarget is not null)
        {
            throw InferenceError.BadRequest($"system shared memory region '{name}': key '{key}' is a symbolic link; register the shared memory object itself");
        }

        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw InferenceError.BadRequest($"system shared memory region '{name}': cannot open shared memory key '{key}' ({e.Message}); create it first (shm_open) and register its key");
        }

        try
        {
            var length = stream.Length;
            if (offset > length || byteSize > length - offset)
            {
                throw InferenceError.BadRequest($"system shared memory region '{name}': offset {offset} + byte_size {byteSize} runs past the end of key '{key}' ({length} bytes); register a range inside it");
            }

            var file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            try
            {
                return new SystemSharedMemoryRegion(name, key, offset, byteSize, file, file.CreateViewAccessor(offset, byteSize, MemoryMappedFileAccess.ReadWrite));
            }
            catch
            {
                file.Dispose();
                throw;
            }
        }
        catch (Exception e) when (e is not InferenceError)
        {
            stream.Dispose();
            throw InferenceError.BadRequest($"system shared memory region '{name}': cannot map key '{key}': {e.Message}");
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Copies <paramref name="target"/>.Length bytes from <paramref name="offset"/> (checked by the caller) straight from
    /// the mapping: the view accessor's ReadArray took ~0.25 ms for 602 KB, three times what reading the same bytes from a
    /// request body takes (bench/results/transport-cpu.md, session 15).
    /// </summary>
    internal override unsafe void Read(long offset, byte[] target) => new ReadOnlySpan<byte>(At(offset), target.Length).CopyTo(target);

    /// <summary>Copies <paramref name="source"/> to <paramref name="offset"/> (checked by the caller) straight into the mapping.</summary>
    internal override unsafe void Write(long offset, byte[] source) => source.CopyTo(new Span<byte>(At(offset), source.Length));

    /// <summary>The address of byte <paramref name="offset"/> of the region in the mapping.</summary>
    private unsafe byte* At(long offset) => _mapping + _view.PointerOffset + offset;

    /// <inheritdoc/>
    private protected override void ReleaseMemory()
    {
        // Unregister (the last request using it has answered, so no copy reads it) before unmapping.
        lock (_registrationLock)
        {
            _registrationTried = true;
            _registration?.Dispose();
            _registration = null;
        }

        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}

/// <summary>
/// The system shared memory regions registered with the server (Triton's system shared memory extension), and the
/// server's CUDA shared memory regions (<see cref="Cuda"/>), which share one namespace with them, as in Triton.
/// </summary>
public sealed class SystemSharedMemoryRegistry : IDisposable
{
    private readonly ConcurrentDictionary<string, SystemSharedMemoryRegion> _regions = new(StringComparer.Ordinal);
    private readonly string _root;

    /// <summary>
    /// Creates empty registries; <paramref name="root"/> is where POSIX shared memory objects live, <paramref name="cuda"/>
    /// opens CUDA IPC handles (null: CUDA shared memory is refused, saying <paramref name="cudaUnavailableReason"/>).
    /// </summary>
    public SystemSharedMemoryRegistry(string root = "/dev/shm", ICudaIpc? cuda = null, string cudaUnavailableReason = "this server has no CUDA driver or GPU")
    {
        _root = root;
        Cuda = new CudaSharedMemoryRegistry(this, cuda, cudaUnavailableReason);
    }

    /// <summary>The CUDA shared memory regions.</summary>
    public CudaSharedMemoryRegistry Cuda { get; }

    /// <summary>Taken while a name is checked and added, so one name never becomes a region of both kinds.</summary>
    internal object RegisterGate { get; } = new();

    internal bool Contains(string name) => _regions.ContainsKey(name);

    /// <summary>Most regions registered at once.</summary>
    public const int MaxRegions = 4096;

    /// <summary>Registers a region, or a 400 when the name is taken or the range is not inside the object.</summary>
    public void Register(string name, string key, long offset, long byteSize)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 256)
        {
            throw InferenceError.BadRequest("system shared memory: a region needs a name of 1 to 256 characters");
        }

        if (_regions.ContainsKey(name))
        {
            throw InferenceError.BadRequest($"system shared memory region '{name}' is already registered; unregister it first or pick another name");
        }

        if (_regions.Count >= MaxRegions)
        {
            throw new InferenceError(429, Grpc.Core.StatusCode.ResourceExhausted, $"system shared memory: {MaxRegions} regions are registered already; unregister some first");
        }

        if (Cuda.Contains(name))
        {
            throw CudaSharedMemoryRegistry.AlreadyRegistered(name);
        }

        var region = SystemSharedMemoryRegion.Map(name, key, offset, byteSize, _root);
        lock (RegisterGate)
        {
            if (Cuda.Contains(name) || !_regions.TryAdd(name, region))
            {
                region.Release();
                throw InferenceError.BadRequest($"system shared memory region '{name}' is already registered; unregister it first or pick another name");
            }
        }
    }

    /// <summary>Unregisters one region (a name not registered is a no-op, as Triton) or, for an empty name, every region.</summary>
    public void Unregister(string? name) => SharedMemoryRegion.Unregister(_regions, name);

    /// <summary>Every region (empty name) or the one named, or a 400 when that name is not registered.</summary>
    public IReadOnlyList<SystemRegionStatus> Status(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return [.. _regions.Values.OrderBy(r => r.Name, StringComparer.Ordinal).Select(r => new SystemRegionStatus(r.Name, r.Key, r.Offset, r.ByteSize))];
        }

        var region = _regions.TryGetValue(name, out var found) ? found : throw Unknown(name);
        return [new SystemRegionStatus(region.Name, region.Key, region.Offset, region.ByteSize)];
    }

    /// <summary>Holds the region named (system or CUDA) for one request (release it when the response is written), or a 400 naming it.</summary>
    internal SharedMemoryRegion Hold(string what, string name)
    {
        if (_regions.TryGetValue(name, out var region) && region.TryHold())
        {
            return region;
        }

        if (Cuda.TryHold(name) is { } cuda)
        {
            return cuda;
        }

        throw InferenceError.BadRequest($"{what}: shared memory region '{name}' is not registered (as system or CUDA shared memory); register it first (POST /v2/systemsharedmemory/region/{name}/register or /v2/cudasharedmemory/region/{name}/register)");
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Unregister(null);
        Cuda.Dispose();
    }

    private static InferenceError Unknown(string name) =>
        InferenceError.BadRequest($"system shared memory region '{name}' is not registered");
}
