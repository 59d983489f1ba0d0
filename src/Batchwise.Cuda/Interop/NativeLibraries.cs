using System.Reflection;
using System.Runtime.InteropServices;

namespace Batchwise.Cuda.Interop;

/// <summary>One native library Batchwise calls: the name used in LibraryImport and the file names to look for, newest first.</summary>
internal sealed record NativeLibrarySpec(string ImportName, string Description, string[] FileNames);

/// <summary>
/// The one resolver for NVIDIA's libraries. Search order, first match wins:
/// BATCHWISE_CUDA_PATH, LD_LIBRARY_PATH, CUDA_HOME / CUDA_PATH, /usr/local/cuda*/targets/*/lib and /usr/local/cuda*/lib64,
/// the system library folders, Python site-packages nvidia/*/lib, and finally the loader's own search (ldconfig cache).
/// </summary>
internal static class NativeLibraries
{
    public static readonly NativeLibrarySpec Driver = new("batchwise_cuda", "CUDA driver", ["libcuda.so.1", "libcuda.so"]);
    public static readonly NativeLibrarySpec Cudnn = new("batchwise_cudnn", "cuDNN 9", ["libcudnn.so.9"]);
    public static readonly NativeLibrarySpec CublasLt = new("batchwise_cublaslt", "cuBLASLt", ["libcublasLt.so.13", "libcublasLt.so.12"]);
    public static readonly NativeLibrarySpec Nvrtc = new("batchwise_nvrtc", "NVRTC", ["libnvrtc.so.13", "libnvrtc.so.12"]);
    public static readonly NativeLibrarySpec Nvml = new("batchwise_nvml", "NVML", ["libnvidia-ml.so.1", "libnvidia-ml.so"]);

    private static readonly NativeLibrarySpec[] All = [Driver, Cudnn, CublasLt, Nvrtc, Nvml];
    private static readonly Dictionary<string, IntPtr> Loaded = new(StringComparer.Ordinal);
    private static readonly Dictionary<string, string> LoadedPaths = new(StringComparer.Ordinal);
    private static int _registered;

    /// <summary>Installs the resolver for this assembly's LibraryImports (idempotent).</summary>
    public static void Register()
    {
        if (Interlocked.Exchange(ref _registered, 1) == 0)
        {
            NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
        }
    }

    /// <summary>Loads a library (once) or throws one BatchwiseException that lists every place searched.</summary>
    public static IntPtr Load(NativeLibrarySpec spec)
    {
        Register();
        lock (Loaded)
        {
            if (Loaded.TryGetValue(spec.ImportName, out var handle))
            {
                return handle;
            }

            if (!OperatingSystem.IsLinux())
            {
                throw new BatchwiseException($"The Batchwise CUDA engine runs on Linux; this is {RuntimeInformation.OSDescription}", "Use --engine ort, or run on a Linux machine with an NVIDIA GPU.");
            }

            var search = LibrarySearch.FromEnvironment();
            var tried = new List<string>();
            foreach (var candidate in search.Candidates(spec.FileNames))
            {
                if (NativeLibrary.TryLoad(candidate, out handle))
                {
                    Preload(spec, candidate);
                    Loaded[spec.ImportName] = handle;
                    LoadedPaths[spec.ImportName] = candidate;
                    return handle;
                }

                tried.Add(candidate + " (found, failed to load)");
            }

            // Last resort: the dynamic loader's own search (ld.so.cache, RPATH).
            foreach (var name in spec.FileNames)
            {
                if (NativeLibrary.TryLoad(name, out handle))
                {
                    Loaded[spec.ImportName] = handle;
                    LoadedPaths[spec.ImportName] = name + " (loader search)";
                    return handle;
                }
            }

            var where = string.Join(", ", search.Directories().Select(d => d.Directory).Distinct(StringComparer.Ordinal));
            var failed = tried.Count > 0 ? $"; {string.Join("; ", tried)}" : string.Empty;
            throw new BatchwiseException(
                $"{spec.Description} library not found: looked for {string.Join(" or ", spec.FileNames)} in BATCHWISE_CUDA_PATH, LD_LIBRARY_PATH, CUDA_HOME/CUDA_PATH, /usr/local/cuda*, system folders and Python site-packages nvidia/*/lib ({where}) and the loader's cache{failed}",
                spec == Driver
                    ? "No NVIDIA driver is installed here: run on a machine with an NVIDIA GPU, or use --engine ort."
                    : "Install it (CUDA toolkit, cuDNN 9, or pip install nvidia-cudnn-cu12 / nvidia-cublas-cu12 / nvidia-cuda-nvrtc-cu12) or point BATCHWISE_CUDA_PATH at its folder.");
        }
    }

    /// <summary>Where a library was loaded from, if it was.</summary>
    public static string? PathOf(NativeLibrarySpec spec)
    {
        lock (Loaded)
        {
            return LoadedPaths.GetValueOrDefault(spec.ImportName);
        }
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        foreach (var spec in All)
        {
            if (spec.ImportName == libraryName)
            {
                return Load(spec);
            }
        }

        return IntPtr.Zero;
    }

    /// <summary>
    /// Libraries that dlopen companions by bare name (NVRTC its builtins, cuDNN its sub-libraries) find them only if they are
    /// already loaded or on the loader's path; loading the companions from the same folder first makes any folder work.
    /// </summary>
    private static void Preload(NativeLibrarySpec spec, string path)
    {
        var dir = Path.GetDirectoryName(path);
        if (dir is null || !Directory.Exists(dir))
        {
            return;
        }

        var pattern = spec == Nvrtc ? "libnvrtc-builtins.so.*" : spec == Cudnn ? "libcudnn_*.so.9" : null;
        if (pattern is null)
        {
            return;
        }

        // cuDNN's sub-libraries depend on each other: load the graph and ops libraries before the engines and cnn.
        var files = Directory.GetFiles(dir, pattern).OrderBy(f => f.Contains("graph", StringComparison.Ordinal) ? 0 : f.Contains("ops", StringComparison.Ordinal) ? 1 : 2).ToList();
        foreach (var f in files)
        {
            NativeLibrary.TryLoad(f, out _);
        }
    }
}

/// <summary>The documented library search order, computed from an environment and a file system root (testable without a GPU).</summary>
internal sealed class LibrarySearch
{
    private static readonly string[] SystemDirectories =
    [
        "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu",
        "/usr/lib64", "/lib64", "/usr/lib", "/lib", "/usr/local/lib", "/usr/lib/wsl/lib",
    ];

    private readonly Func<string, string?> _env;
    private readonly string _root;

    /// <summary>Creates a search over <paramref name="root"/> ("/" on a real machine) with the given environment.</summary>
    public LibrarySearch(Func<string, string?> environment, string root = "/")
    {
        _env = environment;
        _root = root;
    }

    /// <summary>The real machine's search.</summary>
    public static LibrarySearch FromEnvironment() => new(Environment.GetEnvironmentVariable);

    /// <summary>Every folder searched, in order, with the rule that put it there.</summary>
    public IEnumerable<(string Rule, string Directory)> Directories()
    {
        foreach (var d in PathList("BATCHWISE_CUDA_PATH"))
        {
            foreach (var x in WithToolkitLayout(d))
            {
                yield return ("BATCHWISE_CUDA_PATH", x);
            }
        }

        foreach (var d in PathList("LD_LIBRARY_PATH"))
        {
            yield return ("LD_LIBRARY_PATH", d);
        }

        foreach (var variable in new[] { "CUDA_HOME", "CUDA_PATH" })
        {
            foreach (var d in PathList(variable))
            {
                foreach (var x in WithToolkitLayout(d))
                {
                    yield return (variable, x);
                }
            }
        }

        var local = Rooted("/usr/local");
        if (System.IO.Directory.Exists(local))
        {
            // /usr/local/cuda (the usual symlink) first, then versioned folders newest first.
            var toolkits = System.IO.Directory.GetDirectories(local, "cuda*")
                .OrderBy(d => Path.GetFileName(d) == "cuda" ? 0 : 1)
                .ThenByDescending(d => Path.GetFileName(d), StringComparer.Ordinal);
            foreach (var tk in toolkits)
            {
                foreach (var t in Subdirectories(Path.Combine(tk, "targets")))
                {
                    yield return ("/usr/local/cuda*/targets/*/lib", Path.Combine(t, "lib"));
                }

                yield return ("/usr/local/cuda*/lib64", Path.Combine(tk, "lib64"));
            }
        }

        foreach (var d in SystemDirectories)
        {
            yield return ("system", Rooted(d));
        }

        foreach (var sp in SitePackages())
        {
            foreach (var lib in Subdirectories(Path.Combine(sp, "nvidia")))
            {
                yield return ("site-packages nvidia/*/lib", Path.Combine(lib, "lib"));
            }
        }
    }

    /// <summary>Existing files matching <paramref name="fileNames"/>, in search order (folder first, then name).</summary>
    public IEnumerable<string> Candidates(IReadOnlyList<string> fileNames)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (_, dir) in Directories())
        {
            foreach (var name in fileNames)
            {
                var path = Path.Combine(dir, name);
                if (File.Exists(path) && seen.Add(path))
                {
                    yield return path;
                }
            }
        }
    }

    private IEnumerable<string> PathList(string variable)
    {
        var value = _env(variable);
        return string.IsNullOrWhiteSpace(value) ? [] : value.Split(':', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    /// <summary>A folder given by the user may be the library folder itself or a toolkit root.</summary>
    private static IEnumerable<string> WithToolkitLayout(string dir)
    {
        yield return dir;
        yield return Path.Combine(dir, "lib64");
        yield return Path.Combine(dir, "lib");
        foreach (var t in Subdirectories(Path.Combine(dir, "targets")))
        {
            yield return Path.Combine(t, "lib");
        }
    }

    private IEnumerable<string> SitePackages()
    {
        var roots = new List<string>();
        foreach (var variable in new[] { "VIRTUAL_ENV", "CONDA_PREFIX" })
        {
            var v = _env(variable);
            if (!string.IsNullOrWhiteSpace(v))
            {
                roots.Add(Path.Combine(v, "lib"));
            }
        }

        var home = _env("HOME");
        if (!string.IsNullOrWhiteSpace(home))
        {
            roots.Add(Path.Combine(home, ".local", "lib"));
        }

        roots.AddRange(["/usr/local/lib", "/usr/lib", "/opt/conda/lib"]);
        foreach (var root in roots)
        {
            var r = root.StartsWith(_root, StringComparison.Ordinal) && _root != "/" ? root : Rooted(root);
            foreach (var py in Subdirectories(r).Where(d => Path.GetFileName(d).StartsWith("python3", StringComparison.Ordinal)).OrderByDescending(d => d, StringComparer.Ordinal))
            {
                yield return Path.Combine(py, "site-packages");
                yield return Path.Combine(py, "dist-packages");
            }
        }
    }

    private string Rooted(string absolute) => _root == "/" ? absolute : Path.Combine(_root, absolute.TrimStart('/'));

    private static IEnumerable<string> Subdirectories(string dir) =>
        System.IO.Directory.Exists(dir) ? System.IO.Directory.GetDirectories(dir).OrderBy(d => d, StringComparer.Ordinal) : [];
}
