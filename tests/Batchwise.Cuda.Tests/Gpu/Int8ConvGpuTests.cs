using System.Globalization;
using Batchwise.Cuda.Kernels;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// The own int8 convolution kernel on the GPU (BATCHWISE_INT8_CONV=own): ResNet-50's QDQ model (the zoo's at 64x64,
/// `optimize --int8` with random calibration) at b=8, every convolution with input channels in 64s on the kernel and
/// each residual block's end in its epilogue, against cuDNN's routes (BATCHWISE_INT8_CONV=library) and against ONNX
/// Runtime's QDQ run (graph optimizations off). The fused block skips its last convolution's own rounding, so outputs may
/// differ by a step where that rounding mattered; they must agree to a cosine of 0.999.
/// </summary>
[Trait("Category", "GPU")]
[Collection(nameof(ProcessEnvironment))]
public sealed class Int8ConvGpuTests
{
    [Fact]
    public void Own_int8_kernels_match_the_library_routes_and_onnx_runtime()
    {
        Gpu.Require();
        var (model, expected, runs) = RunChoices("own", "library");
        var own = runs["own"].Layers;
        var kernels = own.Count(p => p.Value.Contains("own kernel", StringComparison.Ordinal));
        var fused = own.Count(p => p.Value.Contains("own kernel", StringComparison.Ordinal) && p.Value.Contains("residual Add", StringComparison.Ordinal));
        var ownCosine = Gpu.Compare(runs["own"].Outputs, expected, model.Outputs)[0].Cosine;
        var libraryCosine = Gpu.Compare(runs["library"].Outputs, expected, model.Outputs)[0].Cosine;
        var between = Gpu.Compare(runs["own"].Outputs, runs["library"].Outputs, model.Outputs)[0].Cosine;
        Gpu.Report("int8.md", string.Create(CultureInfo.InvariantCulture, $"| resnet50 64x64 QDQ b=8, BATCHWISE_INT8_CONV=own | {kernels} convolutions on the own kernel, {fused} block ends fused | cosine vs ORT {ownCosine:F6} (library {libraryCosine:F6}) | vs library {between:F6} |"));

        // 52 of the 53 convolutions have input channels in 64s (the stem's 3 do not); 16 blocks end in a residual Add.
        Assert.True(kernels == 52, $"{kernels} convolutions on the own kernel: {string.Join(" // ", own.Select(p => $"{p.Key}: {p.Value}"))}");
        Assert.Equal(16, fused);
        Assert.DoesNotContain(runs["library"].Layers.Values, how => how.Contains("own kernel", StringComparison.Ordinal));
        Assert.True(ownCosine >= 0.999, $"own kernels against ORT: cosine {ownCosine}");
        Assert.True(libraryCosine >= 0.999, $"library routes against ORT: cosine {libraryCosine}");
        Assert.True(between >= 0.999, $"own against library: cosine {between}");
    }

    /// <summary>
    /// ResNet-50's QDQ model (the zoo's at 64x64, `optimize --int8` with random calibration) at b=8 through ONNX Runtime
    /// (graph optimizations off) and through the cuda engine's int8 path under each BATCHWISE_INT8_CONV choice: the
    /// outputs and every layer's int8 decision.
    /// </summary>
    internal static (OnnxModel Model, IReadOnlyList<Tensor> Expected, Dictionary<string, (IReadOnlyList<Tensor> Outputs, IReadOnlyDictionary<string, string> Layers)> Runs) RunChoices(params string[] choices) =>
        RunChoicesOn("zoo:resnet50?size=64", choices);

    /// <summary><see cref="RunChoices"/> for the zoo model <paramref name="spec"/>.</summary>
    internal static (OnnxModel Model, IReadOnlyList<Tensor> Expected, Dictionary<string, (IReadOnlyList<Tensor> Outputs, IReadOnlyDictionary<string, string> Layers)> Runs) RunChoicesOn(string spec, params string[] choices)
    {
        var model = QuantizedModelGpuTests.Int8Resnet18(spec);
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 8, seed: 5)).ToList();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);

        var saved = Environment.GetEnvironmentVariable("BATCHWISE_INT8_CONV");
        var runs = new Dictionary<string, (IReadOnlyList<Tensor> Outputs, IReadOnlyDictionary<string, string> Layers)>(StringComparer.Ordinal);
        try
        {
            using var on = Int8Switch.Set(true, "on");
            foreach (var choice in choices)
            {
                Environment.SetEnvironmentVariable("BATCHWISE_INT8_CONV", choice);
                using var cuda = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
                runs[choice] = (cuda.Run(inputs), cuda.Int8Layers());
            }
        }
        finally
        {
            Environment.SetEnvironmentVariable("BATCHWISE_INT8_CONV", saved);
        }

        return (model, expected, runs);
    }

    /// <summary>
    /// Each tile of the own int8 kernel compiles for this device without local memory (a spill in the product loop costs
    /// more than the kernel gains): ResNet-50's 3x3 256 -> 256 at 14 x 14 (9 steps, 4 stages) and 1x1 64 -> 256 at 56 x 56
    /// with a fused residual (one step, 2 stages), b=256; registers reported.
    /// </summary>
    [Fact]
    public void Own_int8_kernels_compile_without_local_memory()
    {
        Gpu.Require();
        var lines = new List<string>();
        var spills = new List<string>();
        foreach (var (m, n) in KernelSource.Int8ConvTiles)
        {
            var conv3 = KernelSource.Int8Conv(256, [3, 3], [1, 1], 256, 256, [14, 14], [14, 14], [1, 1], m, n, 4, 3, new Int8ConvEpilogue(ElementType.UInt8, 0, true));
            var conv1 = KernelSource.Int8Conv(64, [1, 1], [1, 1], 256, 256, [56, 56], [56, 56], [0, 0], m, n, 4, 0, new Int8ConvEpilogue(ElementType.UInt8, 0, true, (0.7, 1.5, -20, 200)));
            foreach (var (name, (toolchain, registers, local)) in new[] { "3x3", "1x1 + residual" }.Zip(Gpu.KernelResources([conv3, conv1])))
            {
                var line = $"| {toolchain} | int8 conv {name}, {m}x{n} tiles | {registers} registers | {local} bytes local |";
                Console.WriteLine(line);
                lines.Add(line);
                if (local > 0)
                {
                    spills.Add(line);
                }
            }
        }

        Gpu.Report("int8.md", string.Join('\n', lines));
        Assert.True(spills.Count == 0, string.Join(" // ", spills));
    }
}
