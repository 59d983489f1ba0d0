using Batchwise.Engines;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// Dynamic int8 exports (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul, `optimize --int8-dynamic`) on the GPU:
/// the products on cuBLASLt's int8 tensor cores with the run-time zero point restored, against ONNX Runtime running the
/// same model on the CPU.
/// </summary>
[Trait("Category", "GPU")]
public sealed class DynamicInt8GpuTests
{
    [Theory]
    [InlineData("zoo:mlp", 64, Precision.Fp32)]
    [InlineData("zoo:mlp", 512, Precision.Fp16)] // the hidden layer's 512 x 256 values: its range in many blocks
    public void Matmul_integer_runs_on_int8_tensor_cores_and_agrees_with_onnx_runtime(string spec, int batch, Precision precision)
    {
        Gpu.Require();
        var model = ModelZoo.Build(spec);
        new Int8DynamicQuantization { ReduceRange = false }.Apply(model);
        Assert.Contains(model.Graph.Node, n => n.OpType == "MatMulInteger");
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, batch, seed: 3)).ToList();
        using var cuda = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = precision });
        Gpu.AgreesWithOrt(model, inputs, cuda, "(int8 tensor cores", "int8.md", $"{spec} --int8-dynamic {precision.ToString().ToLowerInvariant()} b={batch}", precision == Precision.Fp16 ? 0.999 : 0.9999);
    }
}
