using System.Runtime.InteropServices;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Lowering of each operator to device steps.</summary>
internal sealed unsafe partial class GraphCompiler
{
    private const long MaxConvWorkspace = 256L << 20;
    private const long MatmulWorkspace = 32L << 20;

    /// <summary>Operators that read channels-last inputs as they are (everything else gets NCHW copies).</summary>
    private static readonly HashSet<string> ChannelsLastOps = new(StringComparer.Ordinal)
    {
        "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Concat", "Split", "Resize", "Upsample", "Identity", "Dropout",
    };

    private void Lower(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var op = node.OpType;
        var opset = _model.Opset;
        if (!ElementwiseOps.Handles(op) && op != "Concat")
        {
            var keepLayout = ChannelsLastOps.Contains(op);
            ins = ins.Select(v => v is null ? null : keepLayout ? Materialize(v) : Nchw(v)).ToArray();
        }

        switch (op)
        {
            case "Identity" or "Dropout":
                Alias(node, 0, ins[0]!, ins[0]!.Shape);
                return;
            case "Reshape":
                Alias(node, 0, ins[0]!, Shapes.ReshapeTarget(ins[0]!.Shape, opset >= 5 ? Const(ins[1], "shape").AsLongs() : attrs.Ints("shape")!, attrs.Int("allowzero", 0) != 0));
                return;
            case "Flatten":
                Alias(node, 0, ins[0]!, HostEvaluator.FlattenShape(ins[0]!.Shape, attrs.Int("axis", 1)));
                return;
            case "Squeeze":
                Alias(node, 0, ins[0]!, Shapes.Squeeze(ins[0]!.Shape, opset >= 13 ? ins.ElementAtOrDefault(1)?.Constant?.AsLongs() : attrs.Ints("axes")));
                return;
            case "Unsqueeze":
                Alias(node, 0, ins[0]!, Shapes.Unsqueeze(ins[0]!.Shape, opset >= 13 ? Const(ins[1], "axes").AsLongs() : attrs.Ints("axes")!));
                return;
            case "Conv":
                LowerConv(node, ins, attrs);
                return;
            case "MaxPool" or "AveragePool":
                LowerPool(node, ins[0]!, attrs, op == "MaxPool");
                return;
            case "GlobalAveragePool" or "GlobalMaxPool":
                {
                    var x = ins[0]!;
                    var phys = Phys(x);
                    var reduced = x.Nhwc ? [false, true, true, false] : x.Shape.Select((_, d) => d >= 2).ToArray();
                    var y = Output(node, 0, x.Type, x.Shape.Select((s, d) => d >= 2 ? 1 : s).ToArray(), x.Nhwc);
                    Kernel(KernelSource.Reduce(St(x), op == "GlobalMaxPool" ? "max" : "mean", phys, reduced), y.Count, Dev(y), Dev(x));
                    return;
                }

            case "Gemm":
                LowerGemm(node, ins, attrs);
                return;
            case "MatMul":
                LowerMatMul(node, ins[0]!, ins[1]!);
                return;
            case "Concat":
                LowerConcat(node, ins.Where(v => v is not null).ToArray()!, node.Input.Where(n => n.Length > 0).ToArray(), attrs.Int("axis", 0));
                return;
            case "Split":
                LowerSplit(node, ins, attrs);
                return;
            case "Slice":
                LowerSlice(node, ins, attrs);
                return;
            case "Transpose":
                {
                    var x = ins[0]!;
                    var perm = attrs.Ints("perm") ?? Enumerable.Range(0, x.Shape.Length).Reverse().Select(i => (long)i).ToArray();
                    var inStrides = KernelSource.Strides(x.Shape);
                    var y = Output(node, 0, x.Type, perm.Select(p => x.Shape[p]).ToArray());
                    ViewCopy(x, y.Shape, perm.Select(p => inStrides[p]).ToArray(), 0, y, KernelSource.Strides(y.Shape), 0);
                    return;
                }

            case "Expand":
                {
                    var x = ins[0]!;
                    var shape = Shapes.Broadcast(x.Shape, Const(ins[1], "shape").AsLongs());
                    var y = Output(node, 0, x.Type, shape);
                    ViewCopy(x, shape, Shapes.BroadcastStrides(x.Shape, shape), 0, y, KernelSource.Strides(shape), 0);
                    return;
                }

            case "Gather":
                {
                    var (data, idx) = (ins[0]!, ins[1]!);
                    var a = Shapes.Axis(attrs.Int("axis", 0), data.Shape.Length);
                    var y = Output(node, 0, data.Type, data.Shape.Take(a).Concat(idx.Shape).Concat(data.Shape.Skip(a + 1)).ToArray());
                    var outer = Shapes.Product(data.Shape.Take(a));
                    var inner = Shapes.Product(data.Shape.Skip(a + 1));
                    Kernel(KernelSource.Gather(St(data).SizeOf(), idx.Type, outer, data.Shape[a], inner, idx.Count), y.Count, Dev(y), Dev(data), Dev(idx));
                    return;
                }

            case "Softmax" or "LogSoftmax":
                {
                    var x = ins[0]!;
                    RequireFloat(x);
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
                    if (axisSize <= 32 && inner > 1)
                    {
                        Kernel(KernelSource.SoftmaxShortAxis(St(x), rows, axisSize, inner, op == "LogSoftmax"), rows, Dev(y), Dev(x));
                    }
                    else
                    {
                        WarpKernel(KernelSource.Softmax(St(x), rows, axisSize, inner, op == "LogSoftmax"), rows, Dev(y), Dev(x));
                    }
                    return;
                }

            case "LayerNormalization":
                {
                    var x = ins[0]!;
                    RequireFloat(x);
                    var a = Shapes.Axis(attrs.Int("axis", -1), x.Shape.Length);
                    var rows = Shapes.Product(x.Shape.Take(a));
                    var cols = Shapes.Product(x.Shape.Skip(a));
                    var scale = ins[1]!;
                    var bias = ins.ElementAtOrDefault(2);
                    if (cols % scale.Count != 0 || (bias is not null && cols % bias.Count != 0))
                    {
                        throw new BatchwiseException("LayerNormalization scale/bias must cover the normalised dimensions", "Use scale and bias of the normalised shape.");
                    }

                    var y = Output(node, 0, x.Type, x.Shape);
                    var statShape = x.Shape.Select((s, d) => d < a ? s : 1).ToArray();
                    var mean = node.Output.Count > 1 && node.Output[1].Length > 0 ? Dev(Output(node, 1, ElementType.Float, statShape)) : -1;
                    var inv = node.Output.Count > 2 && node.Output[2].Length > 0 ? Dev(Output(node, 2, ElementType.Float, statShape)) : -1;
                    WarpKernel(KernelSource.LayerNorm(St(x), St(scale), St(ElementType.Float), rows, cols, attrs.Float("epsilon", 1e-5), bias is not null, scale.Count, bias?.Count ?? 1), rows, Dev(y), Dev(x), Dev(scale), bias is null ? -1 : Dev(bias), mean, inv);
                    return;
                }

            case "ReduceMean" or "ReduceSum" or "ReduceMax" or "ReduceMin" or "ReduceProd" or "ReduceL2" or "ReduceL1" or "ReduceSumSquare":
                LowerReduce(node, ins, attrs);
                return;
            case "Pad":
                LowerPad(node, ins, attrs);
                return;
            case "Resize" or "Upsample":
                LowerResize(node, ins, attrs);
                return;
            case "ConstantOfShape" or "Range" or "Constant" or "Shape" or "Size":
                throw new BatchwiseException($"{op} needs its inputs on the host", "This is a bug in the cuda engine's planner.");
            default:
                if (ElementwiseOps.Handles(op))
                {
                    LowerElementwise(node, ins, attrs);
                    return;
                }

                throw new BatchwiseException($"The cuda engine does not support operator {op}", "Use --engine ort.");
        }
    }

    private static HostTensor Const(PlanValue? v, string what) =>
        v?.Constant ?? throw new BatchwiseException($"its '{what}' input must be known when the plan is built (a constant or computed from shapes)", "Make the input a constant or initializer.");

    private static void RequireFloat(PlanValue v)
    {
        if (v.Type is not ElementType.Float and not ElementType.Float16)
        {
            throw new BatchwiseException($"{v.Type.ShortName()} input is not supported (float32 only)", "Use float32 tensors.");
        }
    }

    private void LowerElementwise(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var op = node.OpType;
        var inputs = new List<PlanValue>();
        var shapes = new List<long[]>();
        Func<string, double, double> attr = (name, fallback) => attrs.Float(name, fallback);
        ElementType? castTo = null;
        switch (op)
        {
            case "BatchNormalization":
                {
                    // Per-channel vectors broadcast as [C, 1, ...] against [N, C, spatial...].
                    var x = ins[0]!;
                    inputs.Add(x);
                    shapes.Add(x.Shape);
                    for (var k = 1; k <= 4; k++)
                    {
                        var p = ins[k]!;
                        inputs.Add(p);
                        shapes.Add(x.Shape.Select((s, d) => d == 1 ? p.Count : 1).ToArray());
                    }

                    break;
                }

            case "Clip":
                {
                    inputs.Add(ins[0]!);
                    shapes.Add(ins[0]!.Shape);
                    if (_model.Opset >= 11)
                    {
                        var lo = ins.ElementAtOrDefault(1)?.Constant;
                        var hi = ins.ElementAtOrDefault(2)?.Constant;
                        attr = (name, fallback) => name switch
                        {
                            "min" => lo is null ? double.NegativeInfinity : lo[0],
                            "max" => hi is null ? double.PositiveInfinity : hi[0],
                            _ => fallback,
                        };
                    }
                    else
                    {
                        attr = (name, fallback) => name switch
                        {
                            "min" => attrs.Float("min", double.NegativeInfinity),
                            "max" => attrs.Float("max", double.PositiveInfinity),
                            _ => fallback,
                        };
                    }

                    break;
                }

            case "Cast":
                castTo = (ElementType)attrs.Int("to", 1);
                inputs.Add(ins[0]!);
                shapes.Add(ins[0]!.Shape);
                break;
            default:
                foreach (var v in ins.Where(v => v is not null))
                {
                    inputs.Add(v!);
                    shapes.Add(v!.Shape);
                }

                if (op == "Mod")
                {
                    attr = (name, fallback) => name == "fmod" ? attrs.Int("fmod", 0) : fallback;
                }

                break;
        }

        var outShape = op == "BatchNormalization" ? inputs[0].Shape : Shapes.Broadcast(shapes.ToArray());

        // Operands viewed at the shapes they broadcast from (BatchNormalization's [C] vectors as [C, 1, ...]).
        var operands = inputs.Select((v, k) => v.Shape.SequenceEqual(shapes[k]) ? v : View(v, shapes[k])).ToList();
        var outType = ElementwiseOps.OutputType(op, inputs.Select(St).ToList(), castTo);
        var mode = op switch
        {
            "Gelu" => attrs.String("approximate", "none"),
            "BitShift" => attrs.String("direction", "LEFT"),
            _ => null,
        };
        string Expression(IReadOnlyList<ElementType> types) => op == "Cast" && outType == ElementType.Bool ? "x0 != 0" : ElementwiseOps.Expression(op, types, attr, mode);
        _values[node.Output[0]] = Pending(operands, Expression, outType, outShape);
    }

    private (long[] Begin, long[] End) AutoPads(string autoPad, long[] inSpatial, long[] kernel, long[] strides, long[] dilations, long[]? pads)
    {
        var r = inSpatial.Length;
        var begin = new long[r];
        var end = new long[r];
        for (var d = 0; d < r; d++)
        {
            if (autoPad is "SAME_UPPER" or "SAME_LOWER")
            {
                var outD = (inSpatial[d] + strides[d] - 1) / strides[d];
                var total = Math.Max(0, ((outD - 1) * strides[d]) + ((kernel[d] - 1) * dilations[d]) + 1 - inSpatial[d]);
                begin[d] = autoPad == "SAME_UPPER" ? total / 2 : total - (total / 2);
                end[d] = total - begin[d];
            }
            else if (autoPad == "NOTSET" && pads is not null)
            {
                begin[d] = pads[d];
                end[d] = pads[d + r];
            }
        }

        return (begin, end);
    }

    private void LowerConv(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var w = ins[1]!;
        var b = ins.ElementAtOrDefault(2);
        RequireFloat(x);
        var r = x.Shape.Length - 2;
        if (r < 1 || r > 3)
        {
            throw new BatchwiseException($"Conv of rank {x.Shape.Length} is not supported (1-d to 3-d)", "Use 1-d to 3-d convolutions.");
        }

        var kernel = attrs.Ints("kernel_shape") ?? w.Shape.Skip(2).ToArray();
        var strides = attrs.Ints("strides") ?? Enumerable.Repeat(1L, r).ToArray();
        var dilations = attrs.Ints("dilations") ?? Enumerable.Repeat(1L, r).ToArray();
        var groups = attrs.Int("group", 1);
        var inSpatial = x.Shape.Skip(2).ToArray();
        var (pb, pe) = AutoPads(attrs.String("auto_pad", "NOTSET"), inSpatial, kernel, strides, dilations, attrs.Ints("pads"));
        var outSpatial = Enumerable.Range(0, r).Select(d => ((inSpatial[d] + pb[d] + pe[d] - (((kernel[d] - 1) * dilations[d]) + 1)) / strides[d]) + 1).ToArray();
        var outName = node.Output[0];
        if (FoldBatchNorm(node, w, b) is { } folded)
        {
            (w, b, outName) = folded;
        }

        var yShape = new[] { x.Shape[0], w.Shape[0] }.Concat(outSpatial).ToArray();

        // Half precision: channels-last activations and KRSC filters (cuDNN's tensor-core kernels), float32 accumulation.
        var nhwc = PreferNhwc(x.Shape) && w.Constant is not null;
        x = nhwc ? Nhwc(x) : Nchw(x);
        if (nhwc && x.PaddedChannels > 0)
        {
            // The network input, already padded with zero channels when it entered: only the filter needs them too.
            w = PadFilter(w, x.PaddedChannels);
            x = new PlanValue(x.Type, [x.Shape[0], x.PaddedChannels, x.Shape[2], x.Shape[3]], null, x.Buffer) { Nhwc = true };
        }
        else if (nhwc && groups == 1 && x.Shape[1] % 8 != 0)
        {
            // Tensor cores want channel counts in multiples of 8: a stem's 3 channels padded with zeros (input and filter)
            // turn cuDNN's slowest kernel of the plan into an ordinary one.
            (x, w) = PadChannels(x, w, (x.Shape[1] + 7) / 8 * 8);
        }

        var (relu, residual) = ConvEpilogue(ref outName, yShape);
        if (residual is not null)
        {
            residual = nhwc ? Nhwc(residual) : Nchw(residual);
        }

        // With a ReLU after it (and a residual Add before that) the bias, the add and the activation go into cuDNN's
        // fused call; otherwise the convolution writes its raw result and the bias starts an elementwise chain that
        // whatever activation follows joins (one kernel for bias + Clip or bias + SiLU).
        var raw = relu || b is null ? Output(outName, x.Type, yShape, nhwc) : Temp(x.Type, yShape, nhwc);
        if (relu && b is null)
        {
            var m = w.Shape[0];
            b = new PlanValue(ElementType.Float, [m], _target.Derive($"zeros:float:{m}", [], () => HostTensor.Create(ElementType.Float, [m], _ => 0)));
        }

        // cuDNN pads symmetrically: asymmetric pads become an explicit Pad into a temporary first.
        var input = x;
        var pads = pb;
        if (!pb.SequenceEqual(pe))
        {
            var paddedShape = new[] { x.Shape[0], x.Shape[1] }.Concat(inSpatial.Select((s, d) => s + pb[d] + pe[d])).ToArray();
            var padded = Temp(x.Type, paddedShape, nhwc);
            var begin = new long[] { 0, 0 }.Concat(pb).ToArray();
            Kernel(KernelSource.Pad(St(x), Phys(x), Phys(padded), nhwc ? [0, begin[2], begin[3], 0] : begin, "constant", 0), padded.Count, Dev(padded), Dev(x));
            input = padded;
            pads = new long[r];
        }

        // 1-d convolutions run as 2-d with a height of 1 (cuDNN wants at least 4-d descriptors).
        long[] Lift(long[] s) => r == 1 ? [s[0], s[1], 1, s[2]] : s;
        int[] Lift1(long[] v, long one) => (r == 1 ? new[] { one }.Concat(v) : v).Select(i => checked((int)i)).ToArray();
        var dataType = St(x) == ElementType.Float16 ? Cudnn.CUDNN_DATA_HALF : Cudnn.CUDNN_DATA_FLOAT;
        var format = nhwc ? Cudnn.CUDNN_TENSOR_NHWC : Cudnn.CUDNN_TENSOR_NCHW;
        var xDesc = Cudnn.Tensor(dataType, Lift(input.Shape), format);
        var wDesc = Cudnn.Filter(dataType, Lift(w.Shape), format);
        var yDesc = Cudnn.Tensor(dataType, Lift(yShape), format);
        var tensorCores = dataType == Cudnn.CUDNN_DATA_HALF || _target.AllowTf32;
        var mathType = tensorCores ? Cudnn.CUDNN_TENSOR_OP_MATH : Cudnn.CUDNN_FMA_MATH;
        var convDesc = Cudnn.Convolution(Lift1(pads, 0), Lift1(strides, 1), Lift1(dilations, 1), checked((int)groups), mathType);
        var handle = _target.PlanningCudnn;
        var precision = dataType == Cudnn.CUDNN_DATA_HALF ? (nhwc ? "fp16-nhwc" : "fp16") : _target.AllowTf32 ? "fp32+tf32" : "fp32";
        var queried = System.Diagnostics.Stopwatch.GetTimestamp();
        var chosen = ChooseConvAlgorithm(handle, xDesc, wDesc, convDesc, yDesc, dataType, relu ? precision + "+bias-relu" : precision, tensorCores, relu, Lift(input.Shape), Lift(w.Shape), Lift(yShape), Lift1(pads, 0), Lift1(strides, 1), Lift1(dilations, 1), checked((int)groups));
        if (chosen is null)
        {
            throw new BatchwiseException($"cuDNN offers no algorithm for this convolution (x {Tensor.ShapeText(input.Shape)}, w {Tensor.ShapeText(w.Shape)}, groups {groups})", "Check the shapes; use --engine ort.");
        }

        Cudnn.SetMathType(convDesc, chosen.MathType);
        var ws = chosen.WorkspaceKnown ? chosen.WorkspaceBytes : Cudnn.WorkspaceSize(handle, xDesc, wDesc, convDesc, yDesc, chosen.Algo);
        LibrarySeconds += System.Diagnostics.Stopwatch.GetElapsedTime(queried).TotalSeconds;
        ReserveWorkspace(ws);
        var filter = nhwc ? new PlanValue(w.Type, w.Shape, ChannelsLastConstant(w.Constant!, w.Shape)) : w; // KRSC: cuDNN's NHWC filter format
        if (relu)
        {
            var biasDesc = Cudnn.Tensor(dataType, Lift(new long[] { 1, b!.Count }.Concat(Enumerable.Repeat(1L, r)).ToArray()));
            var activation = Cudnn.Activation(Cudnn.CUDNN_ACTIVATION_RELU);
            Emit(new ConvStep(_node, Dev(input), Dev(filter), Dev(b), Dev(raw), xDesc, wDesc, convDesc, yDesc, biasDesc, chosen.Algo, ws)
            {
                Activation = activation,
                Residual = residual is null ? -1 : Dev(residual),
            });
            return;
        }

        Emit(new ConvStep(_node, Dev(input), Dev(filter), -1, Dev(raw), xDesc, wDesc, convDesc, yDesc, null, chosen.Algo, ws));
        if (b is not null)
        {
            var bias = View(b, new[] { b.Count }.Concat(Enumerable.Repeat(1L, r)).ToArray());
            _values[outName] = Pending([raw, bias], _ => "x0 + x1", raw.Type, yShape);
        }
    }

    /// <summary>
    /// What follows a convolution that cuDNN can fuse into it: a ReLU, or a residual Add (other input already computed)
    /// then a ReLU. The fused nodes are marked folded and <paramref name="outName"/> becomes the last one's output.
    /// </summary>
    private (bool Relu, PlanValue? Residual) ConvEpilogue(ref string outName, long[] yShape)
    {
        var name = outName;
        if (_graphOutputs.Contains(name) || !_consumers.TryGetValue(name, out var users) || users.Count != 1)
        {
            return (false, null);
        }

        var next = users[0];
        if (next.OpType == "Relu")
        {
            _folded.Add(next);
            outName = next.Output[0];
            return (true, null);
        }

        if (next.OpType != "Add" || next.Input.Count != 2)
        {
            return (false, null);
        }

        var other = next.Input[0] == name ? next.Input[1] : next.Input[0];
        if (other == name || !_values.TryGetValue(other, out var z) || z.Constant is not null || !z.Shape.SequenceEqual(yShape) || St(z) != St(ElementType.Float))
        {
            return (false, null);
        }

        var sum = next.Output[0];
        if (_graphOutputs.Contains(sum) || !_consumers.TryGetValue(sum, out var after) || after.Count != 1 || after[0].OpType != "Relu")
        {
            return (false, null);
        }

        _folded.Add(next);
        _folded.Add(after[0]);
        outName = after[0].Output[0];
        return (true, z);
    }

    /// <summary>A channels-last input and its constant filter with zero channels added up to <paramref name="channels"/>.</summary>
    private (PlanValue X, PlanValue W) PadChannels(PlanValue x, PlanValue w, long channels)
    {
        var padded = Temp(x.Type, [x.Shape[0], channels, x.Shape[2], x.Shape[3]], nhwc: true);
        Kernel(KernelSource.Pad(St(x), Phys(x), Phys(padded), [0, 0, 0, 0], "constant", 0), padded.Count, Dev(padded), Dev(x));
        return (padded, PadFilter(w, channels));
    }

    /// <summary>A constant filter [K, C, kh, kw] with zero input channels added up to <paramref name="channels"/>.</summary>
    private PlanValue PadFilter(PlanValue w, long channels)
    {
        var f = w.Constant!;
        var s = w.Shape;
        var c = s[1];
        var per = s[2] * s[3];
        var shape = new[] { s[0], channels, s[2], s[3] };
        var filter = _target.Derive($"pad-filter:{channels}", [f], () => HostTensor.Create(f.Type, shape, i =>
        {
            var (k, ch, rest) = (i / (channels * per), i / per % channels, i % per);
            return ch < c ? f[(((k * c) + ch) * per) + rest] : 0;
        }));
        return new PlanValue(w.Type, shape, filter);
    }

    /// <summary>
    /// The convolution's algorithm: from the target's timing cache when it has this shape, else each of cuDNN's candidates
    /// timed on scratch buffers in the call the plan makes (within the workspace limit) and cached; without a cache,
    /// cuDNN's heuristics.
    /// </summary>
    private TacticChoice? ChooseConvAlgorithm(CudnnHandle handle, CudnnDescriptor xDesc, CudnnDescriptor wDesc, CudnnDescriptor convDesc, CudnnDescriptor yDesc, int dataType, string precision, bool tensorCores, bool fused, long[] x, long[] w, long[] y, int[] pads, int[] strides, int[] dilations, int groups)
    {
        var cache = _target.Tactics;
        var key = new ConvShapeKey(precision, x, w, y, pads, strides, dilations, groups, MaxConvWorkspace);

        // cuDNN's heuristics are asked once per convolution and octave of batch and image size (a query costs
        // milliseconds, a plan has dozens of convolutions); another shape of the octave reuses the choice once cuDNN
        // confirms it supports that shape (its workspace query succeeds), else asks afresh. Timed tactics stay exact.
        var storeKey = cache is null
            ? "conv-heuristic|" + (key with { X = [.. x.Select((d, i) => i == 1 ? d : Octave(d))], Y = [.. y.Select((d, i) => i == 1 ? d : Octave(d))] }).Text
            : "conv-timed|" + key.Text;
        if (_target.Choices.TryGet(storeKey, out var stored) && stored.Length == 16)
        {
            var reused = new TacticChoice(BitConverter.ToInt32(stored, 0), BitConverter.ToInt32(stored, 4), BitConverter.ToInt64(stored, 8), double.NaN);
            try
            {
                Cudnn.SetMathType(convDesc, reused.MathType);
                var bytes = Cudnn.WorkspaceSize(handle, xDesc, wDesc, convDesc, yDesc, reused.Algo);
                if (bytes <= MaxConvWorkspace)
                {
                    return reused with { WorkspaceBytes = bytes, WorkspaceKnown = true };
                }
            }
            catch (CudaException)
            {
                // Not supported at this exact shape: ask the heuristics below.
            }
        }

        var choice = ChooseConvAlgorithmUncached(handle, xDesc, wDesc, convDesc, yDesc, dataType, tensorCores, fused, x, w, y, cache, key);
        if (choice is not null)
        {
            _target.Choices.Set(storeKey, [.. BitConverter.GetBytes(choice.Algo), .. BitConverter.GetBytes(choice.MathType), .. BitConverter.GetBytes(choice.WorkspaceBytes)]);
        }

        return choice;
    }

    /// <summary>The power of two at or above <paramref name="n"/>: the octave a size belongs to.</summary>
    internal static long Octave(long n)
    {
        long o = 1;
        while (o < n)
        {
            o <<= 1;
        }

        return o;
    }

    private static TacticChoice? ChooseConvAlgorithmUncached(CudnnHandle handle, CudnnDescriptor xDesc, CudnnDescriptor wDesc, CudnnDescriptor convDesc, CudnnDescriptor yDesc, int dataType, bool tensorCores, bool fused, long[] x, long[] w, long[] y, TimingCache? cache, ConvShapeKey key)
    {
        bool Allowed(Cudnn.ConvolutionFwdAlgoPerf a) => a.Status == 0 && (long)a.Memory <= MaxConvWorkspace && (tensorCores || a.MathType != Cudnn.CUDNN_TENSOR_OP_MATH);
        if (cache is not null && cache.TryGet(key, out var cached))
        {
            return cached;
        }

        var candidates = Cudnn.ForwardAlgorithms(handle, xDesc, wDesc, convDesc, yDesc).Where(Allowed).ToList();
        if (cache is not null && candidates.Count > 1)
        {
            // Each candidate timed in the call the plan will make (the fused bias + ReLU one where it is fused): cuDNN's own
            // Find times the plain convolution, whose winners can be slow in the fused call.
            try
            {
                var timed = TimeConvolution(handle, xDesc, wDesc, convDesc, yDesc, dataType, fused, x, w, y, candidates);
                if (timed is not null)
                {
                    cache.Set(key, timed);
                    return timed;
                }
            }
            catch (CudaException)
            {
                // Out of memory for the scratch buffers: take the heuristics' first choice below.
            }
        }

        return candidates.Select(a => new TacticChoice(a.Algo, a.MathType, (long)a.Memory, double.NaN)).FirstOrDefault();
    }

    /// <summary>
    /// The median of five timed calls after a warm-up one (CUDA events around each on <paramref name="stream"/>), or
    /// infinity when the call fails (a candidate that cannot run this problem is no candidate).
    /// </summary>
    private static double MedianMilliseconds(CudaStream stream, CudaEvent start, CudaEvent end, Action call)
    {
        var times = new List<double>();
        try
        {
            for (var r = 0; r < 6; r++)
            {
                CudaDriver.Record(start, stream);
                call();
                CudaDriver.Record(end, stream);
                var ms = CudaDriver.ElapsedSeconds(start, end) * 1000;
                if (r > 0)
                {
                    times.Add(ms);
                }
            }
        }
        catch (CudaException)
        {
            return double.PositiveInfinity;
        }

        times.Sort();
        return times[times.Count / 2];
    }

    /// <summary>The fastest candidate (median of five runs after a warm-up, CUDA events) on scratch buffers, or null.</summary>
    private static TacticChoice? TimeConvolution(CudnnHandle handle, CudnnDescriptor xDesc, CudnnDescriptor wDesc, CudnnDescriptor convDesc, CudnnDescriptor yDesc, int dataType, bool fused, long[] x, long[] w, long[] y, List<Cudnn.ConvolutionFwdAlgoPerf> candidates)
    {
        using var stream = CudaDriver.CreateStream();
        Cudnn.SetStream(handle, stream.Handle);
        using var xs = CudaDriver.Allocate(Engines.Tensor.ElementCountOf(x) * 4);
        using var ws = CudaDriver.Allocate(Engines.Tensor.ElementCountOf(w) * 4);
        using var ys = CudaDriver.Allocate(Engines.Tensor.ElementCountOf(y) * 4); // float32-sized: big enough for half too
        using var bias = CudaDriver.Allocate(y[1] * 4);
        using var scratch = CudaDriver.Allocate(MaxConvWorkspace);
        using var biasDesc = Cudnn.Tensor(dataType, new long[] { 1, y[1] }.Concat(Enumerable.Repeat(1L, y.Length - 2)).ToArray());
        using var activation = Cudnn.Activation(Cudnn.CUDNN_ACTIVATION_RELU);
        using var start = CudaDriver.CreateEvent();
        using var end = CudaDriver.CreateEvent();
        CudaDriver.MemsetD8(xs.Pointer, 0, Engines.Tensor.ElementCountOf(x) * 4, stream.Handle);
        CudaDriver.MemsetD8(ws.Pointer, 0, Engines.Tensor.ElementCountOf(w) * 4, stream.Handle);
        CudaDriver.MemsetD8(bias.Pointer, 0, y[1] * 4, stream.Handle);
        TacticChoice? best = null;
        foreach (var c in candidates)
        {
            Cudnn.SetMathType(convDesc, c.MathType);
            var ms = MedianMilliseconds(stream, start, end, () =>
            {
                if (fused)
                {
                    Cudnn.ConvolutionBiasActivationForward(handle, xDesc, xs.Pointer, wDesc, ws.Pointer, convDesc, c.Algo, scratch.Pointer, MaxConvWorkspace, 0f, yDesc, ys.Pointer, biasDesc, bias.Pointer, activation, yDesc, ys.Pointer);
                }
                else
                {
                    Cudnn.ConvolutionForward(handle, xDesc, xs.Pointer, wDesc, ws.Pointer, convDesc, c.Algo, scratch.Pointer, MaxConvWorkspace, 0f, yDesc, ys.Pointer);
                }
            });
            if (double.IsFinite(ms) && (best is null || ms < best.Milliseconds))
            {
                best = new TacticChoice(c.Algo, c.MathType, (long)c.Memory, ms);
            }
        }

        Cudnn.SetStream(handle, IntPtr.Zero); // the scratch stream goes away with this method
        if (best is not null)
        {
            Cudnn.SetMathType(convDesc, best.MathType);
        }

        return best;
    }

    /// <summary>
    /// BatchNormalization folded into the convolution before it (the conv's only consumer, constant parameters):
    /// W' = W * s and b' = (b - mean) * s + beta per output channel, s = gamma / sqrt(var + epsilon).
    /// </summary>
    private (PlanValue W, PlanValue B, string Output)? FoldBatchNorm(OnnxProto.NodeProto conv, PlanValue w, PlanValue? b)
    {
        var name = conv.Output[0];
        if (w.Constant is null || (b is not null && b.Constant is null) || w.Type != ElementType.Float || _graphOutputs.Contains(name)
            || !_consumers.TryGetValue(name, out var users) || users.Count != 1 || users[0].OpType != "BatchNormalization" || users[0].Input[0] != name)
        {
            return null;
        }

        var bn = users[0];
        var p = bn.Input.Skip(1).Take(4).Select(n => _values.TryGetValue(n, out var v) ? v.Constant : null).ToArray();
        var m = w.Shape[0];
        if (p.Length != 4 || p.Any(t => t is null || t.Count != m) || bn.Output.Count(o => o.Length > 0) != 1)
        {
            return null;
        }

        var eps = new NodeAttributes(bn).Float("epsilon", 1e-5);
        var per = w.Count / m;
        var (wc, bc) = (w.Constant, b?.Constant);
        var folded = _target.Derive(FormattableString.Invariant($"bn-fold:{eps:R}"), [wc, bc, p[0], p[1], p[2], p[3]], () =>
        {
            var weights = wc.AsDoubles();
            var bias = new double[m];
            for (var c = 0; c < m; c++)
            {
                var scale = p[0]![c] / Math.Sqrt(p[3]![c] + eps);
                for (var j = 0; j < per; j++)
                {
                    weights[(c * per) + j] = (float)(weights[(c * per) + j] * scale);
                }

                bias[c] = (float)((((bc?[c]) ?? 0) - p[2]![c]) * scale + p[1]![c]);
            }

            return new[] { HostTensor.OfFloats(ElementType.Float, w.Shape, weights), HostTensor.OfFloats(ElementType.Float, [m], bias) };
        });

        _folded.Add(bn);
        var (wt, bt) = (folded[0], folded[1]);
        return (new PlanValue(ElementType.Float, w.Shape, wt), new PlanValue(ElementType.Float, [m], bt), bn.Output[0]);
    }

    private void LowerPool(OnnxProto.NodeProto node, PlanValue x, NodeAttributes attrs, bool max)
    {
        var r = x.Shape.Length - 2;
        if (r < 1 || r > 3)
        {
            throw new BatchwiseException($"pooling of rank {x.Shape.Length} is not supported (1-d to 3-d)", "Use 1-d to 3-d pooling.");
        }

        var kernel = attrs.Ints("kernel_shape")!;
        var strides = attrs.Ints("strides") ?? Enumerable.Repeat(1L, r).ToArray();
        var dilations = attrs.Ints("dilations") ?? Enumerable.Repeat(1L, r).ToArray();
        var inSpatial = x.Shape.Skip(2).ToArray();
        var autoPad = attrs.String("auto_pad", "NOTSET");
        var (pb, pe) = AutoPads(autoPad, inSpatial, kernel, strides, dilations, attrs.Ints("pads"));
        var ceil = attrs.Int("ceil_mode", 0) != 0;
        var outSpatial = new long[r];
        for (var d = 0; d < r; d++)
        {
            var span = inSpatial[d] + pb[d] + pe[d] - (((kernel[d] - 1) * dilations[d]) + 1);
            if (autoPad is "SAME_UPPER" or "SAME_LOWER")
            {
                outSpatial[d] = (inSpatial[d] + strides[d] - 1) / strides[d];
            }
            else if (ceil)
            {
                outSpatial[d] = (long)Math.Ceiling(span / (double)strides[d]) + 1;
                if ((outSpatial[d] - 1) * strides[d] >= inSpatial[d] + pb[d])
                {
                    outSpatial[d]--;
                }
            }
            else
            {
                outSpatial[d] = (span / strides[d]) + 1;
            }
        }

        var y = Output(node, 0, x.Type, new[] { x.Shape[0], x.Shape[1] }.Concat(outSpatial).ToArray(), x.Nhwc);
        Kernel(KernelSource.Pool(St(x), max, x.Shape[0] * x.Shape[1], inSpatial, outSpatial, kernel, strides, pb, pe, dilations, attrs.Int("count_include_pad", 0) != 0, x.Nhwc, x.Shape[1]), y.Count, Dev(y), Dev(x));
    }

    private void LowerReduce(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var rank = x.Shape.Length;
        var axesFromInput = _model.Opset >= 18 || (node.OpType == "ReduceSum" && _model.Opset >= 13);
        var axes = axesFromInput ? ins.ElementAtOrDefault(1)?.Constant?.AsLongs() : attrs.Ints("axes");
        var keep = attrs.Int("keepdims", 1) != 0;
        var reduced = new bool[rank];
        if (axes is null || axes.Length == 0)
        {
            if (attrs.Int("noop_with_empty_axes", 0) != 0)
            {
                Alias(node, 0, x, x.Shape);
                return;
            }

            Array.Fill(reduced, true);
        }
        else
        {
            foreach (var a in axes)
            {
                reduced[Shapes.Axis(a, rank)] = true;
            }
        }

        var outShape = keep ? x.Shape.Select((s, d) => reduced[d] ? 1 : s).ToArray() : x.Shape.Where((_, d) => !reduced[d]).ToArray();
        var y = Output(node, 0, x.Type, outShape);
        var kind = node.OpType switch
        {
            "ReduceMean" => "mean",
            "ReduceSum" => "sum",
            "ReduceMax" => "max",
            "ReduceMin" => "min",
            "ReduceProd" => "prod",
            "ReduceL2" => "l2",
            "ReduceL1" => "l1",
            _ => "sumsquare",
        };
        Kernel(KernelSource.Reduce(St(x), kind, x.Shape, reduced), y.Count, Dev(y), Dev(x));
    }

    private void LowerConcat(OnnxProto.NodeProto node, PlanValue[] parts, string[] names, long axis)
    {
        var rank = parts[0].Shape.Length;
        var a = Shapes.Axis(axis, rank);
        var shape = (long[])parts[0].Shape.Clone();
        shape[a] = parts.Sum(p => p.Shape[a]);

        // Channels-last when every part is: the copies then run along the physical axis.
        var nhwc = parts.All(p => p.Nhwc);
        var y = Output(node, 0, St(parts[0]), shape, nhwc);
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
            var onlyHere = names.Count(n => n == names[k]) == 1 && _consumers.TryGetValue(names[k], out var users) && users.Count == 1 && !_graphOutputs.Contains(names[k]);
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
    }

    /// <summary>Where logical axis <paramref name="a"/> of an [N, C, H, W] tensor sits in its NHWC layout.</summary>
    private static int PhysicalAxis(int a) => a switch { 0 => 0, 1 => 3, _ => a - 1 };

    private void LowerSplit(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
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

    private void LowerSlice(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
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

        var (outShape, st, sp) = Shapes.Slice(x.Shape, starts, ends, axes, steps);
        var inStrides = KernelSource.Strides(x.Shape);
        var y = Output(node, 0, x.Type, outShape);
        ViewCopy(x, outShape, inStrides.Select((s, d) => s * sp[d]).ToArray(), st.Select((s, d) => s * inStrides[d]).Sum(), y, KernelSource.Strides(outShape), 0);
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
                outShape[d] = (long)Math.Floor(x.Shape[d] * scales[i]);
            }
        }

        var mode = attrs.String("mode", "nearest");
        mode = mode is "linear" or "bilinear" ? "linear" : mode;
        var coordinate = node.OpType == "Upsample" || _model.Opset < 11 ? "asymmetric" : attrs.String("coordinate_transformation_mode", "half_pixel");
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
        if (mode == "nearest" && physScales[^1] == 1.0 && inPhys[^1] == outPhys[^1] && bytes % 16 == 0 && bytes > 0)
        {
            // Nearest with the innermost axis (channels, channels-last) unscaled: whole runs move as 16-byte elements.
            var k = 16 / St(x).SizeOf();
            inPhys = [.. inPhys[..^1], inPhys[^1] / k];
            outPhys = [.. outPhys[..^1], outPhys[^1] / k];
            Kernel(KernelSource.Resize(St(x), inPhys, outPhys, physScales, mode, coordinate, nearest, "uint4"), y.Count / k, Dev(y), Dev(x));
            return;
        }

        Kernel(KernelSource.Resize(St(x), Phys(x), Phys(y), physScales, mode, coordinate, nearest), y.Count, Dev(y), Dev(x));
    }

    private void LowerGemm(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var (a, b, c) = (ins[0]!, ins[1]!, ins.ElementAtOrDefault(2));
        RequireFloat(a);
        var transA = attrs.Int("transA", 0) != 0;
        var transB = attrs.Int("transB", 0) != 0;
        var m = transA ? a.Shape[1] : a.Shape[0];
        var k = transA ? a.Shape[0] : a.Shape[1];
        var n = transB ? b.Shape[0] : b.Shape[1];
        var y = Output(node, 0, a.Type, [m, n]);
        var beta = (float)attrs.Float("beta", 1.0);
        if (c is not null && beta != 0)
        {
            ViewCopy(c, [m, n], Shapes.BroadcastStrides(c.Shape, [m, n]), 0, y, [n, 1], 0);
        }
        else
        {
            beta = 0;
        }

        EmitMatmul(a, b, y, (int)m, (int)n, (int)k, transA, transB, a.Shape[1], b.Shape[1], 1, 0, 0, (float)attrs.Float("alpha", 1.0), beta);
    }

    private void LowerMatMul(OnnxProto.NodeProto node, PlanValue a, PlanValue b)
    {
        RequireFloat(a);
        var aShape = a.Shape.Length == 1 ? new[] { 1L, a.Shape[0] } : a.Shape;
        var bShape = b.Shape.Length == 1 ? new[] { b.Shape[0], 1L } : b.Shape;
        var (m, k) = (aShape[^2], aShape[^1]);
        var n = bShape[^1];
        if (bShape[^2] != k)
        {
            throw new BatchwiseException($"MatMul inner dimensions differ: {Tensor.ShapeText(a.Shape)} x {Tensor.ShapeText(b.Shape)}", "Check the model's shapes.");
        }

        var aBatch = aShape[..^2];
        var bBatch = bShape[..^2];
        var batchShape = Shapes.Broadcast(aBatch, bBatch);
        var outShape = batchShape.Concat(new[] { m, n }).ToArray();
        var yShape = batchShape.ToList();
        if (a.Shape.Length > 1)
        {
            yShape.Add(m);
        }

        if (b.Shape.Length > 1)
        {
            yShape.Add(n);
        }

        var y = Output(node, 0, a.Type, yShape.ToArray());
        var batch = Shapes.Product(batchShape);
        var aCount = Shapes.Product(aBatch);
        var bCount = Shapes.Product(bBatch);
        if (bCount == 1)
        {
            // [..., M, K] x [K, N]: one GEMM with M' = batch * M.
            var av = aCount == batch ? a : Broadcasted(a, batchShape.Concat(new[] { m, k }).ToArray());
            EmitMatmul(av, b, y, checked((int)(batch * m)), (int)n, (int)k, false, false, k, n, 1, 0, 0, 1, 0);
            return;
        }

        var aOp = aCount == batch ? a : aCount == 1 ? a : Broadcasted(a, batchShape.Concat(new[] { m, k }).ToArray());
        var bOp = Broadcasted(b, batchShape.Concat(new[] { k, n }).ToArray());
        var aStride = aCount == 1 ? 0 : m * k;
        EmitMatmul(aOp, bOp, y, (int)m, (int)n, (int)k, false, false, k, n, checked((int)batch), aStride, k * n, 1, 0);
        _ = outShape;
    }

    /// <summary>
    /// The fastest of cuBLASLt's top eight candidates for this product, timed on scratch buffers (CUDA events, median of
    /// five after a warm-up) when the plan is built, or read from the timing cache by its heuristic rank.
    /// </summary>
    private static CublasLt.HeuristicResult TimedMatmul(TimingCache cache, CublasLtObject handle, CublasLtObject desc, CublasLtObject bl, CublasLtObject al, CublasLtObject dl, string key, long bElements, long aElements, long dElements, int elementSize)
    {
        var candidates = CublasLt.Algorithms(handle, desc, bl, al, dl, dl, MatmulWorkspace, 8);
        if (candidates.Length == 0)
        {
            throw new CudaException("cuBLASLt", "cublasLtMatmulAlgoGetHeuristic", 15, "CUBLAS_STATUS_NOT_SUPPORTED: no algorithm for this problem");
        }

        if (cache.TryGet(key, out var cached) && cached.Algo < candidates.Length)
        {
            return candidates[cached.Algo];
        }

        using var stream = CudaDriver.CreateStream();
        using var b = CudaDriver.Allocate(Math.Max(1, bElements) * elementSize);
        using var a = CudaDriver.Allocate(Math.Max(1, aElements) * elementSize);
        using var d = CudaDriver.Allocate(Math.Max(1, dElements) * elementSize);
        using var workspace = CudaDriver.Allocate(MatmulWorkspace);
        using var start = CudaDriver.CreateEvent();
        using var end = CudaDriver.CreateEvent();
        var best = (Index: 0, Ms: double.PositiveInfinity);
        for (var i = 0; i < candidates.Length; i++)
        {
            var candidate = (IntPtr)NativeMemory.Alloc((nuint)sizeof(CublasLt.HeuristicResult));
            *(CublasLt.HeuristicResult*)candidate = candidates[i];
            double ms;
            try
            {
                ms = MedianMilliseconds(stream, start, end, () => CublasLt.Matmul(handle, desc, 1, b.Pointer, bl, a.Pointer, al, 0, d.Pointer, dl, d.Pointer, dl, (CublasLt.HeuristicResult*)candidate, workspace.Pointer, MatmulWorkspace, stream.Handle));
            }
            finally
            {
                NativeMemory.Free((void*)candidate);
            }

            if (ms < best.Ms)
            {
                best = (i, ms);
            }
        }

        cache.Set(key, new TacticChoice(best.Index, 0, (long)candidates[best.Index].WorkspaceSize, best.Ms));
        return candidates[best.Index];
    }

    /// <summary>Materialises a broadcast operand (only where strides cannot express it).</summary>
    private PlanValue Broadcasted(PlanValue v, long[] shape)
    {
        var aligned = Shapes.RightAlign(v.Shape, shape.Length);
        if (aligned.SequenceEqual(shape))
        {
            return v;
        }

        var t = Temp(v.Type, shape);
        ViewCopy(v, shape, Shapes.BroadcastStrides(v.Shape, shape), 0, t, KernelSource.Strides(shape), 0);
        return t;
    }

    /// <summary>
    /// Row-major Y[M,N] = alpha op(A) op(B) + beta Y, through column-major cuBLASLt as Y^T = op(B)^T op(A)^T:
    /// the row-major buffers read as their own transposes, so B goes first.
    /// </summary>
    private void EmitMatmul(PlanValue a, PlanValue b, PlanValue y, int m, int n, int k, bool transA, bool transB, long lda, long ldb, int batch, long strideA, long strideB, float alpha, float beta)
    {
        var handle = _target.PlanningCublasLt;
        var half = St(a) == ElementType.Float16;
        var dataType = half ? CublasLt.CUDA_R_16F : CublasLt.CUDA_R_32F;
        var compute = _target.AllowTf32 && !half ? CublasLt.CUBLAS_COMPUTE_32F_FAST_TF32 : CublasLt.CUBLAS_COMPUTE_32F;
        var desc = CublasLt.MatmulDesc(compute, transB, transA);
        var bRows = transB ? k : n;
        var bCols = transB ? n : k;
        var aRows = transA ? m : k;
        var aCols = transA ? k : m;
        var bl = CublasLt.Layout(dataType, bRows, bCols, ldb, batch, strideB);
        var al = CublasLt.Layout(dataType, aRows, aCols, lda, batch, strideA);
        var dl = CublasLt.Layout(dataType, n, m, n, batch, (long)m * n);
        var key = $"matmul|{(half ? "fp16" : _target.AllowTf32 ? "fp32+tf32" : "fp32")}|m={m}|n={n}|k={k}|ta={transA}|tb={transB}|lda={lda}|ldb={ldb}|batch={batch}|sa={strideA}|sb={strideB}|ws={MatmulWorkspace}";
        var storeKey = (_target.Tactics is null ? "heuristic|" : "timed|") + key;
        CublasLt.HeuristicResult algo;
        var queried = System.Diagnostics.Stopwatch.GetTimestamp();
        if (_target.Choices.TryGet(storeKey, out var stored) && stored.Length == sizeof(CublasLt.HeuristicResult))
        {
            algo = MemoryMarshal.Read<CublasLt.HeuristicResult>(stored);
        }
        else
        {
            algo = _target.Tactics is { } cache
                ? TimedMatmul(cache, handle, desc, bl, al, dl, key, (bRows * (long)bCols) + (strideB * (batch - 1)), (aRows * (long)aCols) + (strideA * (batch - 1)), (long)m * n * batch, half ? 2 : 4)
                : CublasLt.BestAlgorithm(handle, desc, bl, al, dl, dl, MatmulWorkspace);
            var bytes = new byte[sizeof(CublasLt.HeuristicResult)];
            MemoryMarshal.Write(bytes, in algo);
            _target.Choices.Set(storeKey, bytes);
        }

        LibrarySeconds += System.Diagnostics.Stopwatch.GetElapsedTime(queried).TotalSeconds;

        ReserveWorkspace(MatmulWorkspace);
        Emit(new MatmulStep(_node, Dev(b), Dev(a), Dev(y), desc, bl, al, dl, algo, alpha, beta));
    }
}
