using System.Globalization;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// The own split-K convolution kernel on the GPU at ResNet-50's 3x3 layer sizes at batch 1 (and layer4 at batch 8):
/// against ONNX Runtime in float32, and its time against cuDNN's for the same layer, both
/// reported to splitk-conv.md under BATCHWISE_REPORT_DIR.
/// </summary>
[Trait("Category", "GPU")]
public sealed class SplitKConvGpuTests
{
    private static readonly Dictionary<string, GroupedConvCase> ResNet50 = new(StringComparer.Ordinal)
    {
        ["layer1-3x3-b1"] = new(1, 64, 56, 56, 1),
        ["layer2-3x3-s2-b1"] = new(1, 128, 56, 56, 1, Stride: 2),
        ["layer2-3x3-b1"] = new(1, 128, 28, 28, 1),
        ["layer3-3x3-s2-b1"] = new(1, 256, 28, 28, 1, Stride: 2),
        ["layer3-3x3-b1"] = new(1, 256, 14, 14, 1),
        ["layer4-3x3-s2-b1"] = new(1, 512, 14, 14, 1, Stride: 2),
        ["layer4-3x3-b1"] = new(1, 512, 7, 7, 1),
        ["layer4-3x3-b8"] = new(8, 512, 7, 7, 1),
    };

    public static TheoryData<string> Layers => [.. ResNet50.Keys];

    private static CudaSession Session(OnnxModel model, SplitKConvChoice choice)
    {
        var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        session.SplitKConvolutions = choice;

        // Every layer here on the kernel, from 2 splits (the default takes 8 only: layers 3 and 4 at b=1), to time it
        // against cuDNN where the default leaves it; BATCHWISE_SPLITK_MAX_SPLITS and _STAGES still apply.
        session.SplitKConvShape = GraphCompiler.SplitKShapeFromEnvironment with { FewestSplits = 2 };
        return session;
    }

    /// <summary>Each layer with the own kernel (auto, from 2 splits), against ONNX Runtime fp32: cosine at least 0.9999.</summary>
    [Theory]
    [MemberData(nameof(Layers))]
    public void Split_k_kernel_matches_onnx_runtime_at_resnet50_sizes(string name)
    {
        Gpu.Require();
        var c = ResNet50[name];
        var model = c.Model();
        var inputs = c.Inputs(3);
        using var cuda = Session(model, SplitKConvChoice.Auto);
        Gpu.AgreesWithOrt(model, inputs, cuda, "own split-K kernel", "splitk-conv.md", name);
    }

    /// <summary>
    /// Each layer: the own kernel's time and cuDNN's (CUDA events around each step, 100 runs),
    /// their TFLOP/s and the ratio; the two outputs agree. Printed and reported, not asserted beyond both running and
    /// agreeing (bench/ measures the model).
    /// </summary>
    [Theory]
    [MemberData(nameof(Layers))]
    public void Split_k_kernel_time_against_cudnn_is_reported(string name)
    {
        Gpu.Require();
        var c = ResNet50[name];
        var model = c.Model();
        var inputs = c.Inputs(3);
        (double Ms, string Steps, IReadOnlyList<Tensor> Outputs) Time(SplitKConvChoice choice)
        {
            using var cuda = Session(model, choice);
            using var run = cuda.Prepare(inputs);
            run.Run();
            var convs = Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(100).Where(l => l.Layer.StartsWith("Conv", StringComparison.Ordinal)).ToList();
            return (convs.Sum(l => l.Milliseconds), string.Join(" + ", convs.Select(l => l.Milliseconds.ToString("F4", CultureInfo.InvariantCulture))), cuda.Run(inputs));
        }

        var own = Time(SplitKConvChoice.Auto);
        var cudnn = Time(SplitKConvChoice.Off);
        var cosine = Gpu.Compare(own.Outputs, cudnn.Outputs, model.Outputs).Min(r => r.Cosine);
        var line = string.Create(CultureInfo.InvariantCulture,
            $"| {name} | x [{c.Batch},{c.Channels},{c.Height},{c.Width}] k={c.K} s={c.Stride} | own {own.Ms:F4} ms ({own.Steps}; {c.Flops / (own.Ms * 1e9):F1} TFLOP/s) | cuDNN {cudnn.Ms:F4} ms ({c.Flops / (cudnn.Ms * 1e9):F1} TFLOP/s) | cuDNN/own {cudnn.Ms / own.Ms:F2}x | cosine {cosine:F6} |");
        Gpu.Publish("splitk-conv.md", line);
        Assert.True(own.Ms > 0 && cudnn.Ms > 0, line);
        Assert.True(cosine >= 0.999, line);
    }

    /// <summary>
    /// ResNet-50 at batch 1 with every convolution on the split-K kernel (BATCHWISE_SPLITK_CONV=every) and its four
    /// projection shortcuts computed in their block ends (BATCHWISE_SPLITK_PROJECTION=on): four kernels fewer, the
    /// outputs against ONNX Runtime and against the shortcuts' own kernels, the time of 200 graph replays of each
    /// reported to splitk-conv.md.
    /// </summary>
    [Fact]
    public void Projection_shortcuts_in_their_block_ends_agree_with_onnx_runtime_and_their_time_is_reported()
    {
        Gpu.Require();
        var model = Batchwise.Zoo.ModelZoo.Build("zoo:resnet50");
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 1, seed: 3)).ToList();
        (IReadOnlyList<Tensor> Outputs, int Steps, double Ms) Run(bool projections)
        {
            using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16, Tactics = TacticSelection.Heuristic });
            session.SplitKConvolutions = SplitKConvChoice.Every;
            session.SplitKProjections = projections;
            var outputs = session.Run(inputs);
            using var run = session.Prepare(inputs);
            for (var i = 0; i < 20; i++)
            {
                run.Run();
            }

            var clock = System.Diagnostics.Stopwatch.StartNew();
            for (var i = 0; i < 200; i++)
            {
                run.Run();
            }

            return (outputs, ((IPlanBuilds)session).Builds.Max(b => b.Steps), clock.Elapsed.TotalMilliseconds / 200);
        }

        var apart = Run(false);
        var inside = Run(true);
        using var ort = new OrtEngine().Load(model, new EngineOptions());
        var cosine = Gpu.Compare(inside.Outputs, ort.Run(inputs), model.Outputs).Min(r => r.Cosine);
        var between = Gpu.Compare(inside.Outputs, apart.Outputs, model.Outputs).Min(r => r.Cosine);
        var line = string.Create(CultureInfo.InvariantCulture, $"| resnet50 b=1, every convolution split-K | shortcuts in their block ends: {inside.Steps} steps, {inside.Ms:F4} ms a run | apart: {apart.Steps} steps, {apart.Ms:F4} ms ({apart.Ms / inside.Ms:F3}x) | cosine vs ORT {cosine:F6}, vs apart {between:F6} |");
        Gpu.Publish("splitk-conv.md", line);
        Assert.True(apart.Steps - inside.Steps == 4, line);
        Assert.True(cosine >= 0.999, line);
        Assert.True(between >= 0.9999, line);
    }

    /// <summary>Registers per thread and local memory of the kernel for each epilogue, as this device's NVRTC compiles it: reported, none may spill.</summary>
    [Fact]
    public void Split_k_kernel_registers_are_reported()
    {
        Gpu.Require();
        var kernels = new (string Name, KernelCode Code)[]
        {
            ("512 3x3 s1 bias relu", KernelSource.SplitKConv(512, [3, 3], [1, 1], [1, 1], new(ElementType.Float16, true, false), 1, 512, [7, 7], [7, 7], [1, 1], 8, 18, 8)),
            ("256 3x3 s2 bias residual relu", KernelSource.SplitKConv(256, [3, 3], [2, 2], [1, 1], new(ElementType.Float16, true, true), 1, 256, [28, 28], [14, 14], [1, 1], 8, 9, 10)),
            ("64 3x3 s1 no epilogue", KernelSource.SplitKConv(64, [3, 3], [1, 1], [1, 1], new(null, false, false), 1, 64, [56, 56], [56, 56], [1, 1], 2, 9, 10)),
        };
        foreach (var ((name, _), (toolchain, registers, local)) in kernels.Zip(Gpu.KernelResources(kernels.Select(k => k.Code))))
        {
            var line = string.Create(CultureInfo.InvariantCulture, $"| split-K conv kernel {name} | {toolchain} | {registers} registers | {local} bytes local memory |");
            Gpu.Publish("splitk-conv.md", line);
            Assert.True(local == 0, line);
        }
    }
}
