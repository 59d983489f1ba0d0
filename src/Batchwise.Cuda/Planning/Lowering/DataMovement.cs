using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Operators that move elements: concatenation, splits, slices, transposes, broadcasts, gathers, padding, resizing.</summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> DataMovementLowerings()
    {
        yield return ("Concat", new((c, n, i, a) => c.LowerConcat(n, i.Where(v => v is not null).ToArray()!, n.Input.Where(s => s.Length > 0).ToArray(), a.Int("axis", 0)), InputLayout.Pending));
        yield return ("Split", new((c, n, i, a) => c.LowerSplit(n, i, a), InputLayout.AsStored));
        yield return ("Slice", new((c, n, i, a) => c.LowerSlice(n, i, a), InputLayout.AsStored));
        yield return ("Transpose", new((c, n, i, a) => c.LowerTranspose(n, i[0]!, a), InputLayout.AsStored));
        // Inputs as they are: a mask stays a view (LowerExpand); anything else is made row-major there.
        yield return ("Expand", new((c, n, i, _) => c.LowerExpand(n, i), InputLayout.Pending));
        yield return ("Gather", new((c, n, i, a) => c.LowerGather(n, i, a)));
        yield return ("Pad", new((c, n, i, a) => c.LowerPad(n, i, a), InputLayout.Nchw, PadCheck));
        yield return ("Resize", new((c, n, i, a) => c.LowerResize(n, i, a), InputLayout.AsStored, ResizeCheck));
        yield return ("Upsample", new((c, n, i, a) => c.LowerResize(n, i, a), InputLayout.AsStored, ResizeCheck));
    }

    private static string? PadCheck(OnnxProto.NodeProto node, NodeAttributes attrs, long opset)
    {
        var mode = attrs.String("mode", "constant");
        return mode is not ("constant" or "edge" or "reflect" or "wrap") ? $"pad mode '{mode}'" : null;
    }

    private static string? ResizeCheck(OnnxProto.NodeProto node, NodeAttributes attrs, long opset)
    {
        var mode = attrs.String("mode", "nearest");
        if (mode is not ("nearest" or "linear" or "bilinear" or "cubic" or "bicubic"))
        {
            return $"mode '{mode}' (nearest, linear and cubic are supported)";
        }

        if (attrs.Int("antialias", 0) != 0)
        {
            return "antialias";
        }

        return attrs.String("keep_aspect_ratio_policy", "stretch") != "stretch" ? "keep_aspect_ratio_policy other than stretch" : null;
    }

    /// <summary>
    /// Transpose, reading the input as it is stored: where the output's order is the input's memory order already (a
    /// channels-last value's (0, 2, 3, 1), as ConvNeXt does around each LayerNorm, or a row-major [N, H, W, C] value's
    /// (0, 3, 1, 2) in a half-precision plan, whose 4-d activations are channels-last) the output is the same buffer
    /// relabelled; otherwise one strided copy from memory order (never an NCHW copy first).
    /// </summary>
    private void LowerTranspose(OnnxProto.NodeProto node, PlanValue x, NodeAttributes attrs)
    {
        var perm = attrs.Ints("perm") ?? Enumerable.Range(0, x.Shape.Length).Reverse().Select(i => (long)i).ToArray();
        var shape = perm.Select(p => x.Shape[p]).ToArray();
        var memory = MemoryStrides(x);
        var src = perm.Select(p => memory[p]).ToArray();
        var name = node.Output[0];
        if (x.Constant is null && x.Buffer >= 0 && !_graphOutputs.Contains(name))
        {
            if (SameOrder(shape, src, KernelSource.Strides(shape)))
            {
                _values[name] = new PlanValue(x.Type, shape, null, x.Buffer);
                return;
            }

            if (PreferNhwc(shape) && !x.Nhwc && SameOrder(shape, src, MemoryStrides(new PlanValue(x.Type, shape) { Nhwc = true })))
            {
                _values[name] = new PlanValue(x.Type, shape, null, x.Buffer) { Nhwc = true };
                return;
            }
        }

        var y = Output(node, 0, x.Type, shape);
        ViewCopy(x, shape, src, 0, y, KernelSource.Strides(shape), 0);
    }

    /// <summary>Each logical axis's stride in memory: row-major, or for a channels-last value its [N, H, W, C] order.</summary>
    private static long[] MemoryStrides(PlanValue v)
    {
        if (v.ViewStrides is { } view)
        {
            return view;
        }

        if (!v.Nhwc)
        {
            return KernelSource.Strides(v.Shape);
        }

        var p = KernelSource.Strides(ToNhwcOrder(v.Shape));
        return [p[0], p[3], p[1], p[2]];
    }

    /// <summary>Whether two stride sets address the same elements of <paramref name="shape"/> (size-1 axes never move).</summary>
    private static bool SameOrder(long[] shape, long[] a, long[] b) => Enumerable.Range(0, shape.Length).All(d => shape[d] == 1 || a[d] == b[d]);

    private void LowerExpand(OnnxProto.NodeProto node, PlanValue?[] ins)
    {
        var x = ins[0]!;
        var shape = Shapes.Broadcast(x.Shape, Const(ins[1], "shape").AsLongs());
        if (x.Type == ElementType.Bool && ReadOnlyAsMask(node.Output[0]) && x.Constant is null && !x.Nhwc && (x.Pending is not null || x.Buffer >= 0))
        {
            // Read through broadcast strides by the attention kernels it masks (any other reader copies it, once).
            _values[node.Output[0]] = BroadcastView(x, shape);
            return;
        }

        x = Nchw(x); // what the row-major input layout gave every other Expand
        var y = Output(node, 0, x.Type, shape);
        ViewCopy(x, shape, Shapes.BroadcastStrides(x.Shape, shape), 0, y, KernelSource.Strides(shape), 0);
    }

    /// <summary>
    /// Whether a value is read only as the condition of Wheres, directly or through Expands (the boolean attention mask of
    /// torch's SDPA export: Expand([B, 1, 1, Sk] -> [B, 1, Sq, Sk]), then Where(mask, 0, -inf) per layer) in a plan whose
    /// attention fuses: then an Expand (or an And / Or with a constant that changes nothing) leading to it stays a
    /// broadcast view of its input, which the fused kernels read with stride 0 along the broadcast axes instead of a
    /// materialised copy (and cuDNN's attention as a bias per key, not per query and key).
    /// </summary>
    private bool ReadOnlyAsMask(string name, int depth = 0) =>
        Half && _target.ComputeCapability >= 80 && depth < 4
        && !_graphOutputs.Contains(name) && _consumers.TryGetValue(name, out var users) && users.Count > 0
        && users.All(u => (u.OpType == "Where" && u.Input.Count == 3 && u.Input[0] == name && u.Input[1] != name && u.Input[2] != name)
            || (u.OpType == "Expand" && u.Input[0] == name && u.Input[1] != name && ReadOnlyAsMask(u.Output[0], depth + 1)));

    private void LowerGather(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var (data, idx) = (ins[0]!, ins[1]!);
        var a = Shapes.Axis(attrs.Int("axis", 0), data.Shape.Length);
        var shape = data.Shape.Take(a).Concat(idx.Shape).Concat(data.Shape.Skip(a + 1)).ToArray();
        if (idx.Constant is { } known && Shapes.Product(data.Shape.Take(a)) == 1 && known.Count == data.Shape[a] && Enumerable.Range(0, (int)known.Count).All(i => known.Int(i) == i))
        {
            // Every entry in order (Hugging Face's padding mask read through indices b * seq + s): the data relabelled,
            // not a copy.
            Alias(node, 0, data, shape);
            return;
        }

        var y = Output(node, 0, data.Type, shape);
        var outer = Shapes.Product(data.Shape.Take(a));
        var inner = Shapes.Product(data.Shape.Skip(a + 1));

        // Rows of whole 16-, 8- or 4-byte chunks move a chunk per thread (an embedding's 768 halves: 96 threads, not 768).
        var size = St(data).SizeOf();
        var bytes = inner * size;
        var move = new[] { 16, 8, 4 }.FirstOrDefault(c => c > size && bytes % c == 0, size);
        var step = new KernelStep(_node, KernelSource.Gather(move, idx.Type, outer, data.Shape[a], bytes / move, idx.Count), Math.Max(1, y.Count / (move / size)), KernelSource.BlockSize, [Dev(y), Dev(data), Dev(idx)]);
        if (EmbeddingRows(node, data, idx, a))
        {
            // An embedding lookup that only feeds a sum or a LayerNorm: set aside for the LayerNorm that reads the table's
            // rows through the indices itself (FusedRows in Normalization.cs); emitted as planned if anything else reads it.
            _deferredSteps[y.Buffer] = new DeferredGather(step, data, idx);
            return;
        }

        Emit(step);
    }

    /// <summary>A Gather of an embedding table set aside (see <see cref="EmbeddingRows"/>): the table [rows, width] and the indices.</summary>
    private sealed record DeferredGather(KernelStep Step, PlanValue Table, PlanValue Indices) : DeferredStep(Step);

    /// <summary>
    /// Whether a Gather is an embedding lookup a LayerNorm can read through: rows of a constant float table [rows, width]
    /// by device indices, the result read only by Add or LayerNormalization nodes (and Shape, which reads no element:
    /// DistilBERT's export takes the sequence length from it) and not a graph output.
    /// </summary>
    private bool EmbeddingRows(OnnxProto.NodeProto node, PlanValue data, PlanValue idx, int axis) =>
        axis == 0 && data.Constant is not null && data.Shape.Length == 2 && St(data) is ElementType.Float16 or ElementType.Float
        && idx.Constant is null && idx.Pending is null && idx.ViewStrides is null && idx.Type is ElementType.Int64 or ElementType.Int32
        && !_graphOutputs.Contains(node.Output[0]) && _consumers.TryGetValue(node.Output[0], out var users) && users.Count > 0
        && users.All(u => u.OpType is "Add" or "LayerNormalization" or "Shape" && u.Domain.Length == 0);

    private void LowerConcat(OnnxProto.NodeProto node, PlanValue[] parts, string[] names, long axis)
    {
        var rank = parts[0].Shape.Length;
        var a = Shapes.Axis(axis, rank);
        var shape = (long[])parts[0].Shape.Clone();
        shape[a] = parts.Sum(p => p.Shape[a]);

        // A QuantizeLinear that alone reads the result (a QDQ model's Concat of dequantized parts: YOLOv8's C2f and SPPF)
        // joins the parts: each is quantized straight into its slice, as the int8 bytes an int8 convolution reads (not
        // dequantized into a float concatenation and quantized again).
        var quantized = QuantizedAlone(node.Output[0]);
        var shift = quantized is null ? 0 : StoredShift(quantized.Value.Type);
        if (quantized is { } q)
        {
            parts = [.. parts.Select(p => Pending([p], _ => $"{QuantizeExpression("x0", q.Scale, q.Zero, q.Type)} - {KernelSource.F(shift)}", ElementType.Int8, p.Shape))];
            _node += " + QuantizeLinear";
        }

        // Channels-last when every part is: the copies then run along the physical axis.
        var nhwc = parts.All(p => p.Nhwc);
        var y = quantized is null ? Output(node, 0, St(parts[0]), shape, nhwc) : NewValue(ElementType.Int8, shape, nhwc, "int8 " + quantized.Value.Node.Output[0]);
        var pa = nhwc ? PhysicalAxis(a) : a;
        var phys = Phys(y);
        var outer = Shapes.Product(phys.Take(pa));
        var inner = Shapes.Product(phys.Skip(pa + 1));
        long offset = 0;
        for (var k = 0; k < parts.Length; k++)
        {
            var p = parts[k];
            var block = p.Shape[a] * inner;

            // A pending part read by nothing else is computed straight into its slice: no copy.
            var onlyHere = quantized is not null || (names.Count(n => n == names[k]) == 1 && _consumers.TryGetValue(names[k], out var users) && users.Count == 1 && !_graphOutputs.Contains(names[k]));
            if (p.Pending is not null && onlyHere && p.Nhwc == nhwc && p.Pending.Leaves.All(l => Fits(l, nhwc, rank)))
            {
                Materialize(p, y, block, phys[pa] * inner, offset * inner);
            }
            else
            {
                p = nhwc ? Materialize(p) : Nchw(p);
                ViewCopy(p, [outer, block], [block, 1], 0, y, [phys[pa] * inner, 1], offset * inner);
            }

            offset += p.Shape[a];
        }

        if (quantized is not null)
        {
            PublishQuantized(quantized.Value.Node, y, shape, shift);
        }
    }

    /// <summary>Where logical axis <paramref name="a"/> of an [N, C, H, W] tensor sits in its NHWC layout.</summary>
    private static int PhysicalAxis(int a) => a switch { 0 => 0, 1 => 3, _ => a - 1 };

    private void LowerSplit(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var n = node.Output.Count;
        var (a, sizes) = SplitSizes(node, ins, attrs);
        var pa = x.Nhwc ? PhysicalAxis(a) : a;
        var phys = Phys(x);
        var outer = Shapes.Product(phys.Take(pa));
        var inner = Shapes.Product(phys.Skip(pa + 1));
        long offset = 0;
        for (var i = 0; i < n; i++)
        {
            var shape = (long[])x.Shape.Clone();
            shape[a] = sizes[i];
            if (node.Output[i].Length > 0)
            {
                var y = Output(node, i, x.Type, shape, x.Nhwc);
                var block = sizes[i] * inner;
                ViewCopy(x, [outer, block], [phys[pa] * inner, 1], offset * inner, y, [block, 1], 0);
            }

            offset += sizes[i];
        }
    }

    /// <summary>A Split's axis and the size of each part along it.</summary>
    private (int Axis, long[] Sizes) SplitSizes(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var a = Shapes.Axis(attrs.Int("axis", 0), x.Shape.Length);
        var n = node.Output.Count;
        var sizes = _model.Opset >= 13 ? ins.ElementAtOrDefault(1)?.Constant?.AsLongs() : attrs.Ints("split");
        if (sizes is null || sizes.Length == 0)
        {
            var parts = attrs.Has("num_outputs") ? attrs.Int("num_outputs", n) : n;
            var each = (x.Shape[a] + parts - 1) / parts;
            sizes = Enumerable.Range(0, (int)parts).Select(i => Math.Min(each, x.Shape[a] - (i * each))).ToArray();
        }

        return (a, sizes);
    }

    private void LowerSlice(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var (outShape, st, sp) = SliceParameters(ins, attrs);
        if (outShape.SequenceEqual(x.Shape) && st.All(s => s == 0) && sp.All(s => s == 1))
        {
            // The whole tensor (GhostNet's [:, :oup] of a concatenation of exactly oup channels): the same value, no copy.
            Alias(node, 0, x, x.Shape);
            return;
        }

        if (x.Nhwc && x.PaddedChannels == 0 && x.Shape.Length == 4)
        {
            // A channels-last value sliced as stored, [N, H, W, C], into a channels-last output: no layout copy either side.
            int[] order = [0, 2, 3, 1];
            var stored = KernelSource.Strides([.. order.Select(d => x.Shape[d])]);
            var outStored = order.Select(d => outShape[d]).ToArray();
            var z = Output(node, 0, x.Type, outShape, true);
            ViewCopy(x, outStored, [.. order.Select((d, i) => stored[i] * sp[d])], order.Select((d, i) => st[d] * stored[i]).Sum(), z, KernelSource.Strides(outStored), 0);
            return;
        }

        x = Nchw(x);
        var inStrides = KernelSource.Strides(x.Shape);
        var y = Output(node, 0, x.Type, outShape);
        ViewCopy(x, outShape, inStrides.Select((s, d) => s * sp[d]).ToArray(), st.Select((s, d) => s * inStrides[d]).Sum(), y, KernelSource.Strides(outShape), 0);
    }

    /// <summary>A Slice's output shape and, per axis of its input, the first index and the step.</summary>
    private (long[] Shape, long[] Starts, long[] Steps) SliceParameters(PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        long[] starts, ends;
        long[]? axes, steps;
        if (_model.Opset >= 10)
        {
            (starts, ends, axes, steps) = (Const(ins[1], "starts").AsLongs(), Const(ins[2], "ends").AsLongs(), ins.ElementAtOrDefault(3)?.Constant?.AsLongs(), ins.ElementAtOrDefault(4)?.Constant?.AsLongs());
        }
        else
        {
            (starts, ends, axes, steps) = (attrs.Ints("starts")!, attrs.Ints("ends")!, attrs.Ints("axes"), null);
        }

        return Shapes.Slice(x.Shape, starts, ends, axes, steps);
    }

    private void LowerPad(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var rank = x.Shape.Length;
        long[] pads;
        double value;
        if (_model.Opset >= 11)
        {
            pads = Const(ins[1], "pads").AsLongs();
            value = ins.ElementAtOrDefault(2)?.Constant is { } v && v.Count > 0 ? v[0] : 0;
            if (ins.ElementAtOrDefault(3)?.Constant is { } axesT)
            {
                var axes = axesT.AsLongs().Select(a => Shapes.Axis(a, rank)).ToArray();
                var full = new long[2 * rank];
                for (var i = 0; i < axes.Length; i++)
                {
                    full[axes[i]] = pads[i];
                    full[axes[i] + rank] = pads[i + axes.Length];
                }

                pads = full;
            }
        }
        else
        {
            pads = attrs.Ints("pads")!;
            value = attrs.Float("value", 0);
        }

        var outShape = x.Shape.Select((s, d) => s + pads[d] + pads[d + rank]).ToArray();
        var y = Output(node, 0, x.Type, outShape);
        Kernel(KernelSource.Pad(St(x), x.Shape, outShape, pads.Take(rank).ToArray(), attrs.String("mode", "constant"), value), y.Count, Dev(y), Dev(x));
    }

    private void LowerResize(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var rank = x.Shape.Length;
        double[]? scales = null;
        long[]? sizes = null;
        if (node.OpType == "Upsample" || _model.Opset < 11)
        {
            scales = node.OpType == "Upsample" && _model.Opset < 9 ? attrs.Floats("scales") : Const(ins[1], "scales").AsDoubles();
        }
        else
        {
            var s = ins.ElementAtOrDefault(2)?.Constant;
            if (s is not null && s.Count > 0)
            {
                scales = s.AsDoubles();
            }

            var z = ins.ElementAtOrDefault(3)?.Constant;
            if (z is not null && z.Count > 0)
            {
                sizes = z.AsLongs();
            }
        }

        var axes = attrs.Ints("axes")?.Select(a => Shapes.Axis(a, rank)).ToArray() ?? Enumerable.Range(0, rank).ToArray();
        var coordinate = node.OpType == "Upsample" || _model.Opset < 11 ? "asymmetric" : attrs.String("coordinate_transformation_mode", "half_pixel");
        double[]? roi = null;
        if (coordinate == "tf_crop_and_resize")
        {
            // The region of interest, [starts..., ends...] over the resized axes, as fractions of each axis.
            var given = Const(ins[1], "roi").AsDoubles();
            if (given.Length != 2 * axes.Length)
            {
                throw new BatchwiseException($"its roi has {given.Length} values, expected {2 * axes.Length} (starts and ends of each resized axis)", "Give the roi as [starts..., ends...].");
            }

            roi = [.. Enumerable.Repeat(0.0, rank), .. Enumerable.Repeat(1.0, rank)];
            for (var i = 0; i < axes.Length; i++)
            {
                roi[axes[i]] = given[i];
                roi[axes[i] + rank] = given[i + axes.Length];
            }

            x = Nchw(x);
        }

        var fullScales = Enumerable.Repeat(1.0, rank).ToArray();
        var outShape = (long[])x.Shape.Clone();
        for (var i = 0; i < axes.Length; i++)
        {
            var d = axes[i];
            if (sizes is not null)
            {
                outShape[d] = sizes[i];
                fullScales[d] = sizes[i] / (double)x.Shape[d];
            }
            else if (scales is not null)
            {
                fullScales[d] = scales[i];
                outShape[d] = (long)Math.Floor(x.Shape[d] * (roi is null ? 1 : roi[d + rank] - roi[d]) * scales[i]);
            }
        }

        var mode = attrs.String("mode", "nearest");
        mode = mode is "linear" or "bilinear" ? "linear" : mode is "cubic" or "bicubic" ? "cubic" : mode;
        if (mode == "cubic")
        {
            x = Nchw(x);
        }

        var nearest = _model.Opset < 11 ? "floor" : attrs.String("nearest_mode", "round_prefer_floor");
        if (node.OpType == "Upsample" || _model.Opset < 11)
        {
            nearest = "floor";
        }

        var y = Output(node, 0, x.Type, outShape, x.Nhwc);
        var physScales = x.Nhwc ? [fullScales[0], fullScales[2], fullScales[3], fullScales[1]] : fullScales;
        var inPhys = Phys(x);
        var outPhys = Phys(y);
        var bytes = x.Shape.Length > 0 ? inPhys[^1] * St(x).SizeOf() : 0;
        if (mode == "nearest" && roi is null && physScales[^1] == 1.0 && inPhys[^1] == outPhys[^1] && bytes % 16 == 0 && bytes > 0)
        {
            // Nearest with the innermost axis (channels, channels-last) unscaled: whole runs move as 16-byte elements.
            var k = 16 / St(x).SizeOf();
            inPhys = [.. inPhys[..^1], inPhys[^1] / k];
            outPhys = [.. outPhys[..^1], outPhys[^1] / k];
            Kernel(KernelSource.Resize(St(x), inPhys, outPhys, physScales, mode, coordinate, nearest, "uint4"), y.Count / k, Dev(y), Dev(x));
            return;
        }

        Kernel(KernelSource.Resize(St(x), Phys(x), Phys(y), physScales, mode, coordinate, nearest, null, attrs.Float("cubic_coeff_a", -0.75), attrs.Int("exclude_outside", 0) != 0, roi, attrs.Float("extrapolation_value", 0)), y.Count, Dev(y), Dev(x));
    }

}
