using System.Globalization;
using Batchwise.Cuda.Planning;
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
        using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16, Tactics = timed ? TacticSelection.Timed : TacticSelection.Heuristic });
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

    public static TheoryData<string, string> GeluForms() => new()
    {
        { "exact", "vit_s_b64" }, { "exact-front-to-back", "vit_s_b64" }, { "exact-chunks2", "vit_s_b64" }, { "exact-chunks4", "vit_s_b64" },
        { "tanh", "vit_s_b64" }, { "chain", "vit_s_b64" }, { "own", "vit_s_b64" }, { "exact", "bert_b64" }, { "own", "bert_b64" },
    };

    /// <summary>An MLP block at b=64 (ViT-S/16's, 197 tokens of 384 -> 1536; BERT-base's, 128 tokens of 768 -> 3072), its inputs and ONNX Runtime's fp32 output on the CPU: computed once for the forms.</summary>
    private static readonly Dictionary<string, Lazy<(OnnxModel Model, List<Tensor> Inputs, IReadOnlyList<Tensor> Expected)>> Blocks = new()
    {
        ["vit_s_b64"] = new(() => Block(MatmulEpiloguePlanTests.VitMlp(64, 197, 384, 1536))),
        ["bert_b64"] = new(() => Block(MatmulEpiloguePlanTests.VitMlp(64, 128, 768, 3072))),
    };

    private static (OnnxModel Model, List<Tensor> Inputs, IReadOnlyList<Tensor> Expected) Block(OnnxModel model)
    {
        var inputs = MatmulEpiloguePlanTests.Inputs(model, 11);
        using var ort = new OrtEngine().Load(model, new EngineOptions());
        return (model, inputs, ort.Run(inputs));
    }

    /// <summary>The MLP branch alone, y - x (the residual dominates y: a wrong GELU would hide in it).</summary>
    private static Tensor Branch(Tensor y, Tensor x)
    {
        var (a, b) = (y.ToDoubles(), x.ToDoubles());
        return Tensor.From<float>(ElementType.Float, y.Shape, [.. a.Select((v, i) => (float)(v - b[i]))]);
    }

    /// <summary>
    /// ViT-S/16's MLP block at b=64 (M=12608: LayerNorm, fc1 + bias, erf GELU as torch exports it, fc2 + bias + residual)
    /// and BERT-base's (M=8192) in fp16 with each BATCHWISE_GELU choice: exact (the GELU in place behind fc1, its own row;
    /// and the same kernel walking front to back, to see what the back-to-front order gains in L2), tanh (cuBLASLt's GELU
    /// epilogue in fc1's row) and chain (the exported nodes' fused kernel inside fc2's row, as before); exact in 2 and 4
    /// row chunks (BATCHWISE_GELU_CHUNKS: each chunk's fc1 rows, then the pass over them, read from L2); own
    /// (BATCHWISE_GELU_PRODUCT: fc1, its bias and the GELU as the engine's warpgroup-MMA kernel, no pass). Each step's time
    /// (CUDA events, 50 runs), the block's (the steps between the input and output conversions), and the MLP branch
    /// (y - x) against ONNX Runtime fp32 on the CPU (max abs, cosine). Printed and written to BATCHWISE_REPORT_DIR/mlp.md;
    /// asserted: the form's plan shape and the agreement (cosine 0.9999; 0.999 for the tanh form), never a time.
    /// </summary>
    [Theory]
    [MemberData(nameof(GeluForms))]
    public void Vit_mlp_erf_gelu_forms_are_timed_and_agree_with_onnx_runtime(string form, string size)
    {
        Gpu.Require();
        var (model, inputs, expected) = Blocks[size].Value;
        var choice = form switch { "tanh" => GeluChoice.Tanh, "chain" => GeluChoice.Chain, "exact-front-to-back" => GeluChoice.ExactFrontToBack, _ => GeluChoice.Exact };
        using var cuda = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        cuda.Gelu = choice;
        cuda.GeluChunks = form switch { "exact-chunks2" => 2, "exact-chunks4" => 4, _ => 1 };
        cuda.GeluProductOwn = form == "own";
        using var run = cuda.Prepare(inputs);
        run.Run();
        var layers = Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(50);
        var (rows, width, hidden) = size == "bert_b64" ? (64L * 128, 768L, 3072L) : (64L * 197, 384L, 1536L);
        var block = 0.0;
        foreach (var l in layers)
        {
            var io = l.Layer.StartsWith("input", StringComparison.Ordinal) || l.Layer.StartsWith("output", StringComparison.Ordinal);
            block += io ? 0 : l.Milliseconds;
            // A row chunk's step does its share of the rows.
            var share = l.Layer.Contains("(rows ", StringComparison.Ordinal) ? 1.0 / cuda.GeluChunks : 1.0;
            var rate = l.Layer.Contains("GELU", StringComparison.Ordinal) && !l.Layer.Contains("own fp16 product", StringComparison.Ordinal)
                ? string.Create(CultureInfo.InvariantCulture, $"{share * 2.0 * rows * hidden * 2 / (l.Milliseconds * 1e-3) / 1e9:F0} GB/s")
                : l.Layer.StartsWith("MatMul", StringComparison.Ordinal)
                    ? string.Create(CultureInfo.InvariantCulture, $"{share * 2.0 * rows * width * hidden / (l.Milliseconds * 1e-3) / 1e12:F0} TFLOP/s")
                    : string.Empty;
            Gpu.Publish("mlp.md", string.Create(CultureInfo.InvariantCulture, $"| gelu {form} {size} | M={rows} N/K={width}/{hidden} | {l.Layer} | {l.Milliseconds:F4} ms | {rate} |"));
        }

        Gpu.Publish("mlp.md", string.Create(CultureInfo.InvariantCulture, $"| gelu {form} {size} | M={rows} | block (LayerNorm, fc1, GELU, fc2) | {block:F4} ms | |"));
        Assert.Equal(form.StartsWith("exact", StringComparison.Ordinal), layers.Any(l => l.Layer.EndsWith("+ GELU (erf, in place)", StringComparison.Ordinal)));
        Assert.Equal(cuda.GeluChunks, Math.Max(1, layers.Count(l => l.Layer.EndsWith("+ GELU (erf, in place)", StringComparison.Ordinal))));
        Assert.Equal(form == "own", layers.Any(l => l.Layer.EndsWith("(own fp16 product + bias + GELU)", StringComparison.Ordinal)));

        var actual = cuda.Run(inputs);
        var x = inputs[0];
        foreach (var (name, got, want) in new[] { ("y", actual[0], expected[0]), ("y - x", Branch(actual[0], x), Branch(expected[0], x)) })
        {
            var r = Assert.Single(Gpu.Compare([got], [want], [model.Outputs[0]]));
            var line = string.Create(CultureInfo.InvariantCulture, $"| gelu {form} {size} | {name} against ONNX Runtime fp32 | max abs {r.MaxAbs:E2} | cosine {r.Cosine:F7} |");
            Gpu.Publish("mlp.md", line);
            Assert.True(r.Cosine >= (form == "tanh" ? 0.999 : 0.9999), line);
        }
    }
}
