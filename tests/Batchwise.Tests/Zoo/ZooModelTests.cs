using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Tests.Zoo;

public sealed class ZooModelTests
{
    // Small sizes keep the ORT runs fast; the architectures are the same as at full size.
    public static TheoryData<string> SmallModels() => new()
    {
        "zoo:resnet18?size=64",
        "zoo:resnet50?size=64",
        "zoo:mobilenetv2?size=64",
        "zoo:yolov8n?size=64",
        "zoo:bert?seq=16&layers=2",
    };

    [Theory]
    [InlineData("resnet18", 11_689_512)]
    [InlineData("resnet50", 25_557_032)]
    [InlineData("mobilenetv2", 3_504_872)]
    [InlineData("bert", 108_891_648)] // Hugging Face BertModel (bert-base-uncased) without its pooler; 110 M with it.
    public void Parameter_count_matches_the_published_architecture(string name, long published)
    {
        var model = ModelZoo.BuildStructure(name);
        var count = model.LearnedParameterCount();
        Assert.InRange(count, published * 0.99, published * 1.01);
    }

    [Theory]
    [MemberData(nameof(SmallModels))]
    public void Runs_in_onnx_runtime_at_batch_1_and_2_with_finite_outputs(string spec)
    {
        var model = ModelZoo.Build(spec);
        using var session = new OrtEngine().Load(model, new EngineOptions());
        foreach (var batch in new[] { 1L, 2L })
        {
            var inputs = session.Inputs.Select(i => RandomInput(i, batch)).ToList();
            var outputs = session.Run(inputs);
            Assert.NotEmpty(outputs);
            foreach (var o in outputs)
            {
                Assert.Equal(batch, o.Shape[0]);
                var values = o.ToDoubles();
                Assert.All(values, v => Assert.True(double.IsFinite(v), $"{spec}: non-finite output {v}"));
                Assert.True(values.Max() - values.Min() > 1e-6, $"{spec}: output is constant");
            }
        }
    }

    [Fact]
    public void Same_seed_gives_the_same_weights_and_another_seed_does_not()
    {
        var a = ModelZoo.Build("zoo:resnet18?size=32").Graph.Initializer[0].RawData;
        var b = ModelZoo.Build("zoo:resnet18?size=32").Graph.Initializer[0].RawData;
        var c = ModelZoo.Build("zoo:resnet18?size=32&seed=7").Graph.Initializer[0].RawData;
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void Every_model_has_a_dynamic_batch_axis_named_batch()
    {
        foreach (var e in ModelZoo.Entries)
        {
            var axis = ModelZoo.BuildStructure(e.Name).FindBatchAxis();
            Assert.True(axis.IsBatchable, e.Name);
            Assert.Equal("batch", axis.Symbol);
        }
    }

    internal static Tensor RandomInput(TensorSpec spec, long batch, int seed = 1)
    {
        var shape = spec.Shape.Select((d, i) => i == 0 ? batch : d.Value ?? throw new InvalidOperationException($"{spec} has a dynamic dimension {i}")).ToArray();
        var rng = new Random(seed);
        var n = (int)Tensor.ElementCountOf(shape);
        return spec.ElementType switch
        {
            ElementType.Float => Tensor.From<float>(ElementType.Float, shape, Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray()),
            ElementType.Int64 when spec.Name.Contains("mask", StringComparison.Ordinal) => Tensor.From<long>(ElementType.Int64, shape, Enumerable.Range(0, n).Select(i => i % shape[^1] < shape[^1] - 2 ? 1L : 0L).ToArray()),
            ElementType.Int64 => Tensor.From<long>(ElementType.Int64, shape, Enumerable.Range(0, n).Select(_ => (long)rng.Next(0, 1000)).ToArray()),
            _ => throw new InvalidOperationException($"No random data for {spec}"),
        };
    }
}
