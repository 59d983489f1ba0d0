using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// LayerNormalization over the last axis at transformer widths and odd ones: a warp per row up to 1,024 elements, a few
/// warps of a block per row up to 8,192 (the row in registers either way), the general kernel beyond; planned without a
/// GPU, run on the CPU runner against ONNX Runtime, with the Mean and InvStdDev outputs.
/// </summary>
public sealed class LayerNormPlanTests
{
    [Theory]
    [InlineData(384, "warp")]
    [InlineData(37, "warp")]
    [InlineData(1536, "block")]
    [InlineData(3000, "block")]
    [InlineData(4097, "block")]
    [InlineData(9000, "general")]
    public void Layer_norm_rows_match_onnx_runtime(long width, string kernel)
    {
        var g = new GraphBuilder("layernorm", 13);
        var x = g.Input("x", ElementType.Float, 5L, width);
        var outs = g.NodeN("LayerNormalization", [x, g.Uniform("scale", [width], 0.5f, 1.5f), g.Weight("bias", [width], 0.5f)], 3, GraphBuilder.Attr("axis", -1L), GraphBuilder.Attr("epsilon", 1e-5f));
        g.Output(g.Rename(outs[0], "y"), ElementType.Float, 5L, width);
        g.Output(outs[1], ElementType.Float, 5L, 1L);
        g.Output(outs[2], ElementType.Float, 5L, 1L);
        var model = g.Build("layernorm", 17);
        var rng = new Random(3);
        Tensor[] inputs = [Tensor.From<float>(ElementType.Float, [5, width], [.. Enumerable.Range(0, (int)(5 * width)).Select(i => (float)((rng.NextDouble() * 4) - 2 + (i / width)))])];

        var init = model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t));
        var plans = new[] { Precision.Fp32, Precision.Fp16 }.Select(p => (Precision: p, Plan: new GraphCompiler(model, new NoGpuTarget(p)).Compile(inputs, init, GraphCompiler.HostValueInputs(model)))).ToList();
        foreach (var (_, plan) in plans)
        {
            var source = Assert.Single(plan.Steps.OfType<KernelStep>(), s => s.Node.StartsWith("LayerNormalization", StringComparison.Ordinal)).Source;
            var found = source.Contains("__shared__ float part", StringComparison.Ordinal) ? "block" : source.Contains("v[it][u]", StringComparison.Ordinal) ? "warp" : "general";
            Assert.Equal(kernel, found);
        }

        CpuKernelRunner.Require();

        var expected = DataDependentPlanTests.OnOnnxRuntime(model, inputs);
        CpuKernelRunner.Prepare(plans.Select(p => p.Plan));
        foreach (var (precision, plan) in plans)
        {
            var difference = OperatorCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), expected, precision == Precision.Fp16 ? 2e-2 : 1e-4);
            Assert.True(difference is null, $"width {width} ({precision}): {difference}");
        }
    }
}
