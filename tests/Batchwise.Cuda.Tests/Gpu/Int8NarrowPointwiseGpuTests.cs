using System.Globalization;
using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// The own narrow 1x1 int8 kernel (dp4a) on the GPU: MobileNetV2's QDQ model (the zoo's at 96x96, `optimize --int8` with
/// random calibration) at b=8, its expansions from 16, 24 and 32 channels on the kernel (BATCHWISE_INT8_CONV=pointwise),
/// against the library routes alone and ONNX Runtime's QDQ run (graph optimizations off).
/// </summary>
[Trait("Category", "GPU")]
public sealed class Int8NarrowPointwiseGpuTests
{
    [Fact]
    public void Own_narrow_pointwise_kernel_matches_the_library_routes_and_onnx_runtime()
    {
        Gpu.Require();
        var (model, expected, runs) = Int8ConvGpuTests.RunChoicesOn("zoo:mobilenetv2?size=96", "pointwise", "library");
        var layers = runs["pointwise"].Layers;
        var narrow = layers.Count(p => p.Value.Contains("own narrow pointwise kernel", StringComparison.Ordinal));
        var cosine = Gpu.Compare(runs["pointwise"].Outputs, expected, model.Outputs)[0].Cosine;
        var library = Gpu.Compare(runs["library"].Outputs, expected, model.Outputs)[0].Cosine;
        var between = Gpu.Compare(runs["pointwise"].Outputs, runs["library"].Outputs, model.Outputs)[0].Cosine;
        Gpu.Report("int8.md", string.Create(CultureInfo.InvariantCulture, $"| mobilenetv2 96x96 QDQ b=8, BATCHWISE_INT8_CONV=pointwise | {narrow} expansions on the narrow kernel | cosine vs ORT {cosine:F6} (library {library:F6}) | vs library {between:F6} |"));

        // The expansions 16 -> 96, 24 -> 144 (twice) and 32 -> 192 (three times); 64 -> 384 is the tensor-core kernel's.
        Assert.True(narrow == 6, $"{narrow} convolutions on the narrow kernel: {string.Join(" // ", layers.Select(p => $"{p.Key}: {p.Value}"))}");
        Assert.DoesNotContain(runs["library"].Layers.Values, how => how.Contains("own", StringComparison.Ordinal));
        Assert.True(cosine >= 0.999, $"narrow kernel against ORT: cosine {cosine}");
        Assert.True(between >= 0.999, $"narrow against library: cosine {between}");
    }

    /// <summary>The kernel compiles for this device without local memory at 16, 24, 32 and 64 input channels.</summary>
    [Fact]
    public void Own_narrow_pointwise_kernel_compiles_without_local_memory()
    {
        Gpu.Require();
        var epilogue = new Int8ConvEpilogue(ElementType.UInt8, 0, true, null);
        (long C, long K)[] cases = [(16, 96), (24, 144), (32, 192), (64, 384)];
        var codes = cases.Select(c => KernelSource.Int8NarrowPointwise(c.C, c.K, 256 * 56 * 56, epilogue)).ToList();
        var lines = new List<string>();
        foreach (var ((c, k), (toolchain, registers, local)) in cases.Zip(Gpu.KernelResources(codes)))
        {
            var line = $"| {toolchain} | int8 narrow pointwise {c} -> {k} | {registers} registers | {local} bytes local |";
            Console.WriteLine(line);
            lines.Add(line);
            Assert.True(local == 0, line);
        }

        Gpu.Report("int8.md", string.Join('\n', lines));
    }
}
