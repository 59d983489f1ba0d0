using System.CommandLine;
using System.Globalization;
using Batchwise.Cuda;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise devices`: the NVIDIA GPUs here, with driver and library versions.</summary>
public static class DevicesCommand
{
    /// <summary>Creates the devices command.</summary>
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Write the devices as JSON" };
        var command = new Command("devices", "List the NVIDIA GPUs and the CUDA libraries the cuda engine would use") { json };
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
                }).ToList(), DevicesJson.Default.ListDictionaryStringObject));
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
            return 0;
        });
        return command;
    }
}

/// <summary>Source-generated JSON for the devices list (trimming-safe).</summary>
[System.Text.Json.Serialization.JsonSerializable(typeof(List<Dictionary<string, object>>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(int))]
[System.Text.Json.Serialization.JsonSerializable(typeof(long))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class DevicesJson : System.Text.Json.Serialization.JsonSerializerContext
{
}
