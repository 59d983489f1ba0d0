using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A copy that is a batched transpose once contiguous dimensions merge (a float32 plan's Transpose(0, 2, 3, 1) of an NCHW
/// activation and back, as ConvNeXt permutes around its LayerNorms; a matrix's Transpose) runs through shared-memory tiles,
/// which read and write whole lines; other copies keep the element-per-thread kernel. Planned without a GPU, run on the
/// CPU through g++, against ONNX Runtime.
/// </summary>
public sealed class TiledTransposeOnCpuTests
{
    [Theory]
    [InlineData(new long[] { 2, 3, 4 }, new long[] { 0, 2, 1 }, null)] // sides of 3 and 4: too short for tiles
    [InlineData(new long[] { 2, 40, 5, 7 }, new long[] { 0, 3, 1, 2 }, null)] // [B, C, H, W] -> [B, W, C, H]: [2, 200, 7] -> [2, 7, 200], a side of 7 too short
    [InlineData(new long[] { 2, 40, 5, 7 }, new long[] { 0, 2, 3, 1 }, new long[] { 2, 40, 35 })] // NCHW -> NHWC: [2, 40, 35] -> [2, 35, 40]
    [InlineData(new long[] { 2, 5, 7, 40 }, new long[] { 0, 3, 1, 2 }, new long[] { 2, 35, 40 })] // NHWC -> NCHW
    [InlineData(new long[] { 33, 70 }, new long[] { 1, 0 }, new long[] { 1, 33, 70 })]
    [InlineData(new long[] { 1, 12, 64, 9 }, new long[] { 0, 1, 3, 2 }, new long[] { 12, 64, 9 })] // a batch of [64, 9] matrices
    [InlineData(new long[] { 2, 16, 12, 64 }, new long[] { 0, 2, 1, 3 }, null)] // attention's heads: 64-element runs stay whole
    public void A_transpose_is_tiled_where_it_swaps_two_merged_blocks(long[] shape, long[] perm, long[]? expected)
    {
        var outShape = perm.Select(p => shape[p]).ToArray();
        var srcStrides = perm.Select(p => KernelSource.Strides(shape)[p]).ToArray();
        var found = KernelSource.BatchedTranspose(outShape, srcStrides, KernelSource.Strides(outShape));
        Assert.Equal(expected is null ? null : (expected[0], expected[1], expected[2]), found);
    }

    private static OnnxModel Model(long[] shape, long[] perm)
    {
        var g = new GraphBuilder("transpose", seed: 1);
        var x = g.Input("x", ElementType.Float, [.. shape.Cast<object>()]);
        g.Rename(g.Node("Transpose", [x], GraphBuilder.Attr("perm", perm)), "y");
        g.Output("y", ElementType.Float, [.. perm.Select(p => (object)shape[p])]);
        return g.Build("transpose");
    }

    [Theory]
    [InlineData(new long[] { 2, 40, 5, 7 }, new long[] { 0, 2, 3, 1 }, true)]
    [InlineData(new long[] { 3, 9, 11, 37 }, new long[] { 0, 3, 1, 2 }, true)]
    [InlineData(new long[] { 33, 70 }, new long[] { 1, 0 }, true)]
    [InlineData(new long[] { 2, 16, 12, 64 }, new long[] { 0, 2, 1, 3 }, false)]
    public void A_float32_transpose_runs_as_planned_and_agrees_with_onnx_runtime(long[] shape, long[] perm, bool tiled)
    {
        CpuKernelRunner.Require();
        var model = Model(shape, perm);
        var count = (int)shape.Aggregate(1L, (p, d) => p * d);
        List<Tensor> inputs = [Tensor.From<float>(ElementType.Float, shape, [.. Enumerable.Range(0, count).Select(i => (float)i)])];
        var plan = new NoGpuTarget(Precision.Fp32).Compile(model, inputs);
        var step = Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.StartsWith("Transpose", StringComparison.Ordinal)), exactMatch: false);
        Assert.Equal(tiled, step.Source.Contains("tile[32][33]", StringComparison.Ordinal));

        using var ort = new OrtEngine().Load(model, new EngineOptions());
        var want = ort.Run(inputs)[0].AsSpan<float>().ToArray();
        CpuKernelRunner.Prepare([plan]);
        var got = CpuKernelRunner.Run(plan, inputs)[0].AsSpan<float>().ToArray();
        Assert.Equal(want, got); // a copy: every value where ONNX Runtime puts it
    }
}
