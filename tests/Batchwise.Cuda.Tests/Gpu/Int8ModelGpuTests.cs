using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// ResNet-50 through `optimize --int8` (QDQ, random calibration) on the cuda engine's int8 tensor-core path: against
/// ONNX Runtime's QDQ run (cosine, top-1 agreement over 256 seeded inputs), which layers went int8 (and through cuDNN's
/// graph API) and why not the others, and its speed beside the int8 path without the graph API, the float path between
/// the pairs (BATCHWISE_INT8=off) and the float model in fp16 (printed, not asserted).
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
        const int batch = 64, batches = 4;
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        using var int8On = Int8Switch.Set(on: true);
        using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        var (agree, cosines, maxAbs) = (0, new List<double>(), 0.0);
        for (var i = 0; i < batches; i++)
        {
            var inputs = model.Inputs.Select(v => Gpu.RandomInput(v, batch, seed: 7 + i)).ToList();
            var expected = ort.Run(inputs);
            var actual = cuda.Run(inputs);
            var r = Gpu.Compare(actual, expected, model.Outputs)[0];
            cosines.Add(r.Cosine);
            maxAbs = Math.Max(maxAbs, r.MaxAbs);
            var (a, e) = (actual[0].ToDoubles(), expected[0].ToDoubles());
            var classes = a.Length / batch;
            agree += Enumerable.Range(0, batch).Count(b => ArgMax(a, b * classes, classes) == ArgMax(e, b * classes, classes));
        }

        var layers = ((CudaSession)cuda).Int8Layers();
        var int8 = layers.Count(l => l.Value.StartsWith("int8", StringComparison.Ordinal));
        var graph = layers.Count(l => l.Value.StartsWith("int8 (cuDNN graph", StringComparison.Ordinal));
        Print(string.Create(CultureInfo.InvariantCulture, $"# int8 resnet50 (QDQ, optimize --int8) on {new CudaEngine().Describe(new EngineOptions()).Device}: {int8} of {layers.Count} convolutions and GEMMs int8, {graph} through cuDNN's graph API"));
        foreach (var how in layers.GroupBy(l => l.Value).OrderByDescending(g => g.Count()))
        {
            Print($"- {how.Count()} x {how.Key} (e.g. {how.First().Key})");
        }

        var total = batch * batches;
        Print(string.Create(CultureInfo.InvariantCulture, $"against ORT QDQ (no graph optimizations), {total} seeded inputs in batches of {batch}: cosine min {cosines.Min():F6}, max abs {maxAbs:E2}, top-1 agreement {agree}/{total} ({100.0 * agree / total:F1}%)"));

        Assert.True(int8 > 0, "no convolution ran int8: " + string.Join("; ", layers.Select(l => $"{l.Key}: {l.Value}").Take(5)));
        Assert.True(cosines.Min() >= 0.99, $"cosine {cosines.Min()}");
        Assert.True(agree >= total * 0.97, $"top-1 agreement {agree}/{total}");
    }

    [Fact]
    public void Int8_resnet50_speed_beside_the_float_path_and_fp16()
    {
        Gpu.Require();
        var int8Model = Resnet50.Value;
        var floatModel = Zoo.ModelZoo.Build("zoo:resnet50");
        Print("| batch | int8, cuDNN graph API (ms) | int8, graph API, inputs padded explicitly (ms) | int8, graph API off (ms) | QDQ float path, BATCHWISE_INT8=off (ms) | float model fp16 (ms) | int8 img/s | fp16 img/s | int8 / fp16 | int8 plan build + first run (s) |");
        Print("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var batch in new[] { 1, 256 })
        {
            var inputs = int8Model.Inputs.Select(i => Gpu.RandomInput(i, batch, seed: 3)).ToList();
            var (int8, build) = Median(int8Model, inputs, int8: true);
            var (padded, _) = Median(int8Model, inputs, int8: true, graph: "pad");
            var (legacy, _) = Median(int8Model, inputs, int8: true, graph: "off");
            var (off, _) = Median(int8Model, inputs, int8: false);
            var (fp16, _) = Median(floatModel, inputs, int8: true);
            Print(string.Create(CultureInfo.InvariantCulture, $"| {batch} | {int8 * 1e3:F3} | {padded * 1e3:F3} | {legacy * 1e3:F3} | {off * 1e3:F3} | {fp16 * 1e3:F3} | {batch / int8:N0} | {batch / fp16:N0} | {fp16 / int8:F2}x | {build:F2} |"));
            Assert.True(int8 > 0 && padded > 0 && legacy > 0 && off > 0 && fp16 > 0);
        }
    }

    /// <summary>
    /// Median GPU seconds of a prepared fp16 run (CUDA events, device-resident inputs), the int8 path on or off (and its
    /// graph API) while the plan is built; and the wall seconds of loading, planning and the first run.
    /// </summary>
    private static (double Seconds, double Build) Median(OnnxModel model, IReadOnlyList<Tensor> inputs, bool int8, string graph = "on")
    {
        using (Int8Switch.Set(int8, graph))
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var session = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
            var run = session.Prepare(inputs);
            run.Run();
            var build = clock.Elapsed.TotalSeconds;
            for (var i = 0; i < 3; i++)
            {
                run.Run();
            }

            var times = Enumerable.Range(0, 20).Select(_ => run.Run()).Order().ToList();
            (run as IDisposable)?.Dispose();
            return (times[times.Count / 2], build);
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
