using System.Globalization;
using Batchwise.Engines;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// BATCHWISE_INT8_BLOCK_END=cublaslt on the GPU: ResNet-50's QDQ model (the zoo's, 64x64, random calibration, with uint8
/// and with symmetric int8 activations) with its residual block ends as cuBLASLt int8 GEMMs (the residual read as C,
/// alpha per channel, the ReLU in the epilogue) against the default routes (the own pointwise kernel, cuDNN's graph) and
/// against ONNX Runtime's QDQ run (graph optimizations off). Like the other fused routes it skips the convolution
/// output's own rounding and saturation, so it may differ from both by a step; the outputs must agree to a cosine of 0.999.
/// </summary>
[Trait("Category", "GPU")]
[Collection(nameof(ProcessEnvironment))]
public sealed class Int8CublasLtBlockEndGpuTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Cublaslt_block_ends_match_the_default_routes_and_onnx_runtime(bool symmetric)
    {
        Gpu.Require();
        var model = OptimizationPipeline.Run(ModelZoo.Build("zoo:resnet50?size=64"), new OptimizeOptions { Int8 = true, Calibration = "random:2", Int8Symmetric = symmetric }).Result;
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 8, seed: 7)).ToList();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);

        const string Switch = "BATCHWISE_INT8_BLOCK_END";
        var saved = Environment.GetEnvironmentVariable(Switch);
        var runs = new Dictionary<string, (IReadOnlyList<Tensor> Outputs, IReadOnlyDictionary<string, string> Layers)>(StringComparer.Ordinal);
        try
        {
            using var on = Int8Switch.Set(true, "on");
            foreach (var mode in new[] { "own", "cublaslt" })
            {
                Environment.SetEnvironmentVariable(Switch, mode);
                using var cuda = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
                runs[mode] = (cuda.Run(inputs), cuda.Int8Layers());
            }
        }
        finally
        {
            Environment.SetEnvironmentVariable(Switch, saved);
        }

        var taken = runs["cublaslt"].Layers.Count(p => p.Value.Contains("cuBLASLt, residual Add", StringComparison.Ordinal));
        var own = Gpu.Compare(runs["own"].Outputs, expected, model.Outputs)[0].Cosine;
        var againstOrt = Gpu.Compare(runs["cublaslt"].Outputs, expected, model.Outputs)[0].Cosine;
        var againstOwn = Gpu.Compare(runs["cublaslt"].Outputs, runs["own"].Outputs, model.Outputs)[0].Cosine;
        Gpu.Report("int8.md", string.Create(CultureInfo.InvariantCulture, $"| resnet50 64x64 QDQ{(symmetric ? " symmetric" : string.Empty)} b=8, BATCHWISE_INT8_BLOCK_END=cublaslt | {taken} block ends on cuBLASLt | cosine vs ORT {againstOrt:F6} (default routes {own:F6}) | vs default routes {againstOwn:F6} |"));

        // Of ResNet-50's 16 block ends, the first (its projection shortcut inside the own kernel) and those whose next
        // reduction the own kernel chains stay there; the 28x28, 14x14 and 7x7 ends have neither.
        Assert.True(taken >= 12, $"{taken} block ends on cuBLASLt: {string.Join(" // ", runs["cublaslt"].Layers.Select(p => $"{p.Key}: {p.Value}"))}");
        Assert.DoesNotContain(runs["own"].Layers.Values, how => how.Contains("cuBLASLt, residual", StringComparison.Ordinal));
        Assert.True(own >= 0.999, $"default routes against ORT: cosine {own}");
        Assert.True(againstOrt >= 0.999, $"cuBLASLt block ends against ORT: cosine {againstOrt}");
        Assert.True(againstOwn >= 0.999, $"cuBLASLt block ends against the default routes: cosine {againstOwn}");
    }
}
