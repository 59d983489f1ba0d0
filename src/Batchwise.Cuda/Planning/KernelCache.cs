using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Compiled kernels of a session, by source: a kernel is compiled once per operator signature (its source holds no
/// shape) and every plan reuses it. New sources of a plan compile together in one NVRTC program; the CUBIN is kept on
/// disk under the cache directory, keyed by NVRTC version, compute capability and the sources, so a new process loads
/// it instead of compiling.
/// </summary>
internal sealed class KernelCache : IDisposable
{
    private readonly ConcurrentDictionary<string, IntPtr> _functions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, CudaModule> _modules = new(StringComparer.Ordinal);
    private readonly Lock _compile = new();
    private readonly int _computeCapability;
    private readonly string _toolchain;
    private readonly string? _directory;

    /// <param name="computeCapability">The device's, e.g. 90.</param>
    /// <param name="toolchain">What else decides the binary (NVRTC version).</param>
    /// <param name="directory">Where CUBINs are kept between processes; null keeps nothing on disk.</param>
    public KernelCache(int computeCapability, string toolchain, string? directory)
    {
        _computeCapability = computeCapability;
        _toolchain = toolchain;
        _directory = directory;
    }

    /// <summary>Kernels compiled by NVRTC in this process.</summary>
    public int Compiled { get; private set; }

    /// <summary>Kernels loaded from CUBINs on disk (or a saved engine).</summary>
    public int Loaded { get; private set; }

    /// <summary>Loaded functions whose attributes (dynamic shared memory, non-portable clusters, carve-out) are set.</summary>
    private readonly ConcurrentDictionary<IntPtr, bool> _configured = new();
    private readonly int? _carveout = GraphCompiler.SharedCarveoutFromEnvironment;

    /// <summary>Seconds spent in NVRTC.</summary>
    public double CompileSeconds { get; private set; }

    /// <summary>The profiling gate kernel (<see cref="KernelSource.GateKernel"/>), once any module is loaded.</summary>
    public IntPtr Gate { get; private set; }

    /// <summary>The stable function name of a kernel source: bw_ and a hash of what decides its binary.</summary>
    public string NameOf(string source) => "bw_" + Hash(_toolchain + "|" + _computeCapability.ToString(System.Globalization.CultureInfo.InvariantCulture) + "|" + KernelSource.Prelude + "|" + source)[..20];

    /// <summary>Sets every kernel step's function, compiling (or loading from disk) the sources not seen yet.</summary>
    public void Resolve(IEnumerable<KernelStep> steps)
    {
        var list = steps.ToList();
        Require(list.Select(k => k.Source));
        foreach (var k in list)
        {
            k.Function = _functions[k.Source];
            k.FunctionName = NameOf(k.Source);
            if (!_configured.ContainsKey(k.Function))
            {
                // Once per loaded function (its source fixes its shared memory and cluster size; two threads setting them
                // both is harmless), recorded only once set, so no thread launches or captures it before.
                if (k.SharedBytes > StaticSharedBytes)
                {
                    CudaDriver.AllowDynamicSharedBytes(k.Function, k.SharedBytes);
                }

                if (KernelSource.ClusterSize(k.Source) > KernelSource.PortableClusterSize)
                {
                    CudaDriver.AllowNonPortableClusters(k.Function);
                }

                if (_carveout is { } percent)
                {
                    CudaDriver.PreferSharedCarveout(k.Function, percent);
                }

                _configured[k.Function] = true;
            }
        }
    }

    /// <summary>The function of one kernel source outside a plan (the segment copy), compiled or loaded the first time.</summary>
    public IntPtr FunctionOf(string source)
    {
        Require([source]);
        return _functions[source];
    }

    /// <summary>Compiles (or loads from disk) the sources not seen yet, together.</summary>
    private void Require(IEnumerable<string> sources)
    {
        var list = sources.ToList();
        if (list.Any(s => !_functions.ContainsKey(s)))
        {
            lock (_compile)
            {
                var missing = list.Where(s => !_functions.ContainsKey(s)).Distinct(StringComparer.Ordinal).ToList();
                if (missing.Count > 0)
                {
                    Load(missing);
                }
            }
        }
    }

    /// <summary>Shared memory any kernel may have a block without opting in.</summary>
    public const int StaticSharedBytes = 48 * 1024;

    /// <summary>Every CUBIN this cache loaded or compiled, by file name: what a saved engine carries.</summary>
    public IReadOnlyDictionary<string, byte[]> Images
    {
        get
        {
            lock (_compile)
            {
                return _images.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
            }
        }
    }

    /// <summary>Kernel names each CUBIN holds, by file name.</summary>
    public IReadOnlyDictionary<string, string[]> Contents
    {
        get
        {
            lock (_compile)
            {
                return _contents.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
            }
        }
    }

    private readonly Dictionary<string, byte[]> _images = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string[]> _contents = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IntPtr> _byName = new(StringComparer.Ordinal);

    /// <summary>Adds CUBINs (from a saved engine): their kernels become available by name, with no compile.</summary>
    public void AddImages(IReadOnlyDictionary<string, byte[]> images, IReadOnlyDictionary<string, string[]> contents)
    {
        lock (_compile)
        {
            foreach (var (file, image) in images)
            {
                if (!_modules.ContainsKey(file) && contents.TryGetValue(file, out var names))
                {
                    Register(file, image, names);
                    Loaded += names.Length;
                }
            }
        }
    }

    private void Load(List<string> sources)
    {
        var names = sources.ToDictionary(s => s, NameOf, StringComparer.Ordinal);

        // Known by name already (from a saved engine or an earlier program that held the same kernel).
        foreach (var s in sources.Where(s => _byName.ContainsKey(names[s])).ToList())
        {
            _functions[s] = _byName[names[s]];
            sources.Remove(s);
        }

        if (sources.Count == 0)
        {
            return;
        }

        // Compiled by an earlier process: each kernel's .ref file names the CUBIN that holds it.
        if (_directory is not null)
        {
            foreach (var s in sources.ToList())
            {
                if (_byName.ContainsKey(names[s]) || !TryLoadFromDisk(names[s]))
                {
                    continue;
                }
            }

            foreach (var s in sources.Where(s => _byName.ContainsKey(names[s])).ToList())
            {
                _functions[s] = _byName[names[s]];
                sources.Remove(s);
                Loaded++;
            }
        }

        if (sources.Count == 0)
        {
            return;
        }

        var file = Hash(string.Join("\n", sources.Select(s => names[s]).Order(StringComparer.Ordinal)))[..24] + ".cubin";
        var program = new StringBuilder(KernelSource.Prelude);
        foreach (var s in sources)
        {
            program.Append(s.Replace(KernelSource.Name, names[s], StringComparison.Ordinal)).Append('\n');
        }

        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var cubin = Nvrtc.CompileToCubin(program.ToString(), "batchwise_kernels.cu", _computeCapability);
        CompileSeconds += System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
        Compiled += sources.Count;
        Register(file, cubin, [.. sources.Select(s => names[s])]);
        if (_directory is not null)
        {
            TryWrite(Path.Combine(_directory, file), cubin);
            foreach (var s in sources)
            {
                TryWrite(Path.Combine(_directory, names[s] + ".ref"), Encoding.UTF8.GetBytes(file));
            }
        }

        foreach (var s in sources)
        {
            _functions[s] = _byName[names[s]];
        }
    }

    /// <summary>Loads the CUBIN a kernel's .ref file names; false when there is none or it does not load.</summary>
    private bool TryLoadFromDisk(string name)
    {
        try
        {
            var refPath = Path.Combine(_directory!, name + ".ref");
            if (!File.Exists(refPath))
            {
                return false;
            }

            var file = File.ReadAllText(refPath).Trim();
            var path = Path.Combine(_directory!, file);
            if (_modules.ContainsKey(file) || !File.Exists(path) || file.Contains('/', StringComparison.Ordinal))
            {
                return _byName.ContainsKey(name);
            }

            var cubin = File.ReadAllBytes(path);
            var module = CudaDriver.LoadModule(cubin);
            var held = new List<string>();
            foreach (var refFile in Directory.EnumerateFiles(_directory!, "bw_*.ref"))
            {
                if (File.ReadAllText(refFile).Trim() == file)
                {
                    held.Add(Path.GetFileNameWithoutExtension(refFile));
                }
            }

            _modules[file] = module;
            _images[file] = cubin;
            _contents[file] = [.. held];
            foreach (var n in held)
            {
                _byName[n] = CudaDriver.GetFunction(module, n);
            }

            if (Gate == IntPtr.Zero)
            {
                Gate = CudaDriver.GetFunction(module, KernelSource.GateKernel);
            }

            return _byName.ContainsKey(name);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CudaException)
        {
            return false; // a damaged or unreadable cache costs a compile, nothing else
        }
    }

    private CudaModule Register(string file, byte[] cubin, string[] kernelNames)
    {
        var module = CudaDriver.LoadModule(cubin);
        _modules[file] = module;
        _images[file] = cubin;
        _contents[file] = kernelNames;
        foreach (var n in kernelNames)
        {
            _byName[n] = CudaDriver.GetFunction(module, n);
        }

        if (Gate == IntPtr.Zero)
        {
            Gate = CudaDriver.GetFunction(module, KernelSource.GateKernel);
        }

        return module;
    }

    private static void TryWrite(string path, byte[] bytes)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var temp = path + "." + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) + ".tmp";
            File.WriteAllBytes(temp, bytes);
            File.Move(temp, path, overwrite: true);
        }
        catch (IOException)
        {
            // A read-only or full cache directory costs a compile next time, nothing else.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static string Hash(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    public void Dispose()
    {
        foreach (var m in _modules.Values)
        {
            m.Dispose();
        }

        _modules.Clear();
    }
}
