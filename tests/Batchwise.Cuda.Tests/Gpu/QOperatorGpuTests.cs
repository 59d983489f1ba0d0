using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Tests.Transforms;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>A QOperator-format model (QLinearConv, com.microsoft QLinearAdd and QLinearGlobalAveragePool) loads on the cuda engine in its QDQ form and agrees with ONNX Runtime running it as it is.</summary>
[Trait("Category", "GPU")]
public sealed class QOperatorGpuTests
{
    [Theory]
    [InlineData(Precision.Fp32)]
    [InlineData(Precision.Fp16)]
    public void A_qoperator_model_runs_on_the_cuda_engine_and_agrees_with_onnx_runtime(Precision precision)
    {
        Gpu.Require();
        var model = QOperatorModels.Classifier();
        var rng = new Random(8);
        List<Tensor> inputs = [Tensor.From<float>(ElementType.Float, [2, 64, 6, 6], [.. Enumerable.Range(0, 2 * 64 * 36).Select(_ => (float)((rng.NextDouble() * 3) - 1.5))])];
        var results = Gpu.CompareWithOrt(model, inputs, new EngineOptions { Precision = precision });
        Gpu.Report("int8.md", $"| QOperator classifier (QLinearConv, QLinearAdd, QLinearGlobalAveragePool) on cuda {precision.ToString().ToLowerInvariant()} | cosine {results[0].Cosine:F6} | max abs {results[0].MaxAbs:E2} |");
        Assert.True(results[0].Cosine >= 0.999, $"cosine {results[0].Cosine}, max abs {results[0].MaxAbs}");
    }
}
