using System.Globalization;
using OnnxProto = Onnx;

namespace Batchwise.Analysis;

/// <summary>Which library routine an engine runs a layer with, as far as the graph tells: decides which measured rate table prices it.</summary>
public enum LayerKind
{
    /// <summary>Not a GEMM-like layer (elementwise, normalization, pooling, data movement).</summary>
    Other,

    /// <summary>MatMul or Gemm: a dense matrix product (cuBLASLt on a GPU).</summary>
    MatMul,

    /// <summary>A dense stride-1 convolution with a spatial kernel, or a padded or dilated 1x1 (cuDNN on a GPU).</summary>
    Convolution,

    /// <summary>A 1x1, stride-1, unpadded, single-group convolution (one cuBLASLt GEMM in the cuda engine's fp16 path, cuDNN in fp32).</summary>
    PointwiseConvolution,

    /// <summary>
    /// A dense convolution with a spatial kernel and a stride above 1 (ResNet's stride-2 3x3s, a 7x7 stem; cuDNN on a GPU):
    /// in fp32 priced from the "conv-s2" tables, as cuDNN's Winograd algorithms that make its stride-1 3x3s fast do not
    /// take a stride.
    /// </summary>
    StridedConvolution,

    /// <summary>A 1x1 convolution with a stride above 1 (ResNet's projection shortcuts; cuDNN on a GPU): in fp32 priced from the "pointwise" tables at its output side.</summary>
    StridedPointwiseConvolution,

    /// <summary>
    /// A grouped convolution (1 &lt; groups, more than one input channel per group): the cuda engine's own tensor-core
    /// kernel for some group widths in fp16, cuDNN's grouped kernels otherwise; priced from the "grouped" table.
    /// </summary>
    GroupedConvolution,

    /// <summary>
    /// A grouped convolution with a stride above 1 (RegNet's first block of each stage): the same routine as
    /// <see cref="GroupedConvolution"/>, whose strided input tile loads make it slower per FLOP (the own kernel ran
    /// RegNetX's stride-2 layers at about half its stride-1 rate); priced from the "grouped-s2" table.
    /// </summary>
    StridedGroupedConvolution,

    /// <summary>A stride-1 depthwise convolution (one input channel per group): the cuda engine's own depthwise kernel; priced from the "depthwise" table.</summary>
    DepthwiseConvolution,

    /// <summary>A depthwise convolution with a stride above 1 (each output reads a wider window of input); priced from the "depthwise-s2" table.</summary>
    StridedDepthwiseConvolution,
}

/// <summary>
/// One measured point of a layer-class rate table: a layer of <paramref name="Outputs"/> output channels (columns of a
/// MatMul) and reduction length <paramref name="Reduction"/> (K), at batch-scaled size <paramref name="N"/>, ran at
/// <paramref name="Flops"/> FLOP/s (timed per call inside a CUDA graph of many calls, so the host cost is not in it).
/// </summary>
/// <param name="Outputs">GEMM M of a convolution (output channels), N of a MatMul (output columns).</param>
/// <param name="Reduction">GEMM K.</param>
/// <param name="N">The dimension that grows with the batch (batch x out-H x out-W; the rows of a MatMul).</param>
/// <param name="Flops">Measured rate, FLOP/s.</param>
public sealed record LayerRatePoint(double Outputs, double Reduction, double N, double Flops);

/// <summary>
/// Rates read off measured layer-class tables: each (outputs, reduction) pair measured is a node with a rate curve over
/// N; a layer's rate is its nodes' rates at its N, interpolated bilinearly in log outputs and log reduction (the largest
/// node's rate past the measured range, the smallest node's time below it), each curve interpolated in log N between its
/// measured points as they are (a lower rate at a larger N is kept: the routine changed algorithm or tile there, or left
/// the cache, and the engine meets the same size), with the same time (not the same rate) below its smallest N and its
/// largest N's rate past it.
/// </summary>
public static class LayerRates
{
    /// <summary>
    /// Table names: "gemm" (cuBLASLt), "gemm-cold" (cuBLASLt with each call's weights read from memory, small N), "conv" (cuDNN 3x3), "pointwise" and "conv-s2" (cuDNN fp32 1x1 and stride-2 3x3), "grouped" / "grouped-s2" (grouped 3x3 convolutions at stride 1 / 2 as the engine runs them) and
    /// "depthwise" / "depthwise-s2" (the engine's depthwise kernel at stride 1 / 2), keyed with the precision as "fp16/gemm".
    /// The grouped and depthwise tables are in the per-group view of <see cref="GroupView"/>.
    /// </summary>
    public static string Key(string precision, string table) => precision + "/" + table;

    /// <summary>
    /// The name of a grouped table measured at another output side than the 28x28 of "grouped" / "grouped-s2" ("grouped@14"),
    /// or of a 3x3 convolution table at another side than the 56x56 of "conv" ("conv@14").
    /// <see cref="DeviceCeilings.MeasuredRate"/> interpolates between the sides measured by a layer's own.
    /// </summary>
    public static string SideTable(string table, int side) => string.Create(CultureInfo.InvariantCulture, $"{table}@{side}");

    /// <summary>The name of a dense convolution table ("conv", "pointwise", "conv-s2") at an output side: the bare name at its <see cref="BareTableSide"/>, else <see cref="SideTable"/>.</summary>
    public static string ConvTableName(string table, int side) => side == BareTableSide(table) ? table : SideTable(table, side);

    /// <summary>The output side a side-measured table's bare name stands for: <see cref="GroupedTableSide"/> for the grouped tables, <see cref="ConvTableSide"/> for the dense convolution tables.</summary>
    public static int BareTableSide(string table) => table is "grouped" or "grouped-s2" ? GroupedTableSide : ConvTableSide;

    /// <summary>The output side of the grouped tables without a side in their name.</summary>
    public const int GroupedTableSide = 28;

    /// <summary>
    /// The output side of the "conv" table without a side in its name, past one image (its N from 3,136 on are 56x56
    /// images; below, one square image of N positions, as a layer of that side at batch 1 is).
    /// </summary>
    public const int ConvTableSide = 56;

    /// <summary>
    /// The rate of a grouped layer whose output is <paramref name="side"/> wide from the tables of one kind measured at
    /// several sides (<paramref name="bySide"/>: side -> table): log-linear in the side between the two measured sides
    /// around it, the nearest side's outside them (a grouped kernel's rate is not one per group over groups x pixels: its
    /// tiles cover a group's pixels, so fewer pixels a group leave more of each tile and of the device idle).
    /// </summary>
    public static double? Rate(IReadOnlyDictionary<int, IReadOnlyList<LayerRatePoint>> bySide, double side, double outputs, double reduction, double n)
    {
        ArgumentNullException.ThrowIfNull(bySide);
        var sides = bySide.Where(t => t.Value.Count > 0).Select(t => (double)t.Key).ToList();
        if (sides.Count == 0 || side <= 0)
        {
            return null;
        }

        var (low, high, t) = Bracket(sides, side);
        if (Rate(bySide[(int)low], outputs, reduction, n) is not { } atLow || Rate(bySide[(int)high], outputs, reduction, n) is not { } atHigh)
        {
            return null;
        }

        return Math.Exp(((1 - t) * Math.Log(atLow)) + (t * Math.Log(atHigh)));
    }

    /// <summary>The rate (FLOP/s) a table gives a layer of these dimensions, or null for an empty table or a non-positive size.</summary>
    public static double? Rate(IReadOnlyList<LayerRatePoint> table, double outputs, double reduction, double n)
    {
        ArgumentNullException.ThrowIfNull(table);
        var points = table.Where(p => p is { Outputs: > 0, Reduction: > 0, N: > 0, Flops: > 0 }).ToList();
        if (points.Count == 0 || outputs <= 0 || reduction <= 0 || n <= 0)
        {
            return null;
        }

        var nodes = points.GroupBy(p => (p.Outputs, p.Reduction)).ToDictionary(g => g.Key, g => g.OrderBy(p => p.N).ToList());
        var (o0, o1, to) = Bracket(nodes.Keys.Select(k => k.Outputs), outputs);
        var (r0, r1, tr) = Bracket(nodes.Keys.Select(k => k.Reduction), reduction);
        double LogRateAt(double o, double r)
        {
            // A grid with a hole: the nearest measured node (in log distance) stands in.
            var key = nodes.ContainsKey((o, r)) ? (o, r)
                : nodes.Keys.MinBy(k => Math.Pow(Math.Log(k.Outputs / o), 2) + Math.Pow(Math.Log(k.Reduction / r), 2));
            return Math.Log(CurveRate(nodes[key], n));
        }

        var low = ((1 - tr) * LogRateAt(o0, r0)) + (tr * LogRateAt(o0, r1));
        var high = ((1 - tr) * LogRateAt(o1, r0)) + (tr * LogRateAt(o1, r1));

        // Smaller than the smallest measured outputs or K: the same time as there (a call's minimum), not the same rate.
        var smaller = Math.Min(1, outputs / nodes.Keys.Min(k => k.Outputs)) * Math.Min(1, reduction / nodes.Keys.Min(k => k.Reduction));
        return Math.Exp(((1 - to) * low) + (to * high)) * smaller;
    }

    /// <summary>
    /// One node's rate at N: log-linear between its measured points (a dip at a larger N is what the routine does there:
    /// cuDNN's algorithms whose workspace grows with the batch drop out past the engine's workspace limit), the same time
    /// below the first, the last point's rate past the last.
    /// </summary>
    internal static double CurveRate(IReadOnlyList<LayerRatePoint> curve, double n)
    {
        var logN = Math.Log(n);
        if (logN <= Math.Log(curve[0].N))
        {
            return curve[0].Flops * n / curve[0].N;
        }

        for (var i = 1; i < curve.Count; i++)
        {
            double n0 = Math.Log(curve[i - 1].N), n1 = Math.Log(curve[i].N);
            if (logN <= n1)
            {
                var t = n1 > n0 ? (logN - n0) / (n1 - n0) : 1;
                return Math.Exp(Math.Log(curve[i - 1].Flops) + (t * (Math.Log(curve[i].Flops) - Math.Log(curve[i - 1].Flops))));
            }
        }

        return curve[^1].Flops;
    }

    /// <summary>
    /// A grouped or depthwise convolution as a table point: outputs per group (1 for depthwise), its K (input channels per
    /// group x window) and N x groups (the groups are independent small convolutions side by side, so a layer of G groups
    /// over P pixels moves and computes as one group over G x P pixels). The tables are measured and read in this view.
    /// </summary>
    public static (double Outputs, double Reduction, double N) GroupView(GemmShape gemm, double n)
    {
        ArgumentNullException.ThrowIfNull(gemm);
        var groups = Math.Max(1, gemm.Groups);
        return ((double)gemm.M / groups, gemm.K, n * groups);
    }

    /// <summary>The measured values either side of <paramref name="x"/> and where it sits between them in log scale (0..1, clamped).</summary>
    private static (double Low, double High, double T) Bracket(IEnumerable<double> values, double x)
    {
        var sorted = values.Distinct().Order().ToList();
        if (x <= sorted[0])
        {
            return (sorted[0], sorted[0], 0);
        }

        for (var i = 1; i < sorted.Count; i++)
        {
            if (x <= sorted[i])
            {
                return (sorted[i - 1], sorted[i], Math.Log(x / sorted[i - 1]) / Math.Log(sorted[i] / sorted[i - 1]));
            }
        }

        return (sorted[^1], sorted[^1], 0);
    }

    /// <summary>What a node is, for the rate tables: from its operator, its convolution attributes and its filter's shape.</summary>
    internal static LayerKind KindOf(OnnxProto.NodeProto node, IReadOnlyDictionary<string, OnnxProto.TensorProto> initializers)
    {
        switch (node.OpType)
        {
            case "MatMul" or "Gemm":
                return LayerKind.MatMul;
            case "Conv" or "ConvTranspose":
                break;
            default:
                return LayerKind.Other;
        }

        long[] Ints(string name) => node.Attribute.FirstOrDefault(a => a.Name == name)?.Ints.ToArray() ?? [];
        var groups = node.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1;
        var w = node.Input.Count > 1 && initializers.TryGetValue(node.Input[1], out var filter) ? filter : null;
        var strided = Ints("strides").Any(s => s > 1);
        if (groups > 1)
        {
            // Depthwise as the engine's own kernel takes it: one input and one output channel per group (a Conv; a
            // ConvTranspose or a channel multiplier goes to cuDNN's grouped kernels).
            var depthwise = node.OpType == "Conv" && w is { Dims.Count: > 2 } && w.Dims[0] == groups && w.Dims[1] == 1;
            return !depthwise ? (strided ? LayerKind.StridedGroupedConvolution : LayerKind.GroupedConvolution)
                : strided ? LayerKind.StridedDepthwiseConvolution
                : LayerKind.DepthwiseConvolution;
        }

        var kernel = Ints("kernel_shape");
        if (kernel.Length == 0 && w is { Dims.Count: > 2 })
        {
            kernel = [.. w.Dims.Skip(2)];
        }

        var oneByOne = node.OpType == "Conv" && kernel.Length > 0 && kernel.All(k => k == 1) && Ints("dilations").All(d => d == 1) && Ints("pads").All(p => p == 0);
        return (oneByOne, strided && node.OpType == "Conv") switch
        {
            (true, false) => LayerKind.PointwiseConvolution,
            (true, true) => LayerKind.StridedPointwiseConvolution,
            (false, true) => LayerKind.StridedConvolution,
            _ => LayerKind.Convolution,
        };
    }
}
