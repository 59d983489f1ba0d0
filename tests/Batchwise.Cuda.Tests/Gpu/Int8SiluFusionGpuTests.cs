using System.Globalization;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// BATCHWISE_INT8_SILU on the GPU: YOLOv8n's QDQ model (the zoo's at 160x160, `optimize --int8` with random
/// calibration), whose SiLUs sit between each convolution's QuantizeLinear and the next, on the int8 path with each
/// SiLU in its convolution's step (cuDNN's graph with a swish by default; the own kernels' epilogue with
/// BATCHWISE_INT8_CONV=own) against the SiLUs as kernels of their own and against ONNX Runtime's QDQ run (graph
/// optimizations off). The fused graph skips the convolution output's own rounding (a step at most, per layer); the own
/// epilogue keeps it.
/// </summary>
[Trait("Category", "GPU")]
[Collection(nameof(ProcessEnvironment))]
public sealed class Int8SiluFusionGpuTests
{
    [Fact]
    public void Fused_silus_match_the_unfused_route_and_onnx_runtime()
    {
        Gpu.Require();
        var model = QuantizedModelGpuTests.Int8Resnet18("zoo:yolov8n?size=160");
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 8, seed: 5)).ToList();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);

        var saved = (Environment.GetEnvironmentVariable(Int8Layers.SiluSwitch), Environment.GetEnvironmentVariable(Int8Layers.GraphConfigsSwitch), Environment.GetEnvironmentVariable("BATCHWISE_INT8_CONV"));
        var runs = new Dictionary<string, (IReadOnlyList<Tensor> Outputs, IReadOnlyDictionary<string, string> Layers)>(StringComparer.Ordinal);
        try
        {
            using var on = Int8Switch.Set(true, "on");
            Environment.SetEnvironmentVariable(Int8Layers.GraphConfigsSwitch, "1"); // the first configuration that runs: a quick plan
            foreach (var (name, silu, conv) in new[] { ("off", "off", "auto"), ("fused", "fused", "auto"), ("own", "fused", "own") })
            {
                Environment.SetEnvironmentVariable(Int8Layers.SiluSwitch, silu);
                Environment.SetEnvironmentVariable("BATCHWISE_INT8_CONV", conv);
                using var cuda = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
                runs[name] = (cuda.Run(inputs), cuda.Int8Layers());
            }
        }
        finally
        {
            Environment.SetEnvironmentVariable(Int8Layers.SiluSwitch, saved.Item1);
            Environment.SetEnvironmentVariable(Int8Layers.GraphConfigsSwitch, saved.Item2);
            Environment.SetEnvironmentVariable("BATCHWISE_INT8_CONV", saved.Item3);
        }

        int Fused(string run) => runs[run].Layers.Values.Count(how => how.Contains("SiLU fused", StringComparison.Ordinal) || how.Contains("quantized parts fused", StringComparison.Ordinal));
        var refused = runs["fused"].Layers.Where(p => p.Value.Contains("SiLU not fused", StringComparison.Ordinal)).Select(p => $"{p.Key}: {p.Value}").ToList();
        double Cosine(string run, IReadOnlyList<Tensor> against) => Gpu.Compare(runs[run].Outputs, against, model.Outputs)[0].Cosine;
        var (unfused, fused, own, fusedUnfused) = (Cosine("off", expected), Cosine("fused", expected), Cosine("own", expected), Cosine("fused", runs["off"].Outputs));
        Gpu.Report("int8.md", string.Create(CultureInfo.InvariantCulture, $"| yolov8n 160x160 QDQ b=8, {Int8Layers.SiluSwitch}=fused | {Fused("fused")} SiLUs in cuDNN graphs, {refused.Count} refused; {Fused("own")} with BATCHWISE_INT8_CONV=own (own kernels and graphs) | cosine vs ORT: fused {fused:F6}, own {own:F6}, unfused {unfused:F6} | fused vs unfused {fusedUnfused:F6} |"));

        // 41 of the model's SiLUs end in a QuantizeLinear of their own, or in a Split whose parts each have one (planned
        // without a GPU: 33 and 8); the rest feed a bottleneck's Add first and stay kernels of their own.
        Assert.True(refused.Count == 0, $"cuDNN refused {refused.Count} SiLU graphs: {string.Join(" // ", refused.Take(3))}");
        Assert.True(Fused("fused") >= 41, $"only {Fused("fused")} SiLUs fused into cuDNN graphs");
        var ownEpilogues = runs["own"].Layers.Values.Count(how => how.Contains("own kernel", StringComparison.Ordinal) && how.Contains("SiLU fused", StringComparison.Ordinal));
        Assert.True(ownEpilogues >= 1, "no SiLU joined an own kernel's epilogue");
        Assert.Equal(0, Fused("off"));
        Assert.True(unfused >= 0.999, $"unfused against ORT: cosine {unfused}");
        Assert.True(own >= 0.999, $"own epilogue against ORT: cosine {own}");
        Assert.True(fused >= 0.999, $"fused graphs against ORT: cosine {fused}");
        Assert.True(fusedUnfused >= 0.999, $"fused against unfused: cosine {fusedUnfused}");
    }
}
