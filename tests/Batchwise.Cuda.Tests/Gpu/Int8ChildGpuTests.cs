using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// The child processes' side of the int8 GPU tests (<see cref="ChildRun"/>): each method runs only when a parent test
/// started it with <see cref="Mode"/> set (skipped otherwise), does one route or case, and prints tab-separated lines
/// with a tag (LAYER, ROW, LAYERS, ACC) that the parent collects. The int8 switches come from the parent's environment.
/// </summary>
[Trait("Category", "GPU")]
public sealed class Int8ChildGpuTests
{
    /// <summary>What the child does: layer, rows or accuracy.</summary>
    public const string Mode = "BATCHWISE_INT8_CHILD";

    /// <summary>The convolution case index (<see cref="Int8LayerGpuTests.ConvCases"/>).</summary>
    public const string Case = "BATCHWISE_INT8_CHILD_CASE";

    /// <summary>The QDQ model's path (the parent quantizes once and saves it).</summary>
    public const string ModelPath = "BATCHWISE_INT8_CHILD_MODEL";

    /// <summary>The route's name (fp16 runs the float model; the others the QDQ model with the switches the parent set).</summary>
    public const string Route = "BATCHWISE_INT8_CHILD_ROUTE";

    /// <summary>Comma-separated batch sizes, smallest first.</summary>
    public const string Batches = "BATCHWISE_INT8_CHILD_BATCHES";

    /// <summary>A folder with ONNX Runtime's outputs (float32, expected-{i}.bin) for the accuracy child.</summary>
    public const string Expected = "BATCHWISE_INT8_CHILD_EXPECTED";

    /// <summary>The accuracy child's batch size and number of batches (seeds 7, 8, ...).</summary>
    public const int AccuracyBatch = 64, AccuracyBatches = 4;

    private static string Child(string mode)
    {
        if (Environment.GetEnvironmentVariable(Mode) != mode)
        {
            Assert.Skip($"runs only in a child process started by an int8 GPU test ({Mode}={mode})");
        }

        Gpu.Require();
        return mode;
    }

    private static string Env(string name) => Environment.GetEnvironmentVariable(name) ?? throw new InvalidOperationException(name + " is not set");

    [Fact]
    public void A_convolution_case_in_a_child()
    {
        Child("layer");
        Int8LayerGpuTests.RunConvolutionCase(int.Parse(Env(Case), CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// One route at each batch: a ROW line (median GPU ms of a prepared fp16 run, seconds to load, plan and run once) and
    /// LAYERS lines (how many layers took each int8 decision, one example each), printed as each batch finishes, so a
    /// fault at a larger batch keeps the smaller batches' rows.
    /// </summary>
    [Fact]
    public void Resnet50_rows_of_one_route_in_a_child()
    {
        Child("rows");
        var route = Env(Route);
        var model = route == "fp16" ? Zoo.ModelZoo.Build("zoo:resnet50") : OnnxModel.Load(Env(ModelPath));
        foreach (var batch in Env(Batches).Split(',').Select(b => int.Parse(b, CultureInfo.InvariantCulture)))
        {
            Console.WriteLine($"START\t{batch}");
            var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, batch, seed: 3)).ToList();
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
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ROW\t{batch}\t{times[times.Count / 2] * 1e3:F4}\t{build:F2}"));
            foreach (var how in ((CudaSession)session).Int8Layers().GroupBy(l => l.Value).OrderByDescending(g => g.Count()))
            {
                Console.WriteLine($"LAYERS\t{batch}\t{how.Count()}\t{how.Key}\t{how.First().Key}");
            }
        }
    }

    /// <summary>
    /// One route against ONNX Runtime's outputs (written by the parent) over <see cref="AccuracyBatches"/> seeded batches of
    /// <see cref="AccuracyBatch"/>: an ACC line (minimum cosine, max abs error, top-1 agreement, layers int8 and through
    /// the graph API) and LAYERS lines.
    /// </summary>
    [Fact]
    public void Resnet50_accuracy_of_one_route_in_a_child()
    {
        Child("accuracy");
        var model = OnnxModel.Load(Env(ModelPath));
        var folder = Env(Expected);
        using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        var (agree, cosine, maxAbs, total) = (0, 1.0, 0.0, 0);
        for (var i = 0; i < AccuracyBatches; i++)
        {
            var inputs = model.Inputs.Select(v => Gpu.RandomInput(v, AccuracyBatch, seed: 7 + i)).ToList();
            var a = cuda.Run(inputs)[0].ToDoubles();
            var e = ReadExpected(folder, i);
            Assert.Equal(e.Length, a.Length);
            cosine = Math.Min(cosine, Cosine(a, e));
            maxAbs = Math.Max(maxAbs, a.Zip(e, (x, y) => Math.Abs(x - y)).Max());
            var classes = a.Length / AccuracyBatch;
            agree += Enumerable.Range(0, AccuracyBatch).Count(b => ArgMax(a, b * classes, classes) == ArgMax(e, b * classes, classes));
            total += AccuracyBatch;
        }

        var layers = ((CudaSession)cuda).Int8Layers();
        var int8 = layers.Count(l => l.Value.StartsWith("int8", StringComparison.Ordinal));
        var graph = layers.Count(l => l.Value.StartsWith("int8 (cuDNN graph", StringComparison.Ordinal));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ACC\t{cosine:F6}\t{maxAbs:E2}\t{agree}\t{total}\t{int8}\t{graph}\t{layers.Count}"));
        foreach (var how in layers.GroupBy(l => l.Value).OrderByDescending(g => g.Count()))
        {
            Console.WriteLine($"LAYERS\t{AccuracyBatch}\t{how.Count()}\t{how.Key}\t{how.First().Key}");
        }
    }

    /// <summary>ONNX Runtime's output of batch <paramref name="index"/> as the parent wrote it (float32, little-endian).</summary>
    internal static double[] ReadExpected(string folder, int index)
    {
        var bytes = File.ReadAllBytes(Path.Combine(folder, $"expected-{index}.bin"));
        return [.. System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray().Select(f => (double)f)];
    }

    /// <summary>Writes an output for <see cref="ReadExpected"/>.</summary>
    internal static void WriteExpected(string folder, int index, double[] values) =>
        File.WriteAllBytes(Path.Combine(folder, $"expected-{index}.bin"), System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.Select(v => (float)v).ToArray().AsSpan()).ToArray());

    internal static double Cosine(double[] a, double[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (var i = 0; i < a.Length; i++)
        {
            dot += a[i] * b[i];
            na += a[i] * a[i];
            nb += b[i] * b[i];
        }

        return na == 0 || nb == 0 ? (na == nb ? 1 : 0) : dot / Math.Sqrt(na * nb);
    }

    internal static int ArgMax(double[] v, int start, int count)
    {
        var best = start;
        for (var i = start + 1; i < start + count; i++)
        {
            best = v[i] > v[best] ? i : best;
        }

        return best - start;
    }
}
