using Batchwise.Onnx;
using Batchwise.Transforms;

namespace Batchwise.Tests.Transforms;

public sealed class CalibratedInt8Tests
{
    [Fact]
    public void Given_ranges_are_used_instead_of_calibrating_and_give_the_same_model()
    {
        var (_, first) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        var second = OnnxModel.FromProto(first.Proto.Clone(), first.Name);
        var calibrated = new Int8Quantization(CalibrationData.Parse("random:2"));
        calibrated.Apply(first);
        Assert.NotNull(calibrated.Ranges);

        // Calibration data of another shape would fail if it were read: given ranges skip it.
        var empty = Directory.CreateTempSubdirectory("bw-int8-none-").FullName;
        try
        {
            Batchwise.Comparison.InputFiles.WriteNpy(Path.Combine(empty, "x.npy"), Batchwise.Engines.Tensor.Zeros(ElementType.Float, [1, 3, 7, 7]));
            new Int8Quantization(CalibrationData.Parse(empty)) { Ranges = calibrated.Ranges }.Apply(second);
        }
        finally
        {
            Directory.Delete(empty, recursive: true);
        }

        Assert.Equal(first.ToBytes(), second.ToBytes());
    }

    [Fact]
    public void Cached_ranges_missing_a_value_are_refused_with_the_fix()
    {
        var (_, model) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        var e = Assert.Throws<BatchwiseException>(() => new Int8Quantization(CalibrationData.Parse("random:1")) { Ranges = new Dictionary<string, (float, float)>(), Flag = "--precision int8" }.Apply(model));
        Assert.StartsWith("--precision int8: the cached activation ranges have none for", e.Message, StringComparison.Ordinal);
        Assert.Contains("BATCHWISE_CACHE_DIR", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void The_cache_key_follows_model_data_and_method()
    {
        var a = Batchwise.Zoo.ModelZoo.Build("zoo:mlp?seed=0");
        var b = Batchwise.Zoo.ModelZoo.Build("zoo:mlp?seed=1");
        var random8 = Int8Calibration.Default;
        Assert.Equal(CalibratedInt8.CachePath(a, random8), CalibratedInt8.CachePath(Batchwise.Zoo.ModelZoo.Build("zoo:mlp?seed=0"), random8));
        Assert.NotEqual(CalibratedInt8.CachePath(a, random8), CalibratedInt8.CachePath(b, random8));
        Assert.NotEqual(CalibratedInt8.CachePath(a, random8), CalibratedInt8.CachePath(a, random8 with { Data = "random:9" }));
        Assert.NotEqual(CalibratedInt8.CachePath(a, random8), CalibratedInt8.CachePath(a, random8 with { Method = CalibrationMethod.Entropy }));
        Assert.NotEqual(CalibratedInt8.CachePath(a, random8), CalibratedInt8.CachePath(a, random8 with { Symmetric = true }));
        Assert.Equal("int8 (QDQ, calibrated on random:8, minmax)", random8.Describe());
        Assert.Equal("int8 (QDQ, calibrated on random:8, minmax, symmetric activations)", (random8 with { Symmetric = true }).Describe());
    }
}
