using Batchwise.Analysis;

namespace Batchwise.Reports;

/// <summary>`batchwise devices --json`: schema batchwise.devices (docs/report-schemas.md).</summary>
/// <param name="Devices">Every NVIDIA GPU found (empty where there is none).</param>
public sealed record DevicesDocument(IReadOnlyList<DeviceRecord> Devices) : VersionedDocument("batchwise.devices", 1)
{
    /// <summary>The CSV columns: one row per GPU.</summary>
    public static readonly IReadOnlyList<string> CsvColumns =
    [
        "ordinal", "name", "memory_bytes", "multiprocessors", "compute_capability", "pci_bus_id", "driver", "cuda_driver_api", "cudnn", "cublaslt", "nvrtc",
        "peak_flops_fp32", "peak_flops_tf32", "peak_flops_fp16", "bandwidth_bytes_per_s", "kernel_launch_s", "graph_node_s", "run_overhead_s", "saturation_n", "peak_flops_int8",
    ];

    /// <summary>The document as CSV, one row per GPU (ceilings empty unless measured).</summary>
    public string ToCsv() => Csv.Write(CsvColumns, Devices.Select(d => (IReadOnlyList<object?>)
    [
        d.Ordinal, d.Name, d.MemoryBytes, d.Multiprocessors, d.ComputeCapability, d.PciBusId, d.Driver, d.CudaDriverApi, d.Cudnn, d.Cublaslt, d.Nvrtc,
        d.Ceilings?.PeakFlopsFp32, d.Ceilings?.PeakFlopsTf32, d.Ceilings?.PeakFlopsFp16, d.Ceilings?.BandwidthBytesPerS, d.Ceilings?.KernelLaunchS,
        d.Ceilings?.GraphNodeS, d.Ceilings?.RunOverheadS, d.Ceilings?.SaturationN, d.Ceilings?.PeakFlopsInt8,
    ]));
}

/// <summary>One GPU and the libraries the cuda engine would use with it.</summary>
/// <param name="Ordinal">CUDA device ordinal.</param>
/// <param name="Name">Product name.</param>
/// <param name="MemoryBytes">Device memory.</param>
/// <param name="Multiprocessors">Streaming multiprocessors.</param>
/// <param name="ComputeCapability">e.g. 9.0.</param>
/// <param name="PciBusId">PCI bus id.</param>
/// <param name="Driver">Driver version.</param>
/// <param name="CudaDriverApi">CUDA version the driver supports.</param>
/// <param name="Cudnn">cuDNN version, or why it is missing.</param>
/// <param name="Cublaslt">cuBLASLt version, or why it is missing.</param>
/// <param name="Nvrtc">NVRTC version, or why it is missing.</param>
/// <param name="Ceilings">The measured ceilings, with --ceilings; else null.</param>
public sealed record DeviceRecord(int Ordinal, string Name, long MemoryBytes, int Multiprocessors, string ComputeCapability, string PciBusId, string Driver, string CudaDriverApi, string Cudnn, string Cublaslt, string Nvrtc, CeilingsRecord? Ceilings);

/// <summary>A GPU's measured ceilings as `devices --ceilings` reports them.</summary>
/// <param name="PeakFlopsFp32">fp32 GEMM FLOP/s.</param>
/// <param name="PeakFlopsTf32">TF32 GEMM FLOP/s, where measured.</param>
/// <param name="PeakFlopsFp16">fp16 GEMM FLOP/s, where measured.</param>
/// <param name="BandwidthBytesPerS">Device-to-device copy bandwidth.</param>
/// <param name="KernelLaunchS">Cost of one kernel launch, where measured.</param>
/// <param name="GraphNodeS">Cost of one CUDA-graph node.</param>
/// <param name="RunOverheadS">Fixed cost of one run.</param>
/// <param name="SaturationN">GEMM N at which the device fills.</param>
/// <param name="PeakFlopsInt8">int8 GEMM operations/s (int8 x int8 -> int32), where measured.</param>
public sealed record CeilingsRecord(double PeakFlopsFp32, double? PeakFlopsTf32, double? PeakFlopsFp16, double BandwidthBytesPerS, double? KernelLaunchS, double GraphNodeS, double RunOverheadS, double SaturationN, double? PeakFlopsInt8 = null)
{
    /// <summary>The record of measured ceilings.</summary>
    public static CeilingsRecord From(DeviceCeilings c)
    {
        ArgumentNullException.ThrowIfNull(c);
        return new(c.PeakFlops, c.PeakFlopsTf32, c.PeakFlopsFp16, c.BandwidthBytesPerSecond, c.KernelLaunchSeconds, c.OpOverheadSeconds, c.RunOverheadSeconds, c.SaturationN, c.PeakFlopsInt8);
    }
}
