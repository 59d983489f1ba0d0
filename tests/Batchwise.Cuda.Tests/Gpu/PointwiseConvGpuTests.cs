using System.Globalization;
using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// ResNet-50's pointwise convolutions on the GPU through cuBLASLt (one GEMM, bias + residual + ReLU in its epilogue)
/// and through cuDNN's fused call: each layer's time both ways at batches 1, 64 and 256 (CUDA events around the step,
/// 50 runs), reported to pointwise-conv.md under BATCHWISE_REPORT_DIR, and the two routes' outputs agree.
/// </summary>
[Trait("Category", "GPU")]
public sealed class PointwiseConvGpuTests
{
    public static TheoryData<string> Layers => [.. PointwiseConvModels.ResNet50(1).Keys];

    /// <summary>An fp16 session of <paramref name="model"/>, configured before its first plan.</summary>
    internal static CudaSession Fp16Session(OnnxModel model, Action<CudaSession> configure)
    {
        var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        configure(session);
        return session;
    }

    private static CudaSession Session(OnnxModel model, PointwiseConvChoice choice) => Fp16Session(model, s => s.PointwiseConvolutions = choice);

    [Fact]
    public void Pointwise_conv_as_a_gemm_matches_onnx_runtime()
    {
        Gpu.Require();
        var c = PointwiseConvModels.ResNet50(2)["56-64to256-residual"];
        var model = c.Model();
        var inputs = c.Inputs(3);
        using var ort = new OrtEngine().Load(model, new EngineOptions());
        using var cuda = Session(model, PointwiseConvChoice.Gemm);
        foreach (var r in Gpu.Compare(cuda.Run(inputs), ort.Run(inputs), model.Outputs))
        {
            Gpu.Report("pointwise-conv.md", string.Create(CultureInfo.InvariantCulture, $"| agreement 56-64to256-residual b=2 | {r.Name} | max abs {r.MaxAbs:E2} | cosine {r.Cosine:F7} |"));
            Assert.True(r.Cosine >= 0.9999, $"{r.Name}: cosine {r.Cosine}, max abs error {r.MaxAbs}");
        }
    }

    [Theory]
    [MemberData(nameof(Layers))]
    public void Pointwise_conv_time_through_cublaslt_and_cudnn_is_reported(string name)
    {
        Gpu.Require();
        foreach (var batch in new long[] { 1, 64, 256 })
        {
            var c = PointwiseConvModels.ResNet50(batch)[name];
            var model = c.Model();
            var inputs = c.Inputs(3);
            (double Ms, IReadOnlyList<Tensor> Outputs) Time(PointwiseConvChoice choice)
            {
                using var cuda = Session(model, choice);
                using var run = cuda.Prepare(inputs);
                run.Run();
                var layers = Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(50);
                var ms = Assert.Single(layers, l => l.Layer.StartsWith("Conv", StringComparison.Ordinal)).Milliseconds;
                return (ms, batch <= 64 ? cuda.Run(inputs) : []);
            }

            var gemm = Time(PointwiseConvChoice.Gemm);
            var cudnn = Time(PointwiseConvChoice.Cudnn);
            var cosine = batch <= 64 ? Gpu.Compare(gemm.Outputs, cudnn.Outputs, model.Outputs).Min(r => r.Cosine) : double.NaN;
            var line = string.Create(CultureInfo.InvariantCulture,
                $"| {name} | b={batch} | cuBLASLt {gemm.Ms:F4} ms ({c.Bytes / (gemm.Ms * 1e6):F0} GB/s, {c.Flops / (gemm.Ms * 1e9):F1} TFLOP/s) | cuDNN {cudnn.Ms:F4} ms ({c.Bytes / (cudnn.Ms * 1e6):F0} GB/s) | cuDNN/cuBLASLt {cudnn.Ms / gemm.Ms:F2}x | cosine {cosine:F6} |");
            Gpu.Publish("pointwise-conv.md", line);
            Assert.True(gemm.Ms > 0 && cudnn.Ms > 0, line);
            Assert.True(double.IsNaN(cosine) || cosine >= 0.999, line);
        }
    }
}

/// <summary>
/// ResNet-50's stem (7x7 stride 2 over 3 channels, BatchNormalization and ReLU folded in) as patches times the filter in
/// one cuBLASLt GEMM (BATCHWISE_STEM_CONV=gemm) or through the own tensor-core kernel (own) against cuDNN over the input
/// padded to 8 channels: agreement at b=2 and each route's time against cuDNN's at batches 1, 64 and 256, and zoo:resnet50
/// with the own stem, reported to stem-conv.md.
/// </summary>
[Trait("Category", "GPU")]
public sealed class StemConvGpuTests
{
    private static readonly GroupedConvCase Stem = new(1, 3, 224, 224, 1, OutChannels: 64, Stride: 2, Pads: [3, 3, 3, 3], Kernel: 7, After: "bn-relu");

    /// <summary>A session with the stem convolution as asked, the fused stem (Conv + ReLU + MaxPool as one kernel, which takes ResNet's stem first) off.</summary>
    private static CudaSession Session(OnnxModel model, StemConvChoice choice) => PointwiseConvGpuTests.Fp16Session(model, s =>
    {
        s.StemConvolutions = choice;
        s.StemPools = StemPoolChoice.Off;
    });

    /// <summary>The stem's time in a profile: every step but the input's and the output's conversions.</summary>
    private static double StemMs(OnnxModel model, List<Tensor> inputs, StemConvChoice choice)
    {
        using var cuda = Session(model, choice);
        using var run = cuda.Prepare(inputs);
        run.Run();
        var layers = Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(50);
        Assert.Equal(choice == StemConvChoice.Own, layers.Any(l => l.Layer.Contains("own conv kernel", StringComparison.Ordinal)));
        return layers.Where(l => !l.Layer.StartsWith("input", StringComparison.Ordinal) && !l.Layer.StartsWith("output", StringComparison.Ordinal)).Sum(l => l.Milliseconds);
    }

    /// <summary>
    /// A route other than cuDNN's against ONNX Runtime at b=2 (cosine at least 0.9999), and its time against cuDNN's over
    /// the input padded to 8 channels at batches 1, 64 and 256, reported to stem-conv.md. gemm: patches + cuBLASLt (1.97
    /// ms against cuDNN's 1.23 ms at b=256 on the H200). own: the own tensor-core kernel (the filter in dynamic shared
    /// memory, BatchNormalization's bias and the ReLU fused); the stem's 60 GFLOP at b=256 in ~0.3-0.5 ms is the aim.
    /// </summary>
    [Theory]
    [InlineData("gemm")]
    [InlineData("own")]
    public void Stem_route_matches_onnx_runtime_and_its_time_against_cudnn_is_reported(string setting)
    {
        Gpu.Require();
        var choice = setting == "own" ? StemConvChoice.Own : StemConvChoice.Gemm;
        var route = choice == StemConvChoice.Own ? "own kernel" : "patches + cuBLASLt";
        var small = Stem with { Batch = 2 };
        var model = small.Model();
        var inputs = small.Inputs(4);
        using var ort = new OrtEngine().Load(model, new EngineOptions());
        using (var cuda = Session(model, choice))
        {
            foreach (var r in Gpu.Compare(cuda.Run(inputs), ort.Run(inputs), model.Outputs))
            {
                Gpu.Report("stem-conv.md", string.Create(CultureInfo.InvariantCulture, $"| agreement stem {route} b=2 | {r.Name} | max abs {r.MaxAbs:E2} | cosine {r.Cosine:F7} |"));
                Assert.True(r.Cosine >= 0.9999, $"{r.Name}: cosine {r.Cosine}, max abs error {r.MaxAbs}");
            }
        }

        foreach (var batch in new long[] { 1, 64, 256 })
        {
            var c = Stem with { Batch = batch };
            var m = c.Model();
            var x = c.Inputs(4);
            var (routeMs, cudnnMs) = (StemMs(m, x, choice), StemMs(m, x, StemConvChoice.Cudnn));
            var line = string.Create(CultureInfo.InvariantCulture,
                $"| stem 7x7 s2 3->64 | b={batch} | {route} {routeMs:F4} ms ({c.Flops / (routeMs * 1e9):F1} TFLOP/s useful) | cuDNN (channels padded to 8) {cudnnMs:F4} ms | cuDNN/{setting} {cudnnMs / routeMs:F2}x |");
            Gpu.Publish("stem-conv.md", line);
            Assert.True(routeMs > 0 && cudnnMs > 0, line);
        }
    }

    /// <summary>
    /// zoo:resnet50 in fp16 with its stem through the own kernel agrees with the cuDNN route at b=8 (cosine of the logits
    /// at least 0.9999), and the stem's layer time both ways at b=256 is reported to stem-conv.md beside the whole plan's.
    /// </summary>
    [Fact]
    public void Resnet50_with_the_own_stem_agrees_with_the_cudnn_route_and_the_stem_time_is_reported()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet50");
        var first = model.Graph.Node.First(n => n.OpType == "Conv");
        var stem = string.IsNullOrEmpty(first.Name) ? $"Conv (output '{first.Output[0]}')" : $"Conv '{first.Name}'";
        var small = model.Inputs.Select(i => Gpu.RandomInput(i, 8)).ToList();
        IReadOnlyList<Tensor> Outputs(StemConvChoice choice)
        {
            using var cuda = Session(model, choice);
            return cuda.Run(small);
        }

        var cosine = Gpu.Compare(Outputs(StemConvChoice.Own), Outputs(StemConvChoice.Cudnn), model.Outputs).Min(r => r.Cosine);
        Gpu.Report("stem-conv.md", string.Create(CultureInfo.InvariantCulture, $"| agreement zoo:resnet50 fp16 b=8 own stem vs cuDNN stem | cosine {cosine:F7} |"));
        Assert.True(cosine >= 0.9999, $"cosine {cosine}");

        var large = model.Inputs.Select(i => Gpu.RandomInput(i, 256)).ToList();
        (double Stem, double All) Time(StemConvChoice choice)
        {
            using var cuda = Session(model, choice);
            using var run = cuda.Prepare(large);
            run.Run();
            var layers = Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(20);
            var stemLayers = layers.Where(l => l.Layer.StartsWith(stem, StringComparison.Ordinal)).ToList();
            Assert.Equal(choice == StemConvChoice.Own, stemLayers.Any(l => l.Layer.Contains("own conv kernel", StringComparison.Ordinal)));
            return (stemLayers.Sum(l => l.Milliseconds), layers.Sum(l => l.Milliseconds));
        }

        var own = Time(StemConvChoice.Own);
        var cudnn = Time(StemConvChoice.Cudnn);
        var line = string.Create(CultureInfo.InvariantCulture,
            $"| zoo:resnet50 fp16 b=256 | stem: own {own.Stem:F4} ms, cuDNN {cudnn.Stem:F4} ms ({cudnn.Stem / own.Stem:F2}x) | all steps: own stem {own.All:F3} ms, cuDNN stem {cudnn.All:F3} ms |");
        Gpu.Publish("stem-conv.md", line);
        Assert.True(own.Stem > 0 && cudnn.Stem > 0, line);
    }
}
