using System.Globalization;
using Batchwise.Cuda.Tests.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// Transformer MLP blocks (LayerNorm, fc1 + bias, GELU, fc2 + bias + residual) with their bias and residual Adds in
/// cuBLASLt's epilogues (<see cref="MatmulEpiloguePlanTests"/>): fp16 against ONNX Runtime fp32, and each layer's time at
/// ViT-S/16 b=64 and GPT-2 b=64 x 128 tokens.
/// </summary>
[Trait("Category", "GPU")]
public sealed class MlpGpuTests
{
    public static TheoryData<string> Cases() => new(["vit_s_b2", "gpt2_b2", "vit_s_b64_fc2"]);

    private static OnnxModel Case(string name) => name switch
    {
        "vit_s_b2" => MatmulEpiloguePlanTests.VitMlp(2, 197, 384, 1536),
        "gpt2_b2" => MatmulEpiloguePlanTests.Gpt2Mlp(2, 128, 768, 3072),
        "vit_s_b64" => MatmulEpiloguePlanTests.VitMlp(64, 197, 384, 1536),
        "gpt2_b64" => MatmulEpiloguePlanTests.Gpt2Mlp(64, 128, 768, 3072),
        "vit_s_b64_fc2" => MatmulEpiloguePlanTests.Projection(64 * 197, 1536, 384),
        "hf_vit_b_b64_proj" => MatmulEpiloguePlanTests.Projection(64 * 197, 768, 768),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Mlp_with_epilogues_in_fp16_matches_onnx_runtime_fp32(string name)
    {
        Gpu.Require();
        var model = Case(name);
        var inputs = MatmulEpiloguePlanTests.Inputs(model, 11);
        foreach (var r in Gpu.CompareWithOrt(model, inputs, new EngineOptions { Precision = Precision.Fp16 }))
        {
            Gpu.Report("mlp.md", string.Create(CultureInfo.InvariantCulture, $"| {name} | {r.Name} | {r.MaxAbs:E2} | {r.MaxRel:E2} | {r.Cosine:F7} |"));
            Assert.True(r.Cosine >= 0.9999, $"{name}/{r.Name}: cosine {r.Cosine}, max abs error {r.MaxAbs}");
        }
    }

    public static TheoryData<string, bool> Throughputs() => new()
    {
        { "vit_s_b64", false }, { "gpt2_b64", false }, { "vit_s_b64_fc2", false }, { "hf_vit_b_b64_proj", false },
        { "vit_s_b64", true }, { "gpt2_b64", true }, { "vit_s_b64_fc2", true }, { "hf_vit_b_b64_proj", true },
    };

    /// <summary>
    /// Each layer's time (CUDA events around each step, 50 runs) of the MLP block at model size: the products with their
    /// TFLOP/s (2 M N K; the product that reads the GELU chain includes the chain's kernel), the LayerNorm with its GB/s
    /// (fp16 rows read and written once). Printed and written to BATCHWISE_REPORT_DIR/mlp.md; not asserted beyond
    /// every layer taking time. The projections alone (ViT-S's fc2: M 12608, K 1536, N 384; HF ViT-B's o_proj: K = N =
    /// 768) time the product with its epilogue and nothing else; <paramref name="timed"/> picks cuBLASLt's algorithm by
    /// timing its top eight candidates instead of taking the heuristic's first.
    /// </summary>
    [Theory]
    [MemberData(nameof(Throughputs))]
    public void Mlp_layer_times_are_reported(string name, bool timed)
    {
        Gpu.Require();
        var model = Case(name);
        var (rows, width, hidden) = name switch
        {
            "vit_s_b64" or "vit_s_b64_fc2" => (64L * 197, 384L, 1536L),
            "hf_vit_b_b64_proj" => (64L * 197, 768L, 768L),
            _ => (64L * 128, 768L, 3072L),
        };
        var inputs = MatmulEpiloguePlanTests.Inputs(model, 11);
        using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16, TimedTactics = timed });
        using var run = cuda.Prepare(inputs);
        run.Run();
        var layers = Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(50);
        var flops = 2.0 * rows * width * hidden;
        foreach (var l in layers)
        {
            var rate = l.Layer.StartsWith("MatMul", StringComparison.Ordinal) || l.Layer.StartsWith("Gemm", StringComparison.Ordinal)
                ? string.Create(CultureInfo.InvariantCulture, $"{flops / (l.Milliseconds * 1e-3) / 1e12:F0} TFLOP/s")
                : l.Layer.StartsWith("LayerNormalization", StringComparison.Ordinal)
                    ? string.Create(CultureInfo.InvariantCulture, $"{2.0 * rows * width * 2 / (l.Milliseconds * 1e-3) / 1e9:F0} GB/s")
                    : string.Empty;
            var line = string.Create(CultureInfo.InvariantCulture, $"| mlp layers {name} | {(timed ? "timed" : "heuristic")} | M={rows} N/K={width}/{hidden} | {l.Layer} | {l.Milliseconds:F4} ms | {rate} |");
            Gpu.Publish("mlp.md", line);
            Assert.True(l.Milliseconds > 0, line);
        }
    }
}
