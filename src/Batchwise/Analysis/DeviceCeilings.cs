using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Batchwise.Engines;

namespace Batchwise.Analysis;

/// <summary>One point of a measured rate curve: the GEMM (or convolution) rate at a batch-scaled size N.</summary>
/// <param name="N">The GEMM dimension that grows with the batch (batch x out-H x out-W for a convolution).</param>
/// <param name="Flops">Measured rate at that N, FLOP/s.</param>
public sealed record RatePoint(double N, double Flops);

/// <summary>
/// One GEMM held back to back for about a second: how much of the device's arithmetic it keeps busy at the full clock and
/// how much of that rate it keeps once a power or thermal limit has lowered the clock (<see cref="DeviceCeilings.SustainedLoad"/>).
/// </summary>
/// <param name="Activity">The GEMM's burst rate over the precision's peak: the share of the peak arithmetic it keeps busy at the full clock.</param>
/// <param name="RateFactor">Its rate over the hold's last part over its burst rate: 1 where the clock held, below 1 where a limit lowered it.</param>
public sealed record SustainedPoint(double Activity, double RateFactor);

/// <summary>
/// What one device can do, measured through one engine: the numbers a roofline prediction needs.
/// A CPU fills it from engine micro-benchmarks (<see cref="CeilingsProbe"/>); a GPU engine fills the same
/// fields from its own probes (cuBLASLt GEMM, device-to-device copies, empty-kernel launches).
/// </summary>
public sealed record DeviceCeilings
{
    /// <summary>
    /// Version of this record's JSON layout; a cache file of another version is measured anew (8: the GEMM tables with
    /// cold weights and the cache size; 9: the grouped tables at further output sides, "grouped@14"; 10: the sustained
    /// load and the fp32 3x3 convolution table at further output sides, "conv@14"; 11: the fp32 1x1 and stride-2 3x3
    /// convolution tables, "pointwise", "conv-s2" and theirs at further sides; 12: the GEMM tables' algorithms chosen as
    /// the engine's timed tactics choose them, where 11 took cuBLASLt's heuristic choice).
    /// </summary>
    public const int CurrentSchema = 12;

    /// <summary>
    /// The oldest schema a file named by --ceilings-file is read in (the cache measures anew past it): 8 has every field
    /// of 10 but the grouped tables at further sides, whose layers then take the 28x28 table as 8 did, and (as 9) the
    /// sustained load and the convolution tables at further sides: its runs predict at the full clock, its 3x3
    /// convolutions from the 56x56 table; before 11, fp32's 1x1 and strided convolutions from the 3x3 tables; before 12, its
    /// products at cuBLASLt's heuristic choice (within a few percent of the timed one on an H100).
    /// </summary>
    public const int OldestReadableSchema = 8;

    /// <summary>JSON layout version.</summary>
    public int Schema { get; init; } = CurrentSchema;

    /// <summary>Engine name (ort, cuda).</summary>
    public required string Engine { get; init; }

    /// <summary>Device name (CPU model or GPU name).</summary>
    public required string Device { get; init; }

    /// <summary>Host name of the machine measured.</summary>
    public required string Machine { get; init; }

    /// <summary>Peak fp32 GEMM rate, FLOP/s (2 FLOPs per multiply-add); true fp32 on a GPU (no TF32).</summary>
    public required double PeakFlops { get; init; }

    /// <summary>Peak fp32 GEMM rate with TF32 tensor-core math, FLOP/s, where measured (GPUs); null where not.</summary>
    public double? PeakFlopsTf32 { get; init; }

    /// <summary>Best fp32 convolution rate through the engine, FLOP/s, where measured (engines whose convolutions do not reach the GEMM rate); null: use <see cref="PeakFlops"/>.</summary>
    public double? PeakConvFlops { get; init; }

    /// <summary>Peak fp16 GEMM rate, FLOP/s, where measured (GPU tensor cores); null where not.</summary>
    public double? PeakFlopsFp16 { get; init; }

    /// <summary>Peak int8 GEMM rate (int8 operands, int32 accumulation), operations/s counted as FLOPs are (2 per multiply-add), where measured; null where not.</summary>
    public double? PeakFlopsInt8 { get; init; }

    /// <summary>Best int8 convolution rate through the engine (a QDQ convolution on ONNX Runtime), where measured; null: use <see cref="PeakFlopsInt8"/>.</summary>
    public double? PeakConvFlopsInt8 { get; init; }

    /// <summary>
    /// The arithmetic the prediction uses: fp32, tf32 or fp16 (set from the engine options by <see cref="For"/>);
    /// <see cref="PeakInUse"/>, <see cref="RateCurve"/> and <see cref="SaturationN"/> follow it.
    /// </summary>
    public string Precision { get; init; } = "fp32";

    /// <summary>
    /// Measured rate by N for each precision (fp32, tf32, fp16, int8): a CPU's 3x3 convolution of growing image size, a
    /// GPU's cuBLASLt GEMM of a convolution's M and K; the prediction's efficiency at N comes from it. Empty where not measured.
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<RatePoint>> RateCurves { get; init; } = new Dictionary<string, IReadOnlyList<RatePoint>>();

    /// <summary>
    /// Measured rate tables per precision and layer class, keyed "fp16/gemm" (cuBLASLt, for MatMul, Gemm and the cuda
    /// engine's fp16 pointwise convolutions; "fp16/gemm-cold" the same with every call's weights read from memory, for
    /// models whose weights exceed the cache, <see cref="WeightsCold"/>), "fp32/conv" (cuDNN convolutions as the engine runs them; "fp32/conv@14" and the like at further output sides), "fp16/grouped" / "fp16/grouped-s2" (at 28x28 outputs; "fp16/grouped@14" and the like at further sides) and
    /// "fp16/depthwise" / "fp16/depthwise-s2" (grouped and depthwise convolutions through the routine the engine picks), each a grid of
    /// output channels x reduction length x N timed per call inside a CUDA graph; empty where not measured (a CPU), and a
    /// table that could not be measured is missing (its layers use <see cref="RateCurve"/>, and
    /// <see cref="Details"/>["layer_rates_missing"] says why).
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<LayerRatePoint>> LayerRates { get; init; } = new Dictionary<string, IReadOnlyList<LayerRatePoint>>();

    /// <summary>
    /// By precision (fp32, tf32, fp16): GEMMs of growing size held back to back for about a second each, their burst
    /// rate's share of the peak against the share of it they keep (<see cref="SustainedPoint"/>). The rate tables are
    /// timed in short bursts at the full clock; a model run back to back for long keeps its tensor cores busy enough that
    /// the GPU's power limit lowers the clock (session 40's H200: BERT fp16 at 1,878 MHz at b=32 and 1,536 at b=256 of
    /// 1,980), and <see cref="SustainedFactor"/> prices that. Empty where not measured (a CPU, an older probe).
    /// </summary>
    /// <remarks>A file without the field (schema 9 and older) reads as empty: the generated serializer sets a missing init-only property to null, which this turns back into empty.</remarks>
    public IReadOnlyDictionary<string, IReadOnlyList<SustainedPoint>> SustainedLoad
    {
        get => _sustainedLoad;
        init => _sustainedLoad = value ?? new Dictionary<string, IReadOnlyList<SustainedPoint>>();
    }

    private readonly IReadOnlyDictionary<string, IReadOnlyList<SustainedPoint>> _sustainedLoad = new Dictionary<string, IReadOnlyList<SustainedPoint>>();

    /// <summary>GPU: time of one small memory-bound kernel as a node of a CUDA graph (launch latency and a DRAM round trip, beyond its bytes), seconds; null where not measured.</summary>
    public double? KernelFloorSeconds { get; init; }

    /// <summary>GPU: the last-level (L2) cache, bytes; null where not known.</summary>
    public long? CacheBytes { get; init; }

    /// <summary>
    /// True when the model's weights do not fit <see cref="CacheBytes"/> (<see cref="ForWeights"/>): each product then
    /// reads its weights from memory, not from the cache a table of repeated calls keeps them in, so MatMul and Gemm
    /// (and fp16 pointwise convolutions) take the "gemm-cold" table, measured with the weights rotated through more
    /// than the cache holds, where it covers their size.
    /// </summary>
    [JsonIgnore]
    public bool WeightsCold { get; init; }

    /// <summary>These ceilings for a model of <paramref name="weightBytes"/> of weights: cold GEMM weights where they exceed the cache and a cold table was measured.</summary>
    public DeviceCeilings ForWeights(double weightBytes) =>
        this with { WeightsCold = CacheBytes is > 0 && weightBytes > CacheBytes && LayerRates.ContainsKey(Analysis.LayerRates.Key(Precision, "gemm-cold")) };

    /// <summary>Sustained memory bandwidth, bytes/s (read + write).</summary>
    public required double BandwidthBytesPerSecond { get; init; }

    /// <summary>Fixed cost of one run of a model (session entry, input binding, output allocation), seconds.</summary>
    public required double RunOverheadSeconds { get; init; }

    /// <summary>Cost of each extra operator or kernel in a run (dispatch on a CPU, a node of a CUDA graph on a GPU), seconds.</summary>
    public required double OpOverheadSeconds { get; init; }

    /// <summary>GPU: cost of one kernel launched from the host without a CUDA graph, seconds (<see cref="For"/> uses it when graphs are off); null on a CPU.</summary>
    public double? KernelLaunchSeconds { get; init; }

    /// <summary>GPU: fixed cost of one run launched kernel by kernel (no CUDA graph), seconds; null on a CPU.</summary>
    public double? StreamRunOverheadSeconds { get; init; }

    /// <summary>How kernels are submitted in <see cref="OpOverheadSeconds"/>: "cuda graph", "stream" (GPU) or "" (CPU).</summary>
    public string Launch { get; init; } = string.Empty;

    /// <summary>
    /// GEMM N (the batch-scaled dimension: batch x out-H x out-W for a convolution) at which GEMMs reach 90% of the
    /// peak rate (from the rate curve where measured); without a curve the effective peak scales as N / SaturationN below it.
    /// </summary>
    public required double SaturationN { get; init; }

    /// <summary>Where <see cref="SaturationN"/> came from (measured curve or derived from the hardware).</summary>
    public string SaturationSource { get; init; } = "derived";

    /// <summary>Parallel units the device has (CPU cores, GPU SMs).</summary>
    public int ComputeUnits { get; init; }

    /// <summary>When the ceilings were measured (UTC).</summary>
    public DateTimeOffset MeasuredAt { get; init; }

    /// <summary>Seconds the measurement took.</summary>
    public double CalibrationSeconds { get; init; }

    /// <summary>Anything else worth recording (engine version, threads, individual samples).</summary>
    public IReadOnlyDictionary<string, string> Details { get; init; } = new Dictionary<string, string>();

    /// <summary>Peak GEMM rate of <see cref="Precision"/>, FLOP/s.</summary>
    [JsonIgnore]
    public double PeakInUse => PeakOf(Precision) ?? PeakFlops;

    /// <summary>The measured rate-by-N curve of <see cref="Precision"/>, ordered by N (empty where not measured).</summary>
    [JsonIgnore]
    public IReadOnlyList<RatePoint> RateCurve => RateCurves.TryGetValue(Precision, out var c) ? c : [];

    /// <summary>Arithmetic intensity (FLOP/byte) at which compute and bandwidth ceilings meet: the roofline's ridge point.</summary>
    [JsonIgnore]
    public double RidgeIntensity => PeakInUse / BandwidthBytesPerSecond;

    /// <summary>The peak GEMM rate of a precision (fp32, tf32, fp16, int8), or null where not measured.</summary>
    public double? PeakOf(string precision) => precision switch
    {
        "fp32" => PeakFlops,
        "tf32" => PeakFlopsTf32,
        "fp16" => PeakFlopsFp16,
        "int8" => PeakFlopsInt8,
        _ => null,
    };

    /// <summary>True where an int8 GEMM ceiling was measured, so int8 layers are predicted at the int8 rate.</summary>
    [JsonIgnore]
    public bool HasInt8 => PeakFlopsInt8 is > 0;

    /// <summary>
    /// Fraction of the peak rate a GEMM of batch-scaled size <paramref name="n"/> reaches. From the measured
    /// <see cref="RateCurve"/> where there is one: its rate over its best rate, made non-decreasing in N (a rate
    /// that falls at large N is caches or a busy host, not idle compute), interpolated in log N between points,
    /// proportional to N below the smallest point (the same time for fewer columns) and 1 past the best point.
    /// Without a curve: min(1, N / <see cref="SaturationN"/>). <paramref name="precision"/> names another curve than
    /// <see cref="Precision"/>'s (int8 layers of a run whose float layers predict in fp16 or fp32); without that curve, the one in use.
    /// </summary>
    public double Efficiency(double n, string? precision = null)
    {
        if (n <= 0)
        {
            return 1.0;
        }

        var source = precision is not null && RateCurves.TryGetValue(precision, out var other) && other.Count > 0 ? other : RateCurve;
        var curve = source.Where(p => p.N > 0 && p.Flops > 0).OrderBy(p => p.N).ToList();
        if (curve.Count == 0)
        {
            return Math.Min(1.0, n / SaturationN);
        }

        var best = curve.Max(p => p.Flops);
        var running = 0.0;
        var points = new List<(double LogN, double Efficiency)>(curve.Count);
        foreach (var p in curve)
        {
            running = Math.Max(running, p.Flops / best);
            points.Add((Math.Log(p.N), running));
        }

        var logN = Math.Log(n);
        if (logN <= points[0].LogN)
        {
            return Math.Min(1.0, points[0].Efficiency * n / curve[0].N);
        }

        for (var i = 1; i < points.Count; i++)
        {
            if (logN <= points[i].LogN)
            {
                var t = (logN - points[i - 1].LogN) / (points[i].LogN - points[i - 1].LogN);
                return points[i - 1].Efficiency + (t * (points[i].Efficiency - points[i - 1].Efficiency));
            }
        }

        return points[^1].Efficiency;
    }

    /// <summary>
    /// The share of its burst rate a run keeps under sustained load when it keeps <paramref name="activity"/> of the
    /// peak arithmetic of <see cref="Precision"/> busy at the full clock (its FLOPs at the peak rate over its time): from
    /// <see cref="SustainedLoad"/>, the measured factors made non-increasing in activity, 1 at no activity, interpolated
    /// linearly between points, and the busiest point's factor past it. 1 where nothing was measured.
    /// </summary>
    public double SustainedFactor(double activity)
    {
        var key = SustainedLoad.ContainsKey(Precision) ? Precision : Precision == "tf32" ? "fp32" : Precision;
        if (!SustainedLoad.TryGetValue(key, out var measured) || measured.Count == 0 || !(activity > 0))
        {
            return 1.0;
        }

        var points = new List<(double Activity, double Factor)> { (0, 1) };
        foreach (var p in measured.Where(p => p.Activity > 0 && p.RateFactor > 0).OrderBy(p => p.Activity))
        {
            points.Add((p.Activity, Math.Min(points[^1].Factor, Math.Min(1.0, p.RateFactor))));
        }

        for (var i = 1; i < points.Count; i++)
        {
            if (activity <= points[i].Activity)
            {
                var t = (activity - points[i - 1].Activity) / (points[i].Activity - points[i - 1].Activity);
                return points[i - 1].Factor + (t * (points[i].Factor - points[i - 1].Factor));
            }
        }

        return points[^1].Factor;
    }

    /// <summary>
    /// The measured rate (FLOP/s) of the routine that runs <paramref name="work"/> in the precision in use, from
    /// <see cref="LayerRates"/>: cuBLASLt's table for MatMul and Gemm (and pointwise convolutions in fp16, which the cuda
    /// engine runs as one GEMM), cuDNN's for other dense convolutions, the grouped and depthwise tables (in their per-group
    /// view, <see cref="Analysis.LayerRates.GroupView"/>) for those; null for other layers or where no table was measured.
    /// With <see cref="WeightsCold"/>, products of constant weights take the cold-weights GEMM table up to its largest N
    /// (a product of two activations, as attention's, reads what the layer before it just wrote).
    /// </summary>
    public double? MeasuredRate(LayerWork work)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (work.Gemm is not { } g || work.ParallelSize is not { } n)
        {
            return null;
        }

        var (table, outputs, reduction, size) = work.Kind switch
        {
            LayerKind.MatMul => ("gemm", g.N, g.K, n),
            LayerKind.PointwiseConvolution => (Precision == "fp16" ? "gemm" : Fp32Dense("pointwise"), g.M, g.K, n),
            LayerKind.StridedPointwiseConvolution => (Fp32Dense("pointwise"), g.M, g.K, n),
            LayerKind.StridedConvolution => (Fp32Dense("conv-s2"), g.M, g.K, n),
            LayerKind.Convolution => ("conv", g.M, g.K, n),
            LayerKind.GroupedConvolution => Grouped("grouped"),
            LayerKind.StridedGroupedConvolution => Grouped("grouped-s2"),
            LayerKind.DepthwiseConvolution => Grouped("depthwise"),
            LayerKind.StridedDepthwiseConvolution => Grouped("depthwise-s2"),
            _ => (string.Empty, 0.0, 0.0, 0.0),
        };
        if (table == "gemm" && WeightsCold && work.WeightBytes > 0 && LayerRates.TryGetValue(Analysis.LayerRates.Key(Precision, "gemm-cold"), out var cold) && cold.Count > 0 && size <= cold.Max(p => p.N))
        {
            // The cold table covers the small N where reading the weights is most of a product's time (ForWeights).
            table = "gemm-cold";
        }

        if (table.Length == 0 || !LayerRates.TryGetValue(Analysis.LayerRates.Key(Precision, table), out var points))
        {
            return null;
        }

        // 1x1 convolutions priced from the "conv" table (files without their own tables) stay with its 56x56 images, its
        // side tables being 3x3 layers'; strided layers take its sides there, as before schema 11.
        var bySides = table is "grouped" or "grouped-s2" or "pointwise" or "conv-s2" || (table == "conv" && work.Kind is LayerKind.Convolution or LayerKind.StridedConvolution);
        if (bySides && work.PixelsPerSample is > 0 && SideTables(table) is { Count: > 1 } bySide)
        {
            // Measured at several output sides: between the two around this layer's (its positions as a square's side).
            return Analysis.LayerRates.Rate(bySide, Math.Sqrt(work.PixelsPerSample.Value), outputs, reduction, size);
        }

        if (table is not ("gemm" or "gemm-cold"))
        {
            return Analysis.LayerRates.Rate(points, outputs, reduction, size);
        }

        // cuBLASLt computes whole tiles: a product whose outputs or K are not a multiple of its tile (RegNet's 72, 168,
        // 408 and 912 channels) computes up to the next one. The tables' nodes are powers of two; such a layer is priced
        // as the padded product at its rate, over its own FLOPs (session 38's H100: RegNetX-016's fp16 1x1s at b=256
        // ran 1.2-1.4x their unpadded table times).
        var (paddedOutputs, paddedReduction) = (GemmTilePadded(outputs), GemmTilePadded(reduction));
        return Analysis.LayerRates.Rate(points, paddedOutputs, paddedReduction, size) * outputs * reduction / (paddedOutputs * paddedReduction);

        // fp32's 1x1 and strided layers from their own cuDNN tables where measured (schema 11), else the 3x3 "conv" table;
        // in fp16 cuDNN runs them on tensor cores at the 3x3 table's rates (no Winograd there).
        string Fp32Dense(string name) => Precision == "fp32" && LayerRates.ContainsKey(Analysis.LayerRates.Key(Precision, name)) ? name : "conv";

        (string, double, double, double) Grouped(string name)
        {
            var (o, k, size) = Analysis.LayerRates.GroupView(g, n);
            return (name, o, k, size);
        }
    }

    /// <summary>
    /// The side-measured table <paramref name="table"/> of the precision in use at every output side measured (side ->
    /// points): the table itself at its own side (28 for the grouped tables, 56 for "conv") and those named "table@side".
    /// </summary>
    private Dictionary<int, IReadOnlyList<LayerRatePoint>> SideTables(string table)
    {
        var prefix = Analysis.LayerRates.Key(Precision, table) + "@";
        var bySide = new Dictionary<int, IReadOnlyList<LayerRatePoint>>();
        foreach (var (key, points) in LayerRates)
        {
            if (key.StartsWith(prefix, StringComparison.Ordinal) && int.TryParse(key.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var side))
            {
                bySide[side] = points;
            }
        }

        if (LayerRates.TryGetValue(Analysis.LayerRates.Key(Precision, table), out var atOwnSide))
        {
            bySide[Analysis.LayerRates.BareTableSide(table)] = atOwnSide;
        }

        return bySide;
    }

    /// <summary>The tile granularity <see cref="MeasuredRate"/> pads a GEMM's outputs and K to (past one tile).</summary>
    internal const double GemmTile = 64;

    /// <summary><paramref name="size"/> up to a multiple of <see cref="GemmTile"/>; a size within one tile as it is (a small product's tile fits it).</summary>
    internal static double GemmTilePadded(double size) => size <= GemmTile ? size : Math.Ceiling(size / GemmTile) * GemmTile;

    /// <summary>Effective GEMM rate at a given N: the peak in use x <see cref="Efficiency"/>.</summary>
    public double EffectiveFlops(double n) => PeakInUse * Efficiency(n);

    /// <summary>
    /// Peak rate for an operator: the fp32 convolution rate for Conv where measured, else the GEMM rate of the precision in
    /// use; with <paramref name="precision"/> "int8" (a layer that runs int8) the int8 rates where measured.
    /// </summary>
    public double PeakFor(string opType, string? precision = null)
    {
        var conv = opType is "Conv" or "ConvTranspose" or "ConvInteger" or "QLinearConv";
        if (precision == "int8" && PeakFlopsInt8 is > 0)
        {
            return conv && PeakConvFlopsInt8 is > 0 ? PeakConvFlopsInt8.Value : PeakFlopsInt8.Value;
        }

        return Precision == "fp32" && conv && PeakConvFlops is > 0 ? PeakConvFlops.Value : PeakInUse;
    }

    /// <summary>
    /// The ceilings that apply to a run with these engine options: the fp16 GEMM ceiling for <see cref="Engines.Precision.Fp16"/>
    /// (and for <see cref="Engines.Precision.Int8"/> where measured),
    /// TF32's for fp32 with <see cref="EngineOptions.AllowTf32"/> (where measured; a CPU has none and stays fp32), else fp32;
    /// on a GPU, per-kernel launches instead of CUDA-graph nodes when graphs are off.
    /// </summary>
    public DeviceCeilings For(EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        // int8: what stays float runs in fp16 on a GPU (where an fp16 ceiling was measured), else in fp32; the layers that
        // run int8 take the int8 ceiling themselves (LayerWork.Precision, PeakFor), so Precision names the float part.
        var precision = options.Precision == Engines.Precision.Fp16 || (options.Precision == Engines.Precision.Int8 && PeakFlopsFp16 is > 0) ? "fp16"
            : options.AllowTf32 && PeakFlopsTf32 is > 0 ? "tf32" : "fp32";
        var selected = WithPrecision(precision);
        if (!options.UseCudaGraph && KernelLaunchSeconds is { } launch && StreamRunOverheadSeconds is { } run)
        {
            selected = selected with { OpOverheadSeconds = launch, RunOverheadSeconds = run, Launch = "stream" };
        }

        return selected;
    }

    /// <summary>These ceilings predicting in another precision (fp32, tf32, fp16): its peak, rate curve and saturation N.</summary>
    public DeviceCeilings WithPrecision(string precision)
    {
        if (PeakOf(precision) is not > 0)
        {
            throw new BatchwiseException(
                $"There is no {precision} GEMM ceiling for {Device} via {Engine}: the engine's probe did not measure one",
                precision == "fp16" ? "Explain with --precision fp32, or with an engine that computes in fp16 (cuda)." : "Explain with --precision fp32.");
        }

        if (precision == Precision)
        {
            return this;
        }

        var curve = RateCurves.TryGetValue(precision, out var c) ? c : [];
        var (saturation, source) = curve.Count > 0 ? CeilingsProbe.FitSaturation(curve.Select(p => (p.N, p.Flops)).ToList(), SaturationN) : (SaturationN, SaturationSource);
        return this with { Precision = precision, SaturationN = saturation, SaturationSource = source };
    }

    /// <summary>One line for tables and logs.</summary>
    public string Summary()
    {
        var c = CultureInfo.InvariantCulture;
        var peaks = Units.FlopRate(PeakFlops) + " fp32 GEMM";
        peaks += PeakFlopsTf32 is { } tf32 ? $", {Units.FlopRate(tf32)} tf32" : string.Empty;
        peaks += PeakFlopsFp16 is { } fp16 ? $", {Units.FlopRate(fp16)} fp16" : string.Empty;
        peaks += PeakConvFlops is { } conv ? $", {Units.FlopRate(conv)} fp32 conv" : string.Empty;
        peaks += PeakFlopsInt8 is { } int8 ? $", {Units.FlopRate(int8).Replace("FLOP/s", "OP/s", StringComparison.Ordinal)} int8" : string.Empty;
        peaks += PeakConvFlopsInt8 is { } convInt8 ? $", {Units.FlopRate(convInt8).Replace("FLOP/s", "OP/s", StringComparison.Ordinal)} int8 conv" : string.Empty;
        var launch = Launch.Length > 0 ? $" ({Launch})" : string.Empty;
        return string.Create(
            c,
            $"{Device} via {Engine}: {peaks}, {BandwidthBytesPerSecond / 1e9:N1} GB/s memory, {RunOverheadSeconds * 1e6:N1} µs per run + {OpOverheadSeconds * 1e6:N2} µs per op{launch}; predicting in {Precision}, GEMM saturates at N ≈ {SaturationN:N0}");
    }
}

/// <summary>Per-machine cache of measured <see cref="DeviceCeilings"/>: one JSON file per machine, engine and device.</summary>
public sealed class CeilingsCache
{
    /// <summary>A cache rooted at <paramref name="directory"/>.</summary>
    public CeilingsCache(string directory) => Directory = directory;

    /// <summary>The folder holding the cache files.</summary>
    public string Directory { get; }

    /// <summary>The user's default cache: $BATCHWISE_CACHE_DIR, else $XDG_CACHE_HOME/batchwise, else ~/.cache/batchwise.</summary>
    public static CeilingsCache Default() => new(Path.Combine(CacheDirectory.Root, "ceilings"));

    /// <summary>The file that holds the ceilings for one machine, engine and device (and the settings that change them).</summary>
    public string PathFor(string machine, string engine, string device, string settings = "")
    {
        var key = $"{machine}|{engine}|{device}|{settings}";
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)))[..12];
        return Path.Combine(Directory, $"{Sanitize(machine)}-{Sanitize(engine)}-{hash}.json");
    }

    /// <summary>
    /// Reads cached ceilings, or null when absent, unreadable or of another schema (with <paramref name="olderSchemas"/>,
    /// one from <see cref="DeviceCeilings.OldestReadableSchema"/> on: a file the user named, not the cache).
    /// </summary>
    public DeviceCeilings? TryRead(string path, bool olderSchemas = false)
    {
        try
        {
            if (!File.Exists(path))
            {
                return null;
            }

            var c = JsonSerializer.Deserialize(File.ReadAllText(path), CeilingsJsonContext.Default.DeviceCeilings);
            var schemaRead = c is not null && (c.Schema == DeviceCeilings.CurrentSchema || (olderSchemas && c.Schema is >= DeviceCeilings.OldestReadableSchema and < DeviceCeilings.CurrentSchema));
            return schemaRead && c is { PeakFlops: > 0, BandwidthBytesPerSecond: > 0, SaturationN: > 0 } ? c : null;
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or NotSupportedException)
        {
            // A damaged cache is re-measured, not an error.
            return null;
        }
    }

    /// <summary>Writes ceilings atomically (temp file then rename).</summary>
    public void Write(string path, DeviceCeilings ceilings)
    {
        try
        {
            System.IO.Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
            var temp = path + "." + Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + ".tmp";
            File.WriteAllText(temp, JsonSerializer.Serialize(ceilings, CeilingsJsonContext.Default.DeviceCeilings));
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BatchwiseException($"Cannot write the device-ceilings cache '{path}': {e.Message}", "Set BATCHWISE_CACHE_DIR or XDG_CACHE_HOME to a writable folder.", e);
        }
    }

    private static string Sanitize(string s)
    {
        var chars = s.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_').ToArray();
        var text = new string(chars);
        return text.Length > 40 ? text[..40] : text;
    }
}

/// <summary>The ceilings cache's generated serializer (snake_case, nulls left out), as every report's is.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(DeviceCeilings))]
internal sealed partial class CeilingsJsonContext : JsonSerializerContext;
