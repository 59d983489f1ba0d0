using System.Globalization;

namespace Batchwise.Analysis;

/// <summary>What limits a layer's time: arithmetic, memory traffic, or the fixed cost of dispatching it.</summary>
public enum Bound
{
    /// <summary>FLOPs at the (size-dependent) GEMM rate take longest.</summary>
    Compute,

    /// <summary>Bytes at the memory bandwidth take longest.</summary>
    Memory,

    /// <summary>The per-op dispatch or kernel-launch cost exceeds both.</summary>
    Launch,
}

/// <summary>
/// One layer's work at one batch and input size: what the predictor needs from the cost model.
/// <see cref="ParallelSize"/> is the GEMM dimension that grows with the batch and spreads the work over the
/// device's compute units: N (batch x out-H x out-W) for a convolution, the rows (batch x sequence, times
/// the batched count) for a MatMul or Gemm.
/// </summary>
/// <param name="Name">Node name.</param>
/// <param name="OpType">ONNX operator.</param>
/// <param name="Flops">Floating-point operations (2 per multiply-add).</param>
/// <param name="Bytes">Bytes read and written (weights and activations).</param>
/// <param name="Gemm">The GEMM view M/N/K for Conv, MatMul and Gemm.</param>
/// <param name="ParallelSize">The batch-scaled GEMM dimension, for Conv, MatMul and Gemm.</param>
/// <param name="LaunchesKernel">False for views (Reshape, Flatten) that engines run without a kernel.</param>
/// <param name="Kind">Which routine runs it (decides which measured rate table prices it).</param>
/// <param name="Role">How the layer runs in a quantized model: int8 (at the int8 ceiling, int8 bytes), a quantize or dequantize pass, or float.</param>
/// <param name="LatencyRounds">
/// For a kernel that is not a library GEMM: the dependent memory round trips its threads wait on, over its kernels (a split
/// reduction's partial pass and finishing pass, <see cref="SpatialReduction"/>); each costs at least the kernel floor, which
/// is one launch and one DRAM round trip. 1 for a pass that streams its bytes.
/// </param>
/// <param name="WeightBytes">The constant operands' bytes within <paramref name="Bytes"/> (0 for a product of two activations, as attention's).</param>
/// <param name="PixelsPerSample">A convolution's output positions per sample (its N at batch 1); null elsewhere. The grouped tables' rate depends on it, not only on N x groups (<see cref="LayerRates.SideTable"/>).</param>
public sealed record LayerWork(string Name, string OpType, double Flops, double Bytes, GemmShape? Gemm = null, long? ParallelSize = null, bool LaunchesKernel = true, LayerKind Kind = LayerKind.Other, QuantizedRole Role = QuantizedRole.Float, int LatencyRounds = 1, double WeightBytes = 0, long? PixelsPerSample = null)
{
    /// <summary>True for a layer that runs in int8.</summary>
    public bool IsInt8 => Role == QuantizedRole.Int8;

    /// <summary>FLOPs per byte moved.</summary>
    public double Intensity => Bytes > 0 ? Flops / Bytes : 0;

    /// <summary>True for grouped and depthwise convolutions (priced from the grouped and depthwise tables).</summary>
    public bool IsGroupedConvolution => Kind is LayerKind.GroupedConvolution or LayerKind.StridedGroupedConvolution or LayerKind.DepthwiseConvolution or LayerKind.StridedDepthwiseConvolution;

    /// <summary>True for layers that run as a GEMM (Conv, MatMul, Gemm).</summary>
    public bool IsGemm => ParallelSize is not null;

    /// <summary>M / N / K as text (with the batched count), or "-".</summary>
    public string GemmText => Gemm is { } g
        ? string.Create(CultureInfo.InvariantCulture, $"{(g.BatchCount > 1 ? $"{g.BatchCount:N0} x " : string.Empty)}{g.M:N0} / {g.N:N0} / {g.K:N0}")
        : "-";
}

/// <summary>Predicted time of one layer.</summary>
/// <param name="Work">The layer's work.</param>
/// <param name="ComputeSeconds">FLOPs over the effective GEMM rate at this N.</param>
/// <param name="MemorySeconds">Bytes over the bandwidth.</param>
/// <param name="OverheadSeconds">Per-op dispatch (CPU) or launch (GPU) cost.</param>
/// <param name="Efficiency">Fraction of peak rate available at this N (<see cref="DeviceCeilings.Efficiency"/>: the measured rate curve, else min(1, N / SaturationN)); 1 for non-GEMM layers.</param>
public sealed record LayerPrediction(LayerWork Work, double ComputeSeconds, double MemorySeconds, double OverheadSeconds, double Efficiency)
{
    /// <summary>max(compute, memory) + overhead: the roofline time plus dispatch.</summary>
    public double Seconds => Math.Max(ComputeSeconds, MemorySeconds) + OverheadSeconds;

    /// <summary>What dominates.</summary>
    public Bound Bound => OverheadSeconds >= Math.Max(ComputeSeconds, MemorySeconds) ? Bound.Launch
        : ComputeSeconds >= MemorySeconds ? Bound.Compute : Bound.Memory;

    /// <summary>Achieved FLOP/s under the prediction (for the roofline plot).</summary>
    public double AttainedFlops => Seconds > 0 ? Work.Flops / Seconds : 0;
}

/// <summary>Predicted time of one run at one batch size.</summary>
/// <param name="BatchSize">Samples per run.</param>
/// <param name="RunOverheadSeconds">Fixed cost of a run.</param>
/// <param name="Layers">Every layer's prediction.</param>
/// <param name="SustainedFactor">
/// The share of the full clock's compute rate the run keeps under sustained load (<see cref="DeviceCeilings.SustainedFactor"/>),
/// already applied to <paramref name="Layers"/>' compute time; 1 where the ceilings measured none or the run keeps the clock.
/// </param>
/// <param name="FullClockActivity">The share of the peak arithmetic the run keeps busy at the full clock (<see cref="ThroughputPredictor.Activity"/>), which set <paramref name="SustainedFactor"/>.</param>
public sealed record BatchPrediction(int BatchSize, double RunOverheadSeconds, IReadOnlyList<LayerPrediction> Layers, double SustainedFactor = 1.0, double FullClockActivity = 0)
{
    /// <summary>Predicted latency of one run.</summary>
    public double Seconds => RunOverheadSeconds + Layers.Sum(l => l.Seconds);

    /// <summary>Predicted samples per second.</summary>
    public double Throughput => BatchSize / Seconds;

    /// <summary>Seconds spent in layers of each bound, plus run overhead counted as launch.</summary>
    public double SecondsBoundBy(Bound bound) => Layers.Where(l => l.Bound == bound).Sum(l => l.Seconds) + (bound == Bound.Launch ? RunOverheadSeconds : 0);
}

/// <summary>
/// Roofline prediction: each layer takes max(FLOPs / effective peak, bytes / bandwidth) plus a per-op
/// overhead, where the effective peak of a GEMM is peak x efficiency(N): the device's measured rate at that N over
/// its best rate (a GEMM whose N is smaller than the device's parallel width leaves compute units idle, and a
/// small N also streams the weights for little work); a run adds a fixed overhead.
/// </summary>
public sealed class ThroughputPredictor
{
    /// <summary>A predictor for one device.</summary>
    public ThroughputPredictor(DeviceCeilings ceilings) => Ceilings = ceilings ?? throw new ArgumentNullException(nameof(ceilings));

    /// <summary>The device's ceilings.</summary>
    public DeviceCeilings Ceilings { get; }

    /// <summary>Predicts one layer.</summary>
    public LayerPrediction Predict(LayerWork work)
    {
        ArgumentNullException.ThrowIfNull(work);
        var memory = work.Bytes / Ceilings.BandwidthBytesPerSecond;
        var stream = Ceilings.Launch == "stream";

        // A kernel that is not a library GEMM costs at least a small kernel's time in a graph (where measured). A chain of
        // dependent memory round trips (a split reduction: two kernels, each a few loads deep a thread) costs a floor per
        // round past the first, as far as streaming its bytes does not already take that long.
        var floor = Ceilings.KernelFloorSeconds ?? Ceilings.OpOverheadSeconds;
        var overhead = !work.LaunchesKernel ? 0 : stream ? Ceilings.OpOverheadSeconds : floor + Math.Max(0, (floor * (Math.Max(1, work.LatencyRounds) - 1)) - memory);
        if (work.IsInt8 && Ceilings.HasInt8)
        {
            // An int8 layer takes the int8 ceiling and its curve (the measured rate tables are the float routines').
            var int8Efficiency = work.ParallelSize is { } m ? Ceilings.Efficiency(m, "int8") : 1.0;
            return new LayerPrediction(work, work.Flops / (Ceilings.PeakFor(work.OpType, "int8") * int8Efficiency), memory, overhead, int8Efficiency);
        }

        if (Ceilings.MeasuredRate(work) is { } rate)
        {
            // The routine's own measured rate at this layer's size, timed per call inside a CUDA graph of repeats of that
            // call, plus one dispatch: the host's launch without a graph; with one, a graph node's cost. Repeats of one
            // call overlap each launch with the call before (the table's time holds little of it); in a model every
            // layer is another kernel after another, and pays it. Session 38's H100 study: RegNetX-016 fp16 at b=4 ran
            // its cuBLASLt 1x1s 1.4-1.9 us and its own grouped kernels 0.6-0.9 us a layer above their table times (per-step
            // profile less the events' cost), and replayed over the study's 22 runs this term took the mean error from
            // 11.8% to 9.9% (bench/explain-replay.sh).
            return new LayerPrediction(work, work.Flops / rate, memory, Ceilings.OpOverheadSeconds, rate / Ceilings.PeakInUse);
        }

        if (work.IsGroupedConvolution && Ceilings.KernelFloorSeconds is not null)
        {
            // No grouped or depthwise table was measured (an older probe, or one that failed): the fp32 FMA rate, not tensor cores.
            return new LayerPrediction(work, work.Flops / Ceilings.PeakFlops, memory, overhead, Ceilings.PeakFlops / Ceilings.PeakInUse);
        }

        var efficiency = work.ParallelSize is { } n ? Ceilings.Efficiency(n) : 1.0;
        var compute = work.Flops / (Ceilings.PeakFor(work.OpType) * efficiency);
        return new LayerPrediction(work, compute, memory, overhead, efficiency);
    }

    /// <summary>
    /// Predicts one run of every layer at one batch size. The layers are priced at the full clock (the probe's rates are
    /// short bursts); where the ceilings measured the sustained load, the run's activity at that clock (its FLOPs at the
    /// peak rate of each layer's arithmetic, over its time) gives the share of the compute rate it keeps once the power
    /// limit has lowered the clock, and each layer's compute time is divided by it (memory and launch costs stay).
    /// </summary>
    public BatchPrediction Predict(int batchSize, IReadOnlyList<LayerWork> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        var full = new BatchPrediction(batchSize, Ceilings.RunOverheadSeconds, layers.Select(Predict).ToList());
        var activity = Activity(full);
        var factor = Ceilings.SustainedFactor(activity);
        return factor >= 1.0 ? full with { FullClockActivity = activity }
            : full with { Layers = full.Layers.Select(l => l with { ComputeSeconds = l.ComputeSeconds / factor }).ToList(), SustainedFactor = factor, FullClockActivity = activity };
    }

    /// <summary>
    /// The share of the peak arithmetic of the precision in use a run keeps busy: each layer's compute time times its
    /// efficiency (its FLOPs at the peak rate of its own arithmetic), over the run's time.
    /// </summary>
    private static double Activity(BatchPrediction prediction)
    {
        ArgumentNullException.ThrowIfNull(prediction);
        var seconds = prediction.Seconds;
        return seconds > 0 ? prediction.Layers.Sum(l => l.ComputeSeconds * l.Efficiency) / seconds : 0;
    }

    /// <summary>Predicts a throughput curve: <paramref name="layersAt"/> gives the layers' work at a batch size.</summary>
    public IReadOnlyList<BatchPrediction> Predict(IEnumerable<int> batchSizes, Func<int, IReadOnlyList<LayerWork>> layersAt)
    {
        ArgumentNullException.ThrowIfNull(batchSizes);
        ArgumentNullException.ThrowIfNull(layersAt);
        return batchSizes.Select(b => Predict(b, layersAt(b))).ToList();
    }

    /// <summary>The smallest batch at which a GEMM with <paramref name="nPerSample"/> (its batch-scaled size at batch 1) fills the device.</summary>
    public int SaturationBatch(long nPerSample) => nPerSample <= 0 ? int.MaxValue : (int)Math.Min(int.MaxValue, Math.Max(1, Math.Ceiling(Ceilings.SaturationN / nPerSample)));
}
