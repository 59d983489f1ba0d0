using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

public sealed class GraphCompilerTests
{
    /// <summary>A target for graphs without convolutions or matrix products: planning them needs no GPU.</summary>
    private sealed class NoGpu : IPlanTarget
    {
        public int ComputeCapability => 90;

        public bool AllowTf32 => false;

        public CudnnHandle PlanningCudnn => throw new InvalidOperationException("no GPU in this test");

        public CublasLtObject PlanningCublasLt => throw new InvalidOperationException("no GPU in this test");
    }

    private static ExecutionPlan Compile(OnnxModel model, params Tensor[] inputs)
    {
        var init = model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t));
        return new GraphCompiler(model, new NoGpu()).Compile(inputs, init, GraphCompiler.HostValueInputs(model));
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
    public void A_long_elementwise_chain_reuses_memory()
    {
        var g = new GraphBuilder("chain");
        var v = g.Input("x", ElementType.Float, "batch", 1024L);
        for (var i = 0; i < 20; i++)
        {
            v = g.Node(i % 2 == 0 ? "Relu" : "Sigmoid", [v]);
        }

        g.Output(g.Rename(v, "y"), ElementType.Float, "batch", 1024L);
        var plan = Compile(g.Build("chain"), Tensor.Zeros(ElementType.Float, [8, 1024]));

        Assert.Equal(20, plan.Steps.Count);
        Assert.True(plan.Memory.ArenaBytes <= 4 * 8 * 1024 * 4, $"arena {plan.Memory.ArenaBytes} bytes for a chain of 32 KiB tensors");
        Assert.True(plan.Memory.UnsharedBytes >= 21 * 8 * 1024 * 4);
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
