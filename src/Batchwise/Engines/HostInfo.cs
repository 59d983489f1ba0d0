namespace Batchwise.Engines;

/// <summary>Facts about the host machine, recorded with every result.</summary>
public static class HostInfo
{
    private static readonly Lazy<string> Cpu = new(ReadCpuName);

    /// <summary>The CPU model name (from /proc/cpuinfo on Linux).</summary>
    public static string CpuName => Cpu.Value;

    /// <summary>Logical processors available to this process.</summary>
    public static int LogicalCores => Environment.ProcessorCount;

    /// <summary>The machine's host name.</summary>
    public static string MachineName => Environment.MachineName;

    /// <summary>Operating system description.</summary>
    public static string OperatingSystem => System.Runtime.InteropServices.RuntimeInformation.OSDescription;

    /// <summary>.NET runtime description.</summary>
    public static string Runtime => System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription;

    private static string ReadCpuName()
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
            {
                foreach (var line in File.ReadLines("/proc/cpuinfo"))
                {
                    if (line.StartsWith("model name", StringComparison.Ordinal))
                    {
                        return line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
                    }
                }
            }
        }
        catch (IOException)
        {
            // Fall through to the generic name.
        }

        return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString() + " CPU";
    }
}
