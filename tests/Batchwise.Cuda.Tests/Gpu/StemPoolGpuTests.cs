using System.Globalization;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// The fused stem kernel (input -> Conv -> ReLU -> MaxPool 3x3/2, <see cref="KernelSource.StemPool"/>) on the GPU: ResNet-50
/// from the zoo against ONNX Runtime in float32, the stem's time against its layers one by one (entry kernel, convolution,
/// pooling), and the kernel's registers and spills; reported to stem-pool.md under BATCHWISE_REPORT_DIR.
/// </summary>
[Trait("Category", "GPU")]
public sealed class StemPoolGpuTests
{
    private static CudaSession Session(OnnxModel model, StemPoolChoice choice)
    {
        var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        session.StemPools = choice;
        return session;
    }

    /// <summary>ResNet-50 with its stem fused, at 1 and 8 images (56 and 7 bands of pooled rows), against ONNX Runtime fp32: cosine at least 0.9999.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(8)]
    public void Resnet50_with_the_fused_stem_matches_onnx_runtime(int batch)
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet50");
        var inputs = new GroupedConvCase(batch, 3, 224, 224, 1).Inputs(5);
        using var cuda = Session(model, StemPoolChoice.Auto);
        Gpu.AgreesWithOrt(model, inputs, cuda, "own stem kernel", "stem-pool.md", $"resnet50 b={batch}");
    }

    /// <summary>
    /// ResNet-50 at b=1 with the stem's bands split over 2 and 4 blocks by output channel (BATCHWISE_STEM_SPLITS): the same
    /// outputs as ONNX Runtime, and the stem's time against one block a band (CUDA events around it, 200 runs), reported.
    /// </summary>
    [Fact]
    public void Stem_channel_splits_at_batch_one_agree_and_their_time_is_reported()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet50");
        var inputs = new GroupedConvCase(1, 3, 224, 224, 1).Inputs(5);
        var times = new List<string>();
        foreach (var splits in new[] { 1, 2, 4 })
        {
            using var cuda = Session(model, StemPoolChoice.Auto);
            cuda.StemSplits = splits;
            Gpu.AgreesWithOrt(model, inputs, cuda, splits == 1 ? "56 bands)" : $"x {splits} channel splits", "stem-pool.md", $"resnet50 b=1, {splits} channel splits");
            using var run = cuda.Prepare(inputs);
            run.Run();
            var stem = Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(200).First();
            times.Add(string.Create(CultureInfo.InvariantCulture, $"{splits} split(s) {stem.Milliseconds * 1000:F2} µs"));
        }

        var line = $"| b=1 stem by channel splits (with its events) | {string.Join(" | ", times)} |";
        Console.WriteLine(line);
        Gpu.Report("stem-pool.md", line);
    }

    /// <summary>
    /// The stem at 1, 64 and 256 images: the fused kernel's time against the entry kernel + convolution + pooling it
    /// replaces (CUDA events around each step, 50 runs), printed and reported; the two plans' outputs agree.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(64)]
    [InlineData(256)]
    public void Stem_time_against_its_layers_one_by_one_is_reported(int batch)
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet50");
        var inputs = new GroupedConvCase(batch, 3, 224, 224, 1).Inputs(5);
        (double Ms, string Steps, IReadOnlyList<Tensor> Outputs) Time(StemPoolChoice choice)
        {
            using var cuda = Session(model, choice);
            using var run = cuda.Prepare(inputs);
            run.Run();
            var layers = Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(50).Take(choice == StemPoolChoice.Auto ? 1 : 3).ToList();
            return (layers.Sum(l => l.Milliseconds), string.Join(" + ", layers.Select(l => $"{l.Layer} {l.Milliseconds.ToString("F4", CultureInfo.InvariantCulture)}")), cuda.Run(inputs));
        }

        var fused = Time(StemPoolChoice.Auto);
        var apart = Time(StemPoolChoice.Off);
        Assert.Contains("own stem kernel", fused.Steps, StringComparison.Ordinal);
        Assert.Contains("MaxPool", apart.Steps, StringComparison.Ordinal);
        var cosine = Gpu.Compare(fused.Outputs, apart.Outputs, model.Outputs).Min(r => r.Cosine);
        var line = string.Create(CultureInfo.InvariantCulture, $"| b={batch} | fused {fused.Ms:F4} ms | one by one {apart.Ms:F4} ms ({apart.Steps}) | {apart.Ms / fused.Ms:F2}x | cosine {cosine:F7} |");
        Console.WriteLine(line);
        Gpu.Report("stem-pool.md", line);
        Assert.True(cosine >= 0.9999, line);
    }

    /// <summary>
    /// ResNet's stem kernel compiles for this device with at most a 16-byte local frame; its registers are reported (two
    /// blocks of 224 threads an SM: 14 warps, four on a quarter of the SM, so 128 registers a thread). Measured in
    /// session 24 at b=256 (this class's timing): the kernel with 8 bytes local ran 0.331 ms, a variant with 24 bytes
    /// 0.341 ms, the first form with none 0.483 ms, and a form holding a convolution row in registers spilled 96 bytes
    /// and ran 0.545 ms (Nsight Compute). A few bytes outside the product loop cost nothing measurable; a spill in it does.
    /// </summary>
    [Fact]
    public void Stem_kernel_compiles_without_spills_that_cost()
    {
        Gpu.Require();
        // The float stem, and a QDQ model's (the input rounded as read, the pooled maximum written int8; session 26 call 2:
        // 0.686 ms at b=256 with the roundings' divisions, against the float stem's 0.33).
        var rounding = new KernelSource.QuantRounding(0.0189f, 128, 0, 255);
        var output = new KernelSource.StemPoolQuantized(new KernelSource.QuantRounding(0.0531f, 0, 0, 255), new KernelSource.QuantRounding(0.0531f, 0, 0, 255), 128);
        foreach (var (name, code) in new[]
        {
            ("stem kernel", KernelSource.StemPool(ElementType.Float, ElementType.Float16, 3, 64, 7, 7, 7, 256, [224, 224], [112, 112], [56, 56], [3, 3], 3)),
            ("QDQ stem kernel", KernelSource.StemPool(ElementType.Float, ElementType.Float16, 3, 64, 7, 7, 7, 256, [224, 224], [112, 112], [56, 56], [3, 3], 3, rounding, output)),
        })
        {
            var (toolchain, registers, local) = Assert.Single(Gpu.KernelResources([code]));
            var line = $"| {toolchain} | {name} | {registers} registers | {local} bytes local |";
            Console.WriteLine(line);
            Gpu.Report("stem-pool.md", line);
            Assert.True(local <= 16, $"{line}: more than 16 bytes of local memory a thread (spills the products pay for; see the summary)");
        }
    }
}
