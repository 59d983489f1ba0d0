using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Convolutions through cuDNN: algorithm choice (heuristics or timed tactics), fused bias + ReLU (+ residual), BatchNormalization folded into the filter.</summary>
internal sealed partial class GraphCompiler
{
    /// <summary>
    /// The most workspace a cuDNN convolution's algorithm may take (BATCHWISE_CONV_WORKSPACE_MB, 64 to 16,384; 2,048 by
    /// default). At large batches in float32 the fastest algorithms want more than 256 MB, the limit until session 36:
    /// on an H100 at b=256, ResNet-50 fp32 ran 3,910 img/s with 256 MB against 5,050-5,057 with 2,048 (4,913 with 1,024),
    /// ResNet-18 fp32 10,622 against 15,649, MobileNetV2 fp32 15,757 against 16,560, while fp16 was unchanged (ResNet-50
    /// 40,136-40,440 against 39,737-40,413) and b=64 too (bench/results/h200-session36). A plan holds only the workspace
    /// its chosen algorithms take, and timing allocates the most its candidates take, not this limit. It is part of
    /// every timing-cache key.
    /// </summary>
    internal static long MaxConvWorkspace { get; } = ParseConvWorkspace(Environment.GetEnvironmentVariable("BATCHWISE_CONV_WORKSPACE_MB"));

    /// <summary>Megabytes (unset: 2,048) as bytes; a BatchwiseException outside 64 to 16,384.</summary>
    internal static long ParseConvWorkspace(string? text) =>
        (long)EnvironmentSetting.ParseInt("BATCHWISE_CONV_WORKSPACE_MB", text, 2048, 64, 16384, "Unset it (2,048 MB, the measured limit) or give megabytes from 64 to 16384.") << 20;

    private readonly List<(ConvStep Step, PendingConv Pending, Func<TacticChoice> Redo)> _pendingConvs = [];
    private readonly Dictionary<string, Task<long>> _convQueries = new(StringComparer.Ordinal);

    /// <summary>A stored octave choice being confirmed at an exact shape on the query threads.</summary>
    private sealed record PendingConv(Task<long> Workspace, TacticChoice Reused, string StoreKey, string ExactKey);

    private static IEnumerable<(string, OperatorLowering)> ConvolutionLowerings()
    {
        // Pending: a depthwise convolution reads an elementwise chain through (its input); everything else materializes it.
        yield return ("Conv", new((c, n, i, a) => c.LowerConv(n, i, a), InputLayout.Pending, AutoPadCheck));
        yield return ("ConvTranspose", new((c, n, i, a) => c.LowerConvTranspose(n, i, a), InputLayout.AsStored, AutoPadCheck));
    }

    /// <summary>Refuses auto_pad values ONNX does not define (Conv, ConvTranspose and the pools share it).</summary>
    private static string? AutoPadCheck(OnnxProto.NodeProto node, NodeAttributes attrs, long opset)
    {
        var ap = attrs.String("auto_pad", "NOTSET");
        return ap is not ("NOTSET" or "SAME_UPPER" or "SAME_LOWER" or "VALID") ? $"auto_pad '{ap}'" : null;
    }

    /// <summary>
    /// A convolution's window by ONNX's rules (Conv and the integer convolutions): kernel, strides, dilations, groups,
    /// the input's spatial size, pads with auto_pad resolved, and the output's spatial size.
    /// </summary>
    private (long[] Kernel, long[] Strides, long[] Dilations, long Groups, long[] InSpatial, long[] PadsBegin, long[] PadsEnd, long[] OutSpatial) Window(NodeAttributes attrs, long[] x, long[] w)
    {
        var r = x.Length - 2;
        var kernel = attrs.Ints("kernel_shape") ?? w.Skip(2).ToArray();
        var strides = attrs.Ints("strides") ?? Enumerable.Repeat(1L, r).ToArray();
        var dilations = attrs.Ints("dilations") ?? Enumerable.Repeat(1L, r).ToArray();
        var inSpatial = x.Skip(2).ToArray();
        var (pb, pe) = AutoPads(attrs.String("auto_pad", "NOTSET"), inSpatial, kernel, strides, dilations, attrs.Ints("pads"));
        var outSpatial = Enumerable.Range(0, r).Select(d => ((inSpatial[d] + pb[d] + pe[d] - (((kernel[d] - 1) * dilations[d]) + 1)) / strides[d]) + 1).ToArray();
        return (kernel, strides, dilations, attrs.Int("group", 1), inSpatial, pb, pe, outSpatial);
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
        var x = ins[0]!; // pending until the depthwise route declines it
        var w = Materialize(ins[1]!);
        var b = ins.ElementAtOrDefault(2) is { } given ? Materialize(given) : null;
        RequireFloat(x);
        var r = x.Shape.Length - 2;
        if (r < 1 || r > 3)
        {
            throw new BatchwiseException($"Conv of rank {x.Shape.Length} is not supported (1-d to 3-d)", "Use 1-d to 3-d convolutions.");
        }

        var (kernel, strides, dilations, groups, inSpatial, pb, pe, outSpatial) = Window(attrs, x.Shape, w.Shape);
        var outName = node.Output[0];
        if (FoldBatchNorm(node, w, b) is { } folded)
        {
            (w, b, outName) = folded;
        }

        var yShape = new[] { x.Shape[0], w.Shape[0] }.Concat(outSpatial).ToArray();
        if (_stemInputs.ContainsKey(x) && TryLowerStemPool(ref x, w, b, outName, kernel, pb, outSpatial))
        {
            return; // input -> convolution -> ReLU -> max pooling as one kernel (StemPool.cs)
        }

        if (TryLowerDepthwise(x, w, b, outName, yShape, strides, dilations, groups, pb, outSpatial))
        {
            return; // the own depthwise kernel (Depthwise.cs)
        }

        x = Materialize(x);

        if (TryLowerGroupedConv(x, w, b, outName, yShape, kernel, strides, dilations, groups, pb, outSpatial))
        {
            return; // the own grouped kernel (GroupedConvolution.cs)
        }

        if (TryLowerPatches(x, w, b, outName, yShape, kernel, strides, dilations, groups, pb, pe, outSpatial))
        {
            return; // a patch embedding as one GEMM (Patches.cs)
        }

        if (TryLowerStemOwn(x, w, b, outName, yShape, kernel, strides, dilations, groups, pb, outSpatial))
        {
            return; // a convolution over a few channels through the own kernel, channels padded to 8 (GroupedConvolution.cs)
        }

        if (TryLowerStemAsGemm(x, w, b, ref outName, yShape, kernel, strides, dilations, groups, pb, outSpatial))
        {
            return; // a convolution over a few channels as patches times the filter (Patches.cs)
        }

        if (TryLowerSplitKConv(x, w, b, outName, yShape, kernel, strides, dilations, groups, pb, outSpatial))
        {
            return; // a convolution too small to fill the device through the own split-K kernel (SplitKConvolution.cs)
        }

        if (TryLowerPointwise(x, w, b, ref outName, yShape, kernel, strides, dilations, groups, pb, pe))
        {
            return; // a pointwise convolution as one GEMM with its epilogue (PointwiseConvolution.cs)
        }

        // Half precision: channels-last activations and KRSC filters (cuDNN's tensor-core kernels), float32 accumulation.
        var nhwc = PreferNhwc(x.Shape) && w.Constant is not null;
        x = nhwc ? Nhwc(x) : Nchw(x);

        // A filter computed at run time is a 4-d activation like any other, stored channels-last in half precision:
        // the channels-first call reads it as KCRS, so it is brought to that order first (a no-op where it already is).
        w = nhwc ? w : Nchw(w);
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
        FoldResidualBias(ref residual, ref b);
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
            b = ZeroBias(w.Shape[0]);
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
        if (_target.PlansConvolutionsWithoutLibrary)
        {
            var kept = nhwc ? new PlanValue(w.Type, w.Shape, ChannelsLastConstant(w.Constant!, w.Shape)) : w;
            var shapeKey = new ConvShapeKey(dataType == Cudnn.CUDNN_DATA_HALF ? (nhwc ? "fp16-nhwc" : "fp16") : "fp32", Lift(input.Shape), Lift(w.Shape), Lift(yShape), Lift1(pads, 0), Lift1(strides, 1), Lift1(dilations, 1), checked((int)groups), MaxConvWorkspace);
            Emit(new ConvProblemStep(_node, [Dev(input), Dev(kept), relu ? Dev(b!) : -1, Dev(raw), residual is null ? -1 : Dev(residual)], shapeKey));
            if (!relu && b is not null)
            {
                _values[outName] = RawPlusBias(raw, b, yShape);
            }

            return;
        }

        var describing = System.Diagnostics.Stopwatch.GetTimestamp();
        var xDesc = Cudnn.Tensor(dataType, Lift(input.Shape), format);
        var wDesc = Cudnn.Filter(dataType, Lift(w.Shape), format);
        var yDesc = Cudnn.Tensor(dataType, Lift(yShape), format);
        var tensorCores = dataType == Cudnn.CUDNN_DATA_HALF || _target.AllowTf32;
        var mathType = tensorCores ? Cudnn.CUDNN_TENSOR_OP_MATH : Cudnn.CUDNN_FMA_MATH;
        var convDesc = Cudnn.Convolution(Lift1(pads, 0), Lift1(strides, 1), Lift1(dilations, 1), checked((int)groups), mathType);
        AddLibraryDetail("conv_descriptors", describing);
        var handle = _target.PlanningCudnn;
        var precision = dataType == Cudnn.CUDNN_DATA_HALF ? (nhwc ? "fp16-nhwc" : "fp16") : _target.AllowTf32 ? "fp32+tf32" : "fp32";
        var queried = System.Diagnostics.Stopwatch.GetTimestamp();
        var problem = (Precision: relu ? precision + (residual is null ? "+bias-relu" : "+bias-relu+residual") : precision, X: Lift(input.Shape), W: Lift(w.Shape), Y: Lift(yShape), Pads: Lift1(pads, 0), Strides: Lift1(strides, 1), Dilations: Lift1(dilations, 1), Groups: checked((int)groups));
        TacticChoice Choose(bool defer, out string key, out PendingConv? pending)
        {
            var chosen = ChooseConvAlgorithm(handle, xDesc, wDesc, convDesc, yDesc, dataType, problem.Precision, tensorCores, relu, residual is not null, problem.X, problem.W, problem.Y, problem.Pads, problem.Strides, problem.Dilations, problem.Groups, defer, out key, out pending)
                ?? throw new BatchwiseException($"cuDNN offers no algorithm for this convolution (x {Tensor.ShapeText(input.Shape)}, w {Tensor.ShapeText(w.Shape)}, groups {groups})", "Check the shapes; use --engine ort.");
            Cudnn.SetMathType(convDesc, chosen.MathType);
            return chosen.WorkspaceKnown || pending is not null ? chosen : chosen with { WorkspaceBytes = TimedLibrary("conv_workspace", () => Cudnn.WorkspaceSize(handle, xDesc, wDesc, convDesc, yDesc, chosen.Algo)), WorkspaceKnown = true };
        }

        // A stored octave choice to confirm at this exact shape is confirmed on the query threads while lowering goes on
        // (ResolvePendingConvolutions fills in the workspace, or redoes the choice in sequence where the query failed).
        var chosen = Choose(defer: true, out var choiceKey, out var pending);
        LibrarySeconds += System.Diagnostics.Stopwatch.GetElapsedTime(queried).TotalSeconds;
        var ws = pending is null ? chosen.WorkspaceBytes : 0;
        if (pending is null)
        {
            ReserveWorkspace(ws);
        }

        var filter = nhwc ? new PlanValue(w.Type, w.Shape, ChannelsLastConstant(w.Constant!, w.Shape)) : w; // KRSC: cuDNN's NHWC filter format
        ConvStep step;
        if (relu)
        {
            var biasDesc = Cudnn.Tensor(dataType, Lift(new long[] { 1, b!.Count }.Concat(Enumerable.Repeat(1L, r)).ToArray()));
            var activation = Cudnn.Activation(Cudnn.CUDNN_ACTIVATION_RELU);
            Emit(step = new ConvStep(_node, Dev(input), Dev(filter), Dev(b), Dev(raw), xDesc, wDesc, convDesc, yDesc, biasDesc, chosen.Algo, ws)
            {
                Activation = activation,
                Residual = residual is null ? -1 : Dev(residual),
                ChoiceKey = choiceKey,
            });
        }
        else
        {
            Emit(step = new ConvStep(_node, Dev(input), Dev(filter), -1, Dev(raw), xDesc, wDesc, convDesc, yDesc, null, chosen.Algo, ws) { ChoiceKey = choiceKey });
        }

        if (pending is not null)
        {
            _pendingConvs.Add((step, pending, () => Choose(defer: false, out _, out _)));
        }

        if (relu)
        {
            return;
        }

        if (b is not null)
        {
            _values[outName] = RawPlusBias(raw, b, yShape);
        }
    }

    /// <summary>A convolution's raw output plus its per-channel bias, pending (joined to whatever reads it), remembering both.</summary>
    private PlanValue RawPlusBias(PlanValue raw, PlanValue b, long[] yShape)
    {
        var bias = View(b, new[] { b.Count }.Concat(Enumerable.Repeat(1L, yShape.Length - 2)).ToArray());
        var sum = Pending([raw, bias], _ => "x0 + x1", raw.Type, yShape);
        sum.RawPlusBias = (raw, b);
        return sum;
    }

    /// <summary>
    /// Where the residual a convolution or product takes is another convolution's raw output plus its bias (a shortcut
    /// planned first, <see cref="BranchOrder"/>): the raw output becomes the residual and that bias joins this one's
    /// <paramref name="b"/> (the sum of two per-channel constants), so neither needs a kernel of its own.
    /// </summary>
    private void FoldResidualBias(ref PlanValue? residual, ref PlanValue? b)
    {
        if (residual?.RawPlusBias is not { } rb || rb.Bias.Constant is not { } extra || extra.Shape.Length != 1
            || (b is not null && (b.Constant is null || b.Type != rb.Bias.Type || !b.Shape.SequenceEqual(extra.Shape))))
        {
            return;
        }

        if (b?.Constant is { } mine)
        {
            b = new PlanValue(b.Type, b.Shape, _target.Derive("bias-sum", [mine, extra], () => HostTensor.Create(mine.Type, mine.Shape, i => mine[i] + extra[i])));
        }
        else
        {
            b = rb.Bias;
        }

        residual = rb.Raw;
    }

    /// <summary>
    /// The workspace of each convolution whose octave choice went to the query threads, in plan order: the answer where
    /// cuDNN confirmed the choice at this shape (within the workspace limit) and the octave still keeps that choice;
    /// otherwise the choice made again in sequence, as without the threads (same algorithms, same workspace). The time
    /// waited is span conv_workspace_wait (the queries themselves ran beside the lowering).
    /// </summary>
    private void ResolvePendingConvolutions()
    {
        foreach (var (step, pending, redo) in _pendingConvs)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            long? bytes;
            try
            {
                bytes = pending.Workspace.GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is BatchwiseException or ObjectDisposedException or InvalidOperationException or DllNotFoundException or EntryPointNotFoundException)
            {
                bytes = null; // not supported at this shape (or no thread to ask): asked again in sequence below
            }

            AddLibraryDetail("conv_workspace_wait", started);
            var octaveKeeps = _target.Choices.TryGet(pending.StoreKey, out var stored) && Decode(stored) is { } now && now.Algo == pending.Reused.Algo && now.MathType == pending.Reused.MathType;
            if (bytes is { } b && b <= MaxConvWorkspace && octaveKeeps)
            {
                var confirmed = pending.Reused with { WorkspaceBytes = b, WorkspaceKnown = true };
                _target.Choices.Set(pending.ExactKey, Encode(confirmed));
                step.Resolve(confirmed.Algo, b);
            }
            else
            {
                var chosen = redo();
                step.Resolve(chosen.Algo, chosen.WorkspaceBytes);
            }

            ReserveWorkspace(step.WorkspaceBytes);
            LibrarySeconds += System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
        }

        _pendingConvs.Clear();
        _convQueries.Clear();
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
    /// <param name="exactKey">The choice's key for this exact problem (what a saved engine's early warm-up calls it by).</param>
    /// <param name="defer">Where the octave's stored choice is to be confirmed at this shape: ask the query threads
    /// (<see cref="IPlanTarget.ConvQueries"/>) and return it with <paramref name="pending"/> (workspace not yet known).</param>
    private TacticChoice? ChooseConvAlgorithm(CudnnHandle handle, CudnnTensorDescriptor xDesc, CudnnFilterDescriptor wDesc, CudnnConvolutionDescriptor convDesc, CudnnTensorDescriptor yDesc, int dataType, string precision, bool tensorCores, bool fused, bool residual, long[] x, long[] w, long[] y, int[] pads, int[] strides, int[] dilations, int groups, bool defer, out string exactKey, out PendingConv? pending)
    {
        pending = null;
        var cache = _target.Tactics;
        var key = new ConvShapeKey(precision, x, w, y, pads, strides, dilations, groups, MaxConvWorkspace);

        // This exact problem seen before (in this session, or by the build that wrote a saved engine): its algorithm and
        // the workspace cuDNN gave for it are known, and cuDNN is asked nothing (same device and cuDNN version, which a
        // saved engine checks).
        exactKey = (cache is null ? ExactHeuristicChoice : ExactTimedChoice) + key.Text;
        if (_target.Choices.TryGet(exactKey, out var exact) && Decode(exact) is { } known)
        {
            return known with { WorkspaceKnown = true };
        }

        // cuDNN's heuristics are asked once per convolution and octave of batch and image size (a query costs
        // milliseconds, a plan has dozens of convolutions); another shape of the octave reuses the choice once cuDNN
        // confirms it supports that shape (its workspace query succeeds), else asks afresh. Timed tactics stay exact.
        // With BATCHWISE_CONV_CHOICES=nearest, the first shape of an octave starts from the choice of the nearest batch
        // octave already known (the legacy API's algorithms take any batch), confirmed the same way.
        string OctaveKey(long batchOctave) => "conv-heuristic|" + (key with
        {
            X = [.. x.Select((d, i) => i == 0 && batchOctave > 0 ? batchOctave : i == 1 ? d : Octave(d))],
            Y = [.. y.Select((d, i) => i == 0 && batchOctave > 0 ? batchOctave : i == 1 ? d : Octave(d))],
        }).Text;
        var storeKey = cache is null ? OctaveKey(0) : "conv-timed|" + key.Text;
        var tried = new List<string> { storeKey };
        if (cache is null && _target.NearestBatchChoices)
        {
            var own = Octave(x[0]);
            for (var step = 1; step <= 12; step++)
            {
                tried.Add(OctaveKey(own << step));
                if (own >> step >= 1)
                {
                    tried.Add(OctaveKey(own >> step));
                }
            }
        }

        foreach (var candidateKey in tried)
        {
            if (!_target.Choices.TryGet(candidateKey, out var stored) || Decode(stored) is not { } reused)
            {
                continue;
            }

            if (defer && candidateKey == storeKey && _target.ConvQueries is { } pool)
            {
                // Identical problems of one plan (repeated blocks) share one query.
                if (!_convQueries.TryGetValue(exactKey, out var query))
                {
                    _convQueries[exactKey] = query = TimedLibrary("conv_workspace_enqueue", () => pool.WorkspaceSize(key, reused.Algo, reused.MathType));
                }

                pending = new PendingConv(query, reused, storeKey, exactKey);
                return reused with { WorkspaceKnown = false };
            }

            try
            {
                Cudnn.SetMathType(convDesc, reused.MathType);
                var bytes = TimedLibrary(candidateKey == storeKey ? "conv_workspace_reuse" : "conv_workspace_nearest", () => Cudnn.WorkspaceSize(handle, xDesc, wDesc, convDesc, yDesc, reused.Algo));
                if (bytes <= MaxConvWorkspace)
                {
                    var confirmed = reused with { WorkspaceBytes = bytes, WorkspaceKnown = true };
                    if (candidateKey != storeKey)
                    {
                        _target.Choices.Set(storeKey, Encode(confirmed)); // the octave's first shape took it: the octave keeps it
                    }

                    _target.Choices.Set(exactKey, Encode(confirmed));
                    return confirmed;
                }
            }
            catch (CudaException)
            {
                // Not supported at this exact shape: try the next, or ask the heuristics below.
            }
        }

        var choice = TimedLibrary("conv_heuristics", () => ChooseConvAlgorithmUncached(handle, xDesc, wDesc, convDesc, yDesc, dataType, tensorCores, fused, residual, x, w, y, cache, key));
        if (choice is null)
        {
            return null;
        }

        _target.Choices.Set(storeKey, Encode(choice));

        // The workspace for this exact shape (the heuristics' figure is not cuDNN's final word).
        Cudnn.SetMathType(convDesc, choice.MathType);
        var ws = TimedLibrary("conv_workspace", () => Cudnn.WorkspaceSize(handle, xDesc, wDesc, convDesc, yDesc, choice.Algo));
        choice = choice with { WorkspaceBytes = ws, WorkspaceKnown = true };
        _target.Choices.Set(exactKey, Encode(choice));
        return choice;
    }

    /// <summary>
    /// BATCHWISE_CONV_CHOICES=nearest: the first plan of a new batch octave starts from the nearest known octave's cuDNN
    /// choices instead of asking the heuristics (octave, the default: the heuristics are asked once per octave).
    /// </summary>
    internal static bool NearestBatchChoicesFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_CONV_CHOICES")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "octave" => false,
        "nearest" => true,
        var other => throw new BatchwiseException($"BATCHWISE_CONV_CHOICES '{other}' is not octave or nearest", "Unset it (cuDNN's heuristics asked once per batch octave), or set BATCHWISE_CONV_CHOICES=nearest (a new octave starts from the nearest known octave's choices)."),
    };

    /// <summary>The prefix of a convolution's choice for one exact problem (<see cref="ConvShapeKey.Text"/> follows), heuristics' or timed.</summary>
    internal const string ExactHeuristicChoice = "conv-exact-heuristic|", ExactTimedChoice = "conv-exact-timed|";

    /// <summary>A stored choice: algorithm, math type, workspace bytes (16 bytes).</summary>
    private static byte[] Encode(TacticChoice c) => [.. BitConverter.GetBytes(c.Algo), .. BitConverter.GetBytes(c.MathType), .. BitConverter.GetBytes(c.WorkspaceBytes)];

    /// <summary>A choice <see cref="Encode"/> stored, or null for bytes of another form.</summary>
    internal static TacticChoice? Decode(byte[] stored) =>
        stored.Length == 16 ? new TacticChoice(BitConverter.ToInt32(stored, 0), BitConverter.ToInt32(stored, 4), BitConverter.ToInt64(stored, 8), double.NaN) : null;

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

    private static TacticChoice? ChooseConvAlgorithmUncached(CudnnHandle handle, CudnnTensorDescriptor xDesc, CudnnFilterDescriptor wDesc, CudnnConvolutionDescriptor convDesc, CudnnTensorDescriptor yDesc, int dataType, bool tensorCores, bool fused, bool residual, long[] x, long[] w, long[] y, TimingCache? cache, ConvShapeKey key)
    {
        bool Allowed(Cudnn.ConvolutionFwdAlgoPerf a) => a.Status == 0 && (long)a.Memory <= MaxConvWorkspace && (tensorCores || a.MathType != Cudnn.CUDNN_TENSOR_OP_MATH);
        if (cache is not null && cache.TryGet(key, out var cached))
        {
            return cached;
        }

        var candidates = Cudnn.ForwardAlgorithms(handle, xDesc, wDesc, convDesc, yDesc).Where(Allowed).ToList();
        if (cache is not null && candidates.Count > 1)
        {
            // Each candidate timed in the call the plan will make (the fused bias + ReLU one where it is fused, reading its
            // residual where it has one): cuDNN's own Find times the plain convolution, whose winners can be slow in the
            // fused call.
            try
            {
                var timed = TimeConvolution(handle, xDesc, wDesc, convDesc, yDesc, dataType, fused, residual, x, w, y, candidates);
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
    /// The fastest candidate on zeroed scratch buffers (<see cref="MedianMilliseconds"/>: inside a captured CUDA graph),
    /// called as the step calls it: fused with bias and ReLU where <paramref name="fused"/>, adding a residual read from a
    /// buffer of its own (alpha2 1) where <paramref name="residual"/>; or null.
    /// </summary>
    private static TacticChoice? TimeConvolution(CudnnHandle handle, CudnnTensorDescriptor xDesc, CudnnFilterDescriptor wDesc, CudnnConvolutionDescriptor convDesc, CudnnTensorDescriptor yDesc, int dataType, bool fused, bool residual, long[] x, long[] w, long[] y, List<Cudnn.ConvolutionFwdAlgoPerf> candidates)
    {
        using var stream = CudaDriver.CreateStream();
        var previous = Cudnn.GetStream(handle); // the planning handle's own stream (the session's upload stream), put back after
        Cudnn.SetStream(handle, stream.Handle);
        try
        {
            return TimeConvolution(handle, xDesc, wDesc, convDesc, yDesc, dataType, fused, residual, x, w, y, candidates, stream);
        }
        finally
        {
            // Not the legacy default stream, as before session 24 (the handle's later calls would synchronize with every
            // blocking stream of the context), nor, after a failed candidate, the scratch stream this method destroys.
            Cudnn.SetStream(handle, previous);
        }
    }

    /// <summary>The timing itself, on <paramref name="stream"/>, which <paramref name="handle"/> calls into meanwhile.</summary>
    private static TacticChoice? TimeConvolution(CudnnHandle handle, CudnnTensorDescriptor xDesc, CudnnFilterDescriptor wDesc, CudnnConvolutionDescriptor convDesc, CudnnTensorDescriptor yDesc, int dataType, bool fused, bool residual, long[] x, long[] w, long[] y, List<Cudnn.ConvolutionFwdAlgoPerf> candidates, CudaStream stream)
    {
        using var xs = CudaDriver.Allocate(Engines.Tensor.ElementCountOf(x) * 4);
        using var ws = CudaDriver.Allocate(Engines.Tensor.ElementCountOf(w) * 4);
        using var ys = CudaDriver.Allocate(Engines.Tensor.ElementCountOf(y) * 4); // float32-sized: big enough for half too
        using var zs = residual ? CudaDriver.Allocate(Engines.Tensor.ElementCountOf(y) * 4) : null;
        using var bias = CudaDriver.Allocate(y[1] * 4);
        var scratchBytes = Math.Max(1L, candidates.Max(c => (long)c.Memory)); // the most a candidate takes (each is within MaxConvWorkspace)
        using var scratch = CudaDriver.Allocate(scratchBytes);
        using var biasDesc = Cudnn.Tensor(dataType, new long[] { 1, y[1] }.Concat(Enumerable.Repeat(1L, y.Length - 2)).ToArray());
        using var activation = Cudnn.Activation(Cudnn.CUDNN_ACTIVATION_RELU);
        using var start = CudaDriver.CreateEvent();
        using var end = CudaDriver.CreateEvent();
        CudaDriver.MemsetD8(xs.Pointer, 0, Engines.Tensor.ElementCountOf(x) * 4, stream.Handle);
        CudaDriver.MemsetD8(ws.Pointer, 0, Engines.Tensor.ElementCountOf(w) * 4, stream.Handle);
        CudaDriver.MemsetD8(bias.Pointer, 0, y[1] * 4, stream.Handle);
        if (zs is not null)
        {
            CudaDriver.MemsetD8(zs.Pointer, 0, Engines.Tensor.ElementCountOf(y) * 4, stream.Handle);
        }

        var (index, fastest) = FastestCandidate(candidates.Count, i =>
        {
            var c = candidates[i];
            Cudnn.SetMathType(convDesc, c.MathType);
            return MedianMilliseconds(stream, start, end, () =>
            {
                if (fused)
                {
                    Cudnn.ConvolutionBiasActivationForward(handle, xDesc, xs.Pointer, wDesc, ws.Pointer, convDesc, c.Algo, scratch.Pointer, scratchBytes, zs is null ? 0f : 1f, yDesc, (zs ?? ys).Pointer, biasDesc, bias.Pointer, activation, yDesc, ys.Pointer);
                }
                else
                {
                    Cudnn.ConvolutionForward(handle, xDesc, xs.Pointer, wDesc, ws.Pointer, convDesc, c.Algo, scratch.Pointer, scratchBytes, 0f, yDesc, ys.Pointer);
                }
            });
        });
        if (index < 0)
        {
            return null;
        }

        var best = candidates[index];
        Cudnn.SetMathType(convDesc, best.MathType);
        return new TacticChoice(best.Algo, best.MathType, (long)best.Memory, fastest);
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
        var (wc, bc) = (w.Constant, b?.Constant);
        var folded = _target.Derive(FormattableString.Invariant($"bn-fold:{eps:R}"), [wc, bc, p[0], p[1], p[2], p[3]], () => FoldBatchNorm(wc, bc, p[0]!, p[1]!, p[2]!, p[3]!, eps));

        _folded.Add(bn);
        var (wt, bt) = (folded[0], folded[1]);
        return (new PlanValue(ElementType.Float, w.Shape, wt), new PlanValue(ElementType.Float, [m], bt), bn.Output[0]);
    }


    /// <summary>
    /// A filter [M, ...] and bias with a BatchNormalization folded in, each value rounded to float32: W' = W * s and
    /// b' = (b - mean) * s + beta per output channel, s = gamma / sqrt(var + epsilon). Channels in parallel (a large
    /// model's filters are millions of values, folded when its first plan is built).
    /// </summary>
    internal static HostTensor[] FoldBatchNorm(HostTensor w, HostTensor? b, HostTensor gamma, HostTensor beta, HostTensor mean, HostTensor variance, double eps)
    {
        var m = w.Shape[0];
        var per = w.Count / m;
        var from = w.Floats!;
        var weights = new double[from.Length];
        var bias = new double[m];
        Parallel.For(0, m, c =>
        {
            var scale = gamma[c] / Math.Sqrt(variance[c] + eps);
            for (var j = c * per; j < (c + 1) * per; j++)
            {
                weights[j] = (float)(from[j] * scale);
            }

            bias[c] = (float)((((b?[c]) ?? 0) - mean[c]) * scale + beta[c]);
        });
        return [HostTensor.OfFloats(ElementType.Float, w.Shape, weights), HostTensor.OfFloats(ElementType.Float, [m], bias)];
    }

    /// <summary>
    /// One call's time as a plan's CUDA graph runs it: the call captured into a graph (repeated so that one replay lasts
    /// about <see cref="TimedReplayMilliseconds"/>), the median of five timed replays after a warm-up one (CUDA events)
    /// divided by the repeats; infinity when the call fails or cannot be captured (a candidate that cannot run this problem
    /// inside the plan's graph is no candidate). Timed one call at a time outside a graph, a small problem's time is
    /// mostly the host's launch cost, and the winners at small batches ran slower in the replayed graph than the
    /// heuristics' choice (bench/results/cuda-part2-h100.md; ResNet-50 b=1 -1.8% in session 22).
    /// </summary>
    private static double MedianMilliseconds(CudaStream stream, CudaEvent start, CudaEvent end, Action call)
    {
        try
        {
            // One call outside the graph first: a candidate that fails does so here, and its time sizes the repeats.
            CudaDriver.Record(start, stream);
            call();
            CudaDriver.Record(end, stream);
            var once = CudaDriver.ElapsedSeconds(start, end) * 1000;
            var repeats = (int)Math.Clamp(Math.Ceiling(TimedReplayMilliseconds / Math.Max(once, 1e-4)), 1, 16);
            using var graph = CudaDriver.Capture(stream, () =>
            {
                for (var i = 0; i < repeats; i++)
                {
                    call();
                }
            });
            var times = new List<double>();
            for (var r = 0; r < 6; r++)
            {
                CudaDriver.Record(start, stream);
                CudaDriver.Launch(graph, stream);
                CudaDriver.Record(end, stream);
                var ms = CudaDriver.ElapsedSeconds(start, end) * 1000 / repeats;
                if (r > 0)
                {
                    times.Add(ms);
                }
            }

            times.Sort();
            return times[times.Count / 2];
        }
        catch (CudaException)
        {
            return double.PositiveInfinity;
        }
    }

    /// <summary>
    /// A problem whose heuristic choice runs faster than this keeps that choice untimed against the rest. Session 23's
    /// call 1 (H200, six timm models and ResNet-50, heuristics against every candidate timed): timing paid at b=64 on
    /// every model (+2% to +10%) and lost at b=1 on most (-2% to -12%: ViT-S, ConvNeXt-T, MobileNetV3), whose layers
    /// take a few microseconds each; timed in a graph of repeats of itself, such a layer runs with its operands in L2
    /// and its neighbours' work absent, so the winner there is not the winner in the plan.
    /// </summary>
    internal const double SmallProblemMilliseconds = 0.015;

    /// <summary>Whether timing stops at candidate <paramref name="index"/> timed at <paramref name="ms"/>: the heuristics' first choice (index 0) of a small problem stands.</summary>
    private static bool KeepsHeuristicChoice(int index, double ms) => index == 0 && ms < SmallProblemMilliseconds;

    /// <summary>
    /// The timed tactics' choice among <paramref name="count"/> candidates in the library's order, each timed by
    /// <paramref name="milliseconds"/> (not finite: it failed to run): the fastest, the first kept untimed against the rest
    /// where it runs under <see cref="SmallProblemMilliseconds"/>. Index -1 when none ran. The engine's products and
    /// convolutions and the explain probe's GEMM tables choose by it alike.
    /// </summary>
    internal static (int Index, double Milliseconds) FastestCandidate(int count, Func<int, double> milliseconds)
    {
        var best = (Index: -1, Milliseconds: double.PositiveInfinity);
        for (var i = 0; i < count; i++)
        {
            var ms = milliseconds(i);
            if (double.IsFinite(ms) && ms < best.Milliseconds)
            {
                best = (i, ms);
            }

            if (KeepsHeuristicChoice(i, ms))
            {
                break;
            }
        }

        return best;
    }

    /// <summary>How long one timed replay of a candidate's graph should last: long enough that the replay's own launch is noise.</summary>
    private const double TimedReplayMilliseconds = 0.1;


    /// <summary>
    /// ConvTranspose as cuDNN's backward-data convolution: the input is the "dy" of a forward convolution (stride,
    /// dilation, groups as given) whose "dx" is the output. cuDNN pads symmetrically, so where ONNX's output window is not
    /// the full result cropped evenly (output_padding, asymmetric pads, output_shape, SAME_*), the full result goes to a
    /// temporary and a crop (zeros past its end) writes the output. Bias joins an elementwise chain.
    /// </summary>
    private void LowerConvTranspose(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var w = ins[1]!;
        var b = ins.ElementAtOrDefault(2);
        RequireFloat(x);
        var r = x.Shape.Length - 2;
        if (r < 1 || r > 3 || w.Shape.Length != x.Shape.Length)
        {
            throw new BatchwiseException($"ConvTranspose of rank {x.Shape.Length} with a rank-{w.Shape.Length} weight is not supported (1-d to 3-d)", "Use 1-d to 3-d transposed convolutions.");
        }

        var groups = attrs.Int("group", 1);
        if (x.Shape[1] != w.Shape[0] || x.Shape[1] % groups != 0)
        {
            throw new BatchwiseException($"ConvTranspose input has {x.Shape[1]} channels, its weight {Tensor.ShapeText(w.Shape)} with {groups} groups", "Check the model's shapes.");
        }

        var kernel = attrs.Ints("kernel_shape") ?? w.Shape[2..];
        var strides = attrs.Ints("strides") ?? Enumerable.Repeat(1L, r).ToArray();
        var dilations = attrs.Ints("dilations") ?? Enumerable.Repeat(1L, r).ToArray();
        var inSpatial = x.Shape[2..];
        var (outSpatial, begin) = ConvolutionGeometry.Transposed(attrs, inSpatial, kernel);
        var full = Enumerable.Range(0, r).Select(d => (strides[d] * (inSpatial[d] - 1)) + ((kernel[d] - 1) * dilations[d]) + 1).ToArray();
        var yShape = new[] { x.Shape[0], w.Shape[1] * groups }.Concat(outSpatial).ToArray();

        // cuDNN crops begin[d] from both ends itself when that is all ONNX asks.
        var direct = Enumerable.Range(0, r).All(d => begin[d] >= 0 && outSpatial[d] == full[d] - (2 * begin[d]));
        var computedSpatial = direct ? outSpatial : full;
        var pads = direct ? begin : new long[r];
        var computedShape = new[] { x.Shape[0], yShape[1] }.Concat(computedSpatial).ToArray();

        var nhwc = PreferNhwc(x.Shape) && w.Constant is not null;
        x = nhwc ? Nhwc(x) : Nchw(x);

        // A filter computed at run time is a 4-d activation like any other, stored channels-last in half precision:
        // the channels-first call reads it as KCRS, so it is brought to that order first (a no-op where it already is).
        w = nhwc ? w : Nchw(w);
        var computed = direct && b is null ? Output(node, 0, x.Type, yShape, nhwc) : Temp(x.Type, computedShape, nhwc);

        long[] Lift(long[] s) => r == 1 ? [s[0], s[1], 1, s[2]] : s;
        int[] Lift1(long[] v, long one) => (r == 1 ? new[] { one }.Concat(v) : v).Select(i => checked((int)i)).ToArray();
        var dataType = St(x) == ElementType.Float16 ? Cudnn.CUDNN_DATA_HALF : Cudnn.CUDNN_DATA_FLOAT;
        var format = nhwc ? Cudnn.CUDNN_TENSOR_NHWC : Cudnn.CUDNN_TENSOR_NCHW;
        var xDesc = Cudnn.Tensor(dataType, Lift(x.Shape), format);
        var wDesc = Cudnn.Filter(dataType, Lift(w.Shape), format);
        var yDesc = Cudnn.Tensor(dataType, Lift(computedShape), format);
        var tensorCores = dataType == Cudnn.CUDNN_DATA_HALF || _target.AllowTf32;
        var convDesc = Cudnn.Convolution(Lift1(pads, 0), Lift1(strides, 1), Lift1(dilations, 1), checked((int)groups), tensorCores ? Cudnn.CUDNN_TENSOR_OP_MATH : Cudnn.CUDNN_FMA_MATH);
        var handle = _target.PlanningCudnn;
        var queried = System.Diagnostics.Stopwatch.GetTimestamp();
        var candidates = Cudnn.BackwardDataAlgorithms(handle, wDesc, xDesc, convDesc, yDesc)
            .Where(a => a.Status == 0 && (long)a.Memory <= MaxConvWorkspace && (tensorCores || a.MathType != Cudnn.CUDNN_TENSOR_OP_MATH))
            .ToList();
        if (candidates.Count == 0)
        {
            throw new BatchwiseException($"cuDNN offers no algorithm for this transposed convolution (x {Tensor.ShapeText(x.Shape)}, w {Tensor.ShapeText(w.Shape)}, groups {groups})", "Check the shapes; use --engine ort.");
        }

        var chosen = candidates[0];
        Cudnn.SetMathType(convDesc, chosen.MathType);
        var ws = Cudnn.BackwardDataWorkspaceSize(handle, wDesc, xDesc, convDesc, yDesc, chosen.Algo);
        LibrarySeconds += System.Diagnostics.Stopwatch.GetElapsedTime(queried).TotalSeconds;
        ReserveWorkspace(ws);

        // The filter [C_in, C_out / groups, k...] is the forward convolution's [K, C, k...]; channels-last it is [K, k..., C].
        var filter = nhwc ? new PlanValue(w.Type, w.Shape, ChannelsLastConstant(w.Constant!, w.Shape)) : w;
        Emit(new ConvTransposeStep(_node, Dev(x), Dev(filter), Dev(computed), xDesc, wDesc, convDesc, yDesc, chosen.Algo, ws));

        var result = computed;
        if (!direct)
        {
            // y[o] = full[o + begin], zero where that falls outside (output_padding past the end).
            result = b is null ? Output(node, 0, x.Type, yShape, nhwc) : Temp(x.Type, yShape, nhwc);
            var padBegin = new long[] { 0, 0 }.Concat(begin.Select(v => -v)).ToArray();
            var phys = nhwc ? [padBegin[0], padBegin[2], padBegin[3], padBegin[1]] : padBegin;
            Kernel(KernelSource.Pad(St(x), Phys(computed), Phys(result), phys, "constant", 0), result.Count, Dev(result), Dev(computed));
        }

        if (b is not null)
        {
            var bias = View(b, new[] { b.Count }.Concat(Enumerable.Repeat(1L, r)).ToArray());
            _values[node.Output[0]] = Pending([result, bias], _ => "x0 + x1", result.Type, yShape);
        }
    }
}
