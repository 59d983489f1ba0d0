using System.Runtime.InteropServices;
using System.Text;

namespace Batchwise.Cuda.Interop;

/// <summary>NVRTC: compiles generated CUDA C to a CUBIN for the device's architecture.</summary>
internal static unsafe partial class Nvrtc
{
    private const string Lib = "batchwise_nvrtc";

    [LibraryImport(Lib)] private static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(Lib)] private static partial IntPtr nvrtcGetErrorString(int result);
    [LibraryImport(Lib)] private static partial int nvrtcCreateProgram(out IntPtr program, byte* source, byte* name, int numHeaders, byte** headers, byte** includeNames);
    [LibraryImport(Lib)] private static partial int nvrtcDestroyProgram(ref IntPtr program);
    [LibraryImport(Lib)] private static partial int nvrtcCompileProgram(IntPtr program, int numOptions, byte** options);
    [LibraryImport(Lib)] private static partial int nvrtcGetProgramLogSize(IntPtr program, out nuint size);
    [LibraryImport(Lib)] private static partial int nvrtcGetProgramLog(IntPtr program, byte* log);
    [LibraryImport(Lib)] private static partial int nvrtcGetCUBINSize(IntPtr program, out nuint size);
    [LibraryImport(Lib)] private static partial int nvrtcGetCUBIN(IntPtr program, byte* cubin);

    public static void Check(int status, string call)
    {
        if (status != 0)
        {
            throw new CudaException("NVRTC", call, status, Marshal.PtrToStringUTF8(nvrtcGetErrorString(status)) ?? "NVRTC_ERROR_" + status);
        }
    }

    public static string Version()
    {
        NativeLibraries.Load(NativeLibraries.Nvrtc);
        Check(nvrtcVersion(out var major, out var minor), "nvrtcVersion");
        return $"{major}.{minor}";
    }

    /// <summary>
    /// Compiles <paramref name="source"/> for sm_<paramref name="computeCapability"/>, or sm_90a where the source uses
    /// warpgroup MMA (an architecture-specific instruction of compute capability 9.0, for the device it runs on); a failed
    /// compile throws with the compiler's log.
    /// </summary>
    public static byte[] CompileToCubin(string source, string name, int computeCapability, IEnumerable<string>? extraOptions = null)
    {
        NativeLibraries.Load(NativeLibraries.Nvrtc);
        var specific = computeCapability == 90 && source.Contains("wgmma.", StringComparison.Ordinal);
        var options = new List<string> { $"--gpu-architecture=sm_{computeCapability}{(specific ? "a" : string.Empty)}", "--std=c++17", "-default-device" };
        options.AddRange(extraOptions ?? []);
        var src = Encoding.UTF8.GetBytes(source + "\0");
        var nm = Encoding.UTF8.GetBytes(name + "\0");
        IntPtr program;
        fixed (byte* s = src, n = nm)
        {
            Check(nvrtcCreateProgram(out program, s, n, 0, null, null), "nvrtcCreateProgram");
        }

        try
        {
            var encoded = options.Select(o => Encoding.UTF8.GetBytes(o + "\0")).ToArray();
            var handles = encoded.Select(e => GCHandle.Alloc(e, GCHandleType.Pinned)).ToArray();
            int status;
            try
            {
                var ptrs = stackalloc byte*[encoded.Length];
                for (var i = 0; i < encoded.Length; i++)
                {
                    ptrs[i] = (byte*)handles[i].AddrOfPinnedObject();
                }

                status = nvrtcCompileProgram(program, encoded.Length, ptrs);
            }
            finally
            {
                foreach (var h in handles)
                {
                    h.Free();
                }
            }

            if (status != 0)
            {
                var log = Log(program);
                throw new CudaException("NVRTC", $"nvrtcCompileProgram({name})", status, (Marshal.PtrToStringUTF8(nvrtcGetErrorString(status)) ?? "error") + ": " + log.Trim());
            }

            Check(nvrtcGetCUBINSize(program, out var size), "nvrtcGetCUBINSize");
            var cubin = new byte[(int)size];
            fixed (byte* c = cubin)
            {
                Check(nvrtcGetCUBIN(program, c), "nvrtcGetCUBIN");
            }

            return cubin;
        }
        finally
        {
            nvrtcDestroyProgram(ref program);
        }
    }

    private static string Log(IntPtr program)
    {
        if (nvrtcGetProgramLogSize(program, out var size) != 0 || size <= 1)
        {
            return string.Empty;
        }

        var buffer = new byte[(int)size];
        fixed (byte* b = buffer)
        {
            nvrtcGetProgramLog(program, b);
        }

        var text = Encoding.UTF8.GetString(buffer, 0, buffer.Length - 1);
        return text.Length > 4000 ? text[..4000] + " ..." : text;
    }
}
