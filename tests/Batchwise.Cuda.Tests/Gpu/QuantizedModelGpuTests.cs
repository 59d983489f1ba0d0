using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// A QDQ model as `batchwise optimize --int8` makes it (the zoo's resnet18, random calibration) on the GPU against ONNX
/// Runtime: against the model's own ONNX semantics (ORT without graph optimizations: QuantizeLinear, DequantizeLinear and
/// float convolutions, as the cuda engine runs it) and against ORT's fused int8 kernels (QLinearConv).
/// </summary>
[Trait("Category", "GPU")]
[Collection(nameof(ProcessEnvironment))]
public sealed class QuantizedModelGpuTests
{
    /// <summary>The zoo's resnet18 (at <paramref name="spec"/>'s size) through the --int8 optimization pipeline.</summary>
    internal static OnnxModel Int8Resnet18(string spec = "zoo:resnet18") =>
        OptimizationPipeline.Run(ModelZoo.Build(spec), new OptimizeOptions { Int8 = true, Calibration = "random:2" }).Result;

    [Theory]
    [InlineData("disabled", 0.999)]
    [InlineData("all", 0.99)]
    public void Int8_qdq_resnet18_matches_onnx_runtime(string ortOptimization, double minCosine)
    {
        Gpu.Require();
        var model = Int8Resnet18();
        Assert.Contains(model.Graph.Node, n => n.OpType == "QuantizeLinear");
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 2)).ToList();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = ortOptimization });
        var expected = ort.Run(inputs);
        foreach (var precision in new[] { Precision.Fp32, Precision.Fp16 })
        {
            using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = precision });
            foreach (var r in Gpu.Compare(cuda.Run(inputs), expected, model.Outputs))
            {
                Gpu.Report("int8.md", string.Create(CultureInfo.InvariantCulture, $"| resnet18 int8 QDQ | ORT {ortOptimization} | {precision} | {r.Name} | {r.MaxAbs:E2} | {r.MaxRel:E2} | {r.Cosine:F6} |"));
                Assert.True(r.Cosine >= minCosine, $"{precision} against ORT ({ortOptimization}) on {r.Name}: cosine {r.Cosine}");
            }
        }
    }

    /// <summary>
    /// The zoo's MobileNetV2 through --int8 on the GPU in half precision, its depthwise convolutions reading the 8-bit
    /// activation through their DequantizeLinear and writing the QuantizeLinear after them themselves (the own depthwise
    /// kernel's fused chains), with the int8 route for the other convolutions off (float between the pairs) and on.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Int8_qdq_mobilenetv2_with_fused_depthwise_layers_matches_onnx_runtime(bool int8Route)
    {
        Gpu.Require();
        var model = OptimizationPipeline.Run(ModelZoo.Build("zoo:mobilenetv2"), new OptimizeOptions { Int8 = true, Calibration = "random:2" }).Result;
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 4)).ToList();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        using var route = Int8Switch.Set(int8Route);
        using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        foreach (var r in Gpu.Compare(cuda.Run(inputs), expected, model.Outputs))
        {
            Gpu.Report("int8.md", string.Create(CultureInfo.InvariantCulture, $"| mobilenetv2 int8 QDQ (int8 route {(int8Route ? "on" : "off")}) | ORT disabled | Fp16 | {r.Name} | {r.MaxAbs:E2} | {r.MaxRel:E2} | {r.Cosine:F6} |"));
            Assert.True(r.Cosine >= 0.99, $"int8 route {(int8Route ? "on" : "off")} against ORT on {r.Name}: cosine {r.Cosine}");
        }
    }
}
