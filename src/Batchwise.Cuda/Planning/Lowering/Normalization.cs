using System.Globalization;
using System.Text;
using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Normalizations: BatchNormalization (an elementwise expression, or folded into the convolution before it), softmax, layer normalization.</summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> NormalizationLowerings()
    {
        yield return ("BatchNormalization", new((c, n, i, a) => c.LowerElementwise(n, i, a), InputLayout.Pending, (n, a, _) => a.Int("training_mode", 0) != 0 || n.Output.Count(o => o.Length > 0) > 1 ? "training mode (running mean/variance outputs)" : null));
        yield return ("Softmax", new((c, n, i, a) => c.LowerSoftmax(n, i[0]!, a, log: false)));
        yield return ("LogSoftmax", new((c, n, i, a) => c.LowerSoftmax(n, i[0]!, a, log: true)));
        // Pending: a LayerNorm over an elementwise sum of whole rows (an embedding sum) computes it as it loads the row.
        yield return ("LayerNormalization", new((c, n, i, a) => c.LowerLayerNorm(n, i, a), InputLayout.Pending));
        yield return ("InstanceNormalization", new((c, n, i, a) => c.LowerGroupNorm(n, i, a, instance: true)));
        yield return ("GroupNormalization", new((c, n, i, a) => c.LowerGroupNorm(n, i, a, instance: false)));
    }

    private void LowerSoftmax(OnnxProto.NodeProto node, PlanValue x, NodeAttributes attrs, bool log)
    {
        RequireFloat(x);
        var opset = _model.Opset;
        var rank = x.Shape.Length;
        var a = Shapes.Axis(attrs.Int("axis", opset >= 13 ? -1 : 1), rank);
        var y = Output(node, 0, x.Type, x.Shape);
        long axisSize, inner;
        if (opset >= 13)
        {
            (axisSize, inner) = (x.Shape[a], Shapes.Product(x.Shape.Skip(a + 1)));
        }
        else
        {
            (axisSize, inner) = (Shapes.Product(x.Shape.Skip(a)), 1);
        }

        var rows = axisSize == 0 ? 0 : x.Count / axisSize;
        if (inner == 1 && KernelSource.RowLayout(St(x), axisSize) is not null)
        {
            // Rows that fit a warp's registers: read once in 16-byte loads, written once.
            WarpKernel(KernelSource.SoftmaxRows(St(x), rows, axisSize, log), rows, Dev(y), Dev(x));
        }
        else if (axisSize <= 32 && inner > 1)
        {
            Kernel(KernelSource.SoftmaxShortAxis(St(x), rows, axisSize, inner, log), rows, Dev(y), Dev(x));
        }
        else
        {
            WarpKernel(KernelSource.Softmax(St(x), rows, axisSize, inner, log), rows, Dev(y), Dev(x));
        }
    }

    private void LowerLayerNorm(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        RequireFloat(x);
        var a = Shapes.Axis(attrs.Int("axis", -1), x.Shape.Length);
        var rows = Shapes.Product(x.Shape.Take(a));
        var cols = Shapes.Product(x.Shape.Skip(a));
        var scale = Nchw(ins[1]!);
        var bias = ins.ElementAtOrDefault(2) is { } given ? Nchw(given) : null;
        if (cols % scale.Count != 0 || (bias is not null && cols % bias.Count != 0))
        {
            throw new BatchwiseException("LayerNormalization scale/bias must cover the normalised dimensions", "Use scale and bias of the normalised shape.");
        }

        // Scale and bias of the whole row, of one type: the row kernels take them; rows that fit a warp's registers (up to
        // 1,024 elements, 32 a lane: see RowLayout) take the warp-per-row kernel.
        var wholeRow = scale.Count == cols && (bias is null || bias.Count == cols) && St(scale) == St(bias ?? scale);
        var warpRows = wholeRow && KernelSource.RowLayout(St(x), cols) is not null && KernelSource.RowLayout(St(scale), cols) is not null;

        // The row computed as the kernel loads it (an embedding sum: gathered and broadcast rows), else x written first.
        var fused = warpRows ? FusedRows(x, a) : null;
        if (fused is { } f)
        {
            _node += f.Gathers > 0 ? $" + {f.Gathers} embedding Gather(s) and their sum" : " + the sum before it";
        }
        else
        {
            x = Nchw(x);
        }

        int[] Reads(int output, int meanOut, int invOut) => fused is { } rowInput
            ? [output, Dev(scale), bias is null ? -1 : Dev(bias), meanOut, invOut, .. rowInput.Buffers]
            : [output, Dev(x), Dev(scale), bias is null ? -1 : Dev(bias), meanOut, invOut];
        if (warpRows && node.Output.Count(o => o.Length > 0) == 1 && QuantizedAlone(node.Output[0]) is { } q)
        {
            // A QuantizeLinear that alone reads the output joins the kernel: the int8 bytes are written once (a
            // transformer's LayerNorm before its int8 projections), the uint8 value pending on them.
            var stored = NewValue(ElementType.Int8, x.Shape, false, "int8 " + q.Node.Output[0]);
            _node += " + QuantizeLinear";
            WarpKernel(KernelSource.LayerNormRows(St(x), St(scale), St(ElementType.Float), rows, cols, attrs.Float("epsilon", 1e-5), bias is not null, (q.Scale, q.Zero, q.Type), fused?.Input), rows, Reads(Dev(stored), -1, -1));
            PublishQuantized(q.Node, stored, x.Shape, StoredShift(q.Type));
            return;
        }

        // A half plan's float graph output (a transformer's last hidden state) written as float by the kernel, not
        // converted by a pass of its own.
        var floatOutput = warpRows && St(x) == ElementType.Float16 && FloatGraphOutput(node.Output[0]);
        var y = floatOutput ? StoredOutput(node.Output[0], ElementType.Float, x.Shape) : Output(node, 0, x.Type, x.Shape);
        var statShape = x.Shape.Select((s, d) => d < a ? s : 1).ToArray();
        var mean = node.Output.Count > 1 && node.Output[1].Length > 0 ? Dev(Output(node, 1, ElementType.Float, statShape)) : -1;
        var inv = node.Output.Count > 2 && node.Output[2].Length > 0 ? Dev(Output(node, 2, ElementType.Float, statShape)) : -1;
        var epsilon = attrs.Float("epsilon", 1e-5);
        if (warpRows)
        {
            // Rows that fit a warp's registers: read once, written once.
            WarpKernel(KernelSource.LayerNormRows(St(x), St(scale), St(ElementType.Float), rows, cols, epsilon, bias is not null, input: fused?.Input, outputType: floatOutput ? ElementType.Float : null), rows, Reads(Dev(y), mean, inv));
            return;
        }

        if (wholeRow && KernelSource.WideRowWarps(St(x), cols) is { } warps)
        {
            // Wider rows (to 8,192 elements): a few warps of a block per row, the row still read once and written once.
            Emit(new KernelStep(_node, KernelSource.LayerNormWideRows(St(x), St(scale), St(ElementType.Float), rows, cols, epsilon, bias is not null, warps), Math.Max(1, rows) * 32 * warps, KernelSource.BlockSize, [Dev(y), Dev(x), Dev(scale), bias is null ? -1 : Dev(bias), mean, inv]));
            return;
        }

        WarpKernel(KernelSource.LayerNorm(St(x), St(scale), St(ElementType.Float), rows, cols, epsilon, bias is not null, scale.Count, bias?.Count ?? 1), rows, Dev(y), Dev(x), Dev(scale), bias is null ? -1 : Dev(bias), mean, inv);
    }

    /// <summary>
    /// A LayerNorm's input over the normalised axes from <paramref name="axis"/> as its kernel can compute it while loading
    /// the row (<see cref="FusedRowInput"/>), where it is an elementwise chain not written yet, or a Gather set aside, whose
    /// leaves are whole rows: row-major values that cover the normalised axes and are broadcast or full over the others
    /// (a position or token-type embedding), and embedding Gathers set aside by <c>EmbeddingRows</c> whose result has x's
    /// shape (read through their indices; the Gather stays set aside, emitted only if something else reads its result).
    /// The buffers follow the kernel's leaf parameters; null where a leaf is anything else (x is then written first).
    /// </summary>
    private (FusedRowInput Input, int[] Buffers, int Gathers)? FusedRows(PlanValue x, int axis)
    {
        var gathered = x.Pending is null && _deferredSteps.GetValueOrDefault(x.Buffer) is DeferredGather;
        if ((x.Pending is null && !gathered) || x.ViewStrides is not null || x.Nhwc)
        {
            return null;
        }

        var rank = x.Shape.Length;
        var leaves = new List<FusedRowLeaf>();
        var buffers = new List<int>();
        var names = new Dictionary<int, int>();
        var gathers = 0;
        foreach (var l in x.Pending?.Leaves ?? [x])
        {
            if (l.Pending is not null || l.ViewStrides is not null || l.Nhwc || l.PaddedChannels > 0 || St(l) is not (ElementType.Float16 or ElementType.Float))
            {
                return null;
            }

            names[x.Pending is null ? -1 : LeafId(l)] = leaves.Count;
            if (l.Constant is null && _deferredSteps.GetValueOrDefault(l.Buffer) is DeferredGather g)
            {
                if (!l.Shape.SequenceEqual(x.Shape) || g.Indices.Count != Shapes.Product(x.Shape.Take(axis)) || g.Table.Shape[1] != Shapes.Product(x.Shape.Skip(axis)))
                {
                    return null;
                }

                leaves.Add(new FusedRowLeaf(St(g.Table), new long[axis], (g.Indices.Type, g.Table.Shape[0])));
                buffers.AddRange([Dev(g.Table), Dev(g.Indices)]);
                gathers++;
                continue;
            }

            var aligned = Shapes.RightAlign(l.Shape, rank);
            if (aligned.Length != rank || !aligned.Skip(axis).SequenceEqual(x.Shape.Skip(axis)) || aligned.Take(axis).Where((d, i) => d != 1 && d != x.Shape[i]).Any())
            {
                return null;
            }

            var strides = KernelSource.Strides(aligned);
            leaves.Add(new FusedRowLeaf(St(l), [.. Enumerable.Range(0, axis).Select(d => aligned[d] == 1 ? 0 : strides[d])]));
            buffers.Add(Dev(l));
        }

        if (x.Pending is not { } p)
        {
            return (new FusedRowInput(leaves, x.Shape.Take(axis).ToArray(), string.Empty, "e0.v[u]"), [.. buffers], gathers);
        }

        var text = new StringBuilder();
        foreach (var (_, code) in p.Statements)
        {
            text.Append("                ");
            AppendWithLeaves(text, code, id => $"e{names[id].ToString(CultureInfo.InvariantCulture)}.v[u]");
            text.Append('\n');
        }

        return (new FusedRowInput(leaves, x.Shape.Take(axis).ToArray(), text.ToString(), p.Result), [.. buffers], gathers);
    }

    /// <summary>Whether <paramref name="name"/> is a float graph output nothing else in the graph reads (a half plan's kernel may then write it as float).</summary>
    private bool FloatGraphOutput(string name) =>
        _graphOutputs.Contains(name) && (!_consumers.TryGetValue(name, out var users) || users.Count == 0)
        && _model.Outputs.Any(o => o.Name == name && o.ElementType == ElementType.Float);

    /// <summary>
    /// The QuantizeLinear that alone reads <paramref name="name"/> (not a graph output), per tensor with constant scale
    /// and zero point, to uint8 or int8: the node, its scale, zero point and type; null otherwise.
    /// </summary>
    private (OnnxProto.NodeProto Node, double Scale, double Zero, ElementType Type)? QuantizedAlone(string name)
    {
        if (SoleConsumer(name) is not { OpType: "QuantizeLinear", Domain.Length: 0 } q || QdqPerTensor(q, _values.GetValueOrDefault) is not { } pair
            || pair.Scale <= 0 || !double.IsFinite(pair.Scale))
        {
            return null;
        }

        var type = QuantizedType(q, pair);
        return type is ElementType.UInt8 or ElementType.Int8 ? (q, pair.Scale, pair.Zero, type) : null;
    }

    /// <summary>InstanceNormalization (a group per channel) and GroupNormalization (scale and bias per group at opset 18, per channel from 21).</summary>
    private void LowerGroupNorm(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs, bool instance)
    {
        var (x, scale, bias) = (ins[0]!, ins[1]!, ins[2]!);
        RequireFloat(x);
        if (x.Shape.Length < 3)
        {
            throw new BatchwiseException($"{node.OpType} needs an [N, C, spatial...] input, got {Engines.Tensor.ShapeText(x.Shape)}", "Check the model's shapes.");
        }

        var channels = x.Shape[1];
        var groups = instance ? channels : attrs.Int("num_groups", 1);
        if (groups < 1 || channels % groups != 0)
        {
            throw new BatchwiseException($"{channels} channels do not split into {groups} groups", "Use a group count that divides the channels.");
        }

        var perChannel = scale.Count == channels;
        if ((!perChannel && scale.Count != groups) || bias.Count != scale.Count)
        {
            throw new BatchwiseException($"{node.OpType} scale and bias must have one value per channel ({channels}) or group ({groups})", "Check the model.");
        }

        var y = Output(node, 0, x.Type, x.Shape);
        var rows = x.Shape[0] * groups;
        var spatial = Shapes.Product(x.Shape.Skip(2));
        Kernel(KernelSource.GroupNorm(St(x), St(scale), rows, groups, channels / groups, spatial, attrs.Float("epsilon", 1e-5), perChannel), KernelSource.GroupNormThreads(rows), Dev(y), Dev(x), Dev(scale), Dev(bias));
    }
}
