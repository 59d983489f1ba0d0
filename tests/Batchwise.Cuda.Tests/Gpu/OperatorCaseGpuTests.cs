using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// Every registry operator case the cuda engine lowers (tests/Batchwise.Tests/Operators/OperatorCases.cs), run on the GPU
/// in float32 and float16 against ONNX Runtime: a lowered operator's case the engine refuses fails here unless it is one
/// of <see cref="OperatorCaseModels.KnownRefusals"/> with its expected reason.
/// </summary>
[Trait("Category", "GPU")]
public sealed class OperatorCaseGpuTests
{
    public static TheoryData<string> Cases => [.. OperatorCaseModels.Lowered];

    public static TheoryData<string> Layout1Cases => [.. Batchwise.Tests.Operators.OperatorCases.RecurrentLayout1.Keys];

    /// <summary>Recurrent layers in layout 1 (ONNX Runtime's CPU kernels refuse it), against the registry's host reference.</summary>
    [Theory]
    [MemberData(nameof(Layout1Cases))]
    public void Recurrent_layout_1_on_the_gpu_agrees_with_the_host_reference(string name)
    {
        Gpu.Require();
        var (model, inputs, expected) = OperatorCaseModels.BuildLayout1(name);
        foreach (var precision in new[] { Precision.Fp32, Precision.Fp16 })
        {
            using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = precision });
            var difference = OperatorCaseModels.Difference(cuda.Run(inputs), expected, precision == Precision.Fp16 ? 2e-2 : 1e-4);
            Gpu.Report("operator-cases.md", $"| {name} | {precision} | {difference ?? "agrees"} |");
            Assert.True(difference is null, $"{name} ({precision}): {difference}");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Registry_case_on_the_gpu_agrees_with_onnx_runtime(string name)
    {
        Gpu.Require();
        var (model, inputs, expected) = OperatorCaseModels.Build(name);
        if (OperatorCaseModels.Refusal(model) is { } refusal)
        {
            Assert.Skip(refusal);
        }

        var floatInputs = model.Inputs.Any(i => i.ElementType.IsFloatingPoint());
        foreach (var precision in new[] { Precision.Fp32, Precision.Fp16 })
        {
            using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = precision });
            var actual = cuda.Run(inputs);
            var half = precision == Precision.Fp16;

            // Quantized outputs may round the other way at a tie after float compute: one step of slack there.
            var quantized = expected.Any(t => t.ElementType is ElementType.UInt8 or ElementType.Int8);
            var difference = OperatorCaseModels.Difference(actual, expected, half ? 2e-2 : 1e-4, integerSlack: quantized ? 1 : 0, compareIntegers: !half || !floatInputs);
            Gpu.Report("operator-cases.md", $"| {name} | {precision} | {difference ?? "agrees"} |");
            Assert.True(difference is null, $"{name} ({precision}): {difference}");
        }
    }
}
