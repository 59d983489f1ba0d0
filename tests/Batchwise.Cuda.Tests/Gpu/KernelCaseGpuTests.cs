using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>The own kernels of issue 16 (<see cref="KernelCaseModels"/>) on the GPU in float32 and float16, against ONNX Runtime.</summary>
[Trait("Category", "GPU")]
public sealed class KernelCaseGpuTests
{
    public static TheoryData<string> Cases => [.. KernelCaseModels.All.Keys, .. KernelCaseModels.GpuOnly.Keys];

    [Theory]
    [MemberData(nameof(Cases))]
    public void Own_kernel_on_the_gpu_agrees_with_onnx_runtime(string name)
    {
        Gpu.Require();
        var (model, inputs, expected) = KernelCaseModels.Build(name);
        foreach (var precision in new[] { Precision.Fp32, Precision.Fp16 })
        {
            using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = precision });
            var difference = KernelCaseModels.Difference(cuda.Run(inputs), expected, precision == Precision.Fp16);
            Gpu.Report("kernel-cases.md", $"| {name} | {precision} | {difference ?? "agrees"} |");
            Assert.True(difference is null, $"{name} ({precision}): {difference}");
        }
    }
}
