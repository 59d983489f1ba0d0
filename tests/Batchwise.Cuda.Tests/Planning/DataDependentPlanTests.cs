using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// NonZero on the cuda engine, planned without a GPU: it folds when its input is known when the plan is built; on a
/// run-time value the plan stops at its count, and the plan for the rest (built with the count read back) repeats the
/// first segment's steps and offsets and resumes on the same arena. The kernels run on the CPU
/// (<see cref="CpuKernelRunner"/>) against ONNX Runtime, with counts that change between runs of one plan.
/// </summary>
public sealed class DataDependentPlanTests
{
    private static ExecutionPlan Compile(Precision precision, OnnxModel model, params Tensor[] inputs)
    {
        return new NoGpuTarget(precision).Compile(model, inputs);
    }

    /// <summary>
    /// Boolean-mask indexing as exports write <c>x[x &gt; 0]</c>: NonZero, Transpose, GatherND; a Relu computed before
    /// the NonZero is read after it (kept live across the synchronisation) and the coordinates are an output too.
    /// </summary>
    internal static OnnxModel MaskModel(params long[] shape)
    {
        var g = new GraphBuilder("mask");
        var x = g.Input("x", ElementType.Float, [.. shape.Cast<object>()]);
        var relu = g.Node("Relu", [x]);
        var doubled = g.Node("Mul", [relu, g.Scalar(2f)]);
        var mask = g.Node("Greater", [x, g.Scalar(0.25f)]);
        var coordinates = g.Rename(g.Node("NonZero", [mask]), "coordinates");
        var rows = g.Node("Transpose", [coordinates], GraphBuilder.Attr("perm", new long[] { 1, 0 }));
        g.Output(g.Rename(g.Node("GatherND", [doubled, rows]), "picked"), ElementType.Float, "count");
        g.Output(coordinates, ElementType.Int64, (long)shape.Length, "count");
        return g.Build("mask");
    }

    /// <summary>Values in [-1, 1) from <paramref name="seed"/> (about three in eight pass the mask's 0.25).</summary>
    internal static Tensor Values(long[] shape, int seed)
    {
        var rng = new Random(seed);
        return Tensor.From<float>(ElementType.Float, shape, [.. Enumerable.Range(0, (int)Tensor.ElementCountOf(shape)).Select(_ => (float)((rng.NextDouble() * 2) - 1))]);
    }

    internal static IReadOnlyList<Tensor> OnOnnxRuntime(OnnxModel model, params Tensor[] inputs)
    {
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        return ort.Run(inputs);
    }

    [Fact]
    public void NonZero_of_a_value_computed_from_shapes_folds_when_the_plan_is_built()
    {
        // Which dimensions are larger than 3, as a shape computation: known from the input's shape alone.
        var g = new GraphBuilder("shape-nonzero");
        var x = g.Input("x", ElementType.Float, "batch", 4L, 2L, 5L);
        var large = g.Node("Greater", [g.Node("Shape", [x]), g.Int64s("three", [3], [])]);
        var which = g.Node("NonZero", [large]);
        g.Output(g.Rename(g.Node("Add", [g.Node("Cast", [which], GraphBuilder.Attr("to", (long)ElementType.Float)), g.Node("ReduceSum", [x], GraphBuilder.Attr("keepdims", 0L))]), "y"), ElementType.Float, 1L, "count");
        var model = g.Build("shape-nonzero");
        OperatorSupport.Validate(model);

        var plan = Compile(Precision.Fp32, model, Tensor.Zeros(ElementType.Float, [1, 4, 2, 5]));

        Assert.False(plan.StopsForCount);
        Assert.Empty(plan.SyncNodes);
        Assert.Equal([1L, 2L], plan.Outputs[0].Shape); // dimensions 1 and 3 (4 and 5) are larger than 3
    }

    [Fact]
    public void NonZero_of_a_run_time_value_stops_the_plan_at_its_count_and_the_rest_resumes_on_the_same_arena()
    {
        var model = MaskModel(6, 7);
        OperatorSupport.Validate(model);
        var x = Values([6, 7], 1);

        var first = Compile(Precision.Fp32, model, x);

        Assert.True(first.StopsForCount);
        Assert.Empty(first.Outputs);
        Assert.Contains("NonZero", Assert.Single(first.SyncNodes), StringComparison.Ordinal);
        var rest = CpuKernelRunner.Continuation(model, new NoGpuTarget(), [x])(first, 11);
        Assert.False(rest.StopsForCount);
        Assert.Equal([11L], rest.Counts);
        Assert.Equal(first.Steps.Count, rest.FirstStep);
        Assert.Equal([2L, 11L], rest.Outputs[1].Shape);
        Assert.Equal([11L], rest.Outputs[0].Shape);
        Assert.All(first.Buffers.Where(b => b.IsArena), b => Assert.Equal(b.Offset, rest.Buffers[b.Id].Offset));
        Assert.All(rest.Buffers.Skip(first.Buffers.Count).Where(b => b.IsArena), b => Assert.True(b.Offset >= first.Memory.ArenaBytes, $"{b.Label} at {b.Offset} overlaps the first segment's arena"));
    }

    [Theory]
    [InlineData(Precision.Fp32, 2)]
    [InlineData(Precision.Fp16, 2)]
    [InlineData(Precision.Fp16, 4)]
    public void Masked_selection_with_counts_that_change_between_runs_agrees_with_onnx_runtime(Precision precision, int rank)
    {
        CpuKernelRunner.Require();
        var shape = rank == 4 ? new long[] { 2, 3, 4, 5 } : [6, 7];
        var model = MaskModel(shape);
        var plan = Compile(precision, model, Tensor.Zeros(ElementType.Float, shape));
        var counts = new HashSet<long>();
        foreach (var seed in new[] { 1, 2, 3 })
        {
            var x = Values(shape, seed);
            var expected = OnOnnxRuntime(model, x);
            var actual = CpuKernelRunner.Run(plan, [x], CpuKernelRunner.Continuation(model, new NoGpuTarget(precision), [x]));
            counts.Add(expected[1].Shape[1]);

            Assert.Equal(expected[1].Shape, actual[1].Shape);
            Assert.Equal(expected[1].ToDoubles(), actual[1].ToDoubles());
            Assert.Equal(expected[0].Shape, actual[0].Shape);
            var tolerance = precision == Precision.Fp16 ? 2e-2 : 1e-6;
            Assert.All(expected[0].ToDoubles().Zip(actual[0].ToDoubles()), p => Assert.True(Math.Abs(p.First - p.Second) <= tolerance * Math.Max(1, Math.Abs(p.First)), $"{p.Second} for {p.First}"));
        }

        Assert.True(counts.Count > 1, "the seeds gave one count: the test would not see a count change");
    }

    [Fact]
    public void Two_nonzero_nodes_synchronise_twice_and_every_count_is_exact()
    {
        CpuKernelRunner.Require();
        var g = new GraphBuilder("two");
        var a = g.Input("a", ElementType.Int32, 9L);
        var b = g.Input("b", ElementType.Bool, 2L, 3L);
        var first = g.Rename(g.Node("NonZero", [a]), "first");
        var second = g.Rename(g.Node("NonZero", [b]), "second");
        g.Output(first, ElementType.Int64, 1L, "n");
        g.Output(second, ElementType.Int64, 2L, "m");
        var model = g.Build("two");
        var ints = Tensor.From<int>(ElementType.Int32, [9], [0, 3, 0, -1, 0, 0, 7, 0, 2]);
        var bools = new Tensor(ElementType.Bool, [2, 3], [1, 0, 0, 1, 1, 0]);

        var plan = Compile(Precision.Fp32, model, ints, bools);
        var plans = new List<ExecutionPlan>();
        var continueWith = CpuKernelRunner.Continuation(model, new NoGpuTarget(), [ints, bools]);
        var actual = CpuKernelRunner.Run(plan, [ints, bools], (p, n) =>
        {
            var next = continueWith(p, n);
            plans.Add(next);
            return next;
        });

        Assert.Equal(2, plans.Count);
        Assert.True(plans[0].StopsForCount);
        Assert.Equal([4L, 3L], plans[1].Counts);
        Assert.Equal([1L, 3L, 6L, 8L], actual[0].ToDoubles().Select(d => (long)d));
        Assert.Equal([2L, 3L], actual[1].Shape);
        Assert.Equal([0L, 1L, 1L, 0L, 0L, 1L], actual[1].ToDoubles().Select(d => (long)d));
    }

    [Fact]
    public void A_mask_with_no_true_element_gives_empty_coordinates()
    {
        CpuKernelRunner.Require();
        var model = MaskModel(6, 7);
        var x = Tensor.From<float>(ElementType.Float, [6, 7], [.. Enumerable.Repeat(-1f, 42)]);
        var plan = Compile(Precision.Fp32, model, x);

        var actual = CpuKernelRunner.Run(plan, [x], CpuKernelRunner.Continuation(model, new NoGpuTarget(), [x]));

        Assert.Equal([2L, 0L], actual[1].Shape);
        Assert.Equal([0L], actual[0].Shape);
    }
}
