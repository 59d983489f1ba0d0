using System.Collections.Concurrent;
using System.Globalization;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Who runs a QDQ model's int8 MatMuls and Gemms (<see cref="Int8Layers"/>).</summary>
internal enum Int8GemmChoice
{
    /// <summary>
    /// cuBLASLt's int8 product with int32 sums (BATCHWISE_INT8_GEMM=cublaslt), dequantized by the kernel that reads
    /// them: cuBLASLt 13.1 refuses a per-column scale vector for int8 products, so the sums go to memory (4 bytes a value)
    /// and back. BERT int8 ran 0.61x / 0.73x fp16 this way at b=32 / 128 on an H200 (session 30).
    /// </summary>
    Cublaslt,

    /// <summary>
    /// cuDNN's graph API with the product as a 1x1 convolution over the rows (the default, BATCHWISE_INT8_GEMM unset or
    /// graph): int8 on tensor cores with the per-column scale and offset in its epilogue, the float16 (or float32) value
    /// written directly; cuBLASLt where cuDNN refuses. BERT int8 19,010 / 22,322 sequences/s at b=32 / 128 against fp16's
    /// 18,550 / 18,964 and the cuBLASLt route's 11,364 / 13,889 on an H200 (session 30, the same engine; cosine 0.99961
    /// against ONNX Runtime's QDQ run).
    /// </summary>
    Graph,
}

/// <summary>
/// The convolutions of a QDQ model on int8 tensor cores (<see cref="Int8Layers"/> picks them): cuDNN convolves int8
/// channels-last activations with int8 KRSC filters into int32 sums (as exact floats, INT8_EXT_CONFIG), and one kernel
/// requantizes them (per-channel scale, bias, the input zero point's share, ReLU, the output zero point) into the next
/// int8 activation. Activations between such layers stay int8 and channels-last: a uint8 value v is kept as the int8
/// byte v - 128, which the next convolution reads with its zero point shifted by 128, and which anything else reads
/// through a pending "+ 128". Whatever this refuses (or cuDNN does) runs as before, in float between the pairs.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>Trial runs of int8 problems, by problem: null when cuDNN ran it, else its error. One per process.</summary>
    private static readonly ConcurrentDictionary<string, string?> Int8Trials = new(StringComparer.Ordinal);

    private readonly Dictionary<PlanValue, (PlanValue Int8, int Shift)> _int8Activations = new(ReferenceEqualityComparer.Instance);

    /// <summary>The quantized first operands of int8 products as the stored row-major int8 bytes the GEMMs read, by the value they quantize.</summary>
    private readonly Dictionary<PlanValue, PlanValue> _int8GemmOperands = new(ReferenceEqualityComparer.Instance);
    private IReadOnlyDictionary<OnnxProto.NodeProto, Int8Layer>? _int8Layers;

    /// <summary>The names of the values that int8 convolutions read quantized (their input DequantizeLinear's input).</summary>
    private HashSet<string>? _int8Inputs;

    private IReadOnlyDictionary<OnnxProto.NodeProto, Int8Layer> FindInt8Layers() =>
        Int8Layers.Find(_model, Int8Layers.Enabled || _target.Int8, Int8Layers.GemmsEnabled || (_target.Int8 && !Int8Layers.Enabled));

    /// <summary>Each Conv, MatMul and Gemm of a QDQ model planned so far: "int8 ..." (which library), or why it runs in float.</summary>
    public Dictionary<string, string> Int8Decisions { get; } = new(StringComparer.Ordinal);

    /// <summary>Lowers a Conv, MatMul or Gemm int8 when its layer qualifies and the library runs the problem; false (nothing emitted) otherwise.</summary>
    private bool TryLowerInt8(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        _int8Layers ??= FindInt8Layers();
        if (!_int8Layers.TryGetValue(node, out var layer))
        {
            return false;
        }

        var how = "int8";
        var reason = layer.Reason ?? (layer.IsGemm ? LowerInt8Gemm(layer, ins, attrs, out how) : LowerInt8Conv(layer, ins, attrs, out how));
        Int8Decisions[_node] = reason ?? how;
        Int8Layers.Trace($"{_node}: {reason ?? how}");
        return reason is null;
    }

    /// <summary>Emits the int8 convolution and its requantization, or returns why not before emitting anything.</summary>
    private string? LowerInt8Conv(Int8Layer layer, PlanValue?[] ins, NodeAttributes attrs, out string how)
    {
        how = "int8";
        var (xdq, wdq) = (layer.InputDequantize!, layer.WeightDequantize!);
        var xq = _values[xdq.Input[0]];
        if (xq.Type is not (ElementType.UInt8 or ElementType.Int8) || xq.Shape.Length != 4)
        {
            return $"its input is {xq.Type.ShortName()} of rank {xq.Shape.Length} (4-d uint8 or int8 only)";
        }

        var w = _values[wdq.Input[0]].Constant!;
        var (kernel, strides, dilations, _, inSpatial, pb, pe, outSpatial) = Window(attrs, xq.Shape, w.Shape);
        var (n, c, k) = (xq.Shape[0], xq.Shape[1], w.Shape[0]);

        // The own kernels (the convolution, its requantization and a residual block's end in one kernel) where
        // BATCHWISE_INT8_CONV gives them the layer: by default (auto) the persistent 1x1 kernel for expansions from 64-256
        // channels and the narrow 1x1 kernel for expansions from 8-64; =pointwise both for every 1x1 they take; =own the
        // implicit GEMM everywhere (half cuDNN's speed on an H200, so not the default).
        var pixels = n * outSpatial[0] * outSpatial[1];
        (OwnInt8Kernel Kernel, (int M, int N) Tile)? own = layer.Depthwise ? null
            : OwnInt8NarrowPointwise(kernel, strides, pb, c, k, pixels) ? (OwnInt8Kernel.Narrow, default)
            : OwnInt8Pointwise(kernel, strides, pb, c, k, pixels) ? (OwnInt8Kernel.Pointwise, default)
            : OwnInt8ConvTile(pixels, c, k) is { } tile ? (OwnInt8Kernel.Tiled, tile)
            : null;
        if (layer.Clamp is not null && !layer.Depthwise && own is null)
        {
            // Only the own kernels clamp: elsewhere the convolution writes its own QuantizeLinear and the chain after it
            // (DequantizeLinear, Clip, QuantizeLinear) runs as it is.
            layer = layer.Unfolded;
        }

        var q = layer.Quantize!;
        var relu = layer.Relu is not null;

        double Scalar(string name) => _values[name].Constant![0];
        var xScale = (float)Scalar(xdq.Input[1]);
        var xZero = Scalar(xdq.Input[2]);
        var wScale = _values[wdq.Input[1]].Constant!;
        var bias = ins.ElementAtOrDefault(2);
        if (bias is not null && bias.Constant is null)
        {
            return "its bias is computed at run time";
        }

        var yScale = (float)Scalar(q.Input[1]);
        var yZeroValue = q.Input.Count > 2 && q.Input[2].Length > 0 ? _values[q.Input[2]] : null;
        var yType = yZeroValue?.Type ?? ElementType.UInt8;
        var yZero = yZeroValue?.Constant?[0] ?? 0;
        if (xScale <= 0 || yScale <= 0 || !float.IsFinite(xScale) || !float.IsFinite(yScale))
        {
            return "a non-positive activation scale";
        }

        long[] yShape = [n, k, outSpatial[0], outSpatial[1]];
        if (Tensor.ElementCountOf(yShape) == 0)
        {
            return "an empty output";
        }

        if (layer.Depthwise)
        {
            // The own int8 depthwise kernel (no library takes an int8 depthwise layer with per-channel scales); its
            // windows read the input's stored zero point outside the image, so the end pads may differ from the begin's.
            if (_target.Int8Convolutions == Int8ConvChoice.Library)
            {
                return "BATCHWISE_INT8_CONV=library (no library runs an int8 depthwise convolution)";
            }

            if (c != k || w.Shape[1] != 1 || dilations.Any(d => d != 1) || !KernelSource.Int8DepthwiseTakes(c, kernel, strides))
            {
                return c != k || w.Shape[1] != 1 ? "a grouped convolution that is not depthwise" : $"a depthwise {string.Join('x', kernel)} window, stride {string.Join('x', strides)} (the int8 kernel takes up to 7x8, strides 1-2, channels in fours)";
            }

            if (KernelSource.Int8DepthwiseThreads(n, c, outSpatial, 2) > int.MaxValue)
            {
                return "more than 2^31 threads";
            }

            how = LowerOwnInt8Conv(layer, xq, w, wScale, bias?.Constant, (xScale, xZero), (q, yScale, yType, yZero), kernel, strides, pb, outSpatial, yShape, OwnInt8Kernel.Depthwise);
            return null;
        }

        if (c != w.Shape[1] || !pb.SequenceEqual(pe) || dilations.Any(d => d != 1))
        {
            return c != w.Shape[1] ? "filter and input channels differ" : "asymmetric padding";
        }

        if (own is { } o)
        {
            how = LowerOwnInt8Conv(layer, xq, w, wScale, bias?.Constant, (xScale, xZero), (q, yScale, yType, yZero), kernel, strides, pb, outSpatial, yShape, o.Kernel, o.Tile);
            return null;
        }

        // Then cuDNN's graph API: the convolution and its requantization in one fused plan (per-channel scales at int8
        // tensor-core speed). A ReLU whose floor is stored as -128 is the int8 saturation itself.
        var outShift = StoredShift(yType);
        var storedXZero = xZero - StoredShift(xq.Type);
        var storedYZero = yZero - outShift;
        Int8ConvGraph? graph = null;
        Int8ConvGraphShape? graphShape = null;
        var graphRefusal = string.Empty;
        long[]? explicitPads = null;
        Int8ResidualFusion? fusion = null;
        var fusionNote = string.Empty;
        if (Int8Layers.GraphMode != "off" && Int8Layers.ResidualFused && !relu && layer.Between is null && FindInt8Residual(q, yShape) is { } found)
        {
            // The residual block's Add (+ ReLU) and QuantizeLinear in the convolution's graph: its output is the block's.
            // Not after a ReLU or a folded ReLU6 of the convolution's own: the graph's one activation is the block's,
            // after the Add.
            var fusedShape = Int8GraphShape(xq.Shape, w.Shape, yShape, pb, strides, storedXZero, found.Relu is not null, found.StoredYZero) with { Residual = true };
            var fusedRefusal = "the convolution needs border offsets";
            if (!fusedShape.PerPixelOffset && ChooseInt8Graph(fusedShape, out fusedRefusal) is { } fusedGraph)
            {
                (graph, graphShape, fusion) = (fusedGraph, fusedShape, found);
                (q, relu, yScale, yType, yZero) = (found.Quantize, found.Relu is not null, (float)found.YScale, found.YType, found.YZero);
                (outShift, storedYZero) = (StoredShift(found.YType), found.StoredYZero);
            }
            else
            {
                fusionNote = $" [residual not fused: {fusedRefusal}]";
            }
        }

        Int8SiluFusion? silu = null;
        if (graph is null && Int8Layers.GraphMode != "off")
        {
            // A SiLU after the convolution (its QuantizeLinear, DequantizeLinear, Sigmoid, Mul and the next QuantizeLinear)
            // joins the graph where cuDNN takes it; refused, the convolution's graph alone and the SiLU as a kernel of its own.
            if (!relu && FindInt8Silu(q, yShape) is { } foundSilu)
            {
                var siluRefusal = string.Empty;
                (graph, graphShape, explicitPads) = TryInt8Graph(foundSilu, ref siluRefusal);
                if (graph is not null)
                {
                    silu = foundSilu;
                }
                else
                {
                    fusionNote = $" [SiLU not fused: {siluRefusal}]";
                }
            }

            if (graph is null)
            {
                (graph, graphShape, explicitPads) = TryInt8Graph(null, ref graphRefusal);
            }
        }

        // The graph for the convolution [and the SiLU after it]: its own padding where the input's stored zero point is
        // 0, else the input padded explicitly (one copy) and an unpadded convolution with per-channel offsets.
        (Int8ConvGraph? Graph, Int8ConvGraphShape Shape, long[]? Pads) TryInt8Graph(Int8SiluFusion? withSilu, ref string refusal)
        {
            Int8ConvGraphShape ShapeOf(long[] x, long[] pads)
            {
                var s = Int8GraphShape(x, w.Shape, yShape, pads, strides, storedXZero, relu, storedYZero);
                return withSilu is null ? s : s with { Relu = false, ZeroAdd = withSilu.PerChannel(yShape[1]).StoredZero.Any(z => z != 0), Activation = "swish" };
            }

            var direct = ShapeOf(xq.Shape, pb);
            // A padded convolution whose input zero point is not zero needs per-pixel offsets at the border: that
            // variant gave outputs up to 255 quantization steps off ONNX Runtime on the H200 (session 9, every padded
            // or strided layer case), so such a convolution always takes the explicitly padded input below.
            if (!direct.PerPixelOffset)
            {
                return (ChooseInt8Graph(direct, out refusal), direct, null);
            }

            long[] padded = [xq.Shape[0], xq.Shape[1], xq.Shape[2] + (2 * pb[0]), xq.Shape[3] + (2 * pb[1])];
            var padShape = ShapeOf(padded, [0, 0]);
            var chosen = ChooseInt8Graph(padShape, out var padRefusal);
            if (chosen is null)
            {
                refusal = refusal.Length > 0 ? $"{refusal}; padded explicitly: {padRefusal}" : padRefusal;
                return (null, direct, null);
            }

            return (chosen, padShape, [pb[0], pb[1]]);
        }

        // A 1x1 convolution without stride or padding is a GEMM over pixels: cuBLASLt's int8 kernels apply the per-channel
        // scale (alpha per row) and bias in their epilogue and write int8 themselves, with no float sums in memory.
        var gemmEpilogue = graph is null && kernel.All(v => v == 1) && strides.All(v => v == 1) && pb.All(v => v == 0) ? Int8GemmEpilogue(relu, storedYZero) : -1;
        Int8Gemm? gemm = null;
        var gemmRefusal = string.Empty;
        if (gemmEpilogue >= 0)
        {
            gemm = ChooseInt8Gemm(pixels, c, k, gemmEpilogue, out gemmRefusal);
        }

        // Otherwise cuDNN: int8 NHWC x and KRSC w, int32 accumulation, float y. The first algorithm that cuDNN offers and
        // that runs once on scratch buffers wins; a refusal is this layer's reason to stay float.
        int[] pads = [(int)pb[0], (int)pb[1]], convStrides = [(int)strides[0], (int)strides[1]], ones = [1, 1];
        CudnnTensorDescriptor? xDesc = null, yDesc = null;
        CudnnFilterDescriptor? wDesc = null;
        CudnnConvolutionDescriptor? convDesc = null;
        TacticChoice? chosen = null;
        if (graph is null && gemm is null)
        {
            var handle = _target.PlanningCudnn;
            xDesc = Cudnn.Tensor(Cudnn.CUDNN_DATA_INT8, xq.Shape, Cudnn.CUDNN_TENSOR_NHWC);
            wDesc = Cudnn.Filter(Cudnn.CUDNN_DATA_INT8, w.Shape, Cudnn.CUDNN_TENSOR_NHWC);
            yDesc = Cudnn.Tensor(Cudnn.CUDNN_DATA_FLOAT, yShape, Cudnn.CUDNN_TENSOR_NHWC);
            convDesc = Cudnn.Convolution(pads, convStrides, ones, 1, Cudnn.CUDNN_TENSOR_OP_MATH, Cudnn.CUDNN_DATA_INT32);
            chosen = ChooseInt8Algorithm(handle, xDesc, wDesc, convDesc, yDesc, xq.Shape, w.Shape, yShape, pads, convStrides, out var refusal);
            if (chosen is null)
            {
                xDesc.Dispose();
                wDesc.Dispose();
                yDesc.Dispose();
                convDesc.Dispose();
                return "cuDNN does not run it: " + refusal + (graphRefusal.Length > 0 ? $" (graph API: {graphRefusal})" : string.Empty);
            }
        }

        how = graph is not null ? $"int8 (cuDNN graph{(graphShape!.PerPixelOffset ? ", border offsets" : explicitPads is not null ? ", input padded explicitly" : string.Empty)}{(graphShape.Residual ? $", residual Add{(relu ? " and ReLU" : string.Empty)} fused: {graphShape.Chain}" : graphShape.Activation is not null ? $", SiLU{(silu?.Parts is { } split ? $" and its split into {split.Count} quantized parts" : string.Empty)} fused: {graphShape.Chain}" : string.Empty)}; {graph.Engine})"
            : (gemm is not null ? "int8 (cuBLASLt)" : gemmEpilogue >= 0 ? $"int8 (cuDNN; cuBLASLt refused the 1x1: {gemmRefusal})" : "int8")
              + (graphRefusal.Length > 0 ? $" [graph API refused: {graphRefusal}]" : string.Empty);
        how += fusionNote;

        // From here on the layer is int8.
        var input = Int8Input(xq);
        var convInput = input.Int8;
        if (explicitPads is not null)
        {
            // The stored zero point around the int8 channels-last input: [n, h, w, c] -> [n, h + 2p, w + 2p, c].
            var padded = NewValue(ElementType.Int8, graphShape!.X, true, "int8 padded input for " + _node);
            long[] physicalIn = [xq.Shape[0], xq.Shape[2], xq.Shape[3], xq.Shape[1]];
            long[] physicalOut = [graphShape.X[0], graphShape.X[2], graphShape.X[3], graphShape.X[1]];
            long[] padsBegin = [0, explicitPads[0], explicitPads[1], 0];
            if (KernelSource.CanPadBytes16(physicalIn, physicalOut, padsBegin))
            {
                Kernel(KernelSource.PadBytes16(physicalIn, physicalOut, padsBegin, unchecked((byte)(sbyte)storedXZero)), padded.Count / 16, Dev(padded), Dev(convInput));
            }
            else
            {
                Kernel(KernelSource.Pad(ElementType.Int8, physicalIn, physicalOut, padsBegin, "constant", storedXZero), padded.Count, Dev(padded), Dev(convInput));
            }
            (convInput, inSpatial, pb) = (padded, [graphShape.X[2], graphShape.X[3]], [0, 0]);
        }

        var recipe = Int8ConvRecipe(xScale, xZero - input.Shift, yScale, storedYZero, inSpatial, strides, pb);
        var (krsc, scale, offset, perPixel, alpha, gemmBias) = Int8ConvConstants(recipe, w, wScale, bias?.Constant, xScale, xZero - input.Shift, yScale, storedYZero, inSpatial, outSpatial, kernel, strides, pb);
        var y = NewValue(ElementType.Int8, yShape, true, "int8 activation " + q.Output[0]);
        if (graph is not null)
        {
            // y = saturate(round(sums * scale[k] + offset)) [ReLU, zero point]: one cuDNN execution.
            var residual = fusion is { } f ? (f.ResidualScale / yScale, (f.Residual.Shift - f.ResidualZero) * f.ResidualScale / yScale) : ((double, double)?)null;
            var tables = silu is null
                ? Int8GraphConstants(recipe, w, wScale, bias?.Constant, scale.Constant!, offset.Constant!, storedYZero, graphShape!, residual)
                : Int8GraphConstants(recipe, w, wScale, bias?.Constant, scale.Constant!, offset.Constant!, 0, graphShape!, null, (yScale, silu.PerChannel(k)));
            PlanValue V(HostTensor h) => new(h.Type, h.Shape, h);
            var buffers = new List<int> { Dev(convInput), Dev(krsc), Dev(V(tables[0])), Dev(V(tables[1])), y.Buffer };
            if (graphShape!.ZeroAdd)
            {
                buffers.Add(Dev(V(tables[2])));
            }

            if (fusion is not null)
            {
                buffers.Add(Dev(fusion.Residual.Int8));
                buffers.Add(Dev(V(tables[^1])));
            }

            if (silu is not null)
            {
                buffers.Add(Dev(V(tables[^1])));
            }

            Emit(new Int8GraphConvStep(_node, [.. buffers], graph));
            ReserveWorkspace(graph.WorkspaceBytes);
        }
        else if (gemm is not null)
        {
            // D[k, p] = saturate(round(alpha[k] * sum + bias[k])): the output zero point (less the uint8 shift) is in the bias.
            Emit(new Int8GemmStep(_node, Dev(krsc), Dev(input.Int8), y.Buffer, Dev(alpha), Dev(gemmBias), gemm.Desc, gemm.A, gemm.B, gemm.D, gemm.Algo));
            ReserveWorkspace((long)gemm.Algo.WorkspaceSize);
        }
        else
        {
            var accBuffer = NewBuffer(Tensor.ElementCountOf(yShape) * 4, "int32 sums (as float) for " + _node);
            Emit(new ConvStep(_node, Dev(input.Int8), Dev(krsc), -1, accBuffer.Id, xDesc!, wDesc!, convDesc!, yDesc!, null, chosen!.Algo, chosen.WorkspaceBytes));
            ReserveWorkspace(chosen.WorkspaceBytes);
            var count = y.Count;
            Kernel(KernelSource.Requantize(yType, count, k, outSpatial[0] * outSpatial[1], yZero, outShift, relu, perPixel), count, Dev(y), accBuffer.Id, Dev(scale), Dev(offset));
        }

        if (silu?.Parts is { } parts)
        {
            // Each part of the split as an int8 activation of its own: its channels copied out of y (channels-last).
            _folded.UnionWith(silu.Folded);
            long start = 0;
            foreach (var part in parts)
            {
                long[] partShape = [yShape[0], part.Channels, yShape[2], yShape[3]];
                var stored = NewValue(ElementType.Int8, partShape, true, "int8 activation " + part.Quantize.Output[0]);
                ViewCopy(y, [pixels, part.Channels], [yShape[1], 1], start, stored, [part.Channels, 1], 0);
                PublishInt8Conv(part.Quantize, null, [], stored, partShape, StoredShift(silu.ZType));
                start += part.Channels;
            }

            return null;
        }

        PublishInt8Conv(silu?.Quantize ?? q, layer.Relu, [.. layer.Between ?? [], .. fusion?.Folded ?? [], .. silu?.Folded ?? []], y, yShape, silu is null ? outShift : StoredShift(silu.ZType));
        return null;
    }

    /// <summary>
    /// The int8 convolution's output <paramref name="y"/> (the stored bytes) as the value of <paramref name="q"/>'s output,
    /// and the nodes the convolution computed (its QuantizeLinear and ReLU; <paramref name="folded"/>: with a residual
    /// fused, the block's DequantizeLinear, Add, ReLU and QuantizeLinear; with a SiLU, its nodes) folded.
    /// </summary>
    private void PublishInt8Conv(OnnxProto.NodeProto q, OnnxProto.NodeProto? layerRelu, IEnumerable<OnnxProto.NodeProto> folded, PlanValue y, long[] yShape, int outShift)
    {
        PublishQuantized(q, y, yShape, outShift);
        if (layerRelu is not null)
        {
            _folded.Add(layerRelu);
        }

        // A fused residual block's end (the convolution's own QuantizeLinear, its DequantizeLinear, the Add and the ReLU)
        // or SiLU (the convolution's QuantizeLinear, DequantizeLinear, Sigmoid, Mul and any pair between) is inside the step.
        _folded.UnionWith(folded);
    }

    /// <summary>
    /// The bytes <paramref name="stored"/> (a QuantizeLinear's output stored as int8, less <paramref name="shift"/>) as the
    /// value of <paramref name="q"/>'s output as ONNX defines it: int8 as written, uint8 as the stored byte + 128 (pending,
    /// so only a reader other than an int8 layer pays for it); kept for the int8 layers that read it as it lies (an int8
    /// convolution where it is channels-last, an int8 product where it is row-major), and <paramref name="q"/> folded.
    /// </summary>
    private void PublishQuantized(OnnxProto.NodeProto q, PlanValue stored, long[] shape, int shift)
    {
        var published = shift == 0 ? stored : Pending([stored], _ => "x0 + 128", ElementType.UInt8, shape);
        _values[q.Output[0]] = published;
        if (stored.Nhwc && shape.Length == 4)
        {
            _int8Activations[published] = (stored, shift);
        }
        else if (!stored.Nhwc)
        {
            _int8GemmOperands[published] = stored;
        }

        _folded.Add(q);
    }

    /// <summary><paramref name="v"/> as int8 bytes in memory: itself where nothing is to subtract, else written out less <paramref name="shift"/> (128 for uint8).</summary>
    private PlanValue StoredInt8(PlanValue v, int shift) =>
        shift == 0 && v.Pending is null ? v : Materialize(Pending([v], _ => shift == 0 ? "x0" : "x0 - 128", ElementType.Int8, v.Shape));

    /// <summary>What is subtracted from a value of <paramref name="type"/> to store it as int8: a uint8 v is kept as the byte v - 128.</summary>
    private static int StoredShift(ElementType type) => KernelSource.StoredShift(type);

    /// <summary>
    /// A residual block's end after an int8 convolution's QuantizeLinear, fused into its graph
    /// (<see cref="Int8Layers.ResidualSwitch"/>): the nodes folded, the block output's QuantizeLinear and ReLU, and the
    /// residual as the int8 value it is stored as, with its scale and zero point.
    /// </summary>
    private sealed record Int8ResidualFusion(OnnxProto.NodeProto Quantize, OnnxProto.NodeProto? Relu, double YScale, ElementType YType, double YZero, (PlanValue Int8, int Shift) Residual, double ResidualScale, double ResidualZero, OnnxProto.NodeProto[] Folded)
    {
        /// <summary>The block output's zero point as stored (a uint8 value is kept as the int8 byte v - 128).</summary>
        public double StoredYZero => YZero - StoredShift(YType);
    }

    /// <summary>
    /// QuantizeLinear(Relu?(Add(DequantizeLinear(q's output), DequantizeLinear(r)))) where q's output, its
    /// DequantizeLinear, the Add and the ReLU have no other reader, every scale and zero point is one constant, the
    /// DequantizeLinear undoes q, and r is already an int8 channels-last activation of the output's shape (an earlier
    /// block's output, or a projection shortcut planned first); null otherwise.
    /// </summary>
    private Int8ResidualFusion? FindInt8Residual(OnnxProto.NodeProto q, long[] yShape)
    {
        (double Scale, double Zero, ElementType Type)? PerTensor(OnnxProto.NodeProto node) => QdqPerTensor(node, _values.GetValueOrDefault);

        if (SoleConsumer(q.Output[0]) is not { OpType: "DequantizeLinear" } dq || SoleConsumer(dq.Output[0]) is not { OpType: "Add", Input.Count: 2 } add
            || add.Input[0] == add.Input[1] || PerTensor(q) is not { } own || PerTensor(dq) is not { } undo || own != undo)
        {
            return null;
        }

        var other = add.Input[0] == dq.Output[0] ? add.Input[1] : add.Input[0];
        if (Producer(other) is not { OpType: "DequantizeLinear" } rdq || PerTensor(rdq) is not { } res || res.Scale <= 0
            || !_values.TryGetValue(rdq.Input[0], out var rq) || !_int8Activations.TryGetValue(rq, out var residual) || !residual.Int8.Nhwc || !residual.Int8.Shape.SequenceEqual(yShape))
        {
            return null;
        }

        var relu = SoleConsumer(add.Output[0]) is { OpType: "Relu", Domain.Length: 0 } r ? r : null;
        if (SoleConsumer((relu ?? add).Output[0]) is not { OpType: "QuantizeLinear" } outQ || PerTensor(outQ) is not { } y || y.Scale <= 0
            || y.Type is not (ElementType.UInt8 or ElementType.Int8) || (outQ.Attribute.Any(a => a.Name == "output_dtype") && outQ.Input.Count < 3))
        {
            return null;
        }

        OnnxProto.NodeProto[] folded = relu is null ? [q, dq, add, outQ] : [q, dq, add, relu, outQ];
        return new Int8ResidualFusion(outQ, relu, y.Scale, y.Type, y.Zero, residual, res.Scale, res.Zero, folded);
    }

    /// <summary>
    /// A SiLU and its QuantizeLinear after an int8 convolution's QuantizeLinear, fused into the convolution: the nodes
    /// folded, the SiLU output's QuantizeLinear and its constants, the convolution's own output constants (the SiLU reads
    /// them) and, where the model quantizes the sigmoid too, its constants.
    /// </summary>
    /// <para>
    /// With <paramref name="Parts"/>, the SiLU's output is split along the channels (YOLOv8's C2f) and each part has a
    /// QuantizeLinear of its own (scale, zero point, its channels and the QuantizeLinear): the first part's are then also
    /// <paramref name="ZScale"/>, <paramref name="ZType"/> and <paramref name="ZZero"/>.
    /// </para>
    private sealed record Int8SiluFusion(OnnxProto.NodeProto Quantize, double ZScale, ElementType ZType, double ZZero, (double Scale, double Zero, ElementType Type) Y, (double Scale, double Zero, ElementType Type)? Sigmoid, OnnxProto.NodeProto[] Folded, IReadOnlyList<(OnnxProto.NodeProto Quantize, double Scale, double Zero, long Channels)>? Parts = null)
    {
        /// <summary>The SiLU output's zero point as stored (a uint8 value is kept as the int8 byte v - 128).</summary>
        public double StoredZZero => ZZero - StoredShift(ZType);

        /// <summary>Each output channel's quantization scale and stored zero point (one pair for all without parts).</summary>
        public (double[] Scale, double[] StoredZero) PerChannel(long channels)
        {
            var (scale, zero) = (new double[channels], new double[channels]);
            var parts = Parts ?? [(Quantize, ZScale, ZZero, channels)];
            var k = 0;
            foreach (var part in parts)
            {
                for (var i = 0; i < part.Channels; i++, k++)
                {
                    (scale[k], zero[k]) = (part.Scale, part.Zero - StoredShift(ZType));
                }
            }

            return (scale, zero);
        }
    }

    /// <summary>
    /// QuantizeLinear(Mul(d, [DequantizeLinear(QuantizeLinear(]Sigmoid(d)[))])) where d = DequantizeLinear(q's output):
    /// the SiLU as `batchwise optimize --int8` writes it (and, with the sigmoid's own pair, as ONNX Runtime's quantizer
    /// does). Every value between has no other reader, every scale and zero point is one constant and d undoes q; null
    /// otherwise, or when <see cref="Int8Layers.SiluSwitch"/> says off.
    /// </summary>
    private Int8SiluFusion? FindInt8Silu(OnnxProto.NodeProto q, long[]? splitShape = null)
    {
        if (!Int8Layers.SiluFused)
        {
            return null;
        }

        (double Scale, double Zero, ElementType Type)? PerTensor(OnnxProto.NodeProto node) => QdqPerTensor(node, _values.GetValueOrDefault);
        bool Quantized((double Scale, double Zero, ElementType Type)? p) => p is { } v && v.Scale > 0 && double.IsFinite(v.Scale) && v.Type is ElementType.UInt8 or ElementType.Int8;

        if (SoleConsumer(q.Output[0]) is not { OpType: "DequantizeLinear" } dq || PerTensor(q) is not { } own || PerTensor(dq) != own || !Quantized(own)
            || _graphOutputs.Contains(dq.Output[0]) || !_consumers.TryGetValue(dq.Output[0], out var readers) || readers.Count != 2)
        {
            return null;
        }

        var sigmoid = readers.FirstOrDefault(r => r is { OpType: "Sigmoid", Domain.Length: 0 });
        var mul = readers.FirstOrDefault(r => r is { OpType: "Mul", Domain.Length: 0, Input.Count: 2 });
        if (sigmoid is null || mul is null)
        {
            return null;
        }

        // The sigmoid's value as the Mul reads it: directly, or through its own QuantizeLinear and DequantizeLinear.
        List<OnnxProto.NodeProto> folded = [q, dq, sigmoid];
        (double Scale, double Zero, ElementType Type)? sigmoidPair = null;
        var gate = sigmoid.Output[0];
        if (SoleConsumer(gate) is { OpType: "QuantizeLinear" } sq && SoleConsumer(sq.Output[0]) is { OpType: "DequantizeLinear" } sdq)
        {
            if (PerTensor(sq) is not { } pair || PerTensor(sdq) != pair || !Quantized(pair) || sq.Attribute.Any(a => a.Name == "output_dtype"))
            {
                return null;
            }

            (sigmoidPair, gate) = (pair, sdq.Output[0]);
            folded.AddRange([sq, sdq]);
        }

        var operands = mul.Input.ToHashSet(StringComparer.Ordinal);
        if (operands.Count != 2 || !operands.Contains(dq.Output[0]) || !operands.Contains(gate) || SoleConsumer(gate) != mul)
        {
            return null;
        }

        bool QuantizesTo(OnnxProto.NodeProto outQ) => !(outQ.Attribute.Any(a => a.Name == "output_dtype") && outQ.Input.Count < 3);
        var next = SoleConsumer(mul.Output[0]);
        if (next is { OpType: "QuantizeLinear" } single && PerTensor(single) is { } z && Quantized(z) && QuantizesTo(single))
        {
            folded.AddRange([mul, single]);
            return new Int8SiluFusion(single, z.Scale, z.Type, z.Zero, own, sigmoidPair, [.. folded]);
        }

        // Split along the channels (splitShape: the convolution's output shape, where the caller takes parts), each part
        // read by a QuantizeLinear alone, all to the same type.
        if (splitShape is null || next is not { OpType: "Split", Domain.Length: 0 } split || split.Output.Any(o => o.Length == 0))
        {
            return null;
        }

        var (axis, sizes) = SplitSizes(split, [new PlanValue(ElementType.Float, splitShape), split.Input.Count > 1 && split.Input[1].Length > 0 ? _values.GetValueOrDefault(split.Input[1]) : null], new NodeAttributes(split));
        if (axis != 1 || sizes.Length != split.Output.Count || sizes.Sum() != splitShape[1])
        {
            return null;
        }

        var parts = new List<(OnnxProto.NodeProto Quantize, double Scale, double Zero, long Channels)>();
        (double Scale, double Zero, ElementType Type)? first = null;
        for (var i = 0; i < sizes.Length; i++)
        {
            if (SoleConsumer(split.Output[i]) is not { OpType: "QuantizeLinear" } pq || PerTensor(pq) is not { } pz || !Quantized(pz) || !QuantizesTo(pq)
                || (first is { } f && f.Type != pz.Type))
            {
                return null;
            }

            first ??= pz;
            parts.Add((pq, pz.Scale, pz.Zero, sizes[i]));
        }

        folded.AddRange([mul, split, .. parts.Select(p => p.Quantize)]);
        return new Int8SiluFusion(parts[0].Quantize, first!.Value.Scale, first.Value.Type, first.Value.Zero, own, sigmoidPair, [.. folded], parts);
    }

    /// <summary>
    /// An int8 layer's input as int8 channels-last: kept so by the int8 layer that wrote it, or converted once (a uint8
    /// value less 128, in the kernel that brings it channels-last), the shift with it. A pending value (a residual block's
    /// Add and QuantizeLinear) is computed by that one kernel, and its other readers read the int8 copy from then on.
    /// </summary>
    private (PlanValue Int8, int Shift) Int8Input(PlanValue xq)
    {
        if (_int8Activations.TryGetValue(xq, out var input))
        {
            return input;
        }

        var shift = StoredShift(xq.Type);
        var stored = xq.Nhwc ? xq : Nhwc(xq);
        var converted = StoredInt8(stored, shift);
        input = (converted, shift);
        _int8Activations[xq] = input;
        if (xq.Pending is not null)
        {
            // Other readers of the uint8 value (a residual Add's DequantizeLinear) now read the int8 copy, instead of
            // recomputing the chain that made it.
            xq.Pending = Pending([converted], _ => shift == 0 ? "x0" : "x0 + 128", xq.Type, xq.Shape).Pending;
        }

        return input;
    }

    /// <summary>
    /// Makes <paramref name="x"/> int8 now (<see cref="Int8Input"/>) when it is a pending value that an int8 convolution
    /// reads later and a DequantizeLinear is about to extend: otherwise that reader copies the pending chain, and the
    /// convolution's copy of it is made too late to spare it (ResNet-50's residual Adds then recomputed every earlier
    /// block of their stage: one more input per block, 0.18 -> 0.47 ms on the H200 at b=256, session 11).
    /// </summary>
    private void MakeInt8BeforeItIsExtended(PlanValue x, string name)
    {
        if (x.Pending is null || x.Shape.Length != 4 || x.Type is not (ElementType.UInt8 or ElementType.Int8) || _int8Activations.ContainsKey(x))
        {
            return;
        }

        _int8Layers ??= FindInt8Layers();
        _int8Inputs ??= [.. _int8Layers.Values.Where(l => l.Int8 && !l.IsGemm).Select(l => l.InputDequantize!.Input[0])];
        if (_int8Inputs.Contains(name))
        {
            Int8Input(x);
        }
    }

    /// <summary>
    /// The int8 layer's constants: the filter channels-last (KRSC), the requantization's per-channel multiplier
    /// s_x·s_w[k]/s_y, and its offset (b[k] - s_x·s_w[k]·z·Σw)/s_y, where z is the input's zero point as stored and Σw
    /// sums the filter taps that fall inside the input: per channel, or per output pixel and channel when z ≠ 0 and
    /// the convolution pads (at the border fewer taps read real input; the padding stands for real zeros).
    /// </summary>
    internal static (PlanValue Filter, PlanValue Scale, PlanValue Offset, bool PerPixel) Int8ConvTables(HostTensor w, HostTensor wScale, HostTensor? bias, double xScale, double zero, double yScale, long[] inSpatial, long[] outSpatial, long[] kernel, long[] strides, long[] pads)
    {
        var (k, c, kh, kw) = (w.Shape[0], w.Shape[1], w.Shape[2], w.Shape[3]);
        var taps = new double[k * kh * kw];
        for (long o = 0; o < k; o++)
        {
            for (long ch = 0; ch < c; ch++)
            {
                for (long t = 0; t < kh * kw; t++)
                {
                    taps[(o * kh * kw) + t] += w[(((o * c) + ch) * kh * kw) + t];
                }
            }
        }

        var multiplier = new double[k];
        var channelOffset = new double[k];
        for (long o = 0; o < k; o++)
        {
            var sw = wScale.Count == 1 ? wScale[0] : wScale[o];
            multiplier[o] = xScale * sw / yScale;
            channelOffset[o] = (bias is null ? 0 : bias[o]) / yScale;
        }

        var perPixel = zero != 0 && pads.Any(p => p != 0);
        double[] offset;
        if (!perPixel)
        {
            offset = new double[k];
            for (long o = 0; o < k; o++)
            {
                var sum = 0.0;
                for (long t = 0; t < kh * kw; t++)
                {
                    sum += taps[(o * kh * kw) + t];
                }

                offset[o] = channelOffset[o] - (multiplier[o] * zero * sum);
            }
        }
        else
        {
            var (ho, wo) = (outSpatial[0], outSpatial[1]);
            offset = new double[ho * wo * k];
            for (long oy = 0; oy < ho; oy++)
            {
                for (long ox = 0; ox < wo; ox++)
                {
                    for (long o = 0; o < k; o++)
                    {
                        var sum = 0.0;
                        for (long r = 0; r < kh; r++)
                        {
                            var iy = (oy * strides[0]) - pads[0] + r;
                            for (long s = 0; s < kw && iy >= 0 && iy < inSpatial[0]; s++)
                            {
                                var ix = (ox * strides[1]) - pads[1] + s;
                                if (ix >= 0 && ix < inSpatial[1])
                                {
                                    sum += taps[(o * kh * kw) + (r * kw) + s];
                                }
                            }
                        }

                        offset[(((oy * wo) + ox) * k) + o] = channelOffset[o] - (multiplier[o] * zero * sum);
                    }
                }
            }
        }

        var filter = ChannelsLast(w, w.Shape);
        return (
            new PlanValue(ElementType.Int8, filter.Shape, filter),
            new PlanValue(ElementType.Double, [k], HostTensor.OfFloats(ElementType.Double, [k], multiplier)),
            new PlanValue(ElementType.Double, [offset.Length], HostTensor.OfFloats(ElementType.Double, [offset.Length], offset)),
            perPixel);
    }

    /// <summary>
    /// <see cref="Int8ConvTables"/> made once per session and shape (session constants, kept by a saved engine like other
    /// derived weights), with the cuBLASLt path's alpha and bias vectors: float32 carried as their int32 bits, so a
    /// half-precision plan uploads them unchanged; the bias holds the output zero point as stored.
    /// </summary>
    private (PlanValue Filter, PlanValue Scale, PlanValue Offset, bool PerPixel, PlanValue Alpha, PlanValue GemmBias) Int8ConvConstants(string recipe, HostTensor w, HostTensor wScale, HostTensor? bias, double xScale, double zero, double yScale, double storedYZero, long[] inSpatial, long[] outSpatial, long[] kernel, long[] strides, long[] pads)
    {
        var t = _target.Derive(recipe, [w, wScale, bias], () =>
        {
            var (filter, scale, offset, _) = Int8ConvTables(w, wScale, bias, xScale, zero, yScale, inSpatial, outSpatial, kernel, strides, pads);
            var (s, o) = (scale.Constant!, offset.Constant!);
            var alpha = HostTensor.CreateInts(ElementType.Int32, [s.Count], i => BitConverter.SingleToInt32Bits((float)s[i]));
            var gemmBias = HostTensor.CreateInts(ElementType.Int32, [s.Count], i => BitConverter.SingleToInt32Bits((float)(o[i] + storedYZero)));
            return new[] { filter.Constant!, s, o, alpha, gemmBias };
        });
        PlanValue V(HostTensor h) => new(h.Type, h.Shape, h);
        return (V(t[0]), V(t[1]), V(t[2]), t[2].Count != t[1].Count, V(t[3]), V(t[4]));
    }

    /// <summary>What the layer's derived constants depend on besides its initializers.</summary>
    private static string Int8ConvRecipe(double xScale, double zero, double yScale, double storedYZero, long[] inSpatial, long[] strides, long[] pads) =>
        string.Create(CultureInfo.InvariantCulture, $"int8conv:{string.Join('x', inSpatial)}:s{strides[0]},{strides[1]}:p{pads[0]},{pads[1]}:{xScale:R}:{zero:R}:{yScale:R}:{storedYZero:R}");

    /// <summary>cuDNN's first int8 algorithm that runs this problem once, with its workspace; null and the refusal otherwise.</summary>
    private TacticChoice? ChooseInt8Algorithm(CudnnHandle handle, CudnnTensorDescriptor xDesc, CudnnFilterDescriptor wDesc, CudnnConvolutionDescriptor convDesc, CudnnTensorDescriptor yDesc, long[] x, long[] w, long[] y, int[] pads, int[] strides, out string refusal)
    {
        refusal = "no algorithm";
        var candidates = new List<(int Algo, int MathType)>();
        try
        {
            candidates.AddRange(TimedLibrary("conv_heuristics", () => Cudnn.ForwardAlgorithms(handle, xDesc, wDesc, convDesc, yDesc))
                .Where(a => a.Status == 0 && (long)a.Memory <= MaxConvWorkspace).Select(a => (a.Algo, a.MathType)));
        }
        catch (CudaException e)
        {
            refusal = e.Message;
        }

        if (!candidates.Any(a => a.Algo == Cudnn.CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM))
        {
            candidates.Add((Cudnn.CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, Cudnn.CUDNN_TENSOR_OP_MATH));
        }

        foreach (var (algo, mathType) in candidates)
        {
            try
            {
                Cudnn.SetMathType(convDesc, mathType);
                var ws = TimedLibrary("conv_workspace", () => Cudnn.WorkspaceSize(handle, xDesc, wDesc, convDesc, yDesc, algo));
                if (ws > MaxConvWorkspace)
                {
                    refusal = $"algorithm {algo} wants {ws >> 20} MiB of workspace";
                    continue;
                }

                var key = string.Create(CultureInfo.InvariantCulture, $"{string.Join('x', x)}|{string.Join('x', w)}|p{pads[0]},{pads[1]}|s{strides[0]},{strides[1]}|a{algo},{mathType}");
                var failure = Int8Trials.GetOrAdd(key, _ => TimedLibrary("int8_trial", () => TryInt8Convolution(handle, xDesc, wDesc, convDesc, yDesc, algo, ws, x, w, y)));
                if (failure is null)
                {
                    return new TacticChoice(algo, mathType, ws, double.NaN);
                }

                refusal = failure;
            }
            catch (CudaException e)
            {
                refusal = e.Message;
            }
        }

        return null;
    }

    /// <summary>Runs the int8 convolution once on zeroed scratch buffers: null when it ran, else cuDNN's error.</summary>
    private static string? TryInt8Convolution(CudnnHandle handle, CudnnTensorDescriptor xDesc, CudnnFilterDescriptor wDesc, CudnnConvolutionDescriptor convDesc, CudnnTensorDescriptor yDesc, int algo, long workspaceBytes, long[] x, long[] w, long[] y)
    {
        using var stream = CudaDriver.CreateStream();
        var previous = Cudnn.GetStream(handle);
        Cudnn.SetStream(handle, stream.Handle);
        CudaException? failure = null;
        try
        {
            using var xs = CudaDriver.Allocate(Tensor.ElementCountOf(x));
            using var ws = CudaDriver.Allocate(Tensor.ElementCountOf(w));
            using var ys = CudaDriver.Allocate(Tensor.ElementCountOf(y) * 4);
            using var scratch = CudaDriver.Allocate(Math.Max(workspaceBytes, 256));
            CudaDriver.MemsetD8(xs.Pointer, 0, Tensor.ElementCountOf(x), stream.Handle);
            CudaDriver.MemsetD8(ws.Pointer, 0, Tensor.ElementCountOf(w), stream.Handle);
            Cudnn.ConvolutionForward(handle, xDesc, xs.Pointer, wDesc, ws.Pointer, convDesc, algo, scratch.Pointer, workspaceBytes, 0f, yDesc, ys.Pointer);
            CudaDriver.Synchronize(stream);
        }
        catch (CudaException e)
        {
            failure = e;
        }
        finally
        {
            try
            {
                Cudnn.SetStream(handle, previous);
            }
            catch (CudaException e)
            {
                failure ??= e; // the trial's own error first (a lost context makes this reset fail too)
            }
        }

        if (failure is not null && LostContext(failure) is { } lost)
        {
            throw new BatchwiseException($"An int8 convolution (x {Tensor.ShapeText(x)}, w {Tensor.ShapeText(w)}, cuDNN algorithm {algo}) faulted the GPU in its plan-time trial: {lost.Message}. The CUDA context is lost for this process", $"Set {Int8Layers.Switch}=off to run the model's QDQ pairs in float; please report the layer.", failure);
        }

        return failure?.Message;
    }

    /// <summary>A chosen cuBLASLt int8 GEMM: descriptor with per-row alpha and a bias epilogue, layouts, algorithm.</summary>
    private sealed record Int8Gemm(CublasLtMatmulDescriptor Desc, CublasLtMatrixLayout A, CublasLtMatrixLayout B, CublasLtMatrixLayout D, CublasLt.HeuristicResult Algo);

    /// <summary>Trial runs of int8 GEMMs, by problem: null when cuBLASLt ran it, else its error.</summary>
    private static readonly ConcurrentDictionary<string, string?> Int8GemmTrials = new(StringComparer.Ordinal);

    /// <summary>
    /// The cuBLASLt epilogue that gives the requantization's clamp, for an output whose real zero is stored as
    /// <paramref name="storedZero"/>: int8 saturation alone where a ReLU's floor is -128 (or there is no ReLU), the ReLU
    /// epilogue where it is 0; -1 where neither (the cuDNN path's own kernel does it).
    /// </summary>
    internal static int Int8GemmEpilogue(bool relu, double storedZero) =>
        !relu || storedZero == -128 ? CublasLt.CUBLASLT_EPILOGUE_BIAS : storedZero == 0 ? CublasLt.CUBLASLT_EPILOGUE_RELU_BIAS : -1;

    /// <summary>cuBLASLt's int8 GEMM for [pixels, c] x [k, c]^T into int8 [pixels, k] with per-row alpha and the epilogue, run once on scratch buffers; null and the refusal otherwise.</summary>
    private unsafe Int8Gemm? ChooseInt8Gemm(long pixels, long c, long k, int epilogue, out string refusal)
    {
        refusal = "no algorithm";
        CublasLtMatmulDescriptor? desc = null;
        CublasLtMatrixLayout? a = null, b = null, d = null;
        try
        {
            var handle = _target.PlanningCublasLt;
            desc = CublasLt.MatmulDesc(CublasLt.CUBLAS_COMPUTE_32I, transA: true, transB: false, CublasLt.CUDA_R_32F);
            CublasLt.SetAlphaPerRow(desc);
            CublasLt.SetEpilogue(desc, epilogue, 256, CublasLt.CUDA_R_32F); // any 16-byte-aligned address: heuristics read only its alignment
            a = CublasLt.Layout(CublasLt.CUDA_R_8I, c, k, c);
            b = CublasLt.Layout(CublasLt.CUDA_R_8I, c, pixels, c);
            d = CublasLt.Layout(CublasLt.CUDA_R_8I, k, pixels, k);
            var candidates = TimedLibrary("matmul_heuristics", () => CublasLt.Algorithms(handle, desc, a, b, d, d, MaxConvWorkspace, 4));
            foreach (var algo in candidates)
            {
                var id = AlgoId(algo);
                var key = string.Create(CultureInfo.InvariantCulture, $"{pixels}x{c}x{k}|e{epilogue}|{id}");
                var (ad, bd, dd, dsc) = (a, b, d, desc);
                var failure = Int8GemmTrials.GetOrAdd(key, _ => TimedLibrary("int8_trial", () => TryInt8Gemm(handle, dsc, ad, bd, dd, algo, pixels, c, k)));
                if (failure is null)
                {
                    return new Int8Gemm(desc, a, b, d, algo);
                }

                refusal = failure;
            }
        }
        catch (CudaException e)
        {
            refusal = e.Message;
        }

        desc?.Dispose();
        a?.Dispose();
        b?.Dispose();
        d?.Dispose();
        return null;
    }

    private static unsafe string AlgoId(CublasLt.HeuristicResult algo)
    {
        var words = new ulong[8];
        for (var i = 0; i < words.Length; i++)
        {
            words[i] = algo.Algo[i];
        }

        return string.Join(',', words);
    }

    private static unsafe string? TryInt8Gemm(CublasLtHandle handle, CublasLtMatmulDescriptor desc, CublasLtMatrixLayout a, CublasLtMatrixLayout b, CublasLtMatrixLayout d, CublasLt.HeuristicResult algo, long pixels, long c, long k)
    {
        try
        {
            using var stream = CudaDriver.CreateStream();
            using var ad = CudaDriver.Allocate(k * c);
            using var bd = CudaDriver.Allocate(c * pixels);
            using var dd = CudaDriver.Allocate(k * pixels);
            using var vectors = CudaDriver.Allocate(8 * k);
            using var workspace = CudaDriver.Allocate(Math.Max((long)algo.WorkspaceSize, 256));
            CudaDriver.MemsetD8(ad.Pointer, 0, k * c, stream.Handle);
            CudaDriver.MemsetD8(bd.Pointer, 0, c * pixels, stream.Handle);
            CudaDriver.MemsetD8(vectors.Pointer, 0, 8 * k, stream.Handle);
            CublasLt.SetBias(desc, vectors.Pointer + (ulong)(4 * k));
            var beta = 0f;
            CublasLt.MatmulScaled(handle, desc, (void*)vectors.Pointer, ad.Pointer, a, bd.Pointer, b, &beta, dd.Pointer, d, dd.Pointer, d, &algo, workspace.Pointer, (long)algo.WorkspaceSize, stream.Handle);
            CudaDriver.Synchronize(stream);
            return null;
        }
        catch (CudaException e)
        {
            return e.Message;
        }
    }

    /// <summary>
    /// A QDQ MatMul or Gemm as an int8 GEMM: A as int8 (a uint8 value less 128), the weight as int8 [columns, inner],
    /// exact int32 sums from cuBLASLt, and the dequantization s_a·s_w[n]·(sum - z·Σw[n]) + b[n] pending, so it joins the
    /// kernel that reads the product (a QuantizeLinear, a GELU, an output conversion).
    /// </summary>
    private string? LowerInt8Gemm(Int8Layer layer, PlanValue?[] ins, NodeAttributes attrs, out string how)
    {
        how = "int8 (cuBLASLt, int32 sums)";
        var node = layer.Node;
        var (adq, wdq) = (layer.InputDequantize!, layer.WeightDequantize!);
        var aq = _values[adq.Input[0]];
        if (aq.Type is not (ElementType.UInt8 or ElementType.Int8) || aq.Shape.Length < 2)
        {
            return $"its first operand is {aq.Type.ShortName()} of rank {aq.Shape.Length}";
        }

        var aScale = (float)_values[adq.Input[1]].Constant![0];
        var aZero = _values[adq.Input[2]].Constant![0];
        var w = _values[wdq.Input[0]].Constant!;
        var wScale = _values[wdq.Input[1]].Constant!;
        var gemm = node.OpType == "Gemm";
        var transposed = gemm && attrs.Int("transB", 0) == 1;
        var (inner, columns) = transposed ? (w.Shape[1], w.Shape[0]) : (w.Shape[0], w.Shape[1]);
        if (aq.Shape[^1] != inner || (gemm && aq.Shape.Length != 2))
        {
            return $"operand {Tensor.ShapeText(aq.Shape)} does not fit weight {Tensor.ShapeText(w.Shape)}";
        }

        var bias = gemm ? ins.ElementAtOrDefault(2) : null;
        if (bias is not null && (bias.Constant is null || (bias.Count != columns && bias.Count != 1)))
        {
            return "its bias is not a constant of one value per output column";
        }

        var rows = Tensor.ElementCountOf(aq.Shape[..^1]);
        if (rows == 0)
        {
            return "an empty product";
        }

        // BATCHWISE_INT8_GEMM=graph: cuDNN's graph with the product as a 1x1 convolution over the rows (x [1, inner, rows,
        // 1] channels-last is A row-major, w [columns, inner, 1, 1] is the int8 weight table, y [1, columns, rows, 1] the
        // row-major output), the per-column scale and offset in its epilogue, the plan's float type written directly.
        var outShape = aq.Shape[..^1].Append(columns).ToArray();
        var onGraph = _target.Int8Gemms == Int8GemmChoice.Graph && Int8Layers.GraphMode != "off" && rows <= int.MaxValue;
        if (onGraph && node.OpType == "MatMul" && TryLowerInt8SiblingGraph(layer, aq, aScale, aZero, rows, inner) is { } together)
        {
            how = together;
            return null;
        }

        var graphRefusal = string.Empty;
        var graph = onGraph ? PlanInt8GemmGraph(node, rows, inner, columns, outShape, bias is null, out graphRefusal) : null;

        // Planned without cuBLASLt (a planning test), the step is the one a GPU plan would have, without descriptors.
        (CublasLtMatmulDescriptor? Desc, CublasLtMatrixLayout? A, CublasLtMatrixLayout? B, CublasLtMatrixLayout? D, CublasLt.HeuristicResult Algo) gemmPlan = default;
        if (graph is null && !_target.PlansMatmulsWithoutLibrary)
        {
            if (ChooseInt32Gemm(rows, inner, columns, out var refusal) is not { } chosen)
            {
                return "cuBLASLt does not run it: " + refusal;
            }

            gemmPlan = chosen;
        }

        // From here on the product is int8: A as row-major int8, the weight as [columns, inner] int8.
        var shift = StoredShift(aq.Type);
        var a = Int8GemmOperand(aq);

        var zero = aZero - shift;
        var biasValues = bias?.Constant ?? graph?.BiasAdd?.Bias;
        var recipe = string.Create(CultureInfo.InvariantCulture, $"int8gemm:{(transposed ? "t" : "n")}:{aScale:R}:{zero:R}");
        var t = _target.Derive(recipe, [w, wScale, biasValues], () => Int8GemmTables(w, transposed, wScale, biasValues, aScale, zero));
        if (graph is not null)
        {
            how = EmitInt8GemmGraph(node, graph, a, t, recipe, [w, wScale, biasValues], outShape, rows, graphRefusal);
            return null;
        }

        if (graphRefusal.Length > 0)
        {
            how += $" [graph API refused: {graphRefusal}]";
        }

        var sums = NewValue(ElementType.Int32, outShape, false, "int32 sums for " + _node);
        Emit(new Int8GemmStep(_node, Dev(new PlanValue(t[0].Type, t[0].Shape, t[0])), Dev(a), sums.Buffer, -1, -1, gemmPlan.Desc, gemmPlan.A, gemmPlan.B, gemmPlan.D, gemmPlan.Algo) { Sums = (rows, inner, columns) });
        ReserveWorkspace((long)gemmPlan.Algo.WorkspaceSize);
        var scale = new PlanValue(t[1].Type, t[1].Shape, t[1]);
        var offset = new PlanValue(t[2].Type, t[2].Shape, t[2]);
        _values[node.Output[0]] = Pending([sums, scale, offset], _ => "x0 * x1 + x2", ElementType.Float, outShape);
        return null;
    }

    /// <summary>
    /// cuBLASLt's int8 product with exact int32 sums for <paramref name="rows"/> x <paramref name="inner"/> by
    /// <paramref name="inner"/> x <paramref name="columns"/>: the first of its algorithms that runs once on scratch
    /// buffers, with its descriptors; null and the last refusal when none does.
    /// </summary>
    private (CublasLtMatmulDescriptor? Desc, CublasLtMatrixLayout? A, CublasLtMatrixLayout? B, CublasLtMatrixLayout? D, CublasLt.HeuristicResult Algo)? ChooseInt32Gemm(long rows, long inner, long columns, out string refusal)
    {
        var handle = _target.PlanningCublasLt;
        var desc = CublasLt.MatmulDesc(CublasLt.CUBLAS_COMPUTE_32I, transA: true, transB: false, CublasLt.CUDA_R_32I);
        var la = CublasLt.Layout(CublasLt.CUDA_R_8I, inner, columns, inner);
        var lb = CublasLt.Layout(CublasLt.CUDA_R_8I, inner, rows, inner);
        var ld = CublasLt.Layout(CublasLt.CUDA_R_32I, columns, rows, columns);
        refusal = "no algorithm";
        try
        {
            foreach (var algo in TimedLibrary("matmul_heuristics", () => CublasLt.Algorithms(handle, desc, la, lb, ld, ld, MaxConvWorkspace, 4)))
            {
                var key = string.Create(CultureInfo.InvariantCulture, $"i32|{rows}x{inner}x{columns}|{AlgoId(algo)}");
                var failure = Int8GemmTrials.GetOrAdd(key, _ => TimedLibrary("int8_trial", () => TryInt32Gemm(handle, desc, la, lb, ld, algo, rows, inner, columns)));
                if (failure is null)
                {
                    return (desc, la, lb, ld, algo);
                }

                refusal = failure;
            }
        }
        catch (CudaException e)
        {
            refusal = e.Message;
        }

        desc.Dispose();
        la.Dispose();
        lb.Dispose();
        ld.Dispose();
        return null;
    }

    /// <summary>
    /// The int8 GEMM's constants: the weight as int8 [columns, inner], the per-column multiplier s_a·s_w[n] and offset
    /// b[n] - s_a·s_w[n]·z·Σ_k w[k, n] (float64, so a half-precision plan keeps them exact).
    /// </summary>
    internal static HostTensor[] Int8GemmTables(HostTensor w, bool transposed, HostTensor wScale, HostTensor? bias, double aScale, double zero)
    {
        var (inner, columns) = transposed ? (w.Shape[1], w.Shape[0]) : (w.Shape[0], w.Shape[1]);
        var weights = new long[columns * inner];
        var sums = new double[columns];
        for (long n = 0; n < columns; n++)
        {
            for (long kk = 0; kk < inner; kk++)
            {
                var v = (long)w[transposed ? (n * inner) + kk : (kk * columns) + n];
                weights[(n * inner) + kk] = v;
                sums[n] += v;
            }
        }

        var scale = new double[columns];
        var offset = new double[columns];
        for (long n = 0; n < columns; n++)
        {
            scale[n] = aScale * (wScale.Count == 1 ? wScale[0] : wScale[n]);
            offset[n] = (bias is null ? 0 : bias.Count == 1 ? bias[0] : bias[n]) - (scale[n] * zero * sums[n]);
        }

        return [HostTensor.OfInts(ElementType.Int8, [columns, inner], weights), HostTensor.OfFloats(ElementType.Double, [columns], scale), HostTensor.OfFloats(ElementType.Double, [columns], offset)];
    }

    private static unsafe string? TryInt32Gemm(CublasLtHandle handle, CublasLtMatmulDescriptor desc, CublasLtMatrixLayout a, CublasLtMatrixLayout b, CublasLtMatrixLayout d, CublasLt.HeuristicResult algo, long rows, long inner, long columns)
    {
        try
        {
            using var stream = CudaDriver.CreateStream();
            using var ad = CudaDriver.Allocate(columns * inner);
            using var bd = CudaDriver.Allocate(inner * rows);
            using var dd = CudaDriver.Allocate(4 * columns * rows);
            using var workspace = CudaDriver.Allocate(Math.Max((long)algo.WorkspaceSize, 256));
            CudaDriver.MemsetD8(ad.Pointer, 0, columns * inner, stream.Handle);
            CudaDriver.MemsetD8(bd.Pointer, 0, inner * rows, stream.Handle);
            int one = 1, zero = 0;
            CublasLt.MatmulScaled(handle, desc, &one, ad.Pointer, a, bd.Pointer, b, &zero, dd.Pointer, d, dd.Pointer, d, &algo, workspace.Pointer, (long)algo.WorkspaceSize, stream.Handle);
            CudaDriver.Synchronize(stream);
            return null;
        }
        catch (CudaException e)
        {
            return e.Message;
        }
    }
}
