using System.Diagnostics;
using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Analysis;

/// <summary>Measures a device's <see cref="DeviceCeilings"/> through an engine.</summary>
public interface ICeilingsProbe
{
    /// <summary>Runs the micro-benchmarks (a few seconds) and returns what they found.</summary>
    DeviceCeilings Measure(IEngine engine, EngineOptions options, Action<string>? log = null, CancellationToken cancellationToken = default);
}

/// <summary>
/// Ceilings from small models built in code and run through the engine itself, so they include what the
/// engine adds: a large MatMul (GEMM rate), 3x3 convolutions of growing N (convolution rate, where it saturates), a large Add
/// (memory bandwidth), and chains of tiny Adds (per-run and per-op overhead). Works for any engine; a GPU
/// engine may register a probe of its own with <see cref="DeviceCeilingsSource.Register"/>.
/// </summary>
public sealed class CeilingsProbe : ICeilingsProbe
{
    /// <summary>Seconds spent on each measurement (the whole calibration is about ten of these).</summary>
    public double SecondsPerMeasurement { get; init; } = 0.6;

    /// <summary>Square size of the peak-rate GEMM.</summary>
    public int PeakGemmSize { get; init; } = 512;

    /// <summary>Channels in and out of the rate curve's 3x3 convolutions (512: 9.4 MB of weights each, like a deep layer's).</summary>
    public int ConvChannels { get; init; } = 512;

    /// <summary>
    /// Convolutions in the rate curve's stack: enough that their weights (10 x 9.4 MB, about a ResNet-50's) pass the
    /// caches, so each run streams them from memory as a deep network does at every batch.
    /// </summary>
    public int ConvLayers { get; init; } = 10;

    /// <summary>Image sides of the rate curve's convolutions (N = side squared, from 1: a deep layer's N at batch 1); a GPU needs larger ones, e.g. 16 to 512.</summary>
    public IReadOnlyList<int> ConvSides { get; init; } = [1, 2, 4, 8, 16, 32];

    /// <summary>Elements per operand of the bandwidth Add (three tensors of 4 bytes each are moved).</summary>
    public int BandwidthElements { get; init; } = 8 * 1024 * 1024;

    /// <inheritdoc/>
    public DeviceCeilings Measure(IEngine engine, EngineOptions options, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(options);
        var clock = Stopwatch.StartNew();
        var description = engine.Describe(options);
        var details = new Dictionary<string, string>
        {
            ["engine_version"] = description.Version,
            ["logical_cores"] = HostInfo.LogicalCores.ToString(CultureInfo.InvariantCulture),
            ["intra_op_threads"] = options.IntraOpThreads.ToString(CultureInfo.InvariantCulture),
        };
        if (MeasuredSweep.LoadAverage() is { } load)
        {
            details["load_average"] = load.ToString("F2", CultureInfo.InvariantCulture);
        }

        // Peak GEMM rate: the best of a large square MatMul and the largest N of the saturation curve.
        var s = PeakGemmSize;
        var peakSeconds = TimeModel(engine, options, MatMulModel(s, s, s), [s, s], cancellationToken);
        var peak = 2.0 * s * s * s / peakSeconds;
        log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"GEMM {s}x{s}x{s}: {peak / 1e9:N1} GFLOP/s"));

        // Convolution rate by N: a stack of 3x3 convolutions, 512 -> 512 channels (M = 512, K = 4608), over growing
        // images, so N = H x W runs from 1 to 1024. Their weights pass the caches, so every run streams them from
        // memory, and at small N packs them for a few columns of work while the threads split a tiny problem: the
        // rate there is what a deep layer gets at batch 1. The prediction takes every GEMM's efficiency at its N from
        // this curve (its rate over its best), not from one peak. Convolutions are most of the FLOPs of vision
        // models, and an engine's convolution path (im2col or direct, layout changes) rarely reaches its GEMM rate.
        var channels = ConvChannels;
        var layers = ConvLayers;
        var curve = new List<(double N, double Flops)>();
        foreach (var side in ConvSides)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var t = TimeModel(engine, options, ConvModel(channels, side, layers), [1, channels, side + 2, side + 2], cancellationToken, SecondsPerMeasurement / 2);
            curve.Add((side * side, 2.0 * channels * channels * 9 * side * side * layers / t));
        }

        var convPeak = curve.Max(c => c.Flops);
        details["conv_curve"] = string.Join(" ", curve.Select(c => string.Create(CultureInfo.InvariantCulture, $"N={c.N}:{c.Flops / 1e9:F1}")));
        log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"{layers} Conv 3x3 {channels}->{channels} ({layers * channels * channels * 9 * 4 / 1e6:N0} MB of weights) rate by N = H x W (GFLOP/s): ") + details["conv_curve"]);
        var (saturationN, saturationSource) = FitSaturation(curve, DerivedSaturationN());
        details["derived_saturation_n"] = DerivedSaturationN().ToString(CultureInfo.InvariantCulture);

        // FP16 GEMM where the engine computes in fp16 (a GPU engine on tensor cores); engines that do not say so at load.
        double? fp16 = null;
        try
        {
            var half = TimeModel(engine, options with { Precision = Precision.Fp16 }, MatMulModel(s, s, s), [s, s], cancellationToken);
            fp16 = 2.0 * s * s * s / half;
            log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"fp16 GEMM {s}x{s}x{s}: {fp16 / 1e9:N1} GFLOP/s"));
        }
        catch (BatchwiseException refused)
        {
            details["fp16"] = "not measured: " + refused.Message;
        }

        // int8: the same GEMM and convolution stack in QDQ form (uint8 activations, int8 weights, requantized outputs),
        // which engines that run int8 fuse into their int8 kernels (ONNX Runtime: QLinearMatMul, QLinearConv). Engines
        // that cannot run QDQ models say so at load, and the ceilings have no int8 line.
        double? int8 = null, int8Conv = null;
        var int8Curve = new List<(double N, double Flops)>();
        try
        {
            var q = TimeModel(engine, options, QdqMatMulModel(s, s, s), [s, s], cancellationToken);
            int8 = 2.0 * s * s * s / q;
            foreach (var side in ConvSides)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var t = TimeModel(engine, options, QdqConvModel(channels, side, layers), [1, channels, side + 2, side + 2], cancellationToken, SecondsPerMeasurement / 2);
                int8Curve.Add((side * side, 2.0 * channels * channels * 9 * side * side * layers / t));
            }

            int8Conv = int8Curve.Max(c => c.Flops);
            details["int8_conv_curve"] = string.Join(" ", int8Curve.Select(c => string.Create(CultureInfo.InvariantCulture, $"N={c.N}:{c.Flops / 1e9:F1}")));
            log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"int8 (QDQ) GEMM {s}x{s}x{s}: {int8 / 1e9:N1} GOP/s; {layers} QDQ Conv 3x3 rate by N (GOP/s): ") + details["int8_conv_curve"]);
        }
        catch (BatchwiseException refused)
        {
            details["int8"] = "not measured: " + refused.Message;
            int8Curve.Clear();
        }

        // Bandwidth: c = a + b over tensors far larger than the caches.
        var e = BandwidthElements;
        var addSeconds = TimeModel(engine, options, AddModel(e), [e], cancellationToken);
        var bandwidth = 3.0 * 4 * e / addSeconds;
        log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"Add of {e:N0} floats: {bandwidth / 1e9:N1} GB/s"));

        // Overheads: one tiny op per run, then 64 of them.
        var one = TimeModel(engine, options, ChainModel(1), [1], cancellationToken, SecondsPerMeasurement / 2);
        var many = TimeModel(engine, options, ChainModel(65), [1], cancellationToken, SecondsPerMeasurement / 2);
        var perOp = Math.Max(0, (many - one) / 64);
        var perRun = Math.Max(0, one - perOp);
        log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"overhead: {perRun * 1e6:N1} µs per run, {perOp * 1e6:N2} µs per op"));

        return new DeviceCeilings
        {
            Engine = engine.Name,
            Device = description.Device,
            Machine = HostInfo.MachineName,
            PeakFlops = peak,
            PeakConvFlops = convPeak,
            PeakFlopsFp16 = fp16,
            PeakFlopsInt8 = int8,
            PeakConvFlopsInt8 = int8Conv,
            RateCurves = new Dictionary<string, IReadOnlyList<RatePoint>>
            {
                ["fp32"] = curve.Select(c => new RatePoint(c.N, c.Flops)).ToList(),
                ["int8"] = int8Curve.Select(c => new RatePoint(c.N, c.Flops)).ToList(),
            }.Where(p => p.Value.Count > 0).ToDictionary(),
            BandwidthBytesPerSecond = bandwidth,
            RunOverheadSeconds = perRun,
            OpOverheadSeconds = perOp,
            SaturationN = saturationN,
            SaturationSource = saturationSource,
            ComputeUnits = options.IntraOpThreads > 0 ? Math.Min(options.IntraOpThreads, HostInfo.LogicalCores) : HostInfo.LogicalCores,
            MeasuredAt = DateTimeOffset.UtcNow,
            CalibrationSeconds = clock.Elapsed.TotalSeconds,
            Details = details,
        };
    }

    /// <summary>
    /// The N at which a measured rate-by-N curve reaches 90% of its best rate (bench's knee rule): interpolated in
    /// log N between the two points that bracket it, on the curve made non-decreasing (a rate that falls at large N
    /// is caches or a busy host, not idle compute units); proportional to N below the smallest point. A curve whose
    /// best is its largest N, still rising there, gives a lower bound.
    /// </summary>
    public static (double SaturationN, string Source) FitSaturation(IReadOnlyList<(double N, double Flops)> curve, double fallback)
    {
        ArgumentNullException.ThrowIfNull(curve);
        var ordered = curve.Where(c => c.N > 0 && c.Flops > 0).OrderBy(c => c.N).ToList();
        if (ordered.Count == 0)
        {
            return (fallback, "derived");
        }

        const double Target = 0.9;
        var best = ordered.Max(c => c.Flops);
        var running = 0.0;
        var points = new List<(double N, double Efficiency)>(ordered.Count);
        foreach (var c in ordered)
        {
            running = Math.Max(running, c.Flops / best);
            points.Add((c.N, running));
        }

        if (points[0].Efficiency >= Target)
        {
            return (points[0].N * Target / points[0].Efficiency, "measured (90% of the best rate from the smallest N)");
        }

        var i = points.FindIndex(p => p.Efficiency >= Target);
        var (n0, e0) = points[i - 1];
        var (n1, e1) = points[i];
        var n = Math.Exp(Math.Log(n0) + ((Target - e0) / (e1 - e0) * (Math.Log(n1) - Math.Log(n0))));
        var rising = i == points.Count - 1 && ordered[^1].Flops >= best && ordered.Count > 1 && ordered[^2].Flops < Target * best;
        return (n, rising ? "measured (a lower bound: the rate still rises at the largest N measured)" : "measured (90% of the best rate)");
    }

    /// <summary>
    /// N a CPU needs to keep every core's vector units busy: cores x fp32 SIMD lanes x a 4-column register
    /// tile x 4 tiles per core for load balance (used when the curve cannot be measured).
    /// </summary>
    public static double DerivedSaturationN()
    {
        var lanes = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? 16 : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? 8 : 4;
        return HostInfo.LogicalCores * lanes * 4 * 4;
    }

    private double TimeModel(IEngine engine, EngineOptions options, OnnxModel model, long[] inputShape, CancellationToken ct, double? seconds = null)
    {
        using var session = engine.Load(model, options);
        var inputs = session.Inputs.Select(_ => Filled(inputShape)).ToList();
        using var run = session.Prepare(inputs);
        run.Run();
        run.Run();
        var budget = seconds ?? SecondsPerMeasurement;
        var best = double.MaxValue;
        var start = Stopwatch.GetTimestamp();
        var count = 0;
        while (count < 3 || (Stopwatch.GetElapsedTime(start).TotalSeconds < budget && count < 10_000))
        {
            ct.ThrowIfCancellationRequested();
            best = Math.Min(best, run.Run());
            count++;
        }

        // The best run is the ceiling: other processes on a shared machine only ever slow a run down.
        return Math.Max(best, 1e-9);
    }

    private static Engines.Tensor Filled(long[] shape)
    {
        var t = Engines.Tensor.Zeros(ElementType.Float, shape);
        var span = t.AsSpan<float>();
        for (var i = 0; i < span.Length; i++)
        {
            span[i] = (i % 7) * 0.125f;
        }

        return t;
    }

    private static OnnxModel MatMulModel(long n, long k, long m)
    {
        var g = new GraphBuilder("ceilings_gemm", 1);
        var x = g.Input("x", ElementType.Float, n, k);
        var w = g.Weight("w", [k, m], 0.01f);
        var y = g.Rename(g.Node("MatMul", [x, w]), "y");
        g.Output(y, ElementType.Float, n, m);
        return g.Build("ceilings_gemm");
    }

    /// <summary>
    /// <paramref name="layers"/> unpadded 3x3 convolutions of one input, each with weights of its own and an output
    /// <paramref name="side"/> square. Unpadded, every tap multiplies real data: a padded 3x3 over a 1x1 image is a
    /// 1x1 convolution in disguise, which engines run as one.
    /// </summary>
    private static OnnxModel ConvModel(long channels, long side, int layers)
    {
        var g = new GraphBuilder("ceilings_conv", 1);
        var x = g.Input("x", ElementType.Float, 1L, channels, side + 2, side + 2);
        for (var i = 0; i < layers; i++)
        {
            var y = g.Rename(g.Node("Conv", [x, g.Weight("w", [channels, channels, 3, 3], 0.01f)]), "y" + i.ToString(CultureInfo.InvariantCulture));
            g.Output(y, ElementType.Float, 1L, channels, side, side);
        }

        return g.Build("ceilings_conv");
    }

    /// <summary>The MatMul of <see cref="MatMulModel"/> in QDQ form: x quantized to uint8, int8 weights, the product requantized to uint8.</summary>
    private static OnnxModel QdqMatMulModel(long n, long k, long m)
    {
        var g = new GraphBuilder("ceilings_gemm_int8", 1);
        var x = g.Input("x", ElementType.Float, n, k);
        var y = g.Rename(Requantized(g, g.Node("MatMul", [Quantized(g, x), Int8Weight(g, [k, m])])), "y");
        g.Output(y, ElementType.Float, n, m);
        return g.Build("ceilings_gemm_int8");
    }

    /// <summary>The convolution stack of <see cref="ConvModel"/> in QDQ form: one quantized input, int8 weights, each output requantized.</summary>
    private static OnnxModel QdqConvModel(long channels, long side, int layers)
    {
        var g = new GraphBuilder("ceilings_conv_int8", 1);
        var x = Quantized(g, g.Input("x", ElementType.Float, 1L, channels, side + 2, side + 2));
        for (var i = 0; i < layers; i++)
        {
            var y = g.Rename(Requantized(g, g.Node("Conv", [x, Int8Weight(g, [channels, channels, 3, 3])])), "y" + i.ToString(CultureInfo.InvariantCulture));
            g.Output(y, ElementType.Float, 1L, channels, side, side);
        }

        return g.Build("ceilings_conv_int8");
    }

    /// <summary>QuantizeLinear then DequantizeLinear at a uint8 scale that holds the probe's inputs: the pair an int8 kernel reads through.</summary>
    private static string Quantized(GraphBuilder g, string value)
    {
        var scale = g.Initializer("scale", [], [1f / 64]);
        var zero = g.Raw<byte>("zero_point", ElementType.UInt8, [], [128]);
        return g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [value, scale, zero]), scale, zero]);
    }

    /// <summary>The requantized output of an int8 product (the engine fuses the pair into its kernel's epilogue).</summary>
    private static string Requantized(GraphBuilder g, string value) => Quantized(g, value);

    /// <summary>Seeded int8 weights, per-tensor scale, zero point 0, behind their DequantizeLinear.</summary>
    private static string Int8Weight(GraphBuilder g, long[] shape)
    {
        var values = new sbyte[Engines.Tensor.ElementCountOf(shape)];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (sbyte)g.Random.Next(-63, 64);
        }

        var w = g.Raw<sbyte>("w", ElementType.Int8, shape, values);
        var scale = g.Initializer("w_scale", [], [1f / 4096]);
        var zero = g.Raw<sbyte>("w_zero_point", ElementType.Int8, [], [0]);
        return g.Node("DequantizeLinear", [w, scale, zero]);
    }

    private static OnnxModel AddModel(long elements)
    {
        var g = new GraphBuilder("ceilings_bandwidth");
        var a = g.Input("a", ElementType.Float, elements);
        var b = g.Input("b", ElementType.Float, elements);
        var y = g.Rename(g.Node("Add", [a, b]), "y");
        g.Output(y, ElementType.Float, elements);
        return g.Build("ceilings_bandwidth");
    }

    private static OnnxModel ChainModel(int ops)
    {
        var g = new GraphBuilder("ceilings_overhead");
        var a = g.Input("a", ElementType.Float, 1L);
        var x = a;
        for (var i = 0; i < ops; i++)
        {
            x = g.Node("Add", [x, a]);
        }

        var y = g.Rename(x, "y");
        g.Output(y, ElementType.Float, 1L);
        return g.Build("ceilings_overhead");
    }
}

/// <summary>Finds a device's ceilings: from the per-machine cache, else measured (and cached).</summary>
public static class DeviceCeilingsSource
{
    private static readonly Dictionary<string, Func<ICeilingsProbe>> Probes = new(StringComparer.OrdinalIgnoreCase)
    {
        // A GPU fills only with far larger problems than a CPU: the same engine micro-benchmarks, sized for one.
        // (Not yet run on a GPU; a cuBLASLt/cuDNN probe of the CUDA engine's own can replace this.)
        ["cuda"] = () => new CeilingsProbe
        {
            PeakGemmSize = 4096,
            ConvChannels = 256,
            ConvSides = [8, 16, 32, 64, 128, 256],
            ConvLayers = 1,
            BandwidthElements = 64 * 1024 * 1024,
            SecondsPerMeasurement = 0.3,
        },
    };

    /// <summary>Registers the probe an engine uses in place of the generic engine micro-benchmarks (e.g. cuBLASLt for cuda).</summary>
    public static void Register(string engineName, Func<ICeilingsProbe> probe)
    {
        lock (Probes)
        {
            Probes[engineName] = probe;
        }
    }

    /// <summary>The probe for an engine: its registered one, else <see cref="CeilingsProbe"/>.</summary>
    public static ICeilingsProbe ProbeFor(string engineName)
    {
        lock (Probes)
        {
            return Probes.TryGetValue(engineName, out var f) ? f() : new CeilingsProbe();
        }
    }

    /// <summary>The cache file for this machine, the engine, its device and the settings that change the ceilings (version, threads, provider, how library algorithms are picked).</summary>
    public static string CachePath(IEngine engine, EngineOptions options, CeilingsCache cache)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(cache);
        var description = engine.Describe(options);
        var settings = string.Create(CultureInfo.InvariantCulture, $"v{description.Version};threads={options.IntraOpThreads};ep={options.ExecutionProvider};dev={options.DeviceId};opt={options.GraphOptimization}");

        // An engine that says how it picks library algorithms (the cuda engine: heuristics or timed tactics) gets a file
        // per way, since its probe times the algorithms that way picks.
        if (description.Details.TryGetValue("tactics", out var tactics))
        {
            settings += ";tactics=" + tactics;
        }

        return cache.PathFor(HostInfo.MachineName, engine.Name, description.Device, settings);
    }

    /// <summary>Cached ceilings for this machine, engine, device and settings (every precision measured, whatever <paramref name="options"/> asks), measuring them when absent or when <paramref name="recalibrate"/>.</summary>
    public static (DeviceCeilings Ceilings, bool FromCache, string CachePath) Get(
        IEngine engine, EngineOptions options, CeilingsCache cache, bool recalibrate, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(cache);
        var description = engine.Describe(options);
        var path = CachePath(engine, options, cache);
        if (!recalibrate && cache.TryRead(path) is { } cached)
        {
            return (cached, true, path);
        }

        log?.Invoke($"measuring device ceilings for {description.Device} via {engine.Name} (once per machine; --recalibrate to redo)");
        // Probes measure plain fp32 (and whatever else they can: fp16, TF32) whatever these options ask; one cache file
        // serves every precision, and DeviceCeilings.For picks the ceiling a run uses.
        var measured = ProbeFor(engine.Name).Measure(engine, options with { Precision = Precision.Fp32, AllowTf32 = false }, log, cancellationToken);
        cache.Write(path, measured);
        return (measured, false, path);
    }
}
