using System.Globalization;
using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// Matrix products of 1 to 8 rows on the GPU through the own kernel (BATCHWISE_SMALL_MATMUL=own) and through cuBLASLt
/// (cublaslt): both agree with ONNX Runtime in float32 and float16; classifier heads' times both ways (CUDA events around
/// the step, 50 runs) and zoo:resnet50 at b=1 both ways are reported to small-matmul.md under BATCHWISE_REPORT_DIR.
/// ResNet-50's classifier at b=1 took 13.6 us through cuBLASLt on an H200 (session 11).
/// </summary>
[Trait("Category", "GPU")]
public sealed class SmallRowsGpuTests
{
    private const string OwnStep = "(own small-row product)";

    public static TheoryData<string, bool, bool> Agreement =>
        [.. SmallRowsModels.Small.Keys.Concat(SmallRowsModels.Heads.Keys).SelectMany(k => new[] { (k, false, false), (k, false, true), (k, true, false), (k, true, true) })];

    public static TheoryData<string> Heads => [.. SmallRowsModels.Heads.Keys];

    private static SmallRowsCase Case(string name) => SmallRowsModels.Small.TryGetValue(name, out var c) ? c : SmallRowsModels.Heads[name];

    private static CudaSession Session(OnnxModel model, bool half, SmallMatmulChoice choice)
    {
        var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = half ? Precision.Fp16 : Precision.Fp32 });
        session.SmallMatmuls = choice;
        return session;
    }

    /// <summary>Every step's time in a profile of 50 runs, and whether the own kernel ran.</summary>
    private static (IReadOnlyList<(string Layer, double Milliseconds)> Layers, bool Own) Profile(CudaSession session, IReadOnlyList<Tensor> inputs, int runs = 50)
    {
        using var run = session.Prepare(inputs);
        run.Run();
        var layers = Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(runs).Select(l => (l.Layer, l.Milliseconds)).ToList();
        return (layers, layers.Any(l => l.Layer.EndsWith(OwnStep, StringComparison.Ordinal)));
    }

    [Theory]
    [MemberData(nameof(Agreement))]
    public void Small_row_product_matches_onnx_runtime_through_the_own_kernel_and_cublaslt(string name, bool half, bool own)
    {
        Gpu.Require();
        var c = Case(name);
        var model = c.Model();
        var inputs = c.Inputs(3);
        using var ort = new OrtEngine().Load(model, new EngineOptions());
        using var cuda = Session(model, half, own ? SmallMatmulChoice.Own : SmallMatmulChoice.Library);
        Assert.Equal(own, Profile(cuda, inputs, 1).Own);
        foreach (var r in Gpu.Compare(cuda.Run(inputs), ort.Run(inputs), model.Outputs))
        {
            Gpu.Report("small-matmul.md", string.Create(CultureInfo.InvariantCulture, $"| agreement {name} {(half ? "fp16" : "fp32")} {(own ? "own" : "cuBLASLt")} | {r.Name} | max abs {r.MaxAbs:E2} | max rel {r.MaxRel:E2} | cosine {r.Cosine:F7} |"));
            Assert.True(r.Cosine >= 0.9999, $"{r.Name}: cosine {r.Cosine}, max abs error {r.MaxAbs}");
            Assert.True(half || r.MaxRel <= 1e-4, $"{r.Name}: max error {r.MaxAbs} ({r.MaxRel} of the largest magnitude)");
        }
    }

    [Theory]
    [MemberData(nameof(Heads))]
    public void Classifier_head_time_through_the_own_kernel_and_cublaslt_is_reported(string name)
    {
        Gpu.Require();
        var c = Case(name);
        var model = c.Model();
        var inputs = c.Inputs(3);
        (double Ms, IReadOnlyList<Tensor> Outputs) Time(SmallMatmulChoice choice)
        {
            using var cuda = Session(model, half: true, choice);
            var (layers, own) = Profile(cuda, inputs);
            Assert.Equal(choice == SmallMatmulChoice.Own, own);
            var ms = layers.Where(l => l.Layer.StartsWith("Gemm", StringComparison.Ordinal) || l.Layer.StartsWith("MatMul", StringComparison.Ordinal)).Sum(l => l.Milliseconds);
            return (ms, cuda.Run(inputs));
        }

        var mine = Time(SmallMatmulChoice.Own);
        var library = Time(SmallMatmulChoice.Library);
        var cosine = Gpu.Compare(mine.Outputs, library.Outputs, model.Outputs).Min(r => r.Cosine);
        var bytes = 2.0 * ((c.N * c.K) + (c.M * c.K) + (c.M * c.N));
        var line = string.Create(CultureInfo.InvariantCulture,
            $"| {name} fp16 | M {c.M} N {c.N} K {c.K} | own {mine.Ms * 1e3:F2} us ({bytes / (mine.Ms * 1e6):F0} GB/s) | cuBLASLt {library.Ms * 1e3:F2} us | cuBLASLt/own {library.Ms / mine.Ms:F2}x | cosine {cosine:F7} |");
        Gpu.Publish("small-matmul.md", line);
        Assert.True(mine.Ms > 0 && library.Ms > 0, line);
        Assert.True(cosine >= 0.9999, line);
    }

    [Fact]
    public void Resnet50_at_batch_one_with_the_own_classifier_agrees_with_cublaslt_and_both_times_are_reported()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet50");
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 1)).ToList();
        (double Fc, double All, IReadOnlyList<Tensor> Outputs) Time(SmallMatmulChoice choice)
        {
            using var cuda = Session(model, half: true, choice);
            var (layers, own) = Profile(cuda, inputs, 20);
            Assert.Equal(choice == SmallMatmulChoice.Own, own);
            return (layers.Where(l => l.Layer.StartsWith("Gemm", StringComparison.Ordinal)).Sum(l => l.Milliseconds), layers.Sum(l => l.Milliseconds), cuda.Run(inputs));
        }

        var mine = Time(SmallMatmulChoice.Own);
        var library = Time(SmallMatmulChoice.Library);
        var cosine = Gpu.Compare(mine.Outputs, library.Outputs, model.Outputs).Min(r => r.Cosine);
        var line = string.Create(CultureInfo.InvariantCulture,
            $"| zoo:resnet50 fp16 b=1 | classifier: own {mine.Fc * 1e3:F2} us, cuBLASLt {library.Fc * 1e3:F2} us | all steps: own {mine.All:F4} ms, cuBLASLt {library.All:F4} ms | cosine {cosine:F7} |");
        Gpu.Publish("small-matmul.md", line);
        Assert.True(mine.Fc > 0 && library.Fc > 0, line);
        Assert.True(cosine >= 0.9999, line);
    }
}
