using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>Whole models on the GPU against ONNX Runtime on the CPU: the zoo, a torchvision export, and timings.</summary>
[Trait("Category", "GPU")]
[Collection(nameof(ProcessEnvironment))]
public sealed class ModelGpuTests
{
    public static TheoryData<string, int> ZooModels() => new()
    {
        { "zoo:mlp", 8 },
        { "zoo:resnet18", 2 },
        { "zoo:resnet50", 2 },
        { "zoo:mobilenetv2", 2 },
        { "zoo:yolov8n", 1 },
        { "zoo:bert", 2 },
        { "zoo:crnn", 2 },
        { "zoo:crnn?opset=11", 2 },
        { "zoo:unet", 2 },
        { "zoo:unet?opset=11", 2 },
        { "zoo:dbnet", 2 },
        { "zoo:dbnet?opset=11", 2 },
        { "zoo:vit", 2 },
        { "zoo:vit?opset=11", 2 },
    };

    [Theory]
    [MemberData(nameof(ZooModels))]
    public void Zoo_model_matches_onnx_runtime(string spec, int batch)
    {
        Gpu.Require();
        var model = ModelZoo.Build(spec);
        CheckModel(spec, model, batch);
    }

    public static TheoryData<string, int> HalfPrecisionModels() => new()
    {
        { "zoo:resnet18", 32 },
        { "zoo:resnet50", 32 },
        { "zoo:mobilenetv2", 32 },
        { "zoo:yolov8n?size=320", 2 },
        { "zoo:bert?seq=64", 2 },
        { "zoo:crnn?width=128", 4 },
        { "zoo:unet?size=128", 2 },
        { "zoo:dbnet?size=128", 2 },
        { "zoo:vit?size=64", 4 },
    };

    /// <summary>
    /// --precision fp16 (float16 storage, channels-last convolutions on tensor cores, float32 accumulation) against ONNX
    /// Runtime in float32: cosine >= 0.999 per output; for the classifiers the top-1 class agrees on at least 99% of images.
    /// </summary>
    [Theory]
    [MemberData(nameof(HalfPrecisionModels))]
    public void Fp16_agrees_with_onnx_runtime_fp32(string spec, int batch)
    {
        Gpu.Require();
        var model = ModelZoo.Build(spec);
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, batch)).ToList();
        using var ort = new OrtEngine().Load(model, new EngineOptions());
        using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        var expected = ort.Run(inputs);
        var actual = cuda.Run(inputs);
        foreach (var r in Gpu.Compare(actual, expected, model.Outputs))
        {
            Gpu.Report("fp16.md", string.Create(CultureInfo.InvariantCulture, $"| {spec} | {batch} | {r.Name} | {r.MaxAbs:E2} | {r.MaxRel:E2} | {r.Cosine:F7} |"));
            Assert.True(r.Cosine >= 0.999, $"{spec}/{r.Name}: cosine {r.Cosine}");
        }

        if (model.Outputs[0].Shape.Count == 2)
        {
            var classes = (int)expected[0].Shape[1];
            var e = expected[0].ToDoubles();
            var a = actual[0].ToDoubles();
            var agree = Enumerable.Range(0, batch).Count(n => ArgMax(e, n * classes, classes) == ArgMax(a, n * classes, classes));
            Gpu.Report("fp16.md", $"| {spec} | {batch} | top-1 agreement | {agree}/{batch} | | |");
            Assert.True(agree >= 0.99 * batch, $"{spec}: top-1 agrees on {agree} of {batch} images");
        }
    }

    private static int ArgMax(double[] v, int start, int count)
    {
        var best = start;
        for (var i = start + 1; i < start + count; i++)
        {
            if (v[i] > v[best])
            {
                best = i;
            }
        }

        return best - start;
    }

    [Fact]
    public void Torchvision_resnet50_export_matches_onnx_runtime()
    {
        Gpu.Require();
        var path = Environment.GetEnvironmentVariable("BATCHWISE_TORCHVISION_MODEL");
        if (string.IsNullOrEmpty(path) || !File.Exists(path))
        {
            Assert.Skip("BATCHWISE_TORCHVISION_MODEL names no exported model (bench/device/run.sh exports one with PyTorch)");
        }

        CheckModel("torchvision resnet50", OnnxModel.Load(path), 4);
    }

    private static void CheckModel(string label, OnnxModel model, int batch)
    {
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, batch)).ToList();
        foreach (var r in Gpu.CompareWithOrt(model, inputs))
        {
            Gpu.Report("models.md", $"| {label} | {batch} | {r.Name} | {r.MaxAbs:E2} | {r.MaxRel:E2} | {r.Cosine:F7} |");
            Assert.True(r.MaxRel <= 1e-4, $"{label}/{r.Name}: max abs error {r.MaxAbs:E2}, relative to the largest output {r.MaxRel:E2}");
            Assert.True(r.Cosine >= 0.99999, $"{label}/{r.Name}: cosine {r.Cosine}");
        }
    }

    [Fact]
    public void Prepared_runs_are_repeatable_and_plans_are_cached_per_shape()
    {
        Gpu.Require();
        using var session = new CudaEngine().Load(ModelZoo.Build("zoo:resnet18?size=64"), new EngineOptions());
        foreach (var batch in new[] { 1, 3, 1 })
        {
            var inputs = session.Inputs.Select(i => Gpu.RandomInput(i, batch)).ToList();
            using var run = session.Prepare(inputs);
            var t1 = run.Run();
            var first = run.ReadOutputs()[0].ToDoubles();
            var t2 = run.Run();
            var second = run.ReadOutputs()[0].ToDoubles();
            run.Run();
            var replayed = run.ReadOutputs()[0].ToDoubles();
            Assert.Equal(first, second);
            Assert.Equal(first, replayed);
            Assert.Equal(batch, run.ReadOutputs()[0].Shape[0]);
            Assert.True(t1 > 0 && t2 > 0);
        }

        var sample = session.SampleDevice();
        Assert.NotNull(sample);
        Assert.True(sample.MemoryUsedBytes > 0 && sample.MemoryTotalBytes > sample.MemoryUsedBytes);

        // Through NVML (the device machine has it): the SM clock and power, and the clock limits as names.
        Gpu.Report("device-sample.md", $"SM clock {sample.SmClockMhz} MHz, power {sample.PowerWatts} W, limits [{string.Join(", ", sample.ClockLimits ?? [])}]");
        Assert.InRange(sample.SmClockMhz!.Value, 100, 4000);
        Assert.InRange(sample.PowerWatts!.Value, 1, 2000);
        Assert.NotNull(sample.ClockLimits);
    }

    [Fact]
    public void Cuda_graph_replay_gives_the_same_outputs_as_step_by_step()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:mobilenetv2?size=96");
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 2)).ToList();
        double[] Outputs(bool graph)
        {
            using var session = new CudaEngine().Load(model, new EngineOptions { UseCudaGraph = graph });
            using var run = session.Prepare(inputs);
            for (var i = 0; i < 3; i++)
            {
                run.Run();
            }

            return run.ReadOutputs()[0].ToDoubles();
        }

        Assert.Equal(Outputs(false), Outputs(true));
    }

    /// <summary>
    /// --tactics timed: the first plan times cuBLASLt's and cuDNN's candidates and writes the timing cache; a second
    /// session reads its choices from the file (no timing) and computes the same outputs.
    /// </summary>
    [Fact]
    public void Timed_tactics_are_written_to_the_timing_cache_and_read_back()
    {
        Gpu.Require();
        var dir = Path.Combine(Path.GetTempPath(), "batchwise-tactics-" + Guid.NewGuid().ToString("N"));
        var before = Environment.GetEnvironmentVariable("BATCHWISE_CACHE_DIR");
        Environment.SetEnvironmentVariable("BATCHWISE_CACHE_DIR", dir);
        try
        {
            var model = ModelZoo.Build("zoo:resnet18?size=64");
            // Batch 16: the classifier is a cuBLASLt product with timed tactics (8 rows or fewer take the own small-row kernel).
            var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 16)).ToList();
            double[] Outputs()
            {
                using var session = new CudaEngine().Load(model, new EngineOptions { Tactics = TacticSelection.Timed, Precision = Precision.Fp16 });
                return session.Run(inputs)[0].ToDoubles();
            }

            var first = Outputs();
            var file = Assert.Single(Directory.GetFiles(Path.Combine(dir, "cuda")));
            var text = File.ReadAllText(file);
            Assert.Contains("matmul|fp16|", text, StringComparison.Ordinal);
            Assert.Contains("fp16-nhwc|x=", text, StringComparison.Ordinal);
            var written = File.GetLastWriteTimeUtc(file);
            var second = Outputs();
            Assert.Equal(written, File.GetLastWriteTimeUtc(file)); // nothing new to time, nothing rewritten
            using var ort = new OrtEngine().Load(model, new EngineOptions());
            var cosine = Gpu.Compare([Tensor.From<float>(ElementType.Float, [16, 1000], second.Select(v => (float)v).ToArray())], ort.Run(inputs), model.Outputs)[0].Cosine;
            Assert.True(cosine >= 0.999, $"cosine {cosine}");
            Assert.Equal(first.Length, second.Length);
        }
        finally
        {
            Environment.SetEnvironmentVariable("BATCHWISE_CACHE_DIR", before);
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, true);
            }
        }
    }

    [Fact]
    public void Fp16_cuda_graph_replay_gives_the_same_outputs_as_step_by_step()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=96");
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 3)).ToList();
        double[] Outputs(bool graph)
        {
            using var session = new CudaEngine().Load(model, new EngineOptions { UseCudaGraph = graph, Precision = Precision.Fp16 });
            using var run = session.Prepare(inputs);
            for (var i = 0; i < 3; i++)
            {
                run.Run();
            }

            return run.ReadOutputs()[0].ToDoubles();
        }

        Assert.Equal(Outputs(false), Outputs(true));
    }
}
