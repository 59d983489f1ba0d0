using Batchwise.Onnx;
using Batchwise.Zoo;
using static Batchwise.Zoo.GraphBuilder;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>Each operator family on the GPU against ONNX Runtime on the CPU, on seeded random inputs.</summary>
[Trait("Category", "GPU")]
public sealed class OperatorGpuTests
{
    private static readonly Dictionary<string, Func<OnnxModel>> Graphs = new(StringComparer.Ordinal)
    {
        ["conv_groups_dilation_stride"] = () => One("Conv", [1, 8, 17, 19], [1, 8, 9, 10], g => [g.Weight("w", [8, 2, 3, 3], 0.3f), g.Weight("b", [8], 0.3f)], Attr("group", 4L), Attr("dilations", 2L, 1L), Attr("strides", 2L, 2L), Attr("pads", 2L, 1L, 2L, 1L)),
        ["conv_asymmetric_pads"] = () => One("Conv", [2, 3, 10, 10], [2, 4, 11, 10], g => [g.Weight("w", [4, 3, 3, 3], 0.3f)], Attr("pads", 1L, 0L, 2L, 2L)),
        ["conv_same_upper_1d"] = () => One("Conv", [2, 3, 15], [2, 5, 8], g => [g.Weight("w", [5, 3, 4], 0.3f), g.Weight("b", [5], 0.3f)], Attr("auto_pad", "SAME_UPPER"), Attr("strides", [2L])),
        ["depthwise_conv"] = () => One("Conv", [2, 16, 14, 14], [2, 16, 14, 14], g => [g.Weight("w", [16, 1, 3, 3], 0.3f)], Attr("group", 16L), Attr("pads", 1L, 1L, 1L, 1L)),
        ["batchnorm"] = () => One("BatchNormalization", [2, 4, 5, 5], [2, 4, 5, 5], g => [g.Weight("s", [4], 1f), g.Weight("b", [4], 1f), g.Weight("m", [4], 1f), g.Initializer("v", [4], [0.5f, 1f, 2f, 0.1f])], Attr("epsilon", 1e-3f)),
        ["maxpool_ceil_pads"] = () => One("MaxPool", [1, 3, 11, 11], [1, 3, 6, 6], _ => [], Attr("kernel_shape", 3L, 3L), Attr("strides", 2L, 2L), Attr("pads", 1L, 1L, 1L, 1L), Attr("ceil_mode", 1L)),
        ["avgpool_include_pad"] = () => One("AveragePool", [1, 3, 9, 9], [1, 3, 5, 5], _ => [], Attr("kernel_shape", 3L, 3L), Attr("strides", 2L, 2L), Attr("pads", 1L, 1L, 1L, 1L), Attr("count_include_pad", 1L)),
        ["avgpool_exclude_pad"] = () => One("AveragePool", [1, 3, 9, 9], [1, 3, 5, 5], _ => [], Attr("kernel_shape", 3L, 3L), Attr("strides", 2L, 2L), Attr("pads", 1L, 1L, 1L, 1L)),
        ["global_average_pool"] = () => One("GlobalAveragePool", [2, 5, 7, 7], [2, 5, 1, 1], _ => []),
        ["gemm_transposed_bias"] = () => One("Gemm", [7, 5], [7, 6], g => [g.Weight("w", [6, 5], 1f), g.Weight("c", [6], 1f)], Attr("transB", 1L), Attr("alpha", 0.5f), Attr("beta", 2f)),
        ["gemm_transA"] = () => One("Gemm", [5, 7], [7, 3], g => [g.Weight("w", [5, 3], 1f)], Attr("transA", 1L)),
        ["matmul_batched_broadcast"] = () => One("MatMul", [2, 3, 4, 5], [2, 3, 4, 6], g => [g.Weight("w", [3, 5, 6], 1f)]),
        ["matmul_3d_by_2d"] = () => One("MatMul", [2, 9, 16], [2, 9, 8], g => [g.Weight("w", [16, 8], 1f)]),
        ["softmax_axis1"] = () => One("Softmax", [2, 5, 3], [2, 5, 3], _ => [], Attr("axis", 1L)),
        ["softmax_last"] = () => One("Softmax", [4, 100], [4, 100], _ => []),
        ["layernorm"] = () => One("LayerNormalization", [2, 3, 64], [2, 3, 64], g => [g.Weight("s", [64], 1f), g.Weight("b", [64], 1f)], Attr("epsilon", 1e-5f)),
        ["reduce_mean_keepdims"] = () => One("ReduceMean", [2, 3, 4], [2, 1, 4], g => [g.Int64s("axes", [1])]),
        ["resize_nearest_asymmetric"] = () => One("Resize", [1, 2, 4, 5], [1, 2, 8, 10], g => [string.Empty, g.Initializer("scales", [4], [1, 1, 2, 2])], Attr("mode", "nearest"), Attr("coordinate_transformation_mode", "asymmetric"), Attr("nearest_mode", "floor")),
        ["resize_linear_half_pixel"] = () => One("Resize", [1, 2, 4, 5], [1, 2, 7, 9], g => [string.Empty, string.Empty, g.Int64s("sizes", [1, 2, 7, 9])], Attr("mode", "linear")),
        ["resize_linear_align_corners"] = () => One("Resize", [1, 1, 3, 3], [1, 1, 6, 6], g => [string.Empty, g.Initializer("scales", [4], [1, 1, 2, 2])], Attr("mode", "linear"), Attr("coordinate_transformation_mode", "align_corners")),
        ["resize_cubic_half_pixel"] = () => One("Resize", [1, 2, 5, 6], [1, 2, 9, 11], g => [string.Empty, string.Empty, g.Int64s("sizes", [1, 2, 9, 11])], Attr("mode", "cubic")),
        ["resize_cubic_exclude_outside"] = () => One("Resize", [2, 3, 7, 5], [2, 3, 14, 4], g => [string.Empty, g.Initializer("scales", [4], [1, 1, 2, 0.8f])], Attr("mode", "cubic"), Attr("exclude_outside", 1L), Attr("cubic_coeff_a", -0.5f)),
        ["resize_tf_crop_and_resize"] = () => One("Resize", [1, 2, 6, 6], [1, 2, 4, 5], g => [g.Initializer("roi", [8], [0, 0, 0.1f, -0.1f, 1, 1, 0.8f, 1.1f]), string.Empty, g.Int64s("sizes", [1, 2, 4, 5])], Attr("mode", "linear"), Attr("coordinate_transformation_mode", "tf_crop_and_resize"), Attr("extrapolation_value", 2f)),
        ["pad_reflect"] = () => One("Pad", [1, 2, 4, 4], [1, 2, 7, 6], g => [g.Int64s("pads", [0, 0, 1, 2, 0, 0, 2, 0])], Attr("mode", "reflect")),
        ["pad_constant"] = () => One("Pad", [2, 3], [4, 6], g => [g.Int64s("pads", [1, 2, 1, 1]), g.Initializer("v", [], [1.5f])]),
        ["transpose"] = () => One("Transpose", [2, 3, 4, 5], [5, 2, 4, 3], _ => [], Attr("perm", 3L, 0L, 2L, 1L)),
        ["slice_negative_step"] = () => One("Slice", [6, 8], [3, 8], g => [g.Int64s("s", [-1]), g.Int64s("e", [-7]), g.Int64s("a", [0]), g.Int64s("st", [-2])]),
        ["expand"] = () => One("Expand", [3, 1], [2, 3, 4], g => [g.Int64s("shape", [2, 1, 4])]),
        ["elementwise_chain"] = () =>
        {
            var g = new GraphBuilder("chain", 3);
            var x = g.Input("x", ElementType.Float, 2L, 3L, 8L);
            var w = g.Weight("w", [3, 1], 1f);
            var v = g.Node("Add", [x, w]);
            v = g.Node("Mul", [v, g.Weight("m", [8], 1f)]);
            v = g.Node("Sub", [v, x]);
            v = g.Node("Div", [v, g.Initializer("d", [], [3f])]);
            v = g.Node("Pow", [g.Node("Abs", [v]), g.Initializer("p", [], [1.5f])]);
            v = g.Node("Sqrt", [g.Node("Exp", [g.Node("Erf", [v])])]);
            v = g.Node("Clip", [g.Node("HardSwish", [v]), g.Initializer("lo", [], [-0.5f]), g.Initializer("hi", [], [0.9f])]);
            v = g.Node("LeakyRelu", [g.Node("Tanh", [g.Node("HardSigmoid", [v])])], Attr("alpha", 0.1f));
            var cond = g.Node("Greater", [x, g.Initializer("z", [], [0f])]);
            v = g.Node("Where", [cond, v, g.Node("Sigmoid", [x])]);
            g.Output(g.Rename(v, "y"), ElementType.Float, 2L, 3L, 8L);
            return g.Build("chain");
        },
        ["concat_split_gather_cast"] = () =>
        {
            var g = new GraphBuilder("csg", 4);
            var x = g.Input("x", ElementType.Float, 4L, 6L);
            var cat = g.Node("Concat", [x, g.Node("Relu", [x])], Attr("axis", 1L));
            var parts = g.NodeN("Split", [cat, g.Int64s("split", [5, 7])], 2, Attr("axis", 1L));
            var gathered = g.Node("Gather", [parts[1], g.Int64s("idx", [2, -1, 0], [3])], Attr("axis", 1L));
            var casted = g.Node("Cast", [g.Node("Cast", [gathered], Attr("to", (long)ElementType.Int64))], Attr("to", (long)ElementType.Float));
            var flat = g.Node("Flatten", [g.Node("Unsqueeze", [parts[0], g.Int64s("ax", [0])])], Attr("axis", 2L));
            g.Output(g.Rename(flat, "a"), ElementType.Float, 4L, 5L);
            g.Output(g.Rename(g.Node("Squeeze", [g.Node("Identity", [casted])]), "b"), ElementType.Float, 4L, 3L);
            return g.Build("csg");
        },
    };

    public static TheoryData<string> Names() => new(Graphs.Keys);

    private static OnnxModel One(string op, long[] inShape, long[] outShape, Func<GraphBuilder, string[]> extra, params global::Onnx.AttributeProto[] attrs)
    {
        var g = new GraphBuilder(op, 11);
        var x = g.Input("x", ElementType.Float, inShape.Cast<object>().ToArray());
        var y = g.Node(op, [x, .. extra(g)], attrs);
        g.Output(g.Rename(y, "y"), ElementType.Float, outShape.Cast<object>().ToArray());
        return g.Build(op, 18);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Matches_onnx_runtime(string name)
    {
        Gpu.Require();
        var model = Graphs[name]();
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 1)).ToList();
        var results = Gpu.CompareWithOrt(model, inputs);
        foreach (var r in results)
        {
            Gpu.Report("operators.md", $"| {name} | {r.Name} | {r.MaxAbs:E2} | {r.MaxRel:E2} | {r.Cosine:F6} |");
            Assert.True(r.MaxRel <= 1e-4, $"{name}/{r.Name}: max abs error {r.MaxAbs:E2}, relative {r.MaxRel:E2}");
        }
    }
}
