using Batchwise.Analysis;
using Batchwise.Onnx;
using static Batchwise.Operators.OperatorRegistry;

namespace Batchwise.Operators;

/// <summary>
/// Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear (2 FLOPs per element), and the integer
/// convolutions and products ConvInteger, MatMulInteger, QLinearConv, QLinearMatMul (GEMMs).
/// </summary>
internal static class QuantizationOperators
{
    public static IEnumerable<OperatorSchema> Records()
    {
        yield return Define("QuantizeLinear", [10, 13, 19, 21, 23])
            .WithAttributes(
                Attribute.Int("axis", 1, since: 13),
                Attribute.Int("block_size", 0, since: 21),
                Attribute.Int("output_dtype", 0, since: 21),
                Attribute.Int("precision", 0, since: 23),
                Attribute.Int("saturate", 1, since: 19))
            .Shape(c => [new SymbolicValue(QuantizedType(c.Has(2) ? c.In(2).Type : null, c.Opset >= 21 ? c.Int("output_dtype") : 0), c.In(0).Shape)])
            .Host(c =>
            {
                var (x, scale, zero) = (c.In(0), c.In(1), c.Optional(2));
                var type = QuantizedType(zero?.Type, c.Opset >= 21 ? c.Int("output_dtype") : 0);
                var channel = PerAxis(c, x.Shape, scale);
                var (lo, hi) = Range(type);
                return [HostTensor.CreateInts(type, x.Shape, i =>
                {
                    var k = channel(i);
                    var q = Math.Round(x[i] / scale[k], MidpointRounding.ToEven) + (zero is null ? 0 : zero[zero.Count == 1 ? 0 : k]);
                    return (long)Math.Clamp(q, lo, hi);
                })];
            })
            .Costs(OpCategory.Elementwise, c => new OperatorWork(2 * c.OutputElements));

        yield return Define("DequantizeLinear", [10, 13, 19, 21, 23])
            .WithAttributes(Attribute.Int("axis", 1, since: 13), Attribute.Int("block_size", 0, since: 21), Attribute.Int("output_dtype", 0, since: 23))
            .Shape(c => [new SymbolicValue(c.In(1).Type, c.In(0).Shape)])
            .Host(c =>
            {
                var (x, scale, zero) = (c.In(0), c.In(1), c.Optional(2));
                var channel = PerAxis(c, x.Shape, scale);
                return [HostTensor.Create(scale.Type, x.Shape, i =>
                {
                    var k = channel(i);
                    return (x[i] - (zero is null ? 0 : zero[zero.Count == 1 ? 0 : k])) * scale[k];
                })];
            })
            .Costs(OpCategory.Elementwise, c => new OperatorWork(2 * c.OutputElements));

        yield return Define("DynamicQuantizeLinear", [11])
            .Shape(c => [new SymbolicValue(ElementType.UInt8, c.In(0).Shape), new SymbolicValue(ElementType.Float, []), new SymbolicValue(ElementType.UInt8, [])])
            .Host(c =>
            {
                var x = c.In(0);
                var values = x.AsDoubles();
                var (min, max) = (Math.Min(0, values.DefaultIfEmpty(0).Min()), Math.Max(0, values.DefaultIfEmpty(0).Max()));
                var scale = (double)(float)((max - min) / 255);
                var zero = scale == 0 ? 0 : Math.Clamp(Math.Round(-min / scale, MidpointRounding.ToEven), 0, 255);
                return
                [
                    HostTensor.CreateInts(ElementType.UInt8, x.Shape, i => scale == 0 ? (long)zero : (long)Math.Clamp(Math.Round(values[i] / scale, MidpointRounding.ToEven) + zero, 0, 255)),
                    HostTensor.Scalar(ElementType.Float, scale),
                    HostTensor.OfInts(ElementType.UInt8, [], [(long)zero]),
                ];
            })
            .Costs(OpCategory.Elementwise, c => new OperatorWork(4 * c.OutputElements));

        yield return Define("ConvInteger", [10])
            .WithAttributes(ConvolutionOperators.ConvAttributes)
            .Shape(c => [ConvolutionOperators.ConvShape(c, ElementType.Int32)])
            .Host(c =>
            {
                var (x, w) = (c.In(0), c.In(1));
                var (xZero, wZero) = (c.Optional(2), c.Optional(3));
                var perOut = TensorMath.Product(w.Shape.Skip(1));
                return [ConvolutionOperators.Conv(c, x, w, null, ElementType.Int32, i => x[i] - (xZero?[0] ?? 0), i => w[i] - (wZero is null ? 0 : wZero[wZero.Count == 1 ? 0 : i / perOut]))];
            }, eager: false)
            .Costs(OpCategory.Gemm, ConvolutionOperators.ConvCost);

        yield return Define("MatMulInteger", [10])
            .Shape(c => [MatrixOperators.MatMulShape(c, c.In(0), c.In(1), ElementType.Int32)])
            .Host(c =>
            {
                var (a, b) = (c.In(0), c.In(1));
                var (aZero, bZero) = (c.Optional(2), c.Optional(3));
                var (k, n) = (a.Shape[^1], b.Shape[^1]);
                var rows = a.Shape.Length > 1 ? a.Shape[^2] : 1;
                return [MatrixOperators.MatMul(a, b, c.OutputShape(0), ElementType.Int32, (input, i) => input == 0
                    ? a[i] - (aZero is null ? 0 : aZero[aZero.Count == 1 ? 0 : i / k % rows])
                    : b[i] - (bZero is null ? 0 : bZero[bZero.Count == 1 ? 0 : i % n]))];
            }, eager: false)
            .Costs(OpCategory.Gemm, c => MatrixOperators.MatMulCost(c, 0, 1));

        yield return Define("QLinearConv", [10])
            .WithAttributes(ConvolutionOperators.ConvAttributes)
            .Shape(c => [ConvolutionOperators.ConvShape(c, c.In(7).Type)])
            .Host(c =>
            {
                var (x, xScale, xZero, w, wScale, wZero, yScale, yZero) = (c.In(0), c.In(1), c.In(2), c.In(3), c.In(4), c.In(5), c.In(6), c.In(7));
                var bias = c.Optional(8);
                var perOut = TensorMath.Product(w.Shape.Skip(1));
                var sums = ConvolutionOperators.Conv(c, x, w, bias, ElementType.Double, i => x[i] - xZero[0], i => w[i] - wZero[wZero.Count == 1 ? 0 : i / perOut]);
                var channels = sums.Shape[1];
                var inner = TensorMath.Product(sums.Shape.Skip(2));
                var (lo, hi) = Range(yZero.Type);
                return [HostTensor.CreateInts(yZero.Type, sums.Shape, i =>
                {
                    var oc = i / inner % channels;
                    var real = sums[i] * xScale[0] * wScale[wScale.Count == 1 ? 0 : oc] / yScale[0];
                    return (long)Math.Clamp(Math.Round(real, MidpointRounding.ToEven) + yZero[0], lo, hi);
                })];
            }, eager: false)
            .Costs(OpCategory.Gemm, ConvolutionOperators.ConvCost);

        yield return Define("QLinearMatMul", [10, 21])
            .Shape(c => [MatrixOperators.MatMulShape(c, c.In(0), c.In(3), c.In(7).Type)])
            .Host(c =>
            {
                var (a, aScale, aZero, b, bScale, bZero, yScale, yZero) = (c.In(0), c.In(1), c.In(2), c.In(3), c.In(4), c.In(5), c.In(6), c.In(7));
                var n = b.Shape[^1];
                var sums = MatrixOperators.MatMul(a, b, c.OutputShape(0), ElementType.Double, (input, i) => input == 0 ? a[i] - aZero[0] : b[i] - bZero[bZero.Count == 1 ? 0 : i % n]);
                var (lo, hi) = Range(yZero.Type);
                return [HostTensor.CreateInts(yZero.Type, sums.Shape, i =>
                {
                    var real = sums[i] * aScale[0] * bScale[bScale.Count == 1 ? 0 : i % n] / yScale[0];
                    return (long)Math.Clamp(Math.Round(real, MidpointRounding.ToEven) + yZero[0], lo, hi);
                })];
            }, eager: false)
            .Costs(OpCategory.Gemm, c => MatrixOperators.MatMulCost(c, 0, 3));
    }

    private static ElementType QuantizedType(ElementType? zeroPointType, long outputDtype) =>
        zeroPointType ?? (outputDtype != 0 ? (ElementType)outputDtype : ElementType.UInt8);

    private static (double Low, double High) Range(ElementType type) => type switch
    {
        ElementType.UInt8 => (0, 255),
        ElementType.Int8 => (-128, 127),
        ElementType.UInt16 => (0, 65535),
        ElementType.Int16 => (-32768, 32767),
        ElementType.Int32 => (int.MinValue, int.MaxValue),
        _ => throw new BatchwiseException($"{type.ShortName()} is not a quantized type Batchwise computes with", "Use uint8, int8, uint16 or int16."),
    };

    /// <summary>For element i, the index of its scale: 0 for a per-tensor scale, the element's position along axis for a per-axis one.</summary>
    private static Func<long, long> PerAxis(EvaluationContext c, long[] shape, HostTensor scale)
    {
        if (c.Opset >= 21 && c.Int("block_size") != 0)
        {
            throw c.Fail("blocked quantization (block_size) is not implemented on the host");
        }

        if (scale.Count <= 1)
        {
            return _ => 0;
        }

        var axis = c.Axis(c.Opset >= 13 ? c.Int("axis") : 1, shape.Length);
        var inner = TensorMath.Product(shape.Skip(axis + 1));
        var size = shape[axis];
        return i => i / inner % size;
    }
}
