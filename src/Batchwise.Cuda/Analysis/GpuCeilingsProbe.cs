using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Batchwise.Analysis;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Analysis;

/// <summary>
/// A GPU's ceilings measured directly, with CUDA events: cuBLASLt GEMM rates in fp32 (true fp32), TF32, fp16
/// (fp16 operands, fp32 accumulation) and int8 (int8 operands, int32 accumulation and output) at a large square size and over growing N at a convolution's M and K
/// (the rate curve the prediction's efficiency comes from); device-to-device bandwidth (cuMemcpyDtoDAsync and a
/// copy kernel); and the launch costs the cuda engine pays: a kernel launched from the host, a node of a CUDA
/// graph, and the fixed cost of one run. Every number is the best of several trials.
/// </summary>
public sealed unsafe class GpuCeilingsProbe : ICeilingsProbe
{
    private const string Source = """
        extern "C" __global__ void bw_empty() {}

        extern "C" __global__ void bw_copy(const float4* __restrict__ src, float4* __restrict__ dst, unsigned long long n)
        {
            for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n; i += (unsigned long long)gridDim.x * blockDim.x)
                dst[i] = src[i];
        }

        __device__ unsigned int bw_hash(unsigned long long i, unsigned int seed)
        {
            unsigned int x = (unsigned int)(i * 2654435761ull) ^ (unsigned int)(i >> 32) ^ seed;
            x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
            return x;
        }

        // Values of random sign and magnitude in [0.5, 1): fp32, or two fp16 per word. Zeros would flatter the
        // GEMM rate (less switching, higher clocks); these keep a K = 8192 sum well inside fp16's range.
        extern "C" __global__ void bw_fill(unsigned int* p, unsigned long long n, unsigned int seed, int halves)
        {
            for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n; i += (unsigned long long)gridDim.x * blockDim.x)
            {
                unsigned int r = bw_hash(i, seed);
                p[i] = halves
                    ? ((r & 0x8000u) | 0x3800u | (r & 0x3ffu)) | ((((r >> 16) & 0x8000u) | 0x3800u | ((r >> 16) & 0x3ffu)) << 16)
                    : (r & 0x80000000u) | 0x3f000000u | (r & 0x7fffffu);
            }
        }
        """;

    private const long WorkspaceBytes = 32L << 20;

    /// <summary>Square size of the peak-rate GEMMs.</summary>
    public int PeakGemmSize { get; init; } = 8192;

    /// <summary>M of the rate curve's GEMMs: output channels of a typical deep convolution.</summary>
    public int CurveM { get; init; } = 256;

    /// <summary>K of the rate curve's GEMMs: a 3x3 convolution over <see cref="CurveM"/> input channels.</summary>
    public int CurveK { get; init; } = 2304;

    /// <summary>N of the rate curve's GEMMs (batch x out-H x out-W of a convolution).</summary>
    public IReadOnlyList<int> CurveN { get; init; } = [16, 64, 256, 1024, 4096, 16384, 65536, 131072];

    /// <summary>
    /// N of the sustained-load GEMMs (at the rate curve's M and K; the peak square GEMM is held too): sizes that keep about a
    /// quarter, two thirds and nine tenths of the tensor cores busy, so <see cref="DeviceCeilings.SustainedFactor"/> sees
    /// where the power limit starts to lower the clock.
    /// </summary>
    public IReadOnlyList<int> SustainedN { get; init; } = [1024, 4096, 16384];

    /// <summary>Seconds each sustained-load GEMM is held back to back (0: not measured); its sustained rate is the mean over the last 40%.</summary>
    public double HoldSeconds { get; init; } = 1.0;

    /// <summary>Bytes of each of the two buffers the bandwidth copies move between (far past the L2 cache).</summary>
    public long BandwidthBytes { get; init; } = 512L << 20;

    /// <summary>Empty kernels launched back to back to time one launch.</summary>
    public int Launches { get; init; } = 2000;

    /// <summary>Empty-kernel nodes in the CUDA graph that times one node.</summary>
    public int GraphNodes { get; init; } = 500;

    /// <summary>Seconds of trials per measurement (each takes the best trial).</summary>
    public double SecondsPerMeasurement { get; init; } = 0.2;

    /// <summary>Output channels (MatMul columns) of the cuBLASLt rate table.</summary>
    public IReadOnlyList<int> GemmOutputs { get; init; } = [64, 256, 1024, 4096];

    /// <summary>Reduction lengths (K) of the cuBLASLt rate table.</summary>
    public IReadOnlyList<int> GemmReductions { get; init; } = [64, 256, 1024, 4096];

    /// <summary>Output channels of the cuDNN 3x3 convolution rate table.</summary>
    public IReadOnlyList<int> ConvOutputs { get; init; } = [64, 256, 1024];

    /// <summary>Input channels of the cuDNN 3x3 convolution rate table (K = 9 x input channels).</summary>
    public IReadOnlyList<int> ConvInputs { get; init; } = [8, 64, 256, 512];

    /// <summary>
    /// Further output sides of the fp32 3x3 convolution table, each its own table ("conv@14", <see cref="LayerRates.SideTable"/>)
    /// of <see cref="ConvSideBatches"/> images of that side, which explain interpolates between by a layer's output side.
    /// The "conv" table's N past 3,136 are 56x56 images, and cuDNN's fp32 rate is not one per N over images of any side:
    /// session 41's H200 study ran ResNet-18 fp32 at b=16 (its 28x28, 14x14 and 7x7 layers priced from images of another side at
    /// the same N) 32% faster than predicted, and ResNet-50 fp32 at b=256 (its 28x28 and 14x14 layers past the table's
    /// largest N held at its rate there) 34% slower.
    /// </summary>
    public IReadOnlyList<int> ConvExtraSides { get; init; } = [28, 14, 7];

    /// <summary>
    /// Output sides of the fp32 pointwise (1x1) and stride-2 3x3 convolution tables ("pointwise" at the 56x56 of
    /// <see cref="LayerRates.ConvTableSide"/>, "pointwise@28" and the like; "conv-s2", "conv-s2@28"), each of
    /// <see cref="ConvSideBatches"/> images. cuDNN's fp32 3x3 stride-1 rates, which priced both before, are Winograd's
    /// (up to 157 TFLOP/s counted as direct FLOPs on an H100 whose fp32 GEMMs reach 52): session 42's H100 profile of
    /// ResNet-50 fp32 at b=256 ran its 1x1 layers at 0.38-0.85 and its stride-2 3x3 layers at 0.30-0.46 of their time
    /// priced so, its stride-1 3x3 layers at 1.00-1.10.
    /// </summary>
    public IReadOnlyList<int> PointwiseAndStridedSides { get; init; } = [56, 28, 14, 7];

    /// <summary>Input channels (K) of the fp32 pointwise tables: MobileNetV2's narrow 1x1s to ResNet-50's 2,048.</summary>
    public IReadOnlyList<int> PointwiseInputs { get; init; } = [16, 64, 256, 1024, 2048];

    /// <summary>Batches (images) of the side tables of the fp32 convolution table.</summary>
    public IReadOnlyList<int> ConvSideBatches { get; init; } = [1, 4, 16, 64, 256];

    /// <summary>Largest FLOPs of one call of the convolution side tables: ResNet-50's 28x28 layers at b=256 take 2.4e11-9.5e11.</summary>
    public double ConvSideFlopsCap { get; init; } = 1e12;

    /// <summary>
    /// N of both tables (batch x out-H x out-W): the 7x7, 14x14, 28x28 and 56x56 images of an ImageNet network at batch 1,
    /// then 4, 16 and 256 of the 56x56 ones. Below its smallest N a table holds the time (not the rate) of that N, which the
    /// routines do not: cuDNN's fp32 3x3 512 -> 512 at 7x7 took 162 us per call in ResNet-18 at b=1 (H200, session 21
    /// call 5), about twice its 14x14 call, and a layer between two N a factor 16 apart took the log-linear mean of a
    /// latency-bound and a bandwidth-bound call (BERT's products at N = 128 x batch). 12,544 (four 56x56 images) halves
    /// the widest gap, where the rate curves bend: session 38's study replayed ResNet-18 fp32 at -19% to -28% for b=8..32
    /// (its layers at N = 12,544 to 100,352 priced between 3,136 and 50,176) and BERT fp16 at +4% to +10% for b=64..256
    /// (N = 8,192 to 32,768).
    /// </summary>
    public IReadOnlyList<int> TableN { get; init; } = [49, 196, 784, 3136, 12544, 50176, 802816];

    /// <summary>
    /// Further N of the GEMM tables (cheap to measure: cuBLASLt's heuristic choice, no algorithm search), halfway in log
    /// between <see cref="TableN"/>'s from 196 to 50,176. A rate curve rises concavely in log N there, so a layer between
    /// two points 4x apart took less than its rate: session 42's H100 profile of BERT fp32 at b=16 (N = 2,048, between 784
    /// and 3,136) ran its products 9-16% faster than priced, and the study put its knee two steps late.
    /// </summary>
    public IReadOnlyList<int> GemmExtraN { get; init; } = [392, 1568, 6272, 25088];

    /// <summary>The largest N of the cold-weights GEMM table: past it a product's work, not its weights' reading, sets its time.</summary>
    private const long ColdTableMaxN = 3136;

    /// <summary>Largest FLOPs of one table call, by precision: past it a layer runs at the rate of its largest measured N (it is saturated there).</summary>
    public double TableFlopsCap { get; init; } = 2e11;

    /// <summary>Seconds of trials per table point.</summary>
    public double SecondsPerTablePoint { get; init; } = 0.02;

    /// <summary>Group widths (input = output channels per group) of the grouped 3x3 convolution table.</summary>
    public IReadOnlyList<int> GroupWidths { get; init; } = [4, 8, 16, 24, 32, 48, 64];

    /// <summary>Channels of the grouped table's convolutions (every width in <see cref="GroupWidths"/> divides it).</summary>
    public int GroupedChannels { get; init; } = 384;

    /// <summary>Square windows (3: 3x3) of the depthwise tables.</summary>
    public IReadOnlyList<int> DepthwiseWindows { get; init; } = [3, 5, 7];

    /// <summary>Channels of the depthwise tables' convolutions.</summary>
    public int DepthwiseChannels { get; init; } = 144;

    /// <summary>Output side of the grouped and depthwise tables' images (28x28; the input is stride times larger).</summary>
    public int GroupedSide { get; init; } = 28;

    /// <summary>
    /// Further output sides of the grouped tables, each its own table ("grouped@14", <see cref="LayerRates.SideTable"/>)
    /// that explain interpolates between by a layer's output side. cuDNN's grouped kernels are not one rate per group over
    /// groups x pixels: session 38's H100 ran RegNetX-016's fp32 14x14 layers (17 groups of 24 at b=2) at 77 µs where
    /// the 28x28 table (16 groups of 24) priced them at 23 µs, and its 28x28 layers (7 groups) at 33 µs as priced.
    /// </summary>
    public IReadOnlyList<int> GroupedExtraSides { get; init; } = [14, 7];

    /// <summary>
    /// Batches of the grouped and depthwise tables (N x groups grows with them): every octave to 8, where the engine asks
    /// cuDNN's heuristics again (conv_choices=octave) and a table sampled at 1 and 8 cannot see an algorithm that the
    /// heuristics pick at 2 or 4 (RegNetX-016 fp32 on an H200, session 21: 898 img/s at b=1 and 951 at b=2, latency
    /// 1.11 -> 2.10 ms, predicted 1,776).
    /// </summary>
    public IReadOnlyList<int> GroupedBatches { get; init; } = [1, 2, 4, 8, 64, 256];

    /// <summary>Copy-kernel nodes in the CUDA graph that times a small memory-bound kernel.</summary>
    public int FloorNodes { get; init; } = 200;

    /// <inheritdoc/>
    public DeviceCeilings Measure(IEngine engine, EngineOptions options, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(options);
        var clock = Stopwatch.StartNew();
        var description = engine.Describe(options);
        CudaDriver.Initialize();
        var device = CudaDriver.Device(options.DeviceId);
        using var context = new PrimaryContext(device);
        context.MakeCurrent();
        var cc = (CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) * 10) + CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        var sms = CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        using var stream = CudaDriver.CreateStream();
        using var start = CudaDriver.CreateEvent();
        using var end = CudaDriver.CreateEvent();
        using var module = CudaDriver.LoadModule(Nvrtc.CompileToCubin(Source, "ceilings.cu", cc));
        var kernels = new Kernels(CudaDriver.GetFunction(module, "bw_empty"), CudaDriver.GetFunction(module, "bw_copy"), CudaDriver.GetFunction(module, "bw_fill"), (uint)(sms * 8));
        var timer = new EventTimer(stream, start, end, SecondsPerMeasurement, cancellationToken);

        var memoryClockKhz = CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE);
        var busBits = CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH);
        var details = new Dictionary<string, string>
        {
            ["engine_version"] = description.Version,
            ["compute_capability"] = cc.ToString(CultureInfo.InvariantCulture),
            ["multiprocessors"] = sms.ToString(CultureInfo.InvariantCulture),
            ["sm_clock_mhz"] = (CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_CLOCK_RATE) / 1000).ToString(CultureInfo.InvariantCulture),
            // Double data rate over the bus; some drivers report no memory clock (0): then unknown.
            ["nominal_bandwidth_gb_s"] = memoryClockKhz > 0 && busBits > 0 ? (2.0 * memoryClockKhz * 1e3 * busBits / 8 / 1e9).ToString("F0", CultureInfo.InvariantCulture) : "unknown",
            ["cublaslt"] = CublasLt.Version(),
            ["probe"] = "cuBLASLt GEMM, device-to-device copy, empty kernels (GpuCeilingsProbe)",
        };

        var (memcpy, copyKernel) = MeasureBandwidth(timer, kernels);
        details["bandwidth_memcpy_gb_s"] = (memcpy / 1e9).ToString("F1", CultureInfo.InvariantCulture);
        details["bandwidth_copy_kernel_gb_s"] = (copyKernel / 1e9).ToString("F1", CultureInfo.InvariantCulture);
        log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"device-to-device: {memcpy / 1e9:N0} GB/s (cuMemcpyDtoDAsync), {copyKernel / 1e9:N0} GB/s (copy kernel), nominal {details["nominal_bandwidth_gb_s"]} GB/s"));

        var gemms = MeasureGemms(timer, kernels, log, details);
        details["sustained_hold_s"] = HoldSeconds.ToString("F1", CultureInfo.InvariantCulture);
        var launch = MeasureLaunches(timer, kernels);
        var floor = MeasureKernelFloor(timer, kernels, Math.Max(memcpy, copyKernel));
        details["kernel_floor_us"] = (floor * 1e6).ToString("F2", CultureInfo.InvariantCulture);
        var tableTimer = new EventTimer(stream, start, end, SecondsPerTablePoint, cancellationToken);
        long cacheBytes = CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE);
        details["l2_cache_mb"] = (cacheBytes / (1024.0 * 1024.0)).ToString("F0", CultureInfo.InvariantCulture);
        var tables = new Dictionary<string, IReadOnlyList<LayerRatePoint>>(StringComparer.Ordinal);
        var missing = new List<string>();

        // The engine's own grouped and depthwise kernels, compiled as a session compiles them (no disk cache: the probe's sources are few).
        using var ownKernels = new KernelCache(cc, "nvrtc" + Nvrtc.Version(), null);
        var own = new OwnKernels(ownKernels, CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN), GraphCompiler.GroupedConvFromEnvironment);
        var cudnnCandidates = CudnnCandidates(CudaSession.TimesTactics(options.Tactics));
        details["cudnn_choice"] = cudnnCandidates == 1 ? "heuristics' first allowed algorithm (as the engine with --tactics heuristic)" : "fastest of every allowed algorithm (as the engine's timed tactics)";
        var gemmCandidates = GemmCandidates(CudaSession.TimesTactics(options.Tactics));
        details["gemm_choice"] = gemmCandidates == 1 ? "cuBLASLt's heuristic choice (as the engine with --tactics heuristic)" : $"fastest of cuBLASLt's first {gemmCandidates} candidates, the heuristic's first kept where it runs under {GraphCompiler.SmallProblemMilliseconds * 1000:0} µs (as the engine's timed tactics)";
        foreach (var precision in new[] { "fp32", "fp16" })
        {
            (string Table, Func<string, IReadOnlyList<LayerRatePoint>> Measure)[] measures =
            [
                ("gemm", p => MeasureGemmTable(tableTimer, kernels, p, gemmCandidates)),
                ("gemm-cold", p => MeasureGemmTable(tableTimer, kernels, p, gemmCandidates, cacheBytes)),
                ("conv", p => MeasureConvTable(tableTimer, kernels, p, cudnnCandidates)),
                ("grouped", p => MeasureGroupedTable(tableTimer, kernels, own, p, 1, GroupedSide, cudnnCandidates)),
                ("grouped-s2", p => MeasureGroupedTable(tableTimer, kernels, own, p, 2, GroupedSide, cudnnCandidates)),
                ("depthwise", p => MeasureDepthwiseTable(tableTimer, kernels, own, p, 1)),
                ("depthwise-s2", p => MeasureDepthwiseTable(tableTimer, kernels, own, p, 2)),
                .. GroupedExtraSides.Where(side => side != GroupedSide).SelectMany(side => new (string, Func<string, IReadOnlyList<LayerRatePoint>>)[]
                {
                    (LayerRates.SideTable("grouped", side), p => MeasureGroupedTable(tableTimer, kernels, own, p, 1, side, cudnnCandidates)),
                    (LayerRates.SideTable("grouped-s2", side), p => MeasureGroupedTable(tableTimer, kernels, own, p, 2, side, cudnnCandidates)),
                }),

                // fp32 only: fp16's dense 3x3 layers run the engine's own kernels as often as cuDNN's, its 1x1s cuBLASLt's
                // GEMM (the "gemm" table), and its study rows pass.
                .. ConvExtraSides.Where(side => precision == "fp32" && side != LayerRates.ConvTableSide).Select(side =>
                    (LayerRates.SideTable("conv", side), (Func<string, IReadOnlyList<LayerRatePoint>>)(p => MeasureConvTable(tableTimer, kernels, p, cudnnCandidates, side)))),
                .. PointwiseAndStridedSides.Where(_ => precision == "fp32").SelectMany(side => new (string, Func<string, IReadOnlyList<LayerRatePoint>>)[]
                {
                    (LayerRates.ConvTableName("pointwise", side), p => MeasureConvTable(tableTimer, kernels, p, cudnnCandidates, side, taps: 1, inputs: PointwiseInputs)),
                    (LayerRates.ConvTableName("conv-s2", side), p => MeasureConvTable(tableTimer, kernels, p, cudnnCandidates, side, stride: 2)),
                }),
            ];
            foreach (var (table, measure) in measures)
            {
                var key = LayerRates.Key(precision, table);
                var tableClock = System.Diagnostics.Stopwatch.StartNew();
                try
                {
                    var points = measure(precision);
                    tables[key] = points;
                    details[key.Replace('/', '_') + "_table"] = string.Join(" ", points.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Outputs}x{p.Reduction}@{p.N}:{p.Flops / 1e12:F2}")));
                    details[key.Replace('/', '_') + "_table_s"] = tableClock.Elapsed.TotalSeconds.ToString("F1", CultureInfo.InvariantCulture);
                    log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"{key} table: {points.Count} points, {points.Min(p => p.Flops) / 1e12:N2} to {points.Max(p => p.Flops) / 1e12:N1} TFLOP/s (per call in a CUDA graph) in {tableClock.Elapsed.TotalSeconds:N1} s"));
                }
                catch (Exception e) when (e is CudaException or BatchwiseException or InvalidOperationException or ArgumentException)
                {
                    // The table's layers fall back to the GEMM rate curve; the verdict names the missing table.
                    missing.Add($"{key}: {e.Message}");
                    log?.Invoke($"{key} rate table not measured ({e.Message}); those layers use the GEMM rate curve");
                }
            }
        }

        if (missing.Count > 0)
        {
            details["layer_rates_missing"] = string.Join("; ", missing);
        }
        log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"launch: {launch.Kernel * 1e6:N2} µs per kernel from the host, {launch.GraphNode * 1e6:N2} µs per CUDA-graph node; run overhead {launch.GraphRun * 1e6:N1} µs with a graph, {launch.StreamRun * 1e6:N1} µs without"));
        details["kernel_launch_us"] = (launch.Kernel * 1e6).ToString("F2", CultureInfo.InvariantCulture);
        details["graph_node_us"] = (launch.GraphNode * 1e6).ToString("F2", CultureInfo.InvariantCulture);

        var fp32Curve = gemms["fp32"].Curve;
        var (saturationN, saturationSource) = CeilingsProbe.FitSaturation(fp32Curve.Select(p => (p.N, p.Flops)).ToList(), sms * 128.0);
        return new DeviceCeilings
        {
            Engine = engine.Name,
            Device = description.Device,
            Machine = HostInfo.MachineName,
            PeakFlops = gemms["fp32"].Peak,
            PeakFlopsTf32 = gemms["tf32"].Peak,
            PeakFlopsFp16 = gemms["fp16"].Peak,
            PeakFlopsInt8 = gemms.TryGetValue("int8", out var int8) ? int8.Peak : null,
            RateCurves = gemms.ToDictionary(g => g.Key, g => g.Value.Curve),
            SustainedLoad = gemms.Where(g => g.Value.Sustained.Count > 0).ToDictionary(g => g.Key, g => g.Value.Sustained),
            LayerRates = tables,
            KernelFloorSeconds = floor,
            CacheBytes = cacheBytes > 0 ? cacheBytes : null,
            BandwidthBytesPerSecond = Math.Max(memcpy, copyKernel),
            RunOverheadSeconds = launch.GraphRun,
            OpOverheadSeconds = launch.GraphNode,
            KernelLaunchSeconds = launch.Kernel,
            StreamRunOverheadSeconds = launch.StreamRun,
            Launch = "cuda graph",
            SaturationN = saturationN,
            SaturationSource = saturationSource + string.Create(CultureInfo.InvariantCulture, $", cuBLASLt fp32 GEMM M = {CurveM}, K = {CurveK}"),
            ComputeUnits = sms,
            MeasuredAt = DateTimeOffset.UtcNow,
            CalibrationSeconds = clock.Elapsed.TotalSeconds,
            Details = details,
        };
    }

    private (double Memcpy, double CopyKernel) MeasureBandwidth(EventTimer timer, Kernels kernels)
    {
        using var a = CudaDriver.Allocate(BandwidthBytes);
        using var b = CudaDriver.Allocate(BandwidthBytes);
        kernels.Fill(a.Pointer, BandwidthBytes / 4, 1, halves: false, timer.Stream);
        kernels.Fill(b.Pointer, BandwidthBytes / 4, 2, halves: false, timer.Stream);
        var bytes = BandwidthBytes;
        var memcpy = timer.Best(() => CudaDriver.CopyDeviceToDevice(b.Pointer, a.Pointer, bytes, timer.Stream.Handle));
        var copy = timer.Best(() => kernels.Copy(a.Pointer, b.Pointer, bytes, timer.Stream));

        // A copy reads every byte once and writes it once.
        return (2.0 * bytes / memcpy, 2.0 * bytes / copy);
    }

    private Dictionary<string, (double Peak, IReadOnlyList<RatePoint> Curve, IReadOnlyList<SustainedPoint> Sustained)> MeasureGemms(EventTimer timer, Kernels kernels, Action<string>? log, Dictionary<string, string> details)
    {
        long s = PeakGemmSize, m = CurveM, k = CurveK;
        var curveN = CurveN.Order().ToList();
        long nMax = curveN.Count > 0 ? curveN[^1] : 0;
        var (free, _) = CudaDriver.MemoryInfo();
        long Needed(long n) => 4 * (Math.Max(s * s, m * k) + Math.Max(s * s, k * n) + Math.Max(s * s, m * n)) + WorkspaceBytes;
        while (curveN.Count > 1 && Needed(nMax) > free * 0.8)
        {
            // A GPU shared with other work: leave the largest N out rather than fail.
            curveN.RemoveAt(curveN.Count - 1);
            nMax = curveN[^1];
        }

        using var bufA = CudaDriver.Allocate(4 * Math.Max(s * s, m * k));
        using var bufB = CudaDriver.Allocate(4 * Math.Max(s * s, k * nMax));
        using var bufD = CudaDriver.Allocate(4 * Math.Max(s * s, m * nMax));
        using var workspace = CudaDriver.Allocate(WorkspaceBytes);
        using var handle = CublasLt.Create();
        var algo = (CublasLt.HeuristicResult*)NativeMemory.Alloc((nuint)sizeof(CublasLt.HeuristicResult));
        try
        {
            var result = new Dictionary<string, (double, IReadOnlyList<RatePoint>, IReadOnlyList<SustainedPoint>)>(StringComparer.Ordinal);
            foreach (var (name, type, compute) in new[]
            {
                ("fp32", CublasLt.CUDA_R_32F, CublasLt.CUBLAS_COMPUTE_32F),
                ("tf32", CublasLt.CUDA_R_32F, CublasLt.CUBLAS_COMPUTE_32F_FAST_TF32),
                ("fp16", CublasLt.CUDA_R_16F, CublasLt.CUBLAS_COMPUTE_32F),
                ("int8", CublasLt.CUDA_R_8I, CublasLt.CUBLAS_COMPUTE_32I),
            })
            {
                var halves = type == CublasLt.CUDA_R_16F;
                var int8 = type == CublasLt.CUDA_R_8I;
                var elementBytes = halves ? 2 : int8 ? 1 : 4;
                kernels.Fill(bufA.Pointer, bufA.Bytes / 4, 3, halves, timer.Stream);
                kernels.Fill(bufB.Pointer, bufB.Bytes / 4, 4, halves, timer.Stream);
                double Rate(long rows, long cols, long inner) => 2.0 * rows * cols * inner / WithGemm(rows, cols, inner, timer.Best);

                T WithGemm<T>(long rows, long cols, long inner, Func<Action, T> time)
                {
                    // int8 as the engine's int8 MatMul runs it: int8 x int8 -> int32 with int32 alpha and beta, A transposed
                    // (the only layout cuBLASLt's int8 tensor-core kernels take); random bytes as operands.
                    using var desc = int8 ? CublasLt.MatmulDesc(compute, transA: true, transB: false, CublasLt.CUDA_R_32I) : CublasLt.MatmulDesc(compute, transA: false, transB: false);
                    using var la = int8 ? CublasLt.Layout(type, inner, rows, inner) : CublasLt.Layout(type, rows, inner, rows);
                    using var lb = CublasLt.Layout(type, inner, cols, inner);
                    using var ld = CublasLt.Layout(int8 ? CublasLt.CUDA_R_32I : type, rows, cols, rows);
                    *algo = CublasLt.BestAlgorithm(handle, desc, la, lb, ld, ld, WorkspaceBytes);
                    var algoAddress = (IntPtr)algo;
                    return time(() =>
                    {
                        int one = 1, zero = 0;
                        float oneF = 1f, zeroF = 0f;
                        CublasLt.MatmulScaled(handle, desc, int8 ? &one : (void*)&oneF, bufA.Pointer, la, bufB.Pointer, lb, int8 ? &zero : (void*)&zeroF, bufD.Pointer, ld, bufD.Pointer, ld, (CublasLt.HeuristicResult*)algoAddress, workspace.Pointer, WorkspaceBytes, timer.Stream.Handle);
                    });
                }

                double peak;
                List<RatePoint> curve;
                try
                {
                    peak = Rate(s, s, s);
                    curve = curveN.Select(n => new RatePoint(n, Rate(m, n, k))).ToList();
                }
                catch (CudaException e) when (int8)
                {
                    // A GPU without int8 tensor-core GEMMs: the ceilings have no int8 line, and int8 layers predict at fp16's.
                    details["int8"] = "not measured: " + e.Message;
                    continue;
                }

                details[name + "_curve"] = string.Join(" ", curve.Select(p => string.Create(CultureInfo.InvariantCulture, $"N={p.N}:{p.Flops / 1e12:F1}")));
                log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"{name} GEMM {s}x{s}x{s}: {peak / 1e12:N1} T{(int8 ? "OP" : "FLOP")}/s ({elementBytes}-byte operands); M = {m}, K = {k} by N: {details[name + "_curve"]}"));
                var best = Math.Max(peak, curve.Count > 0 ? curve.Max(p => p.Flops) : 0);
                IReadOnlyList<SustainedPoint> sustained = [];
                if (!int8 && HoldSeconds > 0)
                {
                    // From the least busy to the busiest, so each hold starts after a lighter one. Activity: the burst rate's
                    // share of the precision's best rate; factor: the sustained rate's share of the burst rate.
                    sustained = [.. SustainedN.Where(n => n <= nMax).Order().Select(n => (Rows: m, Cols: (long)n, Inner: k)).Append((Rows: s, Cols: s, Inner: s))
                        .Select(g => (Flops: 2.0 * g.Rows * g.Cols * g.Inner, Held: WithGemm(g.Rows, g.Cols, g.Inner, enqueue => timer.Held(enqueue, HoldSeconds))))
                        .Select(g => new SustainedPoint(Math.Min(1.0, g.Flops / g.Held.Burst / best), g.Held.Burst / g.Held.Sustained))];
                    details[name + "_sustained"] = string.Join(" ", sustained.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Activity:F2}:{p.RateFactor:F3}")));
                    log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"{name} GEMMs held {HoldSeconds:N1} s each, activity:sustained/burst rate: {details[name + "_sustained"]}"));
                }

                result[name] = (best, curve, sustained);
            }

            return result;
        }
        finally
        {
            NativeMemory.Free(algo);
        }
    }

    /// <summary>
    /// Seconds of one small memory-bound kernel (a 64 kB copy) as a node of a CUDA graph of <see cref="FloorNodes"/>
    /// such kernels, less its bytes at the bandwidth: what every non-library kernel of a plan costs beyond its bytes.
    /// </summary>
    private double MeasureKernelFloor(EventTimer timer, Kernels kernels, double bandwidth)
    {
        const long bytes = 64 << 10;
        using var a = CudaDriver.Allocate(bytes);
        using var b = CudaDriver.Allocate(bytes);
        var perNode = PerCallInGraph(timer, () => kernels.Copy(a.Pointer, b.Pointer, bytes, timer.Stream), FloorNodes);
        return Math.Max(0, perNode - (2.0 * bytes / bandwidth));
    }

    /// <summary>
    /// GPU seconds of one call of <paramref name="enqueue"/> replayed from a CUDA graph of up to <paramref name="calls"/>
    /// calls (fewer for calls that take over 50 µs): the engine runs its plan from a graph, and a library call costs the
    /// host more than a small kernel takes on the GPU, so calls enqueued one by one would time the host.
    /// </summary>
    private static double PerCallInGraph(EventTimer timer, Action enqueue, int calls = 20)
    {
        enqueue();
        CudaDriver.Synchronize(timer.Stream);
        var once = timer.EventRun(enqueue);
        var count = once > 50e-6 ? Math.Min(2, calls) : calls;
        using var graph = CudaDriver.Capture(timer.Stream, () =>
        {
            for (var i = 0; i < count; i++)
            {
                enqueue();
            }
        });
        return timer.Best(() => CudaDriver.Launch(graph, timer.Stream)) / count;
    }

    /// <summary>The N values of a table node (outputs x reduction) under the FLOPs cap; the smallest always.</summary>
    private List<long> TableNs(long outputs, long reduction, string precision, IEnumerable<int>? extra = null) =>
        FittingNs(TableN.Concat(extra ?? []).Distinct().Select(n => (long)n), 2.0 * outputs * reduction, precision == "fp16" ? 4 * TableFlopsCap : TableFlopsCap, Math.Max(outputs, reduction), precision);

    /// <summary>
    /// Of <paramref name="ns"/>, in order, those whose call stays under <paramref name="flopsCap"/> (<paramref name="flopsPerN"/>
    /// a position) and whose largest buffer (<paramref name="rowsPerN"/> elements a position) takes at most a sixteenth of
    /// the free memory; the smallest always.
    /// </summary>
    private static List<long> FittingNs(IEnumerable<long> ns, double flopsPerN, double flopsCap, long rowsPerN, string precision)
    {
        var (free, _) = CudaDriver.MemoryInfo();
        var elements = free / 16 / (precision == "fp16" ? 2 : 4);
        return [.. ns.Order().Where((n, i) => i == 0 || (flopsPerN * n <= flopsCap && rowsPerN * n <= elements))];
    }

    /// <summary>
    /// cuBLASLt GEMMs as the engine runs MatMul, Gemm and fp16 pointwise convolutions (fp32: true fp32; fp16: half
    /// operands, fp32 accumulation), D[outputs, N] = W[outputs, K] x X[K, N], over the outputs x K x N grid.
    /// <para>
    /// With <paramref name="coldCacheBytes"/> (the "gemm-cold" table, N up to <see cref="ColdTableMaxN"/>), each call of
    /// a timed graph reads another copy of W, the copies together more than twice that cache, so every call's weights
    /// come from memory as a model's do when they do not fit the cache; X and D stay the same (a layer's input was just
    /// written by the layer before it).
    /// </para>
    /// </summary>
    private IReadOnlyList<LayerRatePoint> MeasureGemmTable(EventTimer timer, Kernels kernels, string precision, int candidates, long coldCacheBytes = 0)
    {
        var half = precision == "fp16";
        var type = half ? CublasLt.CUDA_R_16F : CublasLt.CUDA_R_32F;
        long elementBytes = half ? 2 : 4;
        var plan = (from o in GemmOutputs from k in GemmReductions from n in TableNs(o, k, precision, GemmExtraN) where coldCacheBytes == 0 || n <= ColdTableMaxN select (O: (long)o, K: (long)k, N: n)).ToList();
        var weightPool = coldCacheBytes > 0 ? Math.Max(plan.Max(p => p.O * p.K) * elementBytes * 2, (coldCacheBytes * 5 / 2) + (plan.Max(p => p.O * p.K) * elementBytes)) : elementBytes * plan.Max(p => p.O * p.K);
        using var a = CudaDriver.Allocate(weightPool);
        using var b = CudaDriver.Allocate(elementBytes * plan.Max(p => p.K * p.N));
        using var d = CudaDriver.Allocate(elementBytes * plan.Max(p => p.O * p.N));
        using var workspace = CudaDriver.Allocate(WorkspaceBytes);
        kernels.Fill(a.Pointer, a.Bytes / 4, 7, half, timer.Stream);
        kernels.Fill(b.Pointer, b.Bytes / 4, 8, half, timer.Stream);
        using var handle = CublasLt.Create();
        var algo = (CublasLt.HeuristicResult*)NativeMemory.Alloc((nuint)sizeof(CublasLt.HeuristicResult));
        try
        {
            var points = new List<LayerRatePoint>(plan.Count);
            foreach (var (o, k, n) in plan)
            {
                using var desc = CublasLt.MatmulDesc(CublasLt.CUBLAS_COMPUTE_32F, transA: false, transB: false);
                using var la = CublasLt.Layout(type, o, k, o);
                using var lb = CublasLt.Layout(type, k, n, k);
                using var ld = CublasLt.Layout(type, o, n, o);
                var key = (precision, o, k, n);
                if (!_gemmChoices.TryGetValue(key, out var chosen))
                {
                    chosen = candidates == 1
                        ? CublasLt.BestAlgorithm(handle, desc, la, lb, ld, ld, WorkspaceBytes)
                        : FastestGemm(timer, CublasLt.Algorithms(handle, desc, la, lb, ld, ld, WorkspaceBytes, candidates), candidate =>
                            CublasLt.Matmul(handle, desc, 1f, a.Pointer, la, b.Pointer, lb, 0f, d.Pointer, ld, d.Pointer, ld, (CublasLt.HeuristicResult*)candidate, workspace.Pointer, WorkspaceBytes, timer.Stream.Handle), algo);
                    _gemmChoices[key] = chosen;
                }

                *algo = chosen;
                var algoAddress = (IntPtr)algo;
                var weightBytes = o * k * elementBytes;

                // Cold: copies of W 256-byte aligned through the pool, one a call, a graph of enough calls to pass through
                // more than twice the cache (at most 512 calls; a call of more than 50 us gets two, as every table's
                // does, and its weights are then a small part of its time).
                var stride = (weightBytes + 255) / 256 * 256;
                var copies = coldCacheBytes > 0 ? Math.Max(2, (a.Bytes - weightBytes) / stride + 1) : 1;
                var calls = coldCacheBytes > 0 ? (int)Math.Clamp((coldCacheBytes * 5 / 2) / weightBytes + 1, 20, 512) : 20;
                var call = 0L;
                var seconds = PerCallInGraph(timer, () => CublasLt.Matmul(handle, desc, 1f, a.Pointer + (ulong)((call++ % copies) * stride), la, b.Pointer, lb, 0f, d.Pointer, ld, d.Pointer, ld, (CublasLt.HeuristicResult*)algoAddress, workspace.Pointer, WorkspaceBytes, timer.Stream.Handle), calls);
                points.Add(new LayerRatePoint(o, k, n, 2.0 * o * k * n / seconds));
            }

            return points;
        }
        finally
        {
            NativeMemory.Free(algo);
        }
    }

    /// <summary>
    /// cuDNN 3x3 stride-1 convolutions as the engine runs them (fp32: NCHW without tensor cores; fp16: NHWC on tensor
    /// cores), input channels x output channels x N (N ≤ 3,136: one square image of N pixels; beyond: 56x56 images),
    /// each with the algorithm the engine would run (<see cref="CudnnCandidates"/>). With <paramref name="side"/>: a side
    /// table of <see cref="ConvSideBatches"/> images of that output side (N = images x side²), the same channels (a layer
    /// below the smallest K measured takes that K's time), up to <see cref="ConvSideFlopsCap"/> a call; there also
    /// <paramref name="taps"/> x <paramref name="taps"/> filters (1: pointwise, K = input channels, <paramref name="inputs"/>
    /// for them) and <paramref name="stride"/> 2 (the input twice the output's side).
    /// </summary>
    private IReadOnlyList<LayerRatePoint> MeasureConvTable(EventTimer timer, Kernels kernels, string precision, int candidates, int? side = null, int taps = 3, int stride = 1, IReadOnlyList<int>? inputs = null)
    {
        if (side is null && (taps != 3 || stride != 1))
        {
            throw new ArgumentException("a 1x1 or strided convolution table is measured at an output side", nameof(side));
        }

        long area = (long)taps * taps;
        var half = precision == "fp16";
        var dataType = half ? Cudnn.CUDNN_DATA_HALF : Cudnn.CUDNN_DATA_FLOAT;
        var format = half ? Cudnn.CUDNN_TENSOR_NHWC : Cudnn.CUDNN_TENSOR_NCHW;
        var math = half ? Cudnn.CUDNN_TENSOR_OP_MATH : Cudnn.CUDNN_FMA_MATH;
        long elementBytes = half ? 2 : 4;
        var maxWorkspace = Planning.GraphCompiler.MaxConvWorkspace; // the engine's limit: the tables time what its plans may choose
        var plan = side is { } s
            ? (from o in ConvOutputs
               from c in inputs ?? ConvInputs
               from n in FittingNs(ConvSideBatches.Select(b => (long)b * s * s), 2.0 * o * area * c, ConvSideFlopsCap, Math.Max(o, c) * stride * stride, precision)
               select (O: (long)o, C: (long)c, N: n)).ToList()
            : (from o in ConvOutputs from c in ConvInputs from n in TableNs(o, 9L * c, precision) select (O: (long)o, C: (long)c, N: n)).ToList();
        (long Batch, long Side) Image(long n) => side is { } s ? (n / ((long)s * s), s) : n <= 3136 ? (1, (long)Math.Round(Math.Sqrt(n))) : (n / 3136, 56);
        using var x = CudaDriver.Allocate(elementBytes * plan.Max(p => p.C * p.N * stride * stride));
        using var y = CudaDriver.Allocate(elementBytes * plan.Max(p => p.O * p.N));
        using var w = CudaDriver.Allocate(elementBytes * plan.Max(p => p.O * p.C * area));
        using var workspace = CudaDriver.Allocate(maxWorkspace);
        kernels.Fill(x.Pointer, x.Bytes / 4, 5, half, timer.Stream);
        kernels.Fill(w.Pointer, w.Bytes / 4, 6, half, timer.Stream);
        using var handle = Cudnn.Create(timer.Stream);
        var points = new List<LayerRatePoint>(plan.Count);
        foreach (var (o, c, n) in plan)
        {
            var (batch, width) = Image(n);
            var pad = taps / 2;
            using var xDesc = Cudnn.Tensor(dataType, [batch, c, width * stride, width * stride], format);
            using var wDesc = Cudnn.Filter(dataType, [o, c, taps, taps], format);
            using var yDesc = Cudnn.Tensor(dataType, [batch, o, width, width], format);
            using var conv = Cudnn.Convolution([pad, pad], [stride, stride], [1, 1], 1, math);
            var best = CudnnSeconds(timer, handle, xDesc, x.Pointer, wDesc, w.Pointer, conv, yDesc, y.Pointer, workspace, half, candidates, $"a {taps}x{taps} stride-{stride} convolution {c}->{o} at {batch}x{width}x{width} outputs");
            var pixels = batch * width * width;
            points.Add(new LayerRatePoint(o, area * c, pixels, 2.0 * o * area * c * pixels / best));
        }

        return points;
    }

    /// <summary>
    /// How many of cuBLASLt's candidates the GEMM tables time, keeping the fastest: 1 (the heuristic's choice) where the
    /// engine takes it (`--tactics heuristic`), else as many as the engine's timed tactics time, with its rule that a
    /// heuristic choice under <see cref="GraphCompiler.SmallProblemMilliseconds"/> stays: the tables price what a plan
    /// runs. Session 43's H100: the fp32 table moved by a median 0.4% against the heuristic's choice (fp16's points
    /// differ more between two probes than by the choice), for 25 s more of each precision's table.
    /// </summary>
    internal static int GemmCandidates(bool timedTactics) => timedTactics ? GraphCompiler.MatmulCandidates : 1;

    /// <summary>The memo of each GEMM table point's algorithm: the cold-weights table runs what the warm one chose, as a plan would.</summary>
    private readonly Dictionary<(string Precision, long O, long K, long N), CublasLt.HeuristicResult> _gemmChoices = [];

    /// <summary>
    /// Of <paramref name="candidates"/> (heuristic order), the one the engine's timed tactics keep
    /// (<see cref="GraphCompiler.FastestCandidate"/>), each timed per call in a CUDA graph of repeats; a later candidate that
    /// fails to run is passed over, as the engine's timing passes it over. <paramref name="scratch"/> holds the one timed.
    /// </summary>
    private static CublasLt.HeuristicResult FastestGemm(EventTimer timer, CublasLt.HeuristicResult[] candidates, Action<IntPtr> call, CublasLt.HeuristicResult* scratch)
    {
        if (candidates.Length == 0)
        {
            throw CublasLt.NoAlgorithm();
        }

        var address = (IntPtr)scratch;
        var (index, _) = GraphCompiler.FastestCandidate(candidates.Length, i =>
        {
            *(CublasLt.HeuristicResult*)address = candidates[i];
            try
            {
                return PerCallInGraph(timer, () => call(address)) * 1000;
            }
            catch (CudaException) when (i > 0)
            {
                return double.PositiveInfinity;
            }
        });
        return candidates[index];
    }

    /// <summary>
    /// How many of cuDNN's allowed algorithms (in the heuristics' order) the tables time, keeping the fastest: 1 where the
    /// engine takes the heuristics' first choice (`--tactics heuristic`: the fastest of several overstated fp32 grouped and
    /// large-batch convolutions, where the heuristics' pick is slower), every one where it times its tactics (the default),
    /// as the engine does. Session 24's study timed only the first 3 and under-predicted ResNet-18 and YOLOv8n in fp32 by
    /// 34-38% at b=8..64, where the engine's timing found faster algorithms further down the list.
    /// </summary>
    internal static int CudnnCandidates(bool timedTactics) => timedTactics ? int.MaxValue : 1;

    /// <summary>
    /// GPU seconds of one cuDNN forward convolution per call in a CUDA graph: the fastest of cuDNN's first
    /// <paramref name="count"/> allowed algorithms (tensor-core math only in half precision; <see cref="CudnnCandidates"/>).
    /// </summary>
    private static double CudnnSeconds(EventTimer timer, CudnnHandle handle, CudnnTensorDescriptor xDesc, ulong x, CudnnFilterDescriptor wDesc, ulong w, CudnnConvolutionDescriptor conv, CudnnTensorDescriptor yDesc, ulong y, DeviceMemory workspace, bool half, int count, string what)
    {
        var candidates = Cudnn.ForwardAlgorithms(handle, xDesc, wDesc, conv, yDesc)
            .Where(a => a.Status == 0 && (long)a.Memory <= workspace.Bytes && (half || a.MathType != Cudnn.CUDNN_TENSOR_OP_MATH)).Take(count).ToList();
        if (candidates.Count == 0)
        {
            throw new InvalidOperationException($"cuDNN offers no algorithm for {what}");
        }

        var best = double.MaxValue;
        foreach (var algo in candidates)
        {
            Cudnn.SetMathType(conv, algo.MathType);
            var bytes = Cudnn.WorkspaceSize(handle, xDesc, wDesc, conv, yDesc, algo.Algo);
            void Once() => Cudnn.ConvolutionForward(handle, xDesc, x, wDesc, w, conv, algo.Algo, workspace.Pointer, bytes, 0f, yDesc, y);
            Once();
            CudaDriver.Synchronize(timer.Stream);

            // A candidate three times slower than the best in one call is not worth its trials (an FFT at a large size can take seconds).
            if (best < double.MaxValue && timer.EventRun(Once) > 3 * best + 20e-6)
            {
                continue;
            }

            best = Math.Min(best, PerCallInGraph(timer, Once));
        }

        return best;
    }

    /// <summary>Who runs a grouped convolution of this group width in this precision in the cuda engine: "own" (its tensor-core kernel) or "cudnn".</summary>
    internal static string GroupedRoutine(string precision, int width, GroupedConvChoice choice) =>
        precision == "fp16" && choice != GroupedConvChoice.Cudnn && width % 8 == 0 && width is >= 8 and <= KernelSource.GroupedConvMaxWidth
            && (choice == GroupedConvChoice.Own || GraphCompiler.PrefersOwnGroupedConv(width, width))
            ? "own" : "cudnn";

    /// <summary>
    /// Grouped 3x3 convolutions of <see cref="GroupedChannels"/> channels at one stride (a <paramref name="side"/>
    /// output, the input stride times wider) as the engine runs them, one node per group width (outputs per group = width,
    /// K = 9 x width) over N x groups (<see cref="LayerRates.GroupView"/>): in fp16 channels-last through the own
    /// tensor-core kernel where the engine picks it (<see cref="GroupedRoutine"/>), else cuDNN (fp16 NHWC tensor cores,
    /// fp32 NCHW without), with the same algorithm choice as the dense table.
    /// </summary>
    private IReadOnlyList<LayerRatePoint> MeasureGroupedTable(EventTimer timer, Kernels kernels, OwnKernels own, string precision, int stride, int side, int candidates)
    {
        var half = precision == "fp16";
        long c = GroupedChannels, inSide = (long)side * stride;
        long elementBytes = half ? 2 : 4;
        var batches = FittingBatches(elementBytes * c * inSide * inSide);
        using var x = CudaDriver.Allocate(elementBytes * batches[^1] * c * inSide * inSide);
        using var y = CudaDriver.Allocate(elementBytes * batches[^1] * c * side * side);
        using var w = CudaDriver.Allocate(elementBytes * c * GroupWidths.Max() * 9);
        using var workspace = CudaDriver.Allocate(Planning.GraphCompiler.MaxConvWorkspace); // the engine's limit
        kernels.Fill(x.Pointer, x.Bytes / 4, 9, half, timer.Stream);
        kernels.Fill(w.Pointer, w.Bytes / 4, 10, half, timer.Stream);
        using var handle = Cudnn.Create(timer.Stream);
        var points = new List<LayerRatePoint>();
        var skipped = new List<string>();
        foreach (var width in GroupWidths.Where(g => c % g == 0))
        {
            var groups = c / width;
            try
            {
                points.AddRange(batches.Select(batch => GroupedPoint(width, groups, batch)));
            }
            catch (InvalidOperationException e)
            {
                // A width no routine takes here leaves a hole in the grid: its layers read the nearest measured width.
                skipped.Add($"width {width}: {e.Message}");
            }
        }

        if (points.Count == 0)
        {
            throw new InvalidOperationException("no grouped convolution could be timed (" + string.Join("; ", skipped) + ")");
        }

        return points;

        LayerRatePoint GroupedPoint(int width, long groups, long batch)
        {
            double seconds;
            int? tiles = GroupedRoutine(precision, width, own.Choice) == "own"
                ? KernelSource.GroupedConvTilesPerWarp(width, width, [3, 3], [stride, stride], [1, 1], side, own.Choice == GroupedConvChoice.Own ? own.MaxSharedBytes : KernelCache.StaticSharedBytes)
                : null;
            if (tiles is { } t)
            {
                var code = KernelSource.GroupedConv(width, width, [3, 3], [stride, stride], [1, 1], t, new GroupedConvEpilogue(null, false, false), batch, groups, [inSide, inSide], [side, side], [1, 1]);
                using var launch = new OwnLaunch(own.Cache, code, KernelSource.GroupedConvThreads(batch, groups, [side, side], t), KernelSource.GroupedConvBlock, [y.Pointer, x.Pointer, w.Pointer, 0, 0]);
                seconds = PerCallInGraph(timer, () => launch.Enqueue(timer.Stream));
            }
            else
            {
                var format = half ? Cudnn.CUDNN_TENSOR_NHWC : Cudnn.CUDNN_TENSOR_NCHW;
                var dataType = half ? Cudnn.CUDNN_DATA_HALF : Cudnn.CUDNN_DATA_FLOAT;
                using var xDesc = Cudnn.Tensor(dataType, [batch, c, inSide, inSide], format);
                using var wDesc = Cudnn.Filter(dataType, [c, width, 3, 3], format);
                using var yDesc = Cudnn.Tensor(dataType, [batch, c, side, side], format);
                using var conv = Cudnn.Convolution([1, 1], [stride, stride], [1, 1], (int)groups, half ? Cudnn.CUDNN_TENSOR_OP_MATH : Cudnn.CUDNN_FMA_MATH);
                seconds = CudnnSeconds(timer, handle, xDesc, x.Pointer, wDesc, w.Pointer, conv, yDesc, y.Pointer, workspace, half, candidates, $"a grouped 3x3 stride-{stride} convolution of width {width} at {batch}x{inSide}x{inSide}");
            }

            var pixels = batch * side * side;
            return new LayerRatePoint(width, 9 * width, pixels * groups, 2.0 * c * 9 * width * pixels / seconds);
        }
    }

    /// <summary>
    /// Depthwise convolutions of <see cref="DepthwiseChannels"/> channels through the engine's own depthwise kernel at
    /// one stride (fp16 channels-last, fp32 channels-first, as the engine lays them out), one node per window (outputs
    /// per group 1, K = window taps) over N x channels (<see cref="LayerRates.GroupView"/>).
    /// </summary>
    private IReadOnlyList<LayerRatePoint> MeasureDepthwiseTable(EventTimer timer, Kernels kernels, OwnKernels own, string precision, int stride)
    {
        var half = precision == "fp16";
        var type = half ? ElementType.Float16 : ElementType.Float;
        long c = DepthwiseChannels, side = GroupedSide, inSide = GroupedSide * stride;
        long elementBytes = half ? 2 : 4;
        var batches = FittingBatches(elementBytes * c * inSide * inSide);
        using var x = CudaDriver.Allocate(elementBytes * batches[^1] * c * inSide * inSide);
        using var y = CudaDriver.Allocate(elementBytes * batches[^1] * c * side * side);
        using var w = CudaDriver.Allocate(elementBytes * c * DepthwiseWindows.Max() * DepthwiseWindows.Max());
        kernels.Fill(x.Pointer, x.Bytes / 4, 11, half, timer.Stream);
        kernels.Fill(w.Pointer, w.Bytes / 4, 12, half, timer.Stream);
        var vector = KernelSource.DepthwiseVector(type, half, c);
        long[] outs = [side, side];
        KernelCode Code(int window, long batch) => KernelSource.Depthwise(type, half, vector, batch, c, [inSide, inSide], outs, [window, window], [stride, stride], [1, 1], [window / 2, window / 2]);

        // One NVRTC program for the table's kernels (a source per window; the sizes are arguments).
        own.Cache.Resolve([.. DepthwiseWindows.Select(k => new KernelStep("ceilings probe", Code(k, batches[^1]), 1, KernelSource.BlockSize, []))]);
        var points = new List<LayerRatePoint>();
        foreach (var window in DepthwiseWindows)
        {
            foreach (var batch in batches)
            {
                var code = Code(window, batch);
                using var launch = new OwnLaunch(own.Cache, code, KernelSource.DepthwiseThreads(half, vector, batch, c, outs), KernelSource.BlockSize, [y.Pointer, x.Pointer, w.Pointer]);
                var seconds = PerCallInGraph(timer, () => launch.Enqueue(timer.Stream));
                var pixels = batch * side * side;
                points.Add(new LayerRatePoint(1, window * window, pixels * c, 2.0 * window * window * pixels * c / seconds));
            }
        }

        return points;
    }

    /// <summary>The batches of <see cref="GroupedBatches"/> whose input (<paramref name="bytesPerImage"/> each) takes at most a sixteenth of the free memory; the smallest always.</summary>
    private List<long> FittingBatches(long bytesPerImage)
    {
        var (free, _) = CudaDriver.MemoryInfo();
        var batches = GroupedBatches.Select(b => (long)b).Order().ToList();
        return [.. batches.Where((b, i) => i == 0 || b * bytesPerImage <= free / 16)];
    }

    /// <summary>The engine's kernel cache the probe compiles its own kernels in, the device's opt-in shared memory and the grouped-convolution choice.</summary>
    private sealed record OwnKernels(KernelCache Cache, int MaxSharedBytes, GroupedConvChoice Choice);

    /// <summary>One of the engine's generated kernels ready to launch on given device pointers: its parameters laid out as a plan's are (pointers, then the argument block).</summary>
    private sealed class OwnLaunch : IDisposable
    {
        private readonly KernelStep _step;
        private readonly byte* _params;
        private readonly void** _addresses;

        public OwnLaunch(KernelCache cache, KernelCode code, long threads, int block, ulong[] pointers)
        {
            _step = new KernelStep("ceilings probe", code, threads, block, [.. Enumerable.Range(0, pointers.Length)]);
            cache.Resolve([_step]);
            var n = pointers.Length;
            var args = (code.Args.Length + 7) / 8 * 8;
            _params = (byte*)NativeMemory.AllocZeroed((nuint)((n * 8) + args + ((n + 1) * 8)));
            var values = (ulong*)_params;
            var argBlock = _params + (n * 8);
            _addresses = (void**)(argBlock + args);
            for (var i = 0; i < n; i++)
            {
                values[i] = pointers[i];
                _addresses[i] = &values[i];
            }

            code.Args.CopyTo(new Span<byte>(argBlock, code.Args.Length));
            _addresses[n] = argBlock;
        }

        public void Enqueue(CudaStream stream) =>
            CudaDriver.Launch(_step.Function, _step.Grid, (uint)_step.Block, (uint)_step.SharedBytes, stream.Handle, _addresses, _step.FunctionName);

        public void Dispose() => NativeMemory.Free(_params);
    }

    private (double Kernel, double StreamRun, double GraphNode, double GraphRun) MeasureLaunches(EventTimer timer, Kernels kernels)
    {
        var stream = timer.Stream;

        // From the host, kernel by kernel: what a run without a CUDA graph pays per kernel.
        var perKernel = timer.BestWall(() =>
        {
            for (var i = 0; i < Launches; i++)
            {
                kernels.Empty(stream);
            }

            CudaDriver.Synchronize(stream);
        }) / Launches;

        // One run as the engine times it: events around the work, then wait on the end event.
        var streamRun = timer.BestWall(() => timer.EventRun(() => kernels.Empty(stream)));
        using var one = CudaDriver.Capture(stream, () => kernels.Empty(stream));
        using var many = CudaDriver.Capture(stream, () =>
        {
            for (var i = 0; i < GraphNodes; i++)
            {
                kernels.Empty(stream);
            }
        });
        var graphOne = timer.BestWall(() => timer.EventRun(() => CudaDriver.Launch(one, stream)));
        var graphMany = timer.BestWall(() => timer.EventRun(() => CudaDriver.Launch(many, stream)));
        var perNode = Math.Max(0, (graphMany - graphOne) / (GraphNodes - 1));
        return (perKernel, Math.Max(0, streamRun - perKernel), perNode, Math.Max(0, graphOne - perNode));
    }

    /// <summary>The probe's kernels and how to launch them.</summary>
    private sealed record Kernels(IntPtr EmptyFunction, IntPtr CopyFunction, IntPtr FillFunction, uint Grid)
    {
        public void Empty(CudaStream stream) => CudaDriver.Launch(EmptyFunction, 1, 32, 0, stream.Handle, null, "bw_empty");

        public void Copy(ulong src, ulong dst, long bytes, CudaStream stream)
        {
            ulong n = (ulong)bytes / 16;
            var args = stackalloc void*[] { &src, &dst, &n };
            CudaDriver.Launch(CopyFunction, Grid, 256, 0, stream.Handle, args, "bw_copy");
        }

        public void Fill(ulong pointer, long words, uint seed, bool halves, CudaStream stream)
        {
            ulong n = (ulong)words;
            var h = halves ? 1 : 0;
            var args = stackalloc void*[] { &pointer, &n, &seed, &h };
            CudaDriver.Launch(FillFunction, Grid, 256, 0, stream.Handle, args, "bw_fill");
            CudaDriver.Synchronize(stream);
        }
    }

    /// <summary>Best-of-trials timing on one stream: GPU time between events, or host wall time.</summary>
    private sealed class EventTimer(CudaStream stream, CudaEvent start, CudaEvent end, double seconds, CancellationToken cancellationToken)
    {
        public CudaStream Stream => stream;

        /// <summary>GPU seconds of one <paramref name="enqueue"/>: repeated between two events (at least 5 ms a trial, so the events' resolution does not count), best trial.</summary>
        public double Best(Action enqueue)
        {
            enqueue();
            CudaDriver.Synchronize(stream);
            var once = Math.Max(EventRun(enqueue), 1e-7);
            var repeats = (int)Math.Clamp(Math.Ceiling(0.005 / once), 1, 10_000);
            return Trials(() =>
            {
                CudaDriver.Record(start, stream);
                for (var i = 0; i < repeats; i++)
                {
                    enqueue();
                }

                CudaDriver.Record(end, stream);
                return CudaDriver.ElapsedSeconds(start, end) / repeats;
            });
        }

        /// <summary>
        /// GPU seconds of one <paramref name="enqueue"/> held back to back for <paramref name="holdSeconds"/> (replayed from a
        /// CUDA graph of a few milliseconds of calls, so the host's enqueueing leaves the GPU no gaps), timed in windows of
        /// about 10 ms: the fastest window (the burst, at the clock the hold started with) and the mean over the hold's last
        /// 40% (once a power or thermal limit has had time to lower the clock). Starts after 200 ms idle, for the clock to recover.
        /// </summary>
        public (double Burst, double Sustained) Held(Action enqueue, double holdSeconds)
        {
            enqueue();
            CudaDriver.Synchronize(stream);
            var once = Math.Max(EventRun(enqueue), 1e-7);
            var count = (int)Math.Clamp(Math.Ceiling(0.002 / once), 1, 2000);
            using var graph = CudaDriver.Capture(stream, () =>
            {
                for (var i = 0; i < count; i++)
                {
                    enqueue();
                }
            });
            var launches = (int)Math.Clamp(Math.Ceiling(0.01 / (once * count)), 1, 100);
            Thread.Sleep(200);
            var windows = new List<(double At, double Seconds)>();
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalSeconds < holdSeconds || windows.Count < 5)
            {
                cancellationToken.ThrowIfCancellationRequested();
                CudaDriver.Record(start, stream);
                for (var i = 0; i < launches; i++)
                {
                    CudaDriver.Launch(graph, stream);
                }

                CudaDriver.Record(end, stream);
                windows.Add((clock.Elapsed.TotalSeconds, CudaDriver.ElapsedSeconds(start, end) / (launches * count)));
            }

            var late = windows.Where(w => w.At >= 0.6 * clock.Elapsed.TotalSeconds).Select(w => w.Seconds).DefaultIfEmpty(windows[^1].Seconds);
            return (Math.Max(windows.Min(w => w.Seconds), 1e-9), Math.Max(late.Average(), 1e-9));
        }

        /// <summary>Host wall seconds of one synchronous <paramref name="action"/>: the best of its repetitions.</summary>
        public double BestWall(Action action)
        {
            action();
            return Trials(() =>
            {
                var t = Stopwatch.GetTimestamp();
                action();
                return Stopwatch.GetElapsedTime(t).TotalSeconds;
            });
        }

        /// <summary>Records an event, enqueues, records another and waits for it, as the engine's run does; returns the GPU seconds between the events.</summary>
        public double EventRun(Action enqueue)
        {
            CudaDriver.Record(start, stream);
            enqueue();
            CudaDriver.Record(end, stream);
            return CudaDriver.ElapsedSeconds(start, end);
        }

        private double Trials(Func<double> trial)
        {
            var best = double.MaxValue;
            var clock = Stopwatch.StartNew();
            for (var count = 0; count < 5 || (clock.Elapsed.TotalSeconds < seconds && count < 1000); count++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                best = Math.Min(best, trial());
            }

            return Math.Max(best, 1e-9);
        }
    }
}
