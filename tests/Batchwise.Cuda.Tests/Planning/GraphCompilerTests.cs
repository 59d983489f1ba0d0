using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

public sealed class GraphCompilerTests
{
    private static ExecutionPlan Compile(OnnxModel model, params Tensor[] inputs) => Compile(Precision.Fp32, model, inputs);

    private static ExecutionPlan Compile(Precision precision, OnnxModel model, params Tensor[] inputs)
    {
        return new NoGpuTarget(precision).Compile(model, inputs);
    }

    [Fact]
    public void Shape_subgraphs_fold_on_the_host_and_reshape_is_a_view()
    {
        var g = new GraphBuilder("fold");
        var x = g.Input("x", ElementType.Float, "batch", 4L, 6L);
        var shape = g.Node("Shape", [x]);
        var batch = g.Node("Gather", [shape, g.Int64s("zero", [0], [])], GraphBuilder.Attr("axis", 0L));
        var dims = g.Node("Concat", [g.Node("Unsqueeze", [batch, g.Int64s("axes", [0])]), g.Int64s("rest", [-1])], GraphBuilder.Attr("axis", 0L));
        var flat = g.Node("Reshape", [x, dims]);
        var y = g.Rename(g.Node("Relu", [flat]), "y");
        g.Output(y, ElementType.Float, "batch", 24L);
        var model = g.Build("fold");

        var plan = Compile(model, Tensor.Zeros(ElementType.Float, [3, 4, 6]));

        var step = Assert.Single(plan.Steps);
        Assert.IsType<KernelStep>(step);
        Assert.Equal([3L, 24L], plan.Outputs[0].Shape);
    }

    [Fact]
    public void Pads_computed_from_shapes_by_any_operator_fold_when_the_plan_is_built()
    {
        // Swin's window padding: pad = max((7 - H mod 7) mod 7, ceil(H / 7) * 7 - H), through a ReduceMax (not folded eagerly).
        var g = new GraphBuilder("swin-pad");
        var x = g.Input("x", ElementType.Float, "batch", 13L, 10L, 8L);
        var shape = g.Node("Shape", [x]);
        var window = g.Int64s("window", [7], []);
        string PadFor(int axis)
        {
            var size = g.Node("Gather", [shape, g.Int64s($"axis{axis}", [axis], [])], GraphBuilder.Attr("axis", 0L));
            var byMod = g.Node("Mod", [g.Node("Sub", [window, g.Node("Mod", [size, window])]), window]);
            var windows = g.Node("Ceil", [g.Node("Div", [g.Node("Cast", [size], GraphBuilder.Attr("to", (long)ElementType.Float)), g.Scalar(7f)])]);
            var byCeil = g.Node("Sub", [g.Node("Cast", [g.Node("Mul", [windows, g.Scalar(7f)])], GraphBuilder.Attr("to", (long)ElementType.Int64)), size]);
            var both = g.Node("Concat", [g.Node("Unsqueeze", [byMod, g.Int64s($"u{axis}", [0])]), g.Node("Unsqueeze", [byCeil, g.Int64s($"v{axis}", [0])])], GraphBuilder.Attr("axis", 0L));
            return g.Node("Unsqueeze", [g.Node("ReduceMax", [both], GraphBuilder.Attr("keepdims", 0L)), g.Int64s($"w{axis}", [0])]);
        }

        var zero = g.Int64s("zeros", [0, 0]);
        var pads = g.Node("Concat", [zero, g.Int64s("zero1", [0]), zero, PadFor(1), PadFor(2), g.Int64s("zero2", [0])], GraphBuilder.Attr("axis", 0L));
        g.Output(g.Rename(g.Node("Pad", [x, pads]), "y"), ElementType.Float, "batch", 14L, 14L, 8L);

        var plan = Compile(g.Build("swin-pad"), Tensor.Zeros(ElementType.Float, [2, 13, 10, 8]));

        Assert.Equal([2L, 14, 14, 8], plan.Outputs[0].Shape);
        Assert.Single(plan.Steps); // the Pad kernel: everything else folded
    }

    [Fact]
    public void A_graph_input_that_gives_a_shape_is_read_on_the_host_and_keys_the_plan()
    {
        var g = new GraphBuilder("reshape");
        var x = g.Input("x", ElementType.Float, 2L, 6L);
        var s = g.Input("shape", ElementType.Int64, 2L);
        var y = g.Rename(g.Node("Reshape", [x, s]), "y");
        g.Output(y, ElementType.Float, 3L, 4L);
        var model = g.Build("reshape");

        Assert.Equal(["shape"], GraphCompiler.HostValueInputs(model));
        var plan = Compile(model, Tensor.Zeros(ElementType.Float, [2, 6]), Tensor.From<long>(ElementType.Int64, [2], [3, -1]));
        Assert.Equal([3L, 4L], plan.Outputs[0].Shape);
        Assert.Equal(-1, plan.InputBuffers[1]);
    }

    [Fact]
    public void A_long_elementwise_chain_fuses_into_one_kernel()
    {
        var g = new GraphBuilder("chain");
        var v = g.Input("x", ElementType.Float, "batch", 1024L);
        for (var i = 0; i < 20; i++)
        {
            v = g.Node(i % 2 == 0 ? "Relu" : "Sigmoid", [v]);
        }

        g.Output(g.Rename(v, "y"), ElementType.Float, "batch", 1024L);
        var plan = Compile(g.Build("chain"), Tensor.Zeros(ElementType.Float, [8, 1024]));

        var kernel = Assert.IsType<KernelStep>(Assert.Single(plan.Steps));
        Assert.Equal(10, CountOf(kernel.Source, "bw_sigmoid("));
        Assert.Equal(2 * 8 * 1024 * 4, plan.Memory.ArenaBytes);
    }

    [Fact]
    public void Shared_operands_are_read_once_in_a_fused_kernel()
    {
        // SiLU as exported: x * Sigmoid(x), then + bias: one kernel reading x and the bias.
        var g = new GraphBuilder("silu");
        var x = g.Input("x", ElementType.Float, 2L, 8L);
        var silu = g.Node("Mul", [x, g.Node("Sigmoid", [x])]);
        var y = g.Rename(g.Node("Add", [silu, g.Weight("b", [8], 3)]), "y");
        g.Output(y, ElementType.Float, 2L, 8L);

        var plan = Compile(g.Build("silu"), Tensor.Zeros(ElementType.Float, [2, 8]));

        var kernel = Assert.IsType<KernelStep>(Assert.Single(plan.Steps));
        Assert.Equal(3, kernel.Buffers.Length); // output, x, bias
        Assert.Equal(1, CountOf(kernel.Source, "(p0 + first)")); // x read once, 4 floats at a time
    }

    [Fact]
    public void A_long_chain_of_copies_reuses_memory()
    {
        var g = new GraphBuilder("copies");
        var v = g.Input("x", ElementType.Float, 32L, 32L);
        for (var i = 0; i < 20; i++)
        {
            v = g.Node("Transpose", [v], GraphBuilder.Attr("perm", 1L, 0L));
        }

        g.Output(g.Rename(v, "y"), ElementType.Float, 32L, 32L);
        var plan = Compile(g.Build("copies"), Tensor.Zeros(ElementType.Float, [32, 32]));

        Assert.Equal(20, plan.Steps.Count);
        Assert.True(plan.Memory.ArenaBytes <= 4 * 32 * 32 * 4, $"arena {plan.Memory.ArenaBytes} bytes for a chain of 4 KiB tensors");
        Assert.True(plan.Memory.UnsharedBytes >= 21 * 32 * 32 * 4);
    }

    [Fact]
    public void Half_precision_converts_at_the_edges_and_keeps_activations_channels_last()
    {
        var g = new GraphBuilder("half");
        var x = g.Input("x", ElementType.Float, "batch", 4L, 8L, 8L);
        var pooled = g.Node("MaxPool", [x], GraphBuilder.Attr("kernel_shape", 2L, 2L), GraphBuilder.Attr("strides", 2L, 2L));
        var act = g.Node("Relu", [pooled]);
        var gap = g.Node("GlobalAveragePool", [act]);
        var y = g.Rename(g.Node("Flatten", [gap]), "y");
        g.Output(y, ElementType.Float, "batch", 4L);

        var plan = Compile(Precision.Fp16, g.Build("half"), Tensor.Zeros(ElementType.Float, [2, 4, 8, 8]));

        var kernels = plan.Steps.Cast<KernelStep>().Select(k => k.Source).ToList();
        Assert.Equal(4, kernels.Count); // float32 NCHW -> float16 NHWC, pool, mean (applying the relu as it loads), float16 -> float32
        Assert.Contains("bw_half* __restrict__ dst, const float* __restrict__ src", kernels[0], StringComparison.Ordinal);
        Assert.Contains("+ ch * 1;", kernels[1], StringComparison.Ordinal); // channels-last pooling: the channel is the fastest index (4 channels: one per thread)
        Assert.Equal(4, Kernels.KernelSourceTests.Args(new(kernels[1], plan.Steps.Cast<KernelStep>().ElementAt(1).Args))["channels"]);
        Assert.Contains("xe =", kernels[2], StringComparison.Ordinal);
        Assert.Contains("float* __restrict__ y, const bw_half* __restrict__ p0", kernels[3], StringComparison.Ordinal); // the elementwise kernel's vector path (8 floats: 4 a thread)
        Assert.Equal(ElementType.Float, plan.Outputs[0].Type);
        Assert.Equal([2L, 4L], plan.Outputs[0].Shape);
        Assert.Equal(2 * 4 * 2, plan.Buffers[plan.InputBuffers[0]].Bytes / (8 * 8) / 2); // the input stays float32
    }

    [Fact]
    public void A_pending_part_of_a_concat_is_computed_into_its_slice()
    {
        var g = new GraphBuilder("concat");
        var x = g.Input("x", ElementType.Float, 2L, 3L, 8L);
        var act = g.Node("Relu", [x]);
        var y = g.Rename(g.Node("Concat", [act, x], GraphBuilder.Attr("axis", 1L)), "y");
        g.Output(y, ElementType.Float, 2L, 6L, 8L);

        var plan = Compile(g.Build("concat"), Tensor.Zeros(ElementType.Float, [2, 3, 8]));

        var kernels = plan.Steps.Cast<KernelStep>().ToList();
        Assert.Equal(2, kernels.Count); // the ReLU into rows 0-2 of each batch item, then a copy of x into rows 3-5
        var slice = Kernels.KernelSourceTests.Args(new(kernels[0].Source, kernels[0].Args));
        Assert.Equal(24, slice["block"]); // element i of the ReLU goes to (i / 24) * 48 + 0 + i % 24
        Assert.Equal(48, slice["row_stride"]);
        Assert.Equal(0, slice["offset"]);
        Assert.Equal(kernels[0].Buffers[0], kernels[1].Buffers[0]);
        Assert.Equal([2L, 6L, 8L], plan.Outputs[0].Shape);
    }

    private static int CountOf(string text, string part)
    {
        var n = 0;
        for (var i = text.IndexOf(part, StringComparison.Ordinal); i >= 0; i = text.IndexOf(part, i + part.Length, StringComparison.Ordinal))
        {
            n++;
        }

        return n;
    }

    [Fact]
    public void Broadcasting_concat_slice_and_transpose_plan_with_the_right_shapes()
    {
        var g = new GraphBuilder("mix");
        var x = g.Input("x", ElementType.Float, 2L, 3L, 4L);
        var b = g.Weight("b", [4], 1);
        var added = g.Node("Add", [x, b]);
        var cat = g.Node("Concat", [added, x], GraphBuilder.Attr("axis", 1L));
        var sliced = g.Node("Slice", [cat, g.Int64s("s", [1]), g.Int64s("e", [long.MaxValue]), g.Int64s("a", [1]), g.Int64s("st", [2])]);
        var t = g.Rename(g.Node("Transpose", [sliced], GraphBuilder.Attr("perm", 2L, 0L, 1L)), "y");
        g.Output(t, ElementType.Float, 4L, 2L, 3L);

        var plan = Compile(g.Build("mix"), Tensor.Zeros(ElementType.Float, [2, 3, 4]));

        Assert.Equal([4L, 2L, 3L], plan.Outputs[0].Shape);
        Assert.All(plan.Steps, s => Assert.IsType<KernelStep>(s));
    }
}
