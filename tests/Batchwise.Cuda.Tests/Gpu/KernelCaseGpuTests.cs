using Batchwise.Cuda.Planning;
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
        // A depthwise case also with the interior path on: these cases are smaller than the wave from which auto takes it.
        DepthwiseInteriorChoice[] interiors = name.StartsWith("dw-", StringComparison.Ordinal) ? [DepthwiseInteriorChoice.Auto, DepthwiseInteriorChoice.On] : [DepthwiseInteriorChoice.Auto];
        foreach (var interior in interiors)
        {
            foreach (var precision in new[] { Precision.Fp32, Precision.Fp16 })
            {
                using var cuda = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = precision });
                cuda.DepthwiseInterior = interior;
                var difference = KernelCaseModels.Difference(cuda.Run(inputs), expected, precision == Precision.Fp16);
                Gpu.Report("kernel-cases.md", $"| {name} | {precision} | interior {interior} | {difference ?? "agrees"} |");
                Assert.True(difference is null, $"{name} ({precision}, interior {interior}): {difference}");
            }
        }
    }
}
