using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// ResNet-50 through `optimize --int8` (QDQ, random calibration) on the cuda engine's int8 tensor-core path: against
/// ONNX Runtime's QDQ run (cosine, top-1 agreement), which layers went int8 and why not the others, and its speed
/// beside the float path between the pairs (BATCHWISE_INT8=off) and the float model in fp16 (printed, not asserted).
/// </summary>
[Trait("Category", "GPU")]
public sealed class Int8ModelGpuTests
{
    private static readonly Lazy<OnnxModel> Resnet50 = new(() => QuantizedModelGpuTests.Int8Resnet18("zoo:resnet50"));

    private static void Print(string line)
    {
        Console.WriteLine(line);
        TestContext.Current.TestOutputHelper?.WriteLine(line);
        Gpu.Report("int8-resnet50.md", line);
    }

    [Fact]
    public void Int8_resnet50_on_tensor_cores_agrees_with_onnx_runtime_qdq()
    {
        Gpu.Require();
        var model = Resnet50.Value;
        const int batch = 16;
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, batch, seed: 7)).ToList();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        using var int8On = Int8Switch.Set(on: true);
        using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        var actual = cuda.Run(inputs);
        var layers = ((CudaSession)cuda).Int8Layers();
        var int8 = layers.Count(l => l.Value.StartsWith("int8", StringComparison.Ordinal));
        Print(string.Create(CultureInfo.InvariantCulture, $"# int8 resnet50 (QDQ, optimize --int8) on {new CudaEngine().Describe(new EngineOptions()).Device}: {int8} of {layers.Count} convolutions and GEMMs int8"));
        foreach (var how in layers.GroupBy(l => l.Value).OrderByDescending(g => g.Count()))
        {
            Print($"- {how.Count()} x {how.Key} (e.g. {how.First().Key})");
        }

        var r = Gpu.Compare(actual, expected, model.Outputs)[0];
        var (a, e) = (actual[0].ToDoubles(), expected[0].ToDoubles());
        var classes = a.Length / batch;
        var agree = Enumerable.Range(0, batch).Count(b => ArgMax(a, b * classes, classes) == ArgMax(e, b * classes, classes));
        Print(string.Create(CultureInfo.InvariantCulture, $"against ORT QDQ (no graph optimizations), batch {batch}: cosine {r.Cosine:F6}, max abs {r.MaxAbs:E2}, top-1 agreement {agree}/{batch}"));

        Assert.True(int8 > 0, "no convolution ran int8: " + string.Join("; ", layers.Select(l => $"{l.Key}: {l.Value}").Take(5)));
        Assert.True(r.Cosine >= 0.99, $"cosine {r.Cosine}");
        Assert.True(agree >= batch - 2, $"top-1 agreement {agree}/{batch}");
    }

    [Fact]
    public void Int8_resnet50_speed_beside_the_float_path_and_fp16()
    {
        Gpu.Require();
        var int8Model = Resnet50.Value;
        var floatModel = Zoo.ModelZoo.Build("zoo:resnet50");
        Print("| batch | int8 tensor cores (ms) | QDQ float path, BATCHWISE_INT8=off (ms) | float model fp16 (ms) | int8 img/s | fp16 img/s | int8 / fp16 |");
        Print("|---|---|---|---|---|---|---|");
        foreach (var batch in new[] { 1, 256 })
        {
            var inputs = int8Model.Inputs.Select(i => Gpu.RandomInput(i, batch, seed: 3)).ToList();
            var int8 = Median(int8Model, inputs, int8: true);
            var off = Median(int8Model, inputs, int8: false);
            var fp16 = Median(floatModel, inputs, int8: true);
            Print(string.Create(CultureInfo.InvariantCulture, $"| {batch} | {int8 * 1e3:F3} | {off * 1e3:F3} | {fp16 * 1e3:F3} | {batch / int8:N0} | {batch / fp16:N0} | {fp16 / int8:F2}x |"));
            Assert.True(int8 > 0 && off > 0 && fp16 > 0);
        }
    }

    /// <summary>Median GPU seconds of a prepared fp16 run (CUDA events, device-resident inputs), the int8 path on or off while the plan is built.</summary>
    private static double Median(OnnxModel model, IReadOnlyList<Tensor> inputs, bool int8)
    {
        using (Int8Switch.Set(int8))
        {
            using var session = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
            var run = session.Prepare(inputs);
            for (var i = 0; i < 3; i++)
            {
                run.Run();
            }

            var times = Enumerable.Range(0, 20).Select(_ => run.Run()).Order().ToList();
            (run as IDisposable)?.Dispose();
            return times[times.Count / 2];
        }
    }

    private static int ArgMax(double[] v, int start, int count)
    {
        var best = start;
        for (var i = start + 1; i < start + count; i++)
        {
            best = v[i] > v[best] ? i : best;
        }

        return best - start;
    }
}
