using Batchwise.Onnx;
using Batchwise.Zoo;
using OnnxProto = Onnx;

namespace Batchwise.Tests.Operators;

/// <summary>One input of an operator case: type, shape and values (seeded random in [Low, High] when not given).</summary>
public sealed record CaseInput(ElementType Type, long[] Shape, double[]? Values = null, double Low = -2, double High = 2)
{
    /// <summary>An absent optional input.</summary>
    public static readonly CaseInput Absent = new(ElementType.Undefined, []);
}

/// <summary>One node of one operator at one opset, with its inputs: what the registry must agree with ONNX Runtime on.</summary>
public sealed record OperatorCase(string Name, string OpType, long Opset, CaseInput[] Inputs, OnnxProto.AttributeProto[] Attributes, int Outputs = 1, string Domain = "")
{
    public override string ToString() => Name;
}

/// <summary>Small cases for every operator in the registry (several opsets where the signature changed).</summary>
public static class OperatorCases
{
    private static readonly long[] S = [2, 3, 4];

    public static IReadOnlyDictionary<string, OperatorCase> All { get; } = Build().ToDictionary(c => c.Name, StringComparer.Ordinal);

    /// <summary>
    /// Recurrent layers in layout 1 ([batch, seq, ...]), which ONNX Runtime's CPU kernels refuse: checked against
    /// ONNX Runtime running the same values transposed to layout 0.
    /// </summary>
    public static IReadOnlyDictionary<string, OperatorCase> RecurrentLayout1 { get; } = new[]
    {
        C("RNN-bidirectional-layout1", "RNN", [F(2, 3, 4), W(2, 3, 4), W(2, 3, 3), W(2, 6), Lengths(3, 1), W(2, 2, 3)], [A("hidden_size", 3L), A("direction", "bidirectional"), A("layout", 1L)], opset: 14, outputs: 2),
        C("GRU-layout1", "GRU", [F(2, 3, 4), W(1, 9, 4), W(1, 9, 3), W(1, 18), CaseInput.Absent, W(2, 1, 3)], [A("hidden_size", 3L), A("layout", 1L)], opset: 14, outputs: 2),
        C("LSTM-layout1", "LSTM", [F(2, 3, 4), W(1, 12, 4), W(1, 12, 3), W(1, 24), CaseInput.Absent, W(2, 1, 3), W(2, 1, 3)], [A("hidden_size", 3L), A("layout", 1L)], opset: 14, outputs: 3),
    }.ToDictionary(c => c.Name, StringComparer.Ordinal);

    /// <summary>A bidirectional LSTM with one set of activations for both directions: invalid (ONNX asks for 6).</summary>
    public static OperatorCase BidirectionalWithOneActivationSet { get; } =
        C("LSTM-bidirectional-one-activation-set", "LSTM", [F(3, 2, 4), W(2, 12, 4), W(2, 12, 3)], [A("hidden_size", 3L), A("direction", "bidirectional"), Strings("activations", "HardSigmoid", "Tanh", "Tanh"), Floats("activation_alpha", 0.3f)], outputs: 3);

    private static CaseInput F(params long[] shape) => new(ElementType.Float, shape);

    private static CaseInput F(double low, double high, params long[] shape) => new(ElementType.Float, shape, null, low, high);

    private static CaseInput Values(ElementType type, long[] shape, params double[] values) => new(type, shape, values);

    private static CaseInput I64(params long[] values) => new(ElementType.Int64, [values.Length], [.. values.Select(v => (double)v)]);

    private static CaseInput Scalar(ElementType type, double value) => new(type, [], [value]);

    private static CaseInput Random(ElementType type, long[] shape, double low, double high) => new(type, shape, null, low, high);

    private static OnnxProto.AttributeProto A(string name, long value) => GraphBuilder.Attr(name, value);

    private static OnnxProto.AttributeProto A(string name, float value) => GraphBuilder.Attr(name, value);

    private static OnnxProto.AttributeProto A(string name, string value) => GraphBuilder.Attr(name, value);

    private static OnnxProto.AttributeProto Ints(string name, params long[] values) => GraphBuilder.Attr(name, values);

    private static OnnxProto.AttributeProto Floats(string name, params float[] values)
    {
        var a = new OnnxProto.AttributeProto { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Floats };
        a.Floats.AddRange(values);
        return a;
    }

    private static CaseInput W(params long[] shape) => new(ElementType.Float, shape, null, -0.6, 0.6);

    private static CaseInput Lengths(params double[] values) => new(ElementType.Int32, [values.Length], values);

    private static OnnxProto.AttributeProto Strings(string name, params string[] values)
    {
        var a = new OnnxProto.AttributeProto { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Strings };
        a.Strings.AddRange(values.Select(Google.Protobuf.ByteString.CopyFromUtf8));
        return a;
    }

    private static OperatorCase C(string name, string op, CaseInput[] inputs, OnnxProto.AttributeProto[]? attributes = null, long opset = 17, int outputs = 1) =>
        new(name, op, opset, inputs, attributes ?? [], outputs);

    private static IEnumerable<OperatorCase> Build()
    {
        // ---- unary float math ----
        foreach (var op in new[]
        {
            "Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish", "Exp", "Erf", "Neg", "Abs", "Floor", "Ceil", "Sign", "Sin", "Cos",
            "Tan", "Atan", "Sinh", "Cosh", "Asinh", "Elu", "Selu", "Celu", "ThresholdedRelu", "Softplus", "Softsign", "Shrink",
        })
        {
            yield return C(op, op, [F(-3, 3, S)]);
        }

        yield return C("Mish", "Mish", [F(-3, 3, S)], opset: 18);
        yield return C("Gelu", "Gelu", [F(-3, 3, S)], opset: 20);
        yield return C("Gelu-tanh", "Gelu", [F(-3, 3, S)], [A("approximate", "tanh")], opset: 20);
        yield return C("LeakyRelu-alpha", "LeakyRelu", [F(S)], [A("alpha", 0.3f)]);
        yield return C("Elu-alpha", "Elu", [F(S)], [A("alpha", 0.5f)]);
        yield return C("Reciprocal", "Reciprocal", [F(0.5, 2, S)]);
        yield return C("Sqrt", "Sqrt", [F(0.1, 4, S)]);
        yield return C("Log", "Log", [F(0.1, 4, S)]);
        yield return C("Acosh", "Acosh", [F(1.1, 4, S)]);
        yield return C("Asin", "Asin", [F(-0.9, 0.9, S)]);
        yield return C("Acos", "Acos", [F(-0.9, 0.9, S)]);
        yield return C("Atanh", "Atanh", [F(-0.9, 0.9, S)]);
        yield return C("Round", "Round", [Values(ElementType.Float, [8], -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.3, -0.7)]);
        yield return C("Neg-int64", "Neg", [Random(ElementType.Int64, S, -9, 9)]);
        yield return C("Abs-int64", "Abs", [Random(ElementType.Int64, S, -9, 9)]);
        yield return C("Not", "Not", [Random(ElementType.Bool, S, 0, 1)]);
        yield return C("IsNaN", "IsNaN", [Values(ElementType.Float, [4], 1, double.NaN, double.PositiveInfinity, -2)]);
        yield return C("IsInf", "IsInf", [Values(ElementType.Float, [4], 1, double.NaN, double.PositiveInfinity, double.NegativeInfinity)]);
        yield return C("IsInf-positive", "IsInf", [Values(ElementType.Float, [4], 1, double.NaN, double.PositiveInfinity, double.NegativeInfinity)], [A("detect_negative", 0L)]);
        yield return C("BitwiseNot", "BitwiseNot", [Random(ElementType.Int32, S, -50, 50)], opset: 18);

        // ---- binary ----
        foreach (var op in new[] { "Add", "Sub", "Mul" })
        {
            yield return C(op, op, [F(2, 3, 4), F(3, 1)]);
            yield return C(op + "-int64", op, [Random(ElementType.Int64, S, -20, 20), Random(ElementType.Int64, [4], -20, 20)]);
        }

        yield return C("Div", "Div", [F(S), F(0.5, 2, 4)]);
        yield return C("Div-int64", "Div", [Random(ElementType.Int64, S, -20, 20), Values(ElementType.Int64, [4], 3, -3, 7, 1)]);
        yield return C("Pow", "Pow", [F(0.5, 2, S), F(-2.0, 2, 4)]);
        yield return C("Pow-int64", "Pow", [Random(ElementType.Int64, S, -3, 3), Values(ElementType.Int64, [4], 0, 1, 2, 3)]);
        yield return C("Mod-int64", "Mod", [Random(ElementType.Int64, S, -20, 20), Values(ElementType.Int64, [4], 3, -3, 7, 5)]);
        yield return C("Mod-fmod", "Mod", [F(-5, 5, S), F(0.5, 2, 4)], [A("fmod", 1L)]);
        yield return C("PRelu", "PRelu", [F(S), F(4)]);
        yield return C("BitShift-left", "BitShift", [Random(ElementType.UInt8, S, 0, 15), Values(ElementType.UInt8, [4], 0, 1, 2, 3)], [A("direction", "LEFT")]);
        yield return C("BitShift-right", "BitShift", [Random(ElementType.UInt32, S, 0, 1000), Values(ElementType.UInt32, [4], 0, 1, 2, 3)], [A("direction", "RIGHT")]);
        foreach (var op in new[] { "BitwiseAnd", "BitwiseOr", "BitwiseXor" })
        {
            yield return C(op, op, [Random(ElementType.Int32, S, -50, 50), Random(ElementType.Int32, [4], -50, 50)], opset: 18);
        }

        yield return C("Equal", "Equal", [Random(ElementType.Int64, S, 0, 3), Random(ElementType.Int64, [4], 0, 3)]);
        foreach (var op in new[] { "Less", "Greater", "LessOrEqual", "GreaterOrEqual" })
        {
            yield return C(op, op, [Values(ElementType.Float, [4], 1, 2, 3, 4), Values(ElementType.Float, [4], 2, 2, 2, 2)]);
        }

        foreach (var op in new[] { "And", "Or", "Xor" })
        {
            yield return C(op, op, [Random(ElementType.Bool, S, 0, 1), Random(ElementType.Bool, [4], 0, 1)]);
        }

        foreach (var op in new[] { "Min", "Max", "Sum", "Mean" })
        {
            yield return C(op, op, [F(S), F(3, 1), F(4)]);
        }

        yield return C("Max-int64", "Max", [Random(ElementType.Int64, S, -9, 9), Random(ElementType.Int64, [4], -9, 9)]);
        yield return C("Sum-one", "Sum", [F(S)]);
        yield return C("Where", "Where", [Random(ElementType.Bool, S, 0, 1), F(S), F(4)]);
        yield return C("Where-int64", "Where", [Random(ElementType.Bool, [4], 0, 1), Random(ElementType.Int64, [3, 4], -9, 9), Scalar(ElementType.Int64, 7)]);
        yield return C("Clip", "Clip", [F(S), Scalar(ElementType.Float, -0.5), Scalar(ElementType.Float, 1)]);
        yield return C("Clip-max-only", "Clip", [F(S), CaseInput.Absent, Scalar(ElementType.Float, 1)]);
        yield return C("Clip-10", "Clip", [F(S)], [A("min", -1f), A("max", 0.5f)], opset: 10);
        yield return C("Clip-int64", "Clip", [Random(ElementType.Int64, S, -9, 9), Scalar(ElementType.Int64, -2), Scalar(ElementType.Int64, 3)], opset: 13);

        // ---- shapes, views, constants ----
        yield return C("Shape", "Shape", [F(S)]);
        yield return C("Shape-15", "Shape", [F(2, 3, 4, 5)], [A("start", 1L), A("end", -1L)], opset: 15);
        yield return C("Size", "Size", [F(S)]);
        yield return C("Reshape", "Reshape", [F(S), I64(0, -1, 2)]);
        yield return C("Reshape-allowzero", "Reshape", [F(S), I64(4, 6)], [A("allowzero", 1L)], opset: 14);
        yield return C("Flatten", "Flatten", [F(2, 3, 4, 5)], [A("axis", 2L)]);
        yield return C("Squeeze", "Squeeze", [F(2, 1, 4, 1), I64(1, -1)]);
        yield return C("Squeeze-11", "Squeeze", [F(2, 1, 4, 1)], [Ints("axes", 1)], opset: 11);
        yield return C("Squeeze-all", "Squeeze", [F(2, 1, 4, 1)]);
        yield return C("Unsqueeze", "Unsqueeze", [F(S), I64(0, -1)]);
        yield return C("Unsqueeze-11", "Unsqueeze", [F(S)], [Ints("axes", 1, 4)], opset: 11);
        yield return C("Identity", "Identity", [F(S)]);
        yield return C("Dropout", "Dropout", [F(S), Scalar(ElementType.Float, 0.3)], outputs: 2);
        yield return C("Dropout-10", "Dropout", [F(S)], [A("ratio", 0.2f)], opset: 10);
        var value = new OnnxProto.TensorProto { DataType = (int)ElementType.Float, Name = "value" };
        value.Dims.AddRange([2, 2]);
        value.FloatData.AddRange([1f, 2f, 3f, 4f]);
        yield return C("Constant", "Constant", [], [GraphBuilder.Attr("value", value)]);
        yield return C("Constant-ints", "Constant", [], [Ints("value_ints", 3, 1, 4)]);
        var seven = new OnnxProto.TensorProto { DataType = (int)ElementType.Int64, Name = "value" };
        seven.Dims.Add(1);
        seven.Int64Data.Add(7);
        yield return C("ConstantOfShape", "ConstantOfShape", [I64(2, 3)], [GraphBuilder.Attr("value", seven)]);
        yield return C("ConstantOfShape-default", "ConstantOfShape", [I64(3, 1, 2)]);
        yield return C("Range", "Range", [Scalar(ElementType.Float, 0), Scalar(ElementType.Float, 5.5), Scalar(ElementType.Float, 0.5)]);
        yield return C("Range-int64", "Range", [Scalar(ElementType.Int64, 10), Scalar(ElementType.Int64, 1), Scalar(ElementType.Int64, -3)]);
        yield return C("Cast-to-int32", "Cast", [F(-5, 5, S)], [A("to", (long)ElementType.Int32)]);
        yield return C("Cast-to-float16", "Cast", [F(-5, 5, S)], [A("to", (long)ElementType.Float16)]);
        yield return C("Cast-to-bfloat16", "Cast", [F(-5, 5, S)], [A("to", (long)ElementType.BFloat16)]);
        yield return C("Cast-bfloat16-to-float", "Cast", [Random(ElementType.BFloat16, S, -5, 5)], [A("to", (long)ElementType.Float)]);
        yield return C("Cast-to-bool", "Cast", [Values(ElementType.Float, [4], 0, 0.5, -1, 0)], [A("to", (long)ElementType.Bool)]);
        yield return C("Cast-int64-to-float", "Cast", [Random(ElementType.Int64, S, -100, 100)], [A("to", (long)ElementType.Float)]);
        yield return C("CastLike", "CastLike", [F(-5, 5, S), I64(1)]);
        yield return C("Expand", "Expand", [F(3, 1), I64(2, 3, 4)]);

        // ---- data movement ----
        yield return C("Concat", "Concat", [F(2, 1, 4), F(2, 3, 4), F(2, 2, 4)], [A("axis", 1L)]);
        yield return C("Split", "Split", [F(2, 4, 3), I64(1, 3)], [A("axis", 1L)], outputs: 2);
        yield return C("Split-11", "Split", [F(2, 4, 3)], [A("axis", 1L), Ints("split", 3, 1)], opset: 11, outputs: 2);
        yield return C("Split-equal", "Split", [F(2, 6)], [A("axis", -1L)], outputs: 3);
        yield return C("Split-18", "Split", [F(2, 7)], [A("axis", 1L), A("num_outputs", 3L)], opset: 18, outputs: 3);
        yield return C("Slice", "Slice", [F(4, 5, 6), I64(1, -1), I64(3, 0), I64(0, 2), I64(1, -2)]);
        yield return C("Slice-large-end", "Slice", [F(4, 5), I64(1), I64(long.MaxValue), I64(1)]);
        yield return C("Slice-9", "Slice", [F(4, 5)], [Ints("starts", 1, 0), Ints("ends", 3, -1)], opset: 9);
        yield return C("Transpose", "Transpose", [F(2, 3, 4)], [Ints("perm", 2, 0, 1)]);
        yield return C("Transpose-default", "Transpose", [F(2, 3, 4)]);
        yield return C("Gather", "Gather", [F(3, 4, 2), Values(ElementType.Int64, [2, 2], 0, -1, 3, 1)], [A("axis", 1L)]);
        yield return C("Gather-scalar", "Gather", [F(5, 3), Scalar(ElementType.Int64, 2)]);
        yield return C("Pad", "Pad", [F(2, 3, 4), I64(0, 1, 2, 0, 2, 1), Scalar(ElementType.Float, 1.5)]);
        yield return C("Pad-reflect", "Pad", [F(2, 3, 4), I64(0, 2, 3, 0, 1, 3)], [A("mode", "reflect")]);
        yield return C("Pad-edge", "Pad", [F(2, 3, 4), I64(0, 2, 1, 0, 1, 5)], [A("mode", "edge")]);
        yield return C("Pad-negative", "Pad", [F(2, 3, 4), I64(0, -1, 1, 0, 0, -2)]);
        yield return C("Pad-axes", "Pad", [F(2, 3, 4), I64(1, 2), CaseInput.Absent, I64(-1)], opset: 18);
        yield return C("Pad-wrap", "Pad", [F(2, 3, 4), I64(0, 1, 2, 0, 2, 3)], [A("mode", "wrap")], opset: 19);
        yield return C("Pad-2", "Pad", [F(2, 3)], [Ints("pads", 1, 0, 0, 2), A("value", 2f)], opset: 7);
        var roiNone = CaseInput.Absent;
        yield return C("Resize-nearest", "Resize", [F(1, 2, 3, 4), roiNone, Values(ElementType.Float, [4], 1, 1, 2, 1.5)], [A("mode", "nearest")]);
        yield return C("Resize-nearest-asymmetric-floor", "Resize", [F(1, 2, 3, 4), roiNone, Values(ElementType.Float, [4], 1, 1, 1.7, 0.6)], [A("mode", "nearest"), A("coordinate_transformation_mode", "asymmetric"), A("nearest_mode", "floor")]);
        yield return C("Resize-linear", "Resize", [F(1, 2, 3, 4), roiNone, Values(ElementType.Float, [4], 1, 1, 2, 0.5)], [A("mode", "linear")]);
        yield return C("Resize-linear-align-corners-sizes", "Resize", [F(1, 2, 3, 4), roiNone, CaseInput.Absent, I64(1, 2, 5, 7)], [A("mode", "linear"), A("coordinate_transformation_mode", "align_corners")]);
        yield return C("Resize-cubic", "Resize", [F(1, 1, 4, 4), roiNone, Values(ElementType.Float, [4], 1, 1, 2, 1.5)], [A("mode", "cubic")]);
        yield return C("Resize-cubic-exclude-outside", "Resize", [F(1, 1, 4, 4), roiNone, CaseInput.Absent, I64(1, 1, 6, 3)], [A("mode", "cubic"), A("exclude_outside", 1L), A("cubic_coeff_a", -0.5f)]);
        yield return C("Resize-crop", "Resize", [F(1, 1, 4, 4), Values(ElementType.Float, [8], 0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2), CaseInput.Absent, I64(1, 1, 3, 5)], [A("mode", "linear"), A("coordinate_transformation_mode", "tf_crop_and_resize"), A("extrapolation_value", 9f)]);
        yield return C("Resize-pytorch-axes", "Resize", [F(1, 2, 3, 4), roiNone, CaseInput.Absent, I64(5, 2)], [A("mode", "linear"), A("coordinate_transformation_mode", "pytorch_half_pixel"), Ints("axes", 2, 3)], opset: 18);
        yield return C("Resize-not-larger", "Resize", [F(1, 2, 3, 4), roiNone, CaseInput.Absent, I64(6, 6)], [A("mode", "nearest"), Ints("axes", 2, 3), A("keep_aspect_ratio_policy", "not_larger")], opset: 18);
        yield return C("Resize-10", "Resize", [F(1, 2, 3, 4), Values(ElementType.Float, [4], 1, 1, 2, 2)], [A("mode", "nearest")], opset: 10);
        yield return C("Upsample", "Upsample", [F(1, 2, 3, 4), Values(ElementType.Float, [4], 1, 1, 2, 3)], [A("mode", "nearest")], opset: 9);
        yield return C("Upsample-linear-7", "Upsample", [F(1, 2, 3, 4)], [A("mode", "linear"), Floats("scales", 1, 1, 2, 2)], opset: 7);

        // ---- convolution and pooling ----
        yield return C("Conv", "Conv", [F(1, 4, 7, 6), F(6, 2, 3, 3), F(6)], [Ints("pads", 1, 0, 2, 1), Ints("strides", 2, 1), Ints("dilations", 1, 2), A("group", 2L)]);
        yield return C("Conv-1d", "Conv", [F(2, 3, 9), F(4, 3, 2)], [Ints("kernel_shape", 2)]);
        yield return C("Conv-same", "Conv", [F(1, 2, 5, 5), F(3, 2, 3, 3)], [A("auto_pad", "SAME_UPPER"), Ints("strides", 2, 2)]);
        yield return C("MaxPool", "MaxPool", [F(1, 2, 5, 6)], [Ints("kernel_shape", 3, 2), Ints("strides", 2, 2), Ints("pads", 1, 0, 1, 1)], outputs: 2);
        yield return C("MaxPool-ceil", "MaxPool", [F(1, 2, 6, 6)], [Ints("kernel_shape", 3, 3), Ints("strides", 2, 2), A("ceil_mode", 1L)]);
        yield return C("MaxPool-dilated", "MaxPool", [F(1, 1, 7, 7)], [Ints("kernel_shape", 2, 2), Ints("dilations", 2, 2)]);
        yield return C("AveragePool", "AveragePool", [F(1, 2, 5, 6)], [Ints("kernel_shape", 3, 3), Ints("strides", 2, 2), Ints("pads", 1, 1, 1, 1)]);
        yield return C("AveragePool-include-pad", "AveragePool", [F(1, 2, 5, 6)], [Ints("kernel_shape", 3, 3), Ints("strides", 2, 2), Ints("pads", 1, 1, 1, 1), A("count_include_pad", 1L)]);
        yield return C("AveragePool-same-lower", "AveragePool", [F(1, 2, 5, 6)], [Ints("kernel_shape", 2, 3), A("auto_pad", "SAME_LOWER")]);
        yield return C("GlobalAveragePool", "GlobalAveragePool", [F(2, 3, 4, 5)]);
        yield return C("GlobalMaxPool", "GlobalMaxPool", [F(2, 3, 4, 5)]);

        // ---- matrix products ----
        yield return C("Gemm", "Gemm", [F(3, 4), F(5, 4), F(5)], [A("transB", 1L), A("alpha", 0.5f), A("beta", 2f)]);
        yield return C("Gemm-transA", "Gemm", [F(4, 3), F(4, 5), F(3, 5)], [A("transA", 1L)]);
        yield return C("MatMul", "MatMul", [F(2, 3, 4), F(4, 5)]);
        yield return C("MatMul-batched", "MatMul", [F(2, 1, 3, 4), F(3, 4, 2)]);
        yield return C("MatMul-vector", "MatMul", [F(4), F(2, 4, 3)]);

        // ---- normalization ----
        yield return C("BatchNormalization", "BatchNormalization", [F(2, 3, 4, 5), F(3), F(3), F(3), F(0.5, 2, 3)], [A("epsilon", 1e-3f)]);
        yield return C("LayerNormalization", "LayerNormalization", [F(2, 3, 4), F(4), F(4)]);
        yield return C("LayerNormalization-contrib-opset13", "LayerNormalization", [F(2, 3, 4), F(4), F(4)], opset: 13);
        yield return C("LayerNormalization-stats", "LayerNormalization", [F(2, 3, 4), F(3, 4)], [A("axis", 1L)], outputs: 3);
        yield return C("Softmax", "Softmax", [F(-3, 3, S)], [A("axis", 1L)]);
        yield return C("Softmax-11", "Softmax", [F(-3, 3, S)], [A("axis", 1L)], opset: 11);
        yield return C("LogSoftmax", "LogSoftmax", [F(-3, 3, S)]);

        // ---- indexing, scattering, rearranging, selecting ----
        yield return C("GatherElements", "GatherElements", [F(3, 4), Values(ElementType.Int64, [3, 2], 0, -1, 3, 2, 1, -4)], [A("axis", 1L)]);
        yield return C("GatherND", "GatherND", [F(2, 3, 4), Values(ElementType.Int64, [2, 2], 0, 1, 1, -1)]);
        yield return C("GatherND-batch", "GatherND", [F(2, 3, 4), Values(ElementType.Int64, [2, 1], 1, 2)], [A("batch_dims", 1L)]);
        yield return C("ScatterElements", "ScatterElements", [F(3, 4), Values(ElementType.Int64, [3, 2], 0, 3, 1, -1, 2, 0), F(3, 2)], [A("axis", 1L)]);
        yield return C("ScatterElements-add", "ScatterElements", [F(3, 4), Values(ElementType.Int64, [2, 4], 0, 1, 2, 0, 0, 1, 2, 0), F(2, 4)], [A("reduction", "add")], opset: 18);
        yield return C("ScatterND", "ScatterND", [F(4, 3), Values(ElementType.Int64, [2, 1], 3, 1), F(2, 3)]);
        yield return C("ScatterND-mul", "ScatterND", [F(4, 3), Values(ElementType.Int64, [2, 2], 3, 1, 0, 2), F(2)], [A("reduction", "mul")], opset: 16);
        yield return C("Tile", "Tile", [F(2, 3), I64(2, 3)]);
        yield return C("DepthToSpace", "DepthToSpace", [F(1, 8, 2, 3)], [A("blocksize", 2L)]);
        yield return C("DepthToSpace-CRD", "DepthToSpace", [F(1, 8, 2, 3)], [A("blocksize", 2L), A("mode", "CRD")]);
        yield return C("SpaceToDepth", "SpaceToDepth", [F(1, 2, 4, 6)], [A("blocksize", 2L)]);
        yield return C("OneHot", "OneHot", [Values(ElementType.Int64, [2, 3], 0, 4, -1, 2, -5, 1), Scalar(ElementType.Int64, 5), Values(ElementType.Float, [2], -1, 3)]);
        yield return C("OneHot-axis", "OneHot", [Values(ElementType.Int64, [2, 3], 0, 4, -1, 2, 3, 1), Scalar(ElementType.Int64, 5), Values(ElementType.Int64, [2], 0, 1)], [A("axis", 1L)]);
        yield return C("Trilu", "Trilu", [F(2, 4, 5), Scalar(ElementType.Int64, 1)]);
        yield return C("Trilu-lower", "Trilu", [F(2, 4, 5), Scalar(ElementType.Int64, -1)], [A("upper", 0L)]);
        yield return C("NonZero", "NonZero", [Values(ElementType.Float, [2, 3], 0, 1.5, 0, -2, 0, 3)]);
        yield return C("CumSum", "CumSum", [F(3, 4), Scalar(ElementType.Int64, 1)]);
        yield return C("CumSum-exclusive-reverse", "CumSum", [F(3, 4), Scalar(ElementType.Int64, -2)], [A("exclusive", 1L), A("reverse", 1L)]);
        yield return C("TopK", "TopK", [F(3, 5), I64(3)], outputs: 2);
        yield return C("TopK-smallest", "TopK", [Values(ElementType.Float, [2, 4], 3, 1, 1, 2, 0, 5, 5, 0), I64(2)], [A("largest", 0L), A("axis", 1L)], outputs: 2);
        yield return C("ArgMax", "ArgMax", [F(3, 4)], [A("axis", 1L), A("keepdims", 0L)]);
        yield return C("ArgMin", "ArgMin", [F(3, 4)]);
        yield return C("ArgMax-last", "ArgMax", [Values(ElementType.Float, [2, 3], 1, 3, 3, 2, 2, 0)], [A("axis", 1L), A("select_last_index", 1L)]);

        // ---- transposed convolution, instance and group normalization ----
        yield return C("ConvTranspose", "ConvTranspose", [F(1, 4, 3, 4), F(4, 3, 3, 2), F(6)], [Ints("strides", 2, 1), Ints("pads", 1, 0, 0, 1), Ints("output_padding", 1, 0), A("group", 2L)]);
        yield return C("ConvTranspose-dilated", "ConvTranspose", [F(2, 2, 3, 3), F(2, 3, 2, 2)], [Ints("dilations", 2, 1), Ints("strides", 2, 2)]);
        yield return C("ConvTranspose-output-shape", "ConvTranspose", [F(1, 2, 3, 3), F(2, 2, 3, 3)], [Ints("strides", 2, 2), Ints("output_shape", 6, 7)]);
        yield return C("ConvTranspose-same", "ConvTranspose", [F(1, 2, 3, 3), F(2, 2, 3, 3)], [Ints("strides", 2, 2), A("auto_pad", "SAME_UPPER")]);
        yield return C("ConvTranspose-1d", "ConvTranspose", [F(1, 3, 5), F(3, 2, 4)], [Ints("strides", 3)]);
        yield return C("InstanceNormalization", "InstanceNormalization", [F(2, 3, 4, 5), F(3), F(3)]);
        yield return C("GroupNormalization", "GroupNormalization", [F(2, 6, 4, 5), F(6), F(6)], [A("num_groups", 3L)], opset: 21);

        // ---- quantization (int8 weights in 7 bits: ONNX Runtime's AVX2 u8*s8 kernels saturate int16 pairs otherwise) ----
        yield return C("QuantizeLinear", "QuantizeLinear", [F(-3, 3, S), Scalar(ElementType.Float, 0.05), Scalar(ElementType.UInt8, 128)]);
        yield return C("QuantizeLinear-int8-per-axis", "QuantizeLinear", [F(-3, 3, S), Values(ElementType.Float, [3], 0.02, 0.05, 0.1), Values(ElementType.Int8, [3], 0, -3, 5)]);
        yield return C("QuantizeLinear-no-zero-point", "QuantizeLinear", [F(-3, 3, S), Scalar(ElementType.Float, 0.05)], opset: 13);
        yield return C("DequantizeLinear", "DequantizeLinear", [Random(ElementType.UInt8, S, 0, 255), Scalar(ElementType.Float, 0.05), Scalar(ElementType.UInt8, 128)]);
        yield return C("DequantizeLinear-per-axis", "DequantizeLinear", [Random(ElementType.Int8, S, -128, 127), Values(ElementType.Float, [4], 0.02, 0.05, 0.1, 1)], [A("axis", -1L)]);
        yield return C("DynamicQuantizeLinear", "DynamicQuantizeLinear", [F(-1, 3, S)], outputs: 3);
        yield return C("ConvInteger", "ConvInteger", [Random(ElementType.UInt8, [1, 2, 5, 5], 0, 255), Random(ElementType.UInt8, [3, 2, 3, 3], 0, 255), Scalar(ElementType.UInt8, 120), Scalar(ElementType.UInt8, 128)], [Ints("pads", 1, 1, 1, 1)]);
        yield return C("MatMulInteger", "MatMulInteger", [Random(ElementType.UInt8, [2, 3, 4], 0, 255), Random(ElementType.Int8, [4, 5], -64, 63), Scalar(ElementType.UInt8, 100), Scalar(ElementType.Int8, 3)]);
        yield return C("QLinearConv", "QLinearConv", [Random(ElementType.UInt8, [1, 2, 5, 5], 0, 255), Scalar(ElementType.Float, 0.02), Scalar(ElementType.UInt8, 120), Random(ElementType.Int8, [3, 2, 3, 3], -64, 63), Values(ElementType.Float, [3], 0.01, 0.02, 0.03), Values(ElementType.Int8, [3], 0, 0, 0), Scalar(ElementType.Float, 0.5), Scalar(ElementType.UInt8, 128), Random(ElementType.Int32, [3], -500, 500)]);
        yield return C("QLinearMatMul", "QLinearMatMul", [Random(ElementType.UInt8, [2, 3], 0, 255), Scalar(ElementType.Float, 0.02), Scalar(ElementType.UInt8, 120), Random(ElementType.UInt8, [3, 4], 0, 255), Scalar(ElementType.Float, 0.03), Scalar(ElementType.UInt8, 130), Scalar(ElementType.Float, 0.1), Scalar(ElementType.UInt8, 128)]);

        // ---- recurrent layers (W, R, B small so the gates do not saturate) ----
        yield return C("RNN", "RNN", [F(3, 2, 4), W(1, 3, 4), W(1, 3, 3), W(1, 6)], [A("hidden_size", 3L)], outputs: 2);
        yield return C("RNN-relu-7", "RNN", [F(3, 2, 4), W(1, 3, 4), W(1, 3, 3)], [A("hidden_size", 3L), Strings("activations", "Relu")], opset: 7, outputs: 2);
        yield return C("GRU", "GRU", [F(3, 2, 4), W(1, 9, 4), W(1, 9, 3), W(1, 18)], [A("hidden_size", 3L)], outputs: 2);
        yield return C("GRU-linear-before-reset-reverse", "GRU", [F(3, 2, 4), W(1, 9, 4), W(1, 9, 3), W(1, 18), Lengths(2, 3), W(1, 2, 3)], [A("hidden_size", 3L), A("direction", "reverse"), A("linear_before_reset", 1L)], outputs: 2);
        yield return C("GRU-bidirectional", "GRU", [F(3, 2, 4), W(2, 9, 4), W(2, 9, 3), W(2, 18), Lengths(3, 2)], [A("hidden_size", 3L), A("direction", "bidirectional")], outputs: 2);
        yield return C("LSTM", "LSTM", [F(3, 2, 4), W(1, 12, 4), W(1, 12, 3), W(1, 24)], [A("hidden_size", 3L)], outputs: 3);
        yield return C("LSTM-bidirectional-peepholes", "LSTM", [F(3, 2, 4), W(2, 12, 4), W(2, 12, 3), W(2, 24), Lengths(3, 2), W(2, 2, 3), W(2, 2, 3), W(2, 9)], [A("hidden_size", 3L), A("direction", "bidirectional")], outputs: 3);
        yield return C("LSTM-clip-input-forget-activations", "LSTM", [F(3, 2, 4), W(1, 12, 4), W(1, 12, 3)], [A("hidden_size", 3L), A("clip", 0.5f), A("input_forget", 1L), Strings("activations", "HardSigmoid", "Tanh", "Softsign"), Floats("activation_alpha", 0.3f), Floats("activation_beta", 0.4f)], outputs: 3);
        yield return C("LSTM-7", "LSTM", [F(3, 2, 4), W(1, 12, 4), W(1, 12, 3)], [A("hidden_size", 3L)], opset: 7, outputs: 3);
        yield return C("RNN-reverse-lengths-initial-wide", "RNN", [F(3, 2, 4), W(1, 40, 4), Random(ElementType.Float, [1, 40, 40], -0.15, 0.15), W(1, 80), Lengths(1, 3), W(1, 2, 40)], [A("hidden_size", 40L), A("direction", "reverse")], outputs: 2);
        yield return C("RNN-wider-than-a-block", "RNN", [F(2, 1, 3), W(1, 260, 3), Random(ElementType.Float, [1, 260, 260], -0.05, 0.05)], [A("hidden_size", 260L), Strings("activations", "Softsign")], outputs: 2);
        yield return C("RNN-bidirectional-affine-leakyrelu", "RNN", [F(3, 2, 4), W(2, 3, 4), W(2, 3, 3), W(2, 6)], [A("hidden_size", 3L), A("direction", "bidirectional"), Strings("activations", "Affine", "LeakyRelu"), Floats("activation_alpha", 0.7f, 0.05f), Floats("activation_beta", 0.1f)], outputs: 2);
        yield return C("GRU-bidirectional-activations-per-direction", "GRU", [F(3, 2, 4), W(2, 9, 4), W(2, 9, 3), W(2, 18), Lengths(2, 3), W(2, 2, 3)], [A("hidden_size", 3L), A("direction", "bidirectional"), A("linear_before_reset", 1L), Strings("activations", "HardSigmoid", "Elu", "Sigmoid", "ScaledTanh"), Floats("activation_alpha", 0.25f, 0.9f, 0.8f), Floats("activation_beta", 0.45f, 1.1f)], outputs: 2);
        yield return C("GRU-Y-only-clip", "GRU", [F(3, 2, 4), W(1, 9, 4), W(1, 9, 3), W(1, 18)], [A("hidden_size", 3L), A("clip", 0.3f)], outputs: 1);
        yield return C("LSTM-reverse-softplus-thresholdedrelu", "LSTM", [F(3, 2, 4), W(1, 12, 4), W(1, 12, 3), W(1, 24), Lengths(3, 2), W(1, 2, 3), W(1, 2, 3), W(1, 9)], [A("hidden_size", 3L), A("direction", "reverse"), Strings("activations", "Sigmoid", "Softplus", "ThresholdedRelu"), Floats("activation_alpha", 0.1f)], outputs: 3);
        yield return C("LSTM-relu-tanh", "LSTM", [F(4, 1, 2), W(1, 8, 2), W(1, 8, 2), W(1, 16)], [A("hidden_size", 2L), Strings("activations", "Sigmoid", "Relu", "Tanh")], opset: 22, outputs: 3);

        // ---- Einsum: the forms exports use, a diagonal, broadcast ellipses and implicit outputs ----
        yield return C("Einsum-batched-matmul", "Einsum", [F(2, 3, 4), F(2, 4, 5)], [A("equation", "bij,bjk->bik")], opset: 12);
        yield return C("Einsum-attention-scores", "Einsum", [F(2, 2, 3, 4), F(2, 2, 5, 4)], [A("equation", "bhqd,bhkd->bhqk")]);
        yield return C("Einsum-transpose", "Einsum", [F(2, 3, 4)], [A("equation", "abc -> cab")]);
        yield return C("Einsum-diagonal", "Einsum", [F(3, 3)], [A("equation", "ii->i")]);
        yield return C("Einsum-ellipsis-broadcast", "Einsum", [F(2, 1, 3, 4), F(1, 5, 4, 2)], [A("equation", "...ij,...jk->...ik")]);
        yield return C("Einsum-implicit", "Einsum", [F(3, 4), F(4, 2)], [A("equation", "ij,jk")]);
        yield return C("Einsum-dot", "Einsum", [F(5), F(5)], [A("equation", "i,i")]);
        yield return C("Einsum-sum-all", "Einsum", [F(2, 3)], [A("equation", "ab->")]);
        yield return C("Einsum-three-operands", "Einsum", [F(2, 3), F(3, 4), F(4)], [A("equation", "ij,jk,k->i")]);

        // ---- com.microsoft operators real exports carry (ONNX Runtime's contrib kernels are the reference) ----
        static OperatorCase M(string name, string op, CaseInput[] inputs, OnnxProto.AttributeProto[]? attributes = null, int outputs = 1) =>
            new(name, op, 1, inputs, attributes ?? [], outputs, "com.microsoft");
        static CaseInput Ids(long[] shape, double high) => new(ElementType.Int32, shape, null, 0, high);
        yield return M("ms-Gelu", "Gelu", [F(-3, 3, S)]);
        yield return M("ms-BiasGelu", "BiasGelu", [F(-3, 3, S), F(4)]);
        yield return M("ms-FastGelu", "FastGelu", [F(-3, 3, S), F(4)]);
        yield return M("ms-FastGelu-no-bias", "FastGelu", [F(-3, 3, S)]);
        yield return M("ms-QuickGelu", "QuickGelu", [F(-3, 3, S)], [A("alpha", 1.5f)]);
        yield return M("ms-FusedConv-relu", "FusedConv", [F(1, 2, 5, 5), F(3, 2, 3, 3), F(3)], [Ints("pads", 1, 1, 1, 1), A("activation", "Relu")]);
        yield return M("ms-FusedConv-sum-leaky", "FusedConv", [F(1, 2, 5, 5), F(3, 2, 3, 3), F(3), F(1, 3, 3, 3)], [A("activation", "LeakyRelu"), Floats("activation_params", 0.2f)]);
        yield return M("ms-FusedConv-clip", "FusedConv", [F(1, 2, 5, 5), F(4, 1, 3, 3)], [A("group", 2L), A("activation", "Clip"), Floats("activation_params", -0.5f, 0.5f)]);
        yield return M("ms-FusedMatMul-transB", "FusedMatMul", [F(2, 3, 4), F(5, 4)], [A("transB", 1L), A("alpha", 0.5f)]);
        yield return M("ms-FusedMatMul-transA-batched", "FusedMatMul", [F(2, 4, 3), F(2, 4, 5)], [A("transA", 1L)]);
        yield return M("ms-SkipLayerNormalization", "SkipLayerNormalization", [F(2, 3, 8), F(2, 3, 8), F(8), F(8), F(8)], [A("epsilon", 1e-5f)]);
        yield return M("ms-SkipLayerNormalization-sum-output", "SkipLayerNormalization", [F(2, 3, 8), F(2, 3, 8), F(8)], outputs: 4);
        yield return M("ms-EmbedLayerNormalization", "EmbedLayerNormalization", [Ids([2, 3], 9), Ids([2, 3], 1), F(10, 8), F(5, 8), F(2, 8), F(8), F(8), Values(ElementType.Int32, [2, 3], 1, 1, 0, 1, 1, 1)], outputs: 3);
        yield return M("ms-Attention", "Attention", [F(2, 3, 8), F(-0.5, 0.5, 8, 24), F(24)], [A("num_heads", 2L)], outputs: 2);
        yield return M("ms-Attention-unidirectional", "Attention", [F(2, 3, 8), F(-0.5, 0.5, 8, 24), F(24)], [A("num_heads", 2L), A("unidirectional", 1L)]);
        yield return M("ms-MultiHeadAttention", "MultiHeadAttention", [F(2, 3, 8), F(2, 4, 8), F(2, 4, 8)], [A("num_heads", 2L)]);
        yield return M("ms-MultiHeadAttention-bias", "MultiHeadAttention", [F(2, 3, 8), F(2, 4, 8), F(2, 4, 8), F(24)], [A("num_heads", 2L)], outputs: 3);
        yield return M("ms-QLinearAdd", "QLinearAdd", [Random(ElementType.UInt8, [2, 3], 0, 255), Scalar(ElementType.Float, 0.05), Scalar(ElementType.UInt8, 128), Random(ElementType.UInt8, [3], 0, 255), Scalar(ElementType.Float, 0.02), Scalar(ElementType.UInt8, 100), Scalar(ElementType.Float, 0.1), Scalar(ElementType.UInt8, 120)]);
        yield return M("ms-QLinearMul", "QLinearMul", [Random(ElementType.Int8, [2, 3], -128, 127), Scalar(ElementType.Float, 0.05), Scalar(ElementType.Int8, 3), Random(ElementType.Int8, [2, 3], -128, 127), Scalar(ElementType.Float, 0.02), Scalar(ElementType.Int8, -2), Scalar(ElementType.Float, 0.5), Scalar(ElementType.Int8, 1)]);
        yield return M("ms-QLinearSigmoid", "QLinearSigmoid", [Random(ElementType.UInt8, S, 0, 255), Scalar(ElementType.Float, 0.05), Scalar(ElementType.UInt8, 128), Scalar(ElementType.Float, 1.0 / 256), Scalar(ElementType.UInt8, 0)]);
        yield return M("ms-QLinearLeakyRelu", "QLinearLeakyRelu", [Random(ElementType.UInt8, S, 0, 255), Scalar(ElementType.Float, 0.05), Scalar(ElementType.UInt8, 128), Scalar(ElementType.Float, 0.04), Scalar(ElementType.UInt8, 100)], [A("alpha", 0.1f)]);

        // ---- reductions ----
        yield return C("ReduceMean-13", "ReduceMean", [F(S)], [Ints("axes", 1), A("keepdims", 0L)], opset: 13);
        yield return C("ReduceMean", "ReduceMean", [F(S), I64(-1)], opset: 18);
        yield return C("ReduceMean-all", "ReduceMean", [F(S)], opset: 18);
        yield return C("ReduceMean-noop", "ReduceMean", [F(S)], [A("noop_with_empty_axes", 1L)], opset: 18);
        yield return C("ReduceSum", "ReduceSum", [F(S), I64(0, 2)], [A("keepdims", 0L)], opset: 13);
        yield return C("ReduceSum-int64", "ReduceSum", [Random(ElementType.Int64, S, -9, 9), I64(1)], opset: 13);
        foreach (var op in new[] { "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp" })
        {
            yield return C(op, op, [F(S), I64(1)], opset: 18);
        }

        yield return C("ReduceLogSum", "ReduceLogSum", [F(0.1, 2, S), I64(1)], opset: 18);
        yield return C("ReduceMax-11", "ReduceMax", [F(S)], [Ints("axes", 0, 2)], opset: 11);
    }
}
