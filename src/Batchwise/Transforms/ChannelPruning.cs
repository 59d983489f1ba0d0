using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>
/// Structured L1 filter pruning: removes the output channels of convolutions with the smallest L1 norms, with consistent
/// surgery downstream. Channels flow through BatchNormalization, activations, pooling, Resize and depthwise convolutions;
/// channels joined by an elementwise Add/Mul (residual connections, SiLU) form one group, pruned together (scored by the
/// sum of its convolutions' normalized L1 norms) or not at all; a channel Concat read only by convolutions passes each
/// input's kept channels on at that input's offset; a group that reaches anything else (Split, Reshape, Flatten+Gemm,
/// a Concat read by other operators, a graph output) is kept whole.
/// </summary>
public sealed class ChannelPruning : IModelTransform
{
    private static readonly HashSet<string> Unary = new(StringComparer.Ordinal)
    {
        "Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus", "Identity", "Dropout",
        "MaxPool", "AveragePool", "Resize", "BatchNormalization",
    };

    private static readonly HashSet<string> Elementwise = new(StringComparer.Ordinal) { "Add", "Sub", "Mul", "Div", "Max", "Min" };

    /// <summary>Creates a pruning of <paramref name="ratio"/> of the channels (0 &lt; ratio &lt; 1).</summary>
    public ChannelPruning(double ratio)
    {
        if (!(ratio > 0 && ratio < 1))
        {
            throw new BatchwiseException($"--prune ratio must be between 0 and 1 (exclusive), got {ratio.ToString(System.Globalization.CultureInfo.InvariantCulture)}", "Write e.g. --prune 0.25 to remove a quarter of the channels.");
        }

        Ratio = ratio;
    }

    /// <summary>Share of channels removed from each prunable group.</summary>
    public double Ratio { get; }

    /// <summary>Cost before the last <see cref="Apply"/>.</summary>
    public CostSummary? Before { get; private set; }

    /// <summary>Cost after the last <see cref="Apply"/>.</summary>
    public CostSummary? After { get; private set; }

    /// <inheritdoc/>
    public string Name => "prune";

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph;
        Before = CostSummary.Of(model);
        var shapes = ModelProbe.Run(model, SeededInputs.Create(model, 1)).ToDictionary(p => p.Key, p => p.Value.Shape, StringComparer.Ordinal);
        var inits = GraphSurgery.Initializers(graph);
        var uses = graph.Node.SelectMany(n => n.Input).GroupBy(i => i, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var parent = new Dictionary<string, string>(StringComparer.Ordinal);
        var blocked = new HashSet<string>(StringComparer.Ordinal);

        string Find(string x)
        {
            while (parent.TryGetValue(x, out var p) && p != x)
            {
                parent[x] = parent.GetValueOrDefault(p, p);
                x = p;
            }

            return x;
        }

        void Union(string a, string b)
        {
            var (ra, rb) = (Find(a), Find(b));
            if (ra != rb)
            {
                parent[ra] = rb;
            }
        }

        bool Channels(string v, out long c)
        {
            c = shapes.TryGetValue(v, out var s) && s.Length == 4 ? s[1] : -1;
            return c > 0;
        }

        bool OwnWeight(string name) => inits.ContainsKey(name) && uses.GetValueOrDefault(name) == 1;

        var sources = new List<OnnxProto.NodeProto>();
        var depthwise = new List<OnnxProto.NodeProto>();
        var sinks = new List<OnnxProto.NodeProto>();
        var norms = new List<OnnxProto.NodeProto>();
        var concats = new List<OnnxProto.NodeProto>();
        foreach (var n in graph.Node)
        {
            var data = n.Input.Count > 0 ? n.Input[0] : string.Empty;
            var isActivation = data.Length > 0 && !inits.ContainsKey(data);
            if (n.OpType == "Conv" && n.Domain.Length == 0 && inits.TryGetValue(n.Input[1], out var w) && OwnWeight(n.Input[1])
                && (n.Input.Count < 3 || n.Input[2].Length == 0 || OwnWeight(n.Input[2])) && w.Dims.Count == 4)
            {
                var group = GraphSurgery.Int(n, "group", 1);
                if (group == 1)
                {
                    sources.Add(n);
                    sinks.Add(n);
                    continue;
                }

                if (Channels(data, out var cin) && group == cin && w.Dims[0] == cin && w.Dims[1] == 1)
                {
                    depthwise.Add(n);
                    Union(data, n.Output[0]);
                    continue;
                }
            }

            if (n.Domain.Length == 0 && Unary.Contains(n.OpType) && isActivation && Channels(data, out var c1) && Channels(n.Output[0], out var c2) && c1 == c2
                && n.Output.Skip(1).All(o => o.Length == 0 || !uses.ContainsKey(o))
                && (n.OpType != "BatchNormalization" || n.Input.Skip(1).All(OwnWeight)))
            {
                if (n.OpType == "BatchNormalization")
                {
                    norms.Add(n);
                }

                Union(data, n.Output[0]);
                continue;
            }

            if (n.Domain.Length == 0 && Elementwise.Contains(n.OpType) && Channels(n.Output[0], out var co))
            {
                var ok = true;
                foreach (var i in n.Input)
                {
                    if (inits.TryGetValue(i, out var t))
                    {
                        ok &= t.ElementCount() == 1;
                    }
                    else if (Channels(i, out var ci) && ci == co)
                    {
                        Union(i, n.Output[0]);
                    }
                    else
                    {
                        ok = false;
                    }
                }

                if (ok)
                {
                    continue;
                }
            }

            // A channel Concat is a new channel space made of its inputs' channels; it is rewritten only when convolutions alone read it (checked below).
            if (n.OpType == "Concat" && n.Domain.Length == 0 && Channels(n.Output[0], out _) && (GraphSurgery.Int(n, "axis", 0) is 1 or -3)
                && n.Input.All(i => !inits.ContainsKey(i) && Channels(i, out _)))
            {
                concats.Add(n);
                continue;
            }

            // Anything else constrains: the channels it reads and writes stay as they are.
            blocked.UnionWith(n.Input.Where(i => i.Length > 0));
            blocked.UnionWith(n.Output);
        }

        blocked.UnionWith(graph.Output.Select(o => o.Name));
        blocked.UnionWith(graph.Input.Select(i => i.Name));

        var sinkSet = sinks.ToHashSet();
        var readers = GraphSurgery.Consumers(graph);
        foreach (var c in concats.ToList())
        {
            var ok = !blocked.Contains(c.Output[0]) && readers.TryGetValue(c.Output[0], out var r)
                && r.All(x => sinkSet.Contains(x) && x.Input[0] == c.Output[0] && !x.Input.Skip(1).Contains(c.Output[0]));
            if (!ok)
            {
                blocked.UnionWith(c.Input);
                concats.Remove(c);
            }
        }

        // Sinks read input channels of a group; a sink whose input is not a prunable group is simply left alone.
        var blockedRoots = blocked.Select(Find).ToHashSet(StringComparer.Ordinal);
        var groups = sources.GroupBy(s => Find(s.Output[0]), StringComparer.Ordinal).ToList();
        var keptByGroup = new Dictionary<string, int[]>(StringComparer.Ordinal);
        int prunedGroups = 0, constrainedGroups = 0, tooNarrow = 0;
        foreach (var g in groups)
        {
            if (blockedRoots.Contains(g.Key) || !Channels(g.First().Output[0], out var channels))
            {
                constrainedGroups++;
                continue;
            }

            var score = new double[channels];
            foreach (var s in g)
            {
                var w = inits[s.Input[1]].ToFloats();
                var per = w.Length / (int)channels;
                var l1 = new double[channels];
                for (var i = 0; i < w.Length; i++)
                {
                    l1[i / per] += Math.Abs(w[i]);
                }

                var mean = l1.Average();
                for (var c = 0; c < channels; c++)
                {
                    score[c] += mean > 0 ? l1[c] / mean : 0;
                }
            }

            var keep = (int)Math.Max(1, Math.Round(channels * (1 - Ratio)));
            if (keep >= channels)
            {
                tooNarrow++;
                continue;
            }

            keptByGroup[g.Key] = Enumerable.Range(0, (int)channels).OrderByDescending(c => score[c]).ThenBy(c => c).Take(keep).Order().ToArray();
            prunedGroups++;
        }

        if (prunedGroups == 0)
        {
            var why = groups.Count == 0
                ? sources.Count == 0 && depthwise.Count == 0
                    ? "it has no Conv with its own float32 weight initializer"
                    : "none of its convolutions starts a channel group (no plain Conv with its own weight)"
                : tooNarrow > 0
                    ? $"{tooNarrow} channel groups are too narrow to lose {Ratio:P0} of a channel and {constrainedGroups} are kept whole by what reads them"
                    : $"all {groups.Count} channel groups are kept whole by what reads them (Split, Reshape, Flatten+Gemm, a graph output, an operator pruning does not follow)";
            throw new BatchwiseException($"--prune {Ratio.ToString(System.Globalization.CultureInfo.InvariantCulture)} would prune nothing in '{model.Name}': {why}", "Pruning needs convolutions whose output channels flow only through operators it follows (BatchNormalization, activations, pooling, Add/Mul, Concat into convolutions); run without --prune.");
        }

        // A Concat keeps, per input, that input's kept channels shifted by the input's offset.
        var keptByConcat = new Dictionary<string, int[]>(StringComparer.Ordinal);
        foreach (var c in concats)
        {
            var kept = new List<int>();
            var offset = 0;
            var changed = false;
            foreach (var i in c.Input)
            {
                Channels(i, out var ci);
                var k = keptByGroup.GetValueOrDefault(Find(i));
                changed |= k is not null;
                kept.AddRange((k ?? Enumerable.Range(0, (int)ci)).Select(x => x + offset));
                offset += (int)ci;
            }

            if (changed)
            {
                keptByConcat[c.Output[0]] = [.. kept];
            }
        }

        int[]? KeptFor(string value) => keptByConcat.GetValueOrDefault(value) ?? keptByGroup.GetValueOrDefault(Find(value));

        foreach (var s in sources)
        {
            if (KeptFor(s.Output[0]) is { } kept)
            {
                Slice(inits[s.Input[1]], 0, kept);
                if (s.Input.Count > 2 && s.Input[2].Length > 0)
                {
                    Slice(inits[s.Input[2]], 0, kept);
                }
            }
        }

        foreach (var s in sinks)
        {
            if (KeptFor(s.Input[0]) is { } kept)
            {
                Slice(inits[s.Input[1]], 1, kept);
            }
        }

        foreach (var d in depthwise)
        {
            if (KeptFor(d.Input[0]) is { } kept)
            {
                Slice(inits[d.Input[1]], 0, kept);
                if (d.Input.Count > 2 && d.Input[2].Length > 0)
                {
                    Slice(inits[d.Input[2]], 0, kept);
                }

                GraphSurgery.SetInt(d, "group", kept.Length);
            }
        }

        foreach (var bn in norms)
        {
            if (KeptFor(bn.Input[0]) is { } kept)
            {
                foreach (var p in bn.Input.Skip(1))
                {
                    Slice(inits[p], 0, kept);
                }
            }
        }

        graph.ValueInfo.Clear();
        model.Validate();
        After = CostSummary.Of(model);
        return $"pruned {Ratio:P0} of the channels in {prunedGroups} channel groups ({constrainedGroups} kept whole by Split/Reshape/Gemm/output constraints); "
            + $"parameters {Before.Parameters:N0} -> {After.Parameters:N0}, conv MACs {Before.ConvMacs:N0} -> {After.ConvMacs:N0} at batch 1";
    }

    // Keeps the given indices along an axis of a float initializer.
    private static void Slice(OnnxProto.TensorProto t, int axis, int[] kept)
    {
        var dims = t.Dims.ToArray();
        var values = t.ToFloats();
        var outer = (int)dims.Take(axis).Aggregate(1L, (a, b) => a * b);
        var inner = (int)dims.Skip(axis + 1).Aggregate(1L, (a, b) => a * b);
        var n = (int)dims[axis];
        var result = new float[outer * kept.Length * inner];
        for (var o = 0; o < outer; o++)
        {
            for (var k = 0; k < kept.Length; k++)
            {
                Array.Copy(values, ((o * n) + kept[k]) * inner, result, ((o * kept.Length) + k) * inner, inner);
            }
        }

        dims[axis] = kept.Length;
        if (GraphSurgery.TypeOf(t) != ElementType.Float)
        {
            throw new BatchwiseException($"--prune: initializer '{t.Name}' is {GraphSurgery.TypeOf(t).ShortName()}, not float32", "Prune the float32 model, then convert it (--prune with --fp16/--int8 does this in order).");
        }

        GraphSurgery.SetFloats(t, dims, result);
    }
}
