using System.Globalization;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Quantized operators: QuantizeLinear and DequantizeLinear (per tensor and per axis), DynamicQuantizeLinear, and the
/// integer convolutions and matrix products (ConvInteger, MatMulInteger, QLinearConv, QLinearMatMul) as direct kernels
/// that accumulate exactly in int32, one thread per output. Correct first: the tensor-core int8 path is another issue.
/// A QDQ model (batchwise optimize --int8) runs its convolutions and matrix products in float between the
/// QuantizeLinear/DequantizeLinear pairs, as ONNX defines them.
/// </summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> QuantizationLowerings()
    {
        yield return ("QuantizeLinear", new((c, n, i, a) => c.LowerQuantize(n, i, a), InputLayout.Pending, BlockCheck));
        yield return ("DequantizeLinear", new((c, n, i, a) => c.LowerDequantize(n, i, a), InputLayout.Pending, BlockCheck));
        yield return ("DynamicQuantizeLinear", new((c, n, i, _) => c.LowerDynamicQuantize(n, i[0]!)));
        yield return ("ConvInteger", new((c, n, i, a) => c.LowerIntegerConv(n, i, a, requantize: false), Check: AutoPadCheck));
        yield return ("QLinearConv", new((c, n, i, a) => c.LowerIntegerConv(n, i, a, requantize: true), Check: AutoPadCheck));
        // Pending: a DynamicQuantizeLinear's output reaches the int8 product as its chain (quantized and stored as int8 in
        // one pass); the direct kernel materializes it.
        yield return ("MatMulInteger", new((c, n, i, _) => c.LowerIntegerMatMul(n, i, requantize: false), InputLayout.Pending));
        yield return ("QLinearMatMul", new((c, n, i, _) => c.LowerIntegerMatMul(n, i, requantize: true)));
    }

    /// <summary>Blocked quantization (opset 21's block_size) is not lowered.</summary>
    private static string? BlockCheck(OnnxProto.NodeProto node, NodeAttributes attrs, long opset) =>
        attrs.Int("block_size", 0) != 0 ? "blocked quantization (block_size)" : null;

    /// <summary>
    /// A scale's buffer and the type its kernel reads it as: constants go up as float64, so an fp16 plan keeps them exact;
    /// a computed scale is read in its storage type.
    /// </summary>
    private (int Buffer, ElementType Type) ScaleBuffer(PlanValue scale)
    {
        if (scale.Constant is { } c)
        {
            var wide = _target.Derive("scale:float64", [c], () => HostTensor.Create(ElementType.Double, c.Shape, k => c[k]));
            return (Dev(new PlanValue(ElementType.Double, c.Shape, wide)), ElementType.Double);
        }

        return (Dev(scale), St(scale));
    }

    /// <summary>The quantization axis's size and the count of elements after it; per tensor when the scale has one value.</summary>
    private static (bool PerAxis, long AxisSize, long Inner) QuantAxis(PlanValue x, PlanValue scale, NodeAttributes attrs)
    {
        if (scale.Count <= 1)
        {
            return (false, 1, 1);
        }

        var axis = (int)attrs.Int("axis", 1);
        axis = axis < 0 ? axis + x.Shape.Length : axis;
        if (axis < 0 || axis >= x.Shape.Length || x.Shape[axis] != scale.Count)
        {
            throw new BatchwiseException($"a per-axis scale of {scale.Count} values does not match axis {attrs.Int("axis", 1)} of {Tensor.ShapeText(x.Shape)}", "Give one scale per element of the axis.");
        }

        return (true, x.Shape[axis], Tensor.ElementCountOf(x.Shape[(axis + 1)..]));
    }

    /// <summary>A per-tensor scale and zero point known when the plan is built (the elementwise form of the pair), or null.</summary>
    private static (double Scale, double ZeroPoint)? ConstantPerTensor(PlanValue scale, PlanValue? zp) =>
        scale.Constant is { Count: 1 } s && (zp is null || zp.Constant is { Count: 1 }) ? ((float)s[0], zp?.Constant is { } z ? z[0] : 0) : null;

    /// <summary>
    /// The one constant scale and zero point of a QuantizeLinear or DequantizeLinear node, with the zero point's type
    /// (uint8 where it has none), its inputs read through <paramref name="value"/>; null where either is not a single
    /// constant or a named input is not found.
    /// </summary>
    private static (double Scale, double Zero, ElementType Type)? QdqPerTensor(OnnxProto.NodeProto node, Func<string, PlanValue?> value)
    {
        if (node.Domain.Length != 0 || node.Input.Count < 2 || value(node.Input[1]) is not { } scale)
        {
            return null;
        }

        var zeroGiven = node.Input.Count > 2 && node.Input[2].Length > 0;
        var zero = zeroGiven ? value(node.Input[2]) : null;
        return (zeroGiven && zero is null) || ConstantPerTensor(scale, zero) is not { } c ? null : (c.Scale, c.ZeroPoint, zero?.Type ?? ElementType.UInt8);
    }

    private void LowerDequantize(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var (x, scale, zp) = (ins[0]!, ins[1]!, ins.ElementAtOrDefault(2));
        var (perAxis, axisSize, inner) = QuantAxis(x, scale, attrs);
        if (!perAxis && x.Count > 0 && ConstantPerTensor(scale, zp) is { } pair)
        {
            // Per tensor with constants: elementwise and pending, so it fuses with what reads it (a residual Add and the
            // QuantizeLinear after it become one kernel) and costs nothing where an int8 convolution reads x itself.
            MakeInt8BeforeItIsExtended(x, node.Input[0]);
            _values[node.Output[0]] = Pending([x], _ => DequantizeExpression("x0", pair.Scale, pair.ZeroPoint), scale.Constant!.Type, x.Shape);
            return;
        }

        x = Nchw(x);
        var y = Output(node, 0, St(scale.Constant?.Type ?? scale.Type), x.Shape);
        if (y.Count == 0)
        {
            return;
        }

        var (scaleBuffer, scaleType) = ScaleBuffer(scale);
        var zpType = zp is null ? x.Type : St(zp);
        Kernel(KernelSource.Dequantize(St(x), y.Type, scaleType, zpType, x.Count, axisSize, inner, perAxis), y.Count, Dev(y), Dev(x), scaleBuffer, zp is null ? -1 : Dev(zp));
    }

    private void LowerQuantize(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var (x, scale, zp) = (ins[0]!, ins[1]!, ins.ElementAtOrDefault(2));
        var (perAxis, axisSize, inner) = QuantAxis(x, scale, attrs);
        var dtype = (ElementType)attrs.Int("output_dtype", 0);
        var yType = zp?.Type ?? (dtype != ElementType.Undefined ? dtype : ElementType.UInt8);
        if (yType is not (ElementType.UInt8 or ElementType.Int8 or ElementType.UInt16 or ElementType.Int16))
        {
            throw new BatchwiseException($"QuantizeLinear to {yType.ShortName()} is not supported (8- and 16-bit integers)", "Quantize to uint8 or int8, or use --engine ort.");
        }

        if (!perAxis && x.Count > 0 && ConstantPerTensor(scale, zp) is { } pair)
        {
            // Pending, so it fuses into what produces x.
            _values[node.Output[0]] = Pending([x], _ => QuantizeExpression("x0", pair.Scale, pair.ZeroPoint, yType), yType, x.Shape);
            return;
        }

        x = Nchw(x);

        var y = Output(node, 0, yType, x.Shape);
        if (y.Count == 0)
        {
            return;
        }

        var (scaleBuffer, scaleType) = ScaleBuffer(scale);
        Kernel(KernelSource.Quantize(St(x), yType, scaleType, x.Count, axisSize, inner, perAxis), y.Count, Dev(y), Dev(x), scaleBuffer, zp is null ? -1 : Dev(zp));
    }

    /// <summary>
    /// QuantizeLinear of <paramref name="x"/> (a float expression) per tensor as its kernel computes it: divide by the
    /// scale, round half to even, add the zero point, saturate to <paramref name="type"/>'s range.
    /// </summary>
    private static string QuantizeExpression(string x, double scale, double zero, ElementType type)
    {
        var (low, high) = QuantRange(type);
        var inverse = 1f / (float)scale;
        if (!float.IsFinite(inverse) || inverse == 0)
        {
            return $"fminf(fmaxf(rintf((float)({x}) / {KernelSource.F(scale)}) + {KernelSource.F(zero)}, {KernelSource.F(low)}), {KernelSource.F(high)})";
        }

        // The division by the reciprocal with one correction (the same quotient; a true division is a long sequence,
        // which made MobileNetV2's int8 stem output chain, two QuantizeLinears an element, compute-bound: 0.28 ms for
        // 309 MB at b=256 on an H200, session 31) and the rounding by two float adds.
        return $"(bw_quantize((float)({x}), {KernelSource.F(scale)}, {KernelSource.F(inverse)}, {KernelSource.F(low - zero)}, {KernelSource.F(high - zero)}) + {KernelSource.F(zero)})";
    }

    /// <summary>DequantizeLinear of <paramref name="x"/> (a stored integer expression) per tensor: (x - zero point) * scale in float.</summary>
    private static string DequantizeExpression(string x, double scale, double zero) =>
        $"((float)({x}) - {KernelSource.F(zero)}) * {KernelSource.F(scale)}";

    /// <summary>The range a QuantizeLinear saturates to: its integer type's (8 or 16 bits).</summary>
    private static (int Low, int High) QuantRange(ElementType type) => type switch
    {
        ElementType.UInt8 => (0, 255),
        ElementType.Int8 => (-128, 127),
        ElementType.UInt16 => (0, 65535),
        _ => (-32768, 32767),
    };

    /// <summary>
    /// What a QuantizeLinear stores, given its per-tensor constants <paramref name="pair"/> (<see cref="QdqPerTensor"/>):
    /// its zero point's type, or without one its output_dtype (uint8 unless set).
    /// </summary>
    private static ElementType QuantizedType(OnnxProto.NodeProto q, (double Scale, double Zero, ElementType Type) pair) =>
        q.Input.Count > 2 && q.Input[2].Length > 0 ? pair.Type : (ElementType)new NodeAttributes(q).Int("output_dtype", (long)ElementType.UInt8);

    /// <summary>
    /// DynamicQuantizeLinear: the range's kernels (<see cref="KernelSource.DynamicQuantizeRange"/>, in many blocks for a
    /// large x), then y as an elementwise chain over x and the computed scale and zero point, so that what reads it applies
    /// it as it writes (an int8 product's operand, stored less 128, is then one pass over x, not a quantization and a shift).
    /// </summary>
    private void LowerDynamicQuantize(OnnxProto.NodeProto node, PlanValue x)
    {
        var scale = Output(node, 1, St(ElementType.Float), []);
        var zp = Output(node, 2, ElementType.UInt8, []);
        // float32 whatever the plan's precision (Temp would store a float value as half in a half-precision plan).
        var scale32 = new PlanValue(ElementType.Float, [], null, NewBuffer(sizeof(float), "float32 scale for " + _node).Id);
        var blocks = KernelSource.DynamicQuantizeBlocks(x.Count);
        if (blocks == 1)
        {
            Kernel(KernelSource.DynamicQuantizeRange(St(x), scale.Type, x.Count), KernelSource.BlockSize, Dev(scale32), Dev(scale), Dev(zp), Dev(x));
        }
        else
        {
            // Many blocks' lows and highs first, then the one-block range over those.
            var partials = new PlanValue(ElementType.Float, [2 * blocks], null, NewBuffer(2 * blocks * sizeof(float), "range partials for " + _node).Id);
            Kernel(KernelSource.DynamicQuantizePartials(St(x), x.Count, blocks), blocks * KernelSource.BlockSize, Dev(partials), Dev(x));
            Kernel(KernelSource.DynamicQuantizeRange(ElementType.Float, scale.Type, 2 * blocks), KernelSource.BlockSize, Dev(scale32), Dev(scale), Dev(zp), Dev(partials));
        }

        // saturate(round_half_even(x / scale) + zero point), as the QuantizeLinear kernel rounds.
        _values[node.Output[0]] = Pending([x, scale32, zp], _ => "fminf(fmaxf(rintf(x0 / x1) + (float)x2, 0.f), 255.f)", ElementType.UInt8, x.Shape);
    }

    /// <summary>Requires an 8-bit integer operand (the integer kernels read uint8 or int8).</summary>
    private static void RequireInt8(PlanValue v, string what)
    {
        if (v.Type is not (ElementType.UInt8 or ElementType.Int8))
        {
            throw new BatchwiseException($"its {what} is {v.Type.ShortName()} (uint8 or int8 only)", "Quantize to uint8 or int8, or use --engine ort.");
        }
    }

    /// <summary>
    /// ConvInteger (x, w, x_zero_point, w_zero_point) and QLinearConv (x, x_scale, x_zero_point, w, w_scale,
    /// w_zero_point, y_scale, y_zero_point, bias) over NCHW.
    /// </summary>
    private void LowerIntegerConv(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs, bool requantize)
    {
        var x = ins[0]!;
        var w = requantize ? ins[3]! : ins[1]!;
        var xZp = requantize ? ins[2] : ins.ElementAtOrDefault(2);
        var wZp = requantize ? ins.ElementAtOrDefault(5) : ins.ElementAtOrDefault(3);
        RequireInt8(x, "input");
        RequireInt8(w, "filter");
        var r = x.Shape.Length - 2;
        if (r < 1)
        {
            throw new BatchwiseException($"an integer convolution of rank {x.Shape.Length} is not supported", "Give the input [N, C, spatial...].");
        }

        var (kernel, strides, dilations, groups, inSpatial, pb, pe, outSpatial) = Window(attrs, x.Shape, w.Shape);
        var m = w.Shape[0];
        if (x.Shape[1] != w.Shape[1] * groups || m % groups != 0)
        {
            throw new BatchwiseException($"filter {Tensor.ShapeText(w.Shape)} with {groups} groups does not fit input {Tensor.ShapeText(x.Shape)}", "Check the model's shapes.");
        }

        var yType = requantize ? ins.ElementAtOrDefault(7)?.Type ?? ElementType.UInt8 : ElementType.Int32;
        var y = Output(node, 0, yType, new[] { x.Shape[0], m }.Concat(outSpatial).ToArray());
        if (y.Count == 0)
        {
            return;
        }

        var (xs, ws, ys, scaleTypes, wScaleStride) = requantize ? Scales(ins[1]!, ins[4]!, ins[6]!) : (-1, -1, -1, (ElementType.Float, ElementType.Float, ElementType.Float), 0L);
        var code = KernelSource.IntegerConv(St(x), St(w), yType, scaleTypes, r, y.Count, m, w.Shape[1], m / groups, inSpatial, outSpatial, kernel, strides, pb, dilations, wZp is { Count: > 1 } ? 1 : 0, wScaleStride, requantize);
        Kernel(code, y.Count, Dev(y), Dev(x), Dev(w), xZp is null ? -1 : Dev(xZp), wZp is null ? -1 : Dev(wZp), xs, ws, ys, requantize && ins.ElementAtOrDefault(7) is { } yZp ? Dev(yZp) : -1, requantize && ins.ElementAtOrDefault(8) is { } bias ? Dev(bias) : -1);
    }

    /// <summary>
    /// MatMulInteger (a, b, a_zero_point, b_zero_point) and QLinearMatMul (a, a_scale, a_zero_point, b, b_scale,
    /// b_zero_point, y_scale, y_zero_point): batch dimensions broadcast where an operand has all of them or none.
    /// </summary>
    private void LowerIntegerMatMul(OnnxProto.NodeProto node, PlanValue?[] ins, bool requantize)
    {
        var a = ins[0]!;
        var b = requantize ? ins[3]! : ins[1]!;
        var aZp = requantize ? ins[2] : ins.ElementAtOrDefault(2);
        var bZp = requantize ? ins.ElementAtOrDefault(5) : ins.ElementAtOrDefault(3);
        RequireInt8(a, "first operand");
        RequireInt8(b, "second operand");
        if (!requantize && TryLowerIntegerMatMulOnTensorCores(node, a, b, aZp is null ? null : Nchw(aZp), bZp))
        {
            return;
        }

        // QLinearMatMul with constant scales: the same int8 product, then its requantization as the chain after it.
        if (requantize && ins[1]!.Constant is { Count: 1 } aScale && ins[4]!.Constant is { } bScale && ins[6]!.Constant is { Count: 1 } yScale
            && b.Shape.Length == 2 && (bScale.Count == 1 || bScale.Count == b.Shape[1]) && TryLowerIntegerMatMulOnTensorCores(node, a, b, aZp, bZp))
        {
            RequantizeIntegerProduct(node, ins.ElementAtOrDefault(7), aScale, bScale, yScale, b.Shape[1]);
            return;
        }

        (a, b, aZp, bZp) = (Nchw(a), Nchw(b), aZp is null ? null : Nchw(aZp), bZp is null ? null : Nchw(bZp));

        var aShape = a.Shape.Length == 1 ? [1, a.Shape[0]] : a.Shape;
        var bShape = b.Shape.Length == 1 ? [b.Shape[0], 1] : b.Shape;
        var (rows, inner, cols) = (aShape[^2], aShape[^1], bShape[^1]);
        if (bShape[^2] != inner)
        {
            throw new BatchwiseException($"cannot multiply {Tensor.ShapeText(a.Shape)} by {Tensor.ShapeText(b.Shape)}", "Check the model's shapes.");
        }

        var batch = Shapes.Broadcast(aShape[..^2], bShape[..^2]);
        var batchCount = Tensor.ElementCountOf(batch);
        long BatchStride(long[] shape, long matrix)
        {
            var count = Tensor.ElementCountOf(shape[..^2]);
            return count == batchCount ? matrix : count == 1 ? 0
                : throw new BatchwiseException($"batch dimensions {Tensor.ShapeText(a.Shape)} x {Tensor.ShapeText(b.Shape)} broadcast within each other (only an operand with all or none of them is supported)", "Expand the operands first, or use --engine ort.");
        }

        var aStride = BatchStride(aShape, rows * inner);
        var bStride = BatchStride(bShape, inner * cols);
        var outShape = batch.Concat(a.Shape.Length == 1 ? [] : new[] { rows }).Concat(b.Shape.Length == 1 ? [] : new[] { cols }).ToArray();
        var yType = requantize ? ins.ElementAtOrDefault(7)?.Type ?? ElementType.UInt8 : ElementType.Int32;
        var y = Output(node, 0, yType, outShape);
        if (y.Count == 0)
        {
            return;
        }

        var (xs, ws, ys, scaleTypes, bScaleStride) = requantize ? Scales(ins[1]!, ins[4]!, ins[6]!) : (-1, -1, -1, (ElementType.Float, ElementType.Float, ElementType.Float), 0L);
        var code = KernelSource.IntegerMatMul(St(a), St(b), yType, scaleTypes, y.Count, rows, inner, cols, aStride, bStride, aZp is { Count: > 1 } ? 1 : 0, bZp is { Count: > 1 } ? 1 : 0, bScaleStride, requantize);
        Kernel(code, y.Count, Dev(y), Dev(a), Dev(b), aZp is null ? -1 : Dev(aZp), bZp is null ? -1 : Dev(bZp), xs, ws, ys, requantize && ins.ElementAtOrDefault(7) is { } yZp ? Dev(yZp) : -1, -1);
    }

    /// <summary>
    /// MatMulInteger of an 8-bit activation by a constant int8 weight [K, N] with zero points of 0 (a dynamic int8 export:
    /// DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul, as `optimize --int8-dynamic` and ONNX Runtime's dynamic
    /// quantizer write it) on cuBLASLt's int8 tensor cores, as the int8 path's QDQ products run: the activation as stored
    /// int8 (a uint8 byte less 128), the weight as [N, K], int32 sums, and (a - a_zero_point) restored by
    /// + (shift - a_zero_point) · Σ_k w[k, n] in an elementwise chain the Cast and Mul after it join. The activation's zero
    /// point may be computed (DynamicQuantizeLinear's). Returns false (nothing emitted) where the product does not fit
    /// (a weight with batch dimensions or a zero point other than 0, an activation zero point per row, cuBLASLt refusing),
    /// for the direct kernel.
    /// </summary>
    private bool TryLowerIntegerMatMulOnTensorCores(OnnxProto.NodeProto node, PlanValue a, PlanValue b, PlanValue? aZp, PlanValue? bZp)
    {
        if (_target.ComputeCapability < 75 || b.Constant is not { } w || b.Type != ElementType.Int8 || b.Shape.Length != 2 || a.Shape.Length < 2
            || a.Shape[^1] != b.Shape[0] || (aZp is not null && aZp.Count != 1)
            || (bZp is not null && (bZp.Constant is not { } z || Enumerable.Range(0, (int)z.Count).Any(i => z[i] != 0))))
        {
            return false;
        }

        var (inner, columns) = (b.Shape[0], b.Shape[1]);
        var rows = Tensor.ElementCountOf(a.Shape[..^1]);
        if (rows is 0 or > int.MaxValue || inner > int.MaxValue || columns > int.MaxValue)
        {
            return false;
        }

        (CublasLtMatmulDescriptor? Desc, CublasLtMatrixLayout? A, CublasLtMatrixLayout? B, CublasLtMatrixLayout? D, CublasLt.HeuristicResult Algo) gemmPlan = default;
        if (!_target.PlansMatmulsWithoutLibrary)
        {
            if (ChooseInt32Gemm(rows, inner, columns, out _) is not { } chosen)
            {
                return false;
            }

            gemmPlan = chosen;
        }

        var shift = StoredShift(a.Type);
        var stored = Int8GemmOperand(a);
        var t = _target.Derive("matmulinteger:int8", [w], () => IntegerGemmTables(w));
        var outShape = a.Shape[..^1].Append(columns).ToArray();
        var sums = NewValue(ElementType.Int32, outShape, false, "int32 sums for " + _node);
        _node += " (int8 tensor cores, cuBLASLt)";
        Emit(new Int8GemmStep(_node, Dev(new PlanValue(t[0].Type, t[0].Shape, t[0])), Dev(stored), sums.Buffer, -1, -1, gemmPlan.Desc, gemmPlan.A, gemmPlan.B, gemmPlan.D, gemmPlan.Algo) { Sums = (rows, inner, columns) });
        ReserveWorkspace((long)gemmPlan.Algo.WorkspaceSize);
        var colsum = new PlanValue(ElementType.Int32, [columns], t[1]);
        var shiftText = shift.ToString(CultureInfo.InvariantCulture);
        _values[node.Output[0]] = aZp is not null ? Pending([sums, aZp, colsum], _ => $"x0 + ({shiftText} - (int)x1) * x2", ElementType.Int32, outShape)
            : shift != 0 ? Pending([sums, colsum], _ => $"x0 + {shiftText} * x1", ElementType.Int32, outShape)
            : sums;
        return true;
    }

    /// <summary>
    /// QLinearMatMul's output from the exact int32 product now in <paramref name="node"/>'s output: saturate(round_half_even(
    /// acc · (a_scale · b_scale[n] / y_scale)) + y_zero_point), the multiplier computed in float32 as the direct kernel
    /// computes it (held as float64, so a half-precision plan keeps it exact).
    /// </summary>
    private void RequantizeIntegerProduct(OnnxProto.NodeProto node, PlanValue? yZp, HostTensor aScale, HostTensor bScale, HostTensor yScale, long columns)
    {
        var yType = yZp?.Type ?? ElementType.UInt8;
        var (low, high) = QuantRange(yType);
        var multiplier = _target.Derive("qlinearmatmul:multiplier", [aScale, bScale, yScale], () => HostTensor.Create(ElementType.Double, [columns], n => (float)aScale[0] * (float)bScale[bScale.Count == 1 ? 0 : n] / (float)yScale[0]));
        var acc = _values[node.Output[0]];
        var m = new PlanValue(ElementType.Double, [columns], multiplier);
        var zero = yZp is null ? "0.f" : "(float)x2";
        _values[node.Output[0]] = Pending(yZp is null ? [acc, m] : [acc, m, yZp], _ => $"fminf(fmaxf(rintf((float)x0 * (float)x1) + {zero}, {KernelSource.F(low)}), {KernelSource.F(high)})", yType, acc.Shape);
    }

    /// <summary>An int8 weight [K, N] for cuBLASLt's int8 product: itself as [N, K], and its column sums Σ_k w[k, n] as int32.</summary>
    internal static HostTensor[] IntegerGemmTables(HostTensor w)
    {
        var (inner, columns) = (w.Shape[0], w.Shape[1]);
        var weights = new long[columns * inner];
        var sums = new long[columns];
        for (long n = 0; n < columns; n++)
        {
            for (long k = 0; k < inner; k++)
            {
                var v = (long)w[(k * columns) + n];
                weights[(n * inner) + k] = v;
                sums[n] += v;
            }
        }

        return [HostTensor.OfInts(ElementType.Int8, [columns, inner], weights), HostTensor.OfInts(ElementType.Int32, [columns], sums)];
    }

    /// <summary>The three scales of a requantizing operator: buffers, the types the kernel reads them as, the filter scale's stride.</summary>
    private (int X, int W, int Y, (ElementType X, ElementType W, ElementType Y) Types, long WStride) Scales(PlanValue x, PlanValue w, PlanValue y)
    {
        var (xs, xt) = ScaleBuffer(x);
        var (ws, wt) = ScaleBuffer(w);
        var (ys, yt) = ScaleBuffer(y);
        return (xs, ws, ys, (xt, wt, yt), w.Count > 1 ? 1 : 0);
    }
}
