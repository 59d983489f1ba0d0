using System.Globalization;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// BATCHWISE_INT8_RESIDUAL=fused on the GPU: ResNet-50's QDQ model (the zoo's, 64x64, `optimize --int8` with random
/// calibration) on the int8 graph route with each residual block's Add, ReLU and QuantizeLinear in its last
/// convolution's cuDNN graph, against the same route unfused and against ONNX Runtime's QDQ run (graph optimizations off:
/// the model's own semantics). The fused graph skips the convolution output's own rounding, so it may differ from both by
/// a step where that rounding mattered; the outputs must still agree to a cosine of 0.999.
/// </summary>
[Trait("Category", "GPU")]
[Collection(nameof(ProcessEnvironment))]
public sealed class Int8ResidualFusionGpuTests
{
    [Fact]
    public void Fused_residual_blocks_match_the_unfused_route_and_onnx_runtime()
    {
        Gpu.Require();
        var model = QuantizedModelGpuTests.Int8Resnet18("zoo:resnet50?size=64");
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 8, seed: 5)).ToList();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);

        var saved = (Environment.GetEnvironmentVariable(Int8Layers.ResidualSwitch), Environment.GetEnvironmentVariable(Int8Layers.GraphConfigsSwitch));
        var runs = new Dictionary<string, (IReadOnlyList<Tensor> Outputs, IReadOnlyDictionary<string, string> Layers)>(StringComparer.Ordinal);
        try
        {
            using var on = Int8Switch.Set(true, "on");
            Environment.SetEnvironmentVariable(Int8Layers.GraphConfigsSwitch, "1"); // the first configuration that runs: a quick plan
            foreach (var mode in new[] { "off", "fused" })
            {
                Environment.SetEnvironmentVariable(Int8Layers.ResidualSwitch, mode);
                using var cuda = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
                var outputs = cuda.Run(inputs);
                runs[mode] = (outputs, cuda.Int8Layers());
            }
        }
        finally
        {
            Environment.SetEnvironmentVariable(Int8Layers.ResidualSwitch, saved.Item1);
            Environment.SetEnvironmentVariable(Int8Layers.GraphConfigsSwitch, saved.Item2);
        }

        var fusedLayers = runs["fused"].Layers;
        var fused = fusedLayers.Count(p => p.Value.Contains("residual Add", StringComparison.Ordinal));
        var notFused = fusedLayers.Where(p => p.Value.Contains("residual not fused", StringComparison.Ordinal)).Select(p => $"{p.Key}: {p.Value}").ToList();
        var unfused = Gpu.Compare(runs["off"].Outputs, expected, model.Outputs)[0].Cosine;
        var againstOrt = Gpu.Compare(runs["fused"].Outputs, expected, model.Outputs)[0].Cosine;
        var againstUnfused = Gpu.Compare(runs["fused"].Outputs, runs["off"].Outputs, model.Outputs)[0].Cosine;
        Gpu.Report("int8.md", string.Create(CultureInfo.InvariantCulture, $"| resnet50 64x64 QDQ b=8, {Int8Layers.ResidualSwitch}=fused | {fused} of 16 blocks fused | cosine vs ORT {againstOrt:F6} (unfused {unfused:F6}) | vs unfused {againstUnfused:F6} |"));
        Assert.True(fused == 16, $"{fused} of 16 residual blocks fused; refused: {string.Join(" // ", notFused)}");
        Assert.DoesNotContain(runs["off"].Layers.Values, how => how.Contains("residual", StringComparison.Ordinal));
        Assert.True(unfused >= 0.999, $"unfused against ORT: cosine {unfused}");
        Assert.True(againstOrt >= 0.999, $"fused against ORT: cosine {againstOrt}");
        Assert.True(againstUnfused >= 0.999, $"fused against unfused: cosine {againstUnfused}");
    }
}
