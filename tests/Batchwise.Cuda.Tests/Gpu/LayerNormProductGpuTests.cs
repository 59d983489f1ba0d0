using System.Globalization;
using Batchwise.Cuda.Tests.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// The own fp16 product with the residual add and the LayerNorm in its epilogue (BATCHWISE_LAYERNORM_PRODUCT=own, an
/// experiment) at BERT's b=64 shapes (8,192 rows, N = 768; K = 768 as the attention's output projection, 3,072 as the
/// MLP's second product), in turn with the library's plan (cuBLASLt's product with the bias and residual, then the
/// LayerNorm kernel): each step's time (CUDA events, 50 runs) and the output against ONNX Runtime fp32. Printed and written
/// to BATCHWISE_REPORT_DIR/layernorm-product.md; asserted: the plan's shape and the agreement (cosine 0.9999), never a time.
/// </summary>
[Trait("Category", "GPU")]
public sealed class LayerNormProductGpuTests
{
    private static readonly Dictionary<long, Lazy<(OnnxModel Model, List<Tensor> Inputs, IReadOnlyList<Tensor> Expected)>> Blocks = new()
    {
        [768] = new(() => Block(768)),
        [3072] = new(() => Block(3072)),
    };

    private static (OnnxModel, List<Tensor>, IReadOnlyList<Tensor>) Block(long width)
    {
        var model = HalfGemmLayerNormOnCpuTests.SublayerEnd(64 * 128, width, 768);
        var inputs = MatmulEpiloguePlanTests.Inputs(model, 11);
        return (model, inputs, DataDependentPlanTests.OnOnnxRuntime(model, [.. inputs]));
    }

    public static TheoryData<string, long> Forms() => new() { { "library", 768 }, { "own", 768 }, { "library", 3072 }, { "own", 3072 } };

    [Theory]
    [MemberData(nameof(Forms))]
    public void Product_residual_and_layernorm_forms_are_timed_and_agree_with_onnx_runtime(string form, long width)
    {
        Gpu.Require();
        var (model, inputs, expected) = Blocks[width].Value;
        using var cuda = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        cuda.LayerNormProductOwn = form == "own";
        using var run = cuda.Prepare(inputs);
        run.Run();
        var layers = Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(50);
        var block = 0.0;
        foreach (var l in layers)
        {
            var io = l.Layer.StartsWith("input", StringComparison.Ordinal) || l.Layer.StartsWith("output", StringComparison.Ordinal);
            block += io ? 0 : l.Milliseconds;
            Gpu.Publish("layernorm-product.md", string.Create(CultureInfo.InvariantCulture, $"| {form} | M=8192 K={width} N=768 | {l.Layer} | {l.Milliseconds:F4} ms |"));
        }

        Gpu.Publish("layernorm-product.md", string.Create(CultureInfo.InvariantCulture, $"| {form} | M=8192 K={width} N=768 | product + residual + LayerNorm (+ Relu) | {block:F4} ms |"));
        Assert.Equal(form == "own", layers.Any(l => l.Layer.EndsWith("(own fp16 product + bias + residual + LayerNorm)", StringComparison.Ordinal)));

        var r = Assert.Single(Gpu.Compare(cuda.Run(inputs), expected, model.Outputs));
        var line = string.Create(CultureInfo.InvariantCulture, $"| {form} | M=8192 K={width} N=768 | against ONNX Runtime fp32 | max abs {r.MaxAbs:E2} | cosine {r.Cosine:F7} |");
        Gpu.Publish("layernorm-product.md", line);
        Assert.True(r.Cosine >= 0.9999, line);
    }
}
