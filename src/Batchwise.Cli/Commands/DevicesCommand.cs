using System.CommandLine;
using System.Globalization;
using Batchwise.Analysis;
using Batchwise.Cuda;
using Batchwise.Engines;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise devices`: the NVIDIA GPUs here, with driver and library versions.</summary>
public static class DevicesCommand
{
    /// <summary>Creates the devices command.</summary>
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Write the devices as JSON" };
        var ceilings = new Option<bool>("--ceilings") { Description = "Also show each GPU's measured ceilings (GEMM TFLOP/s in fp32, TF32 and fp16, bandwidth, launch costs): from the cache, else measured now (a few seconds) and cached, as explain uses them" };
        var recalibrate = new Option<bool>("--recalibrate") { Description = "With --ceilings: measure again instead of reading the cache" };
        var command = new Command("devices", "List the NVIDIA GPUs and the CUDA libraries the cuda engine would use") { json, ceilings, recalibrate };
        command.SetGuardedAction(parse =>
        {
            IReadOnlyList<CudaDeviceInfo> devices;
            try
            {
                devices = CudaDevices.List();
            }
            catch (BatchwiseException e) when (e.Message.StartsWith("no NVIDIA GPU", StringComparison.Ordinal))
            {
                // Not an error: the answer to "which GPUs are here?" is "none".
                Console.WriteLine(parse.GetValue(json) ? "[]" : e.Message);
                return 0;
            }

            var measured = parse.GetValue(ceilings) ? devices.Select(d => Ceilings(d.Ordinal, parse.GetValue(recalibrate))).ToList() : null;
            if (parse.GetValue(json))
            {
                Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(devices.Select(d => new Dictionary<string, object>
                {
                    ["ordinal"] = d.Ordinal,
                    ["name"] = d.Name,
                    ["memory_bytes"] = d.MemoryBytes,
                    ["multiprocessors"] = d.MultiprocessorCount,
                    ["compute_capability"] = d.ComputeCapability,
                    ["pci_bus_id"] = d.PciBusId,
                    ["driver"] = d.DriverVersion,
                    ["cuda_driver_api"] = d.CudaDriverApi,
                    ["cudnn"] = d.CudnnVersion,
                    ["cublaslt"] = d.CublasLtVersion,
                    ["nvrtc"] = d.NvrtcVersion,
                }.Concat(measured is null ? [] : CeilingsJson(measured[d.Ordinal])).ToDictionary()).ToList(), DevicesJson.Default.ListDictionaryStringObject));
                return 0;
            }

            var table = new Table().AddColumns("#", "name", "memory", "SMs", "compute", "PCI bus");
            foreach (var d in devices)
            {
                table.AddRow(
                    d.Ordinal.ToString(CultureInfo.InvariantCulture),
                    Markup.Escape(d.Name),
                    $"{d.MemoryBytes / (1024.0 * 1024 * 1024):F1} GiB",
                    d.MultiprocessorCount.ToString(CultureInfo.InvariantCulture),
                    d.ComputeCapability,
                    d.PciBusId);
            }

            AnsiConsole.Write(table);
            var first = devices[0];
            var paths = CudaDevices.LibraryPaths();
            Console.WriteLine($"driver {first.DriverVersion} (CUDA {first.CudaDriverApi})  {paths["driver"]}");
            Console.WriteLine($"cuDNN {first.CudnnVersion}  {paths["cudnn"]}");
            Console.WriteLine($"cuBLASLt {first.CublasLtVersion}  {paths["cublaslt"]}");
            Console.WriteLine($"NVRTC {first.NvrtcVersion}  {paths["nvrtc"]}");
            Console.WriteLine($"NVML {paths["nvml"]}");
            if (measured is not null)
            {
                var c = CultureInfo.InvariantCulture;
                var t = new Table().AddColumns("#", "fp32 GEMM", "TF32 GEMM", "fp16 GEMM", "device-to-device", "kernel launch", "CUDA-graph node", "run (graph / no graph)", "GEMM fills at N");
                foreach (var (m, i) in measured.Select((m, i) => (m, i)))
                {
                    t.AddRow(
                        i.ToString(c),
                        string.Create(c, $"{m.PeakFlops / 1e12:N1} TFLOP/s"),
                        m.PeakFlopsTf32 is { } tf ? string.Create(c, $"{tf / 1e12:N1} TFLOP/s") : "-",
                        m.PeakFlopsFp16 is { } h ? string.Create(c, $"{h / 1e12:N1} TFLOP/s") : "-",
                        string.Create(c, $"{m.BandwidthBytesPerSecond / 1e9:N0} GB/s"),
                        m.KernelLaunchSeconds is { } k ? string.Create(c, $"{k * 1e6:N2} µs") : "-",
                        string.Create(c, $"{m.OpOverheadSeconds * 1e6:N2} µs"),
                        string.Create(c, $"{m.RunOverheadSeconds * 1e6:N1} / {(m.StreamRunOverheadSeconds is { } r ? (r * 1e6).ToString("N1", c) : "-")} µs"),
                        string.Create(c, $"{m.SaturationN:N0}"));
                }

                AnsiConsole.Write(t);
                Console.WriteLine(string.Create(c, $"ceilings measured {measured[0].MeasuredAt:yyyy-MM-dd HH:mm} UTC (cuBLASLt GEMM {measured[0].Details.GetValueOrDefault("cublaslt", "?")}); fp32 rate by N: {measured[0].Details.GetValueOrDefault("fp32_curve", "-")} TFLOP/s"));
            }

            return 0;
        });
        return command;
    }

    /// <summary>One GPU's ceilings from the per-machine cache, measured when absent (explain reads the same file).</summary>
    private static DeviceCeilings Ceilings(int ordinal, bool recalibrate)
    {
        var engine = new CudaEngine();
        return DeviceCeilingsSource.Get(engine, new EngineOptions { DeviceId = ordinal }, CeilingsCache.Default(), recalibrate, line => Console.Error.WriteLine(line)).Ceilings;
    }

    private static IEnumerable<KeyValuePair<string, object>> CeilingsJson(DeviceCeilings c)
    {
        yield return new("peak_flops_fp32", c.PeakFlops);
        if (c.PeakFlopsTf32 is { } tf32)
        {
            yield return new("peak_flops_tf32", tf32);
        }

        if (c.PeakFlopsFp16 is { } fp16)
        {
            yield return new("peak_flops_fp16", fp16);
        }

        yield return new("bandwidth_bytes_per_s", c.BandwidthBytesPerSecond);
        if (c.KernelLaunchSeconds is { } launch)
        {
            yield return new("kernel_launch_s", launch);
        }

        yield return new("graph_node_s", c.OpOverheadSeconds);
        yield return new("run_overhead_s", c.RunOverheadSeconds);
        yield return new("saturation_n", c.SaturationN);
    }
}

/// <summary>Source-generated JSON for the devices list (trimming-safe).</summary>
[System.Text.Json.Serialization.JsonSerializable(typeof(double))]
[System.Text.Json.Serialization.JsonSerializable(typeof(List<Dictionary<string, object>>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(int))]
[System.Text.Json.Serialization.JsonSerializable(typeof(long))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class DevicesJson : System.Text.Json.Serialization.JsonSerializerContext
{
}
