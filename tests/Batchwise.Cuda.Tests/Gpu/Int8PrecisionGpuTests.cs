using System.Globalization;
using Batchwise.Engines;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// `--precision int8` on the cuda engine: a float model quantized as the session loads it, run on the int8 path (switched
/// on for that session alone), and a saved int8 engine that carries its quantized model and is never calibrated again.
/// </summary>
[Trait("Category", "GPU")]
public sealed class Int8PrecisionGpuTests
{
    private static readonly Int8Calibration Calibration = new("random:4", CalibrationMethod.MinMax);

    [Fact]
    public void Precision_int8_quantizes_a_float_model_and_runs_int8_layers_close_to_fp32()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 64, seed: 11)).ToList();
        using var fp32 = new CudaEngine().Load(model, new EngineOptions());
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Int8, Calibration = Calibration });
        Assert.True(session.Int8);
        Assert.Equal(Precision.Fp16, session.Precision); // what stays float runs in fp16
        var got = session.Run(inputs);
        var want = fp32.Run(inputs);
        var layers = session.Int8Layers();
        var int8 = layers.Count(p => p.Value.StartsWith("int8", StringComparison.Ordinal));
        var cosine = Gpu.Compare(got, want, model.Outputs)[0].Cosine;
        var top1 = Top1Agreement(got[0], want[0]);
        Gpu.Report("int8.md", string.Create(CultureInfo.InvariantCulture, $"| resnet18 64x64 --precision int8 (random:4, minmax) vs fp32, b=64 | {int8} of {layers.Count} layers int8 | cosine {cosine:F6} | top-1 {top1:P1} | graph route {Environment.GetEnvironmentVariable("BATCHWISE_INT8_GRAPH") ?? "on"} |"));
        Assert.True(int8 > 0, "no layer ran int8: " + string.Join("; ", layers.Select(p => $"{p.Key}: {p.Value}")));
        Assert.True(cosine >= 0.99, $"cosine {cosine}");
        Assert.True(top1 >= 0.9, $"top-1 agreement {top1}");
    }

    [Fact]
    public void Precision_int8_with_symmetric_activations_pads_no_copies_and_stays_close_to_fp32()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 64, seed: 11)).ToList();
        using var fp32 = new CudaEngine().Load(model, new EngineOptions());
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Int8, Calibration = Calibration with { Symmetric = true } });
        var layers = session.Int8Layers();
        var cosine = Gpu.Compare(session.Run(inputs), fp32.Run(inputs), model.Outputs)[0].Cosine;
        Gpu.Report("int8.md", string.Create(CultureInfo.InvariantCulture, $"| resnet18 64x64 --precision int8 --int8-activations symmetric vs fp32, b=64 | {layers.Count(p => p.Value.StartsWith("int8", StringComparison.Ordinal))} of {layers.Count} layers int8 | cosine {cosine:F6} |"));
        Assert.DoesNotContain(layers, p => p.Value.Contains("padded explicitly", StringComparison.Ordinal)); // the stored zero is 0
        Assert.True(cosine >= 0.99, $"cosine {cosine}");
    }

    [Fact]
    public void A_saved_int8_engine_carries_its_quantized_model_and_refuses_other_calibration()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.bwengine");
        var options = new EngineOptions { Precision = Precision.Int8, Calibration = Calibration, BatchProfiles = [1, 4] };
        try
        {
            CudaEngine.Build(model, options, path, shapes => [.. model.Inputs.Select((spec, i) => Gpu.RandomInput(spec, shapes[i][0]))]);
            var loaded = ModelSource.Load(path);
            Assert.Contains(loaded.Graph.Node, n => n.OpType == "QuantizeLinear"); // the quantized model, not the float one

            // Loaded without options: int8 with the file's calibration (a model already quantized would be refused by the
            // quantizer, so a load that succeeds did not calibrate again).
            var effective = new CudaEngine().Effective(loaded, new EngineOptions());
            Assert.Equal(Precision.Int8, effective.Precision);
            Assert.Equal(Calibration, effective.Calibration);
            var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 4, seed: 5)).ToList();
            using (var saved = (CudaSession)new CudaEngine().Load(loaded, new EngineOptions()))
            using (var fresh = new CudaEngine().Load(model, options))
            {
                Assert.True(saved.Int8);
                var cosine = Gpu.Compare(saved.Run(inputs), fresh.Run(inputs), model.Outputs)[0].Cosine;
                Assert.True(cosine >= 0.9999, $"saved against fresh: cosine {cosine}");
            }

            var e = Assert.Throws<BatchwiseException>(() => new CudaEngine().Load(ModelSource.Load(path), options with { Calibration = new Int8Calibration("random:9", CalibrationMethod.Entropy) }));
            Assert.Contains("contradicts it", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static double Top1Agreement(Tensor a, Tensor b)
    {
        var (x, y) = (a.AsSpan<float>().ToArray(), b.AsSpan<float>().ToArray());
        var rows = (int)a.Shape[0];
        var classes = x.Length / rows;
        var same = 0;
        for (var r = 0; r < rows; r++)
        {
            same += ArgMax(x.AsSpan(r * classes, classes)) == ArgMax(y.AsSpan(r * classes, classes)) ? 1 : 0;
        }

        return (double)same / rows;
    }

    private static int ArgMax(ReadOnlySpan<float> v)
    {
        var best = 0;
        for (var i = 1; i < v.Length; i++)
        {
            best = v[i] > v[best] ? i : best;
        }

        return best;
    }
}
