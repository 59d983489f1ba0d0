using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A max or average pool whose input is a pending elementwise chain over one tensor and per-channel vectors (an int8
/// model's stem: bias, QuantizeLinear, DequantizeLinear, then MaxPool) applies the chain to each value it reads: one
/// kernel, no pass that writes the chain out first. Planned without a GPU in half precision, run on the CPU through
/// g++, against ONNX Runtime.
/// </summary>
public sealed class PoolChainOnCpuTests
{
    private static readonly long[] Shape = [2, 16, 10, 12];

    /// <summary>x [2, 16, 10, 12] + b [16, 1, 1] (or + x2, a second tensor of x's shape) -> Q/DQ (1/32, zero point 128) -> MaxPool or AveragePool 3x3, stride 2, pad 1.</summary>
    private static OnnxModel Model(string pool, bool secondTensor = false)
    {
        var g = new GraphBuilder("pool-chain", seed: 3);
        var x = g.Input("x", ElementType.Float, 2L, 16L, 10L, 12L);
        var other = secondTensor ? g.Input("x2", ElementType.Float, 2L, 16L, 10L, 12L)
            : g.Initializer("b", [16, 1, 1], [.. Enumerable.Range(0, 16).Select(i => (i - 8) / 64f)]);
        var (s, z) = (g.Initializer("s", [], [1f / 32]), g.Raw<byte>("z", ElementType.UInt8, [], [128]));
        var xd = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [g.Node("Add", [x, other]), s, z]), s, z]);
        g.Rename(g.Node(pool, [xd], GraphBuilder.Attr("kernel_shape", 3L, 3L), GraphBuilder.Attr("strides", 2L, 2L), GraphBuilder.Attr("pads", 1L, 1L, 1L, 1L)), "y");
        g.Output("y", ElementType.Float, 2L, 16L, 5L, 6L);
        return g.Build("pool-chain");
    }

    /// <summary>Values on a 1/64 grid in [-2, 2): exact in half, so both engines round the same sums.</summary>
    private static Tensor Grid(int seed)
    {
        var rng = new Random(seed);
        return Tensor.From<float>(ElementType.Float, Shape, [.. Enumerable.Range(0, 2 * 16 * 10 * 12).Select(_ => rng.Next(-128, 128) / 64f)]);
    }

    [Theory]
    [InlineData("MaxPool")]
    [InlineData("AveragePool")]
    public void A_pool_over_a_bias_and_rounding_chain_is_one_kernel_and_agrees_with_onnx_runtime(string pool)
    {
        CpuKernelRunner.Require();
        var model = Model(pool);
        List<Tensor> inputs = [Grid(1)];
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        var plan = new NoGpuTarget(Precision.Fp16).Compile(model, inputs);

        var kernel = Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.StartsWith(pool, StringComparison.Ordinal)));
        Assert.Contains("const float x0 = (float)e.v[u];", kernel.Source, StringComparison.Ordinal);
        Assert.Contains("rintf", kernel.Source, StringComparison.Ordinal);
        CpuKernelRunner.Prepare([plan]);
        var difference = KernelCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), expected, half: true);
        Assert.True(difference is null, difference);
    }

    [Fact]
    public void A_chain_over_two_tensors_is_written_out_before_the_pool_and_still_agrees()
    {
        CpuKernelRunner.Require();
        var model = Model("MaxPool", secondTensor: true);
        List<Tensor> inputs = [Grid(1), Grid(2)];
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        var plan = new NoGpuTarget(Precision.Fp16).Compile(model, inputs);

        Assert.Equal(2, plan.Steps.Count(s => s.Node.StartsWith("MaxPool", StringComparison.Ordinal)));
        CpuKernelRunner.Prepare([plan]);
        Assert.Null(KernelCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), expected, half: true));
    }
}
