using System.CommandLine;
using System.Globalization;
using Batchwise.Analysis;
using Batchwise.Cli.Options;
using Batchwise.Cuda;
using Batchwise.Engines;
using Batchwise.Reports;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise devices`: the NVIDIA GPUs here, with driver and library versions.</summary>
public static class DevicesCommand
{
    /// <summary>Creates the devices command.</summary>
    public static Command Create()
    {
        var ceilings = new Option<bool>("--ceilings") { Description = "Also show each GPU's measured ceilings (GEMM TFLOP/s in fp32, TF32 and fp16, int8 TOP/s, bandwidth, launch costs) and the CPU's through ONNX Runtime (fp32 and int8): from the cache, else measured now (seconds) and cached, as explain uses them" };
        var recalibrate = SharedOptions.Recalibrate();
        var command = new Command("devices", "List the NVIDIA GPUs and the CUDA libraries the cuda engine would use") { ceilings, recalibrate };
        var reports = ReportOptions.AddTo(command);
        command.SetGuardedAction(parse =>
        {
            var targets = reports.Read(parse);
            IReadOnlyList<CudaDeviceInfo> devices;
            try
            {
                devices = CudaDevices.List();
            }
            catch (BatchwiseException e) when (e.Message.StartsWith("no NVIDIA GPU", StringComparison.Ordinal))
            {
                // Not an error: the answer to "which GPUs are here?" is "none".
                var none = new DevicesDocument([]);
                targets.Human.WriteLine(e.Message);
                if (parse.GetValue(ceilings) && !targets.TakesStandardOutput)
                {
                    targets.Human.WriteLine(CpuCeilings(parse.GetValue(recalibrate)));
                }

                targets.WriteJson(() => ReportJson.Serialize(none));
                targets.WriteCsv(none.ToCsv);
                targets.SayWritten();
                return 0;
            }

            var measured = parse.GetValue(ceilings) ? devices.Select(d => Ceilings(d.Ordinal, parse.GetValue(recalibrate))).ToList() : null;
            var document = new DevicesDocument(devices.Select((d, i) => new DeviceRecord(
                d.Ordinal, d.Name, d.MemoryBytes, d.MultiprocessorCount, d.ComputeCapability, d.PciBusId, d.DriverVersion, d.CudaDriverApi, d.CudnnVersion, d.CublasLtVersion, d.NvrtcVersion,
                measured is null ? null : CeilingsRecord.From(measured[i]))).ToList());
            targets.WriteJson(() => ReportJson.Serialize(document));
            targets.WriteCsv(document.ToCsv);
            if (targets.TakesStandardOutput)
            {
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
                var t = new Table().AddColumns("#", "fp32 GEMM", "TF32 GEMM", "fp16 GEMM", "int8 GEMM", "device-to-device", "kernel launch", "CUDA-graph node", "run (graph / no graph)", "GEMM fills at N");
                foreach (var (m, i) in measured.Select((m, i) => (m, i)))
                {
                    t.AddRow(
                        i.ToString(c),
                        string.Create(c, $"{m.PeakFlops / 1e12:N1} TFLOP/s"),
                        m.PeakFlopsTf32 is { } tf ? string.Create(c, $"{tf / 1e12:N1} TFLOP/s") : "-",
                        m.PeakFlopsFp16 is { } h ? string.Create(c, $"{h / 1e12:N1} TFLOP/s") : "-",
                        m.PeakFlopsInt8 is { } q ? string.Create(c, $"{q / 1e12:N1} TOP/s") : "-",
                        string.Create(c, $"{m.BandwidthBytesPerSecond / 1e9:N0} GB/s"),
                        m.KernelLaunchSeconds is { } k ? string.Create(c, $"{k * 1e6:N2} µs") : "-",
                        string.Create(c, $"{m.OpOverheadSeconds * 1e6:N2} µs"),
                        string.Create(c, $"{m.RunOverheadSeconds * 1e6:N1} / {(m.StreamRunOverheadSeconds is { } r ? (r * 1e6).ToString("N1", c) : "-")} µs"),
                        string.Create(c, $"{m.SaturationN:N0}"));
                }

                AnsiConsole.Write(t);
                Console.WriteLine(string.Create(c, $"ceilings measured {measured[0].MeasuredAt:yyyy-MM-dd HH:mm} UTC (cuBLASLt GEMM {measured[0].Details.GetValueOrDefault("cublaslt", "?")}); fp32 rate by N: {measured[0].Details.GetValueOrDefault("fp32_curve", "-")} TFLOP/s; int8: {measured[0].Details.GetValueOrDefault("int8_curve", "-")} TOP/s"));
                var sustained = string.Join("; ", new[] { "fp32", "tf32", "fp16" }.Where(p => measured[0].Details.ContainsKey(p + "_sustained")).Select(p => $"{p} {measured[0].Details[p + "_sustained"]}"));
                Console.WriteLine(sustained.Length > 0
                    ? $"held for {measured[0].Details.GetValueOrDefault("sustained_hold_s", "?")} s, GEMMs keep of their burst rate (activity:share): {sustained}"
                    : "sustained load: not measured (ceilings from an older probe: run with --recalibrate)");
                Console.WriteLine(CpuCeilings(parse.GetValue(recalibrate)));
            }

            targets.SayWritten();
            return 0;
        });
        return command;
    }

    /// <summary>The CPU's ceilings through ONNX Runtime (fp32 and int8 GEMM, bandwidth, overheads) as one line: from the cache explain uses, else measured now.</summary>
    private static string CpuCeilings(bool recalibrate)
    {
        var c = DeviceCeilingsSource.Get(new OrtEngine(), new EngineOptions(), CeilingsCache.Default(), recalibrate, line => Console.Error.WriteLine(line)).Ceilings;
        var curve = c.Details.TryGetValue("int8_conv_curve", out var q) ? $"; int8 conv rate by N: {q} GOP/s" : c.Details.TryGetValue("int8", out var why) ? $"; int8 {why}" : string.Empty;
        return "CPU: " + c.Summary() + curve;
    }

    /// <summary>One GPU's ceilings from the per-machine cache, measured when absent (explain reads the same file).</summary>
    private static DeviceCeilings Ceilings(int ordinal, bool recalibrate)
    {
        var engine = new CudaEngine();
        return DeviceCeilingsSource.Get(engine, new EngineOptions { DeviceId = ordinal }, CeilingsCache.Default(), recalibrate, line => Console.Error.WriteLine(line)).Ceilings;
    }
}
