using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A half-precision plan's float32 output: converted by the vectorized elementwise kernel (four floats a thread) where its
/// element count allows, one element a thread where it does not; planned without a GPU, run on the CPU runner against
/// ONNX Runtime.
/// </summary>
public sealed class OutputConversionPlanTests
{
    [Theory]
    [InlineData(64L, true)] // 3 x 64 elements: a multiple of four
    [InlineData(7L, false)] // 3 x 7: one element a thread
    public void Fp16_plan_converts_its_float_output_a_vector_a_thread_where_the_count_allows(long width, bool vectorized)
    {
        var g = new GraphBuilder("relu", 13);
        var x = g.Input("x", ElementType.Float, 3L, width);
        g.Output(g.Rename(g.Node("Relu", [x]), "y"), ElementType.Float, 3L, width);
        var model = g.Build("relu", 17);
        var rng = new Random(5);
        Tensor[] inputs = [Tensor.From<float>(ElementType.Float, [3, width], [.. Enumerable.Range(0, (int)(3 * width)).Select(_ => (float)((rng.NextDouble() * 8) - 4))])];

        var init = model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t));
        var plan = new GraphCompiler(model, new NoGpuTarget(Precision.Fp16)).Compile(inputs, init, GraphCompiler.HostValueInputs(model));
        var output = plan.Steps.OfType<KernelStep>().Last(s => s.Node == "output y"); // the Relu (pending until the output needs it) first
        Assert.Equal(vectorized, output.Source.Contains("uint4", StringComparison.Ordinal));

        CpuKernelRunner.Require();
        CpuKernelRunner.Prepare([plan]);
        var difference = OperatorCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), DataDependentPlanTests.OnOnnxRuntime(model, inputs), 2e-2);
        Assert.True(difference is null, difference);
    }
}
