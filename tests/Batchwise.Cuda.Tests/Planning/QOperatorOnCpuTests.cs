using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Tests.Transforms;
using Batchwise.Transforms;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A QOperator-format model (QLinearConv, com.microsoft QLinearAdd and QLinearGlobalAveragePool) in its QDQ form runs on
/// the int8 path as any QDQ model: planned without a GPU with the own int8 kernels, run on the CPU through g++, against
/// ONNX Runtime running the QOperator model itself.
/// </summary>
public sealed class QOperatorOnCpuTests
{
    [Fact]
    public void A_qoperator_model_runs_its_convolutions_int8_and_agrees_with_onnx_runtime()
    {
        CpuKernelRunner.Require();
        var model = QOperatorModels.Classifier();
        var rewritten = OnnxModel.FromProto(model.Proto.Clone(), model.Name);
        new QOperatorToQdq().Apply(rewritten);
        OperatorSupport.Validate(rewritten); // no com.microsoft operator left for the engine to refuse
        var rng = new Random(8);
        List<Tensor> inputs = [Tensor.From<float>(ElementType.Float, [2, 64, 6, 6], [.. Enumerable.Range(0, 2 * 64 * 36).Select(_ => (float)((rng.NextDouble() * 3) - 1.5))])];
        var plan = new NoGpuTarget(Precision.Fp16) { Int8 = true, Int8Convolutions = Int8ConvChoice.Own }.Compile(rewritten, inputs);
        Assert.Equal(2, plan.Int8Layers.Count(p => p.Value.StartsWith("int8", StringComparison.Ordinal)));

        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var want = ort.Run(inputs)[0].ToDoubles();
        CpuKernelRunner.Prepare([plan]);
        var got = CpuKernelRunner.Run(plan, inputs)[0].ToDoubles();
        Assert.True(want.Distinct().Count() > 8, "the output is nearly constant: the case checks nothing");
        Assert.All(Enumerable.Range(0, want.Length), i => Assert.True(Math.Abs(want[i] - got[i]) <= 0.0201, $"[{i}] {got[i]} where ONNX Runtime gives {want[i]}")); // two steps of the pooling's 0.01 grid
    }
}
