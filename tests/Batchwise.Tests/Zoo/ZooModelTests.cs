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

    // The models that look like real exports (issue 15), at both opsets they are exported at. Shape inference's
    // every-value test takes SmallModels only until it infers ConvTranspose and LSTM (issue 15 part A): add these there then.
    public static TheoryData<string> ExportLikeModels() => new()
    {
        "zoo:unet?opset=11",
        "zoo:unet?opset=17",
        "zoo:dbnet?opset=11",
        "zoo:dbnet?opset=17",
        "zoo:crnn?opset=11",
        "zoo:crnn?opset=17",
        "zoo:vit?opset=11",
        "zoo:vit?opset=17",
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

    [Fact]
    public void Yolov8n_has_the_published_weights_plus_its_anchor_constants()
    {
        var model = ModelZoo.BuildStructure("yolov8n");
        var anchorConstants = 3 * ((80 * 80) + (40 * 40) + (20 * 20)); // x, y and stride of 8400 anchors
        Assert.InRange(model.LearnedParameterCount() - anchorConstants, 3_157_200 * 0.99, 3_157_200 * 1.01);
    }

    [Theory]
    [MemberData(nameof(SmallModels))]
    [MemberData(nameof(ExportLikeModels))]
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

    [Theory]
    [InlineData("zoo:resnet18?size=64")]
    [InlineData("zoo:mobilenetv2?size=64")]
    public void Classifier_softmax_is_peaked_not_uniform_nor_one_hot(string spec)
    {
        using var session = new OrtEngine().Load(ModelZoo.Build(spec), new EngineOptions());
        var logits = session.Run([RandomInput(session.Inputs[0], 1)])[0].ToDoubles();
        var max = logits.Max();
        var top1 = 1 / logits.Sum(v => Math.Exp(v - max));
        Assert.InRange(top1, 10.0 / logits.Length, 0.99);
    }

    [Theory]
    [InlineData("zoo:yolov8n?size=100", "divisible by 32")]
    [InlineData("zoo:bert?seq=600", "seq=512")]
    [InlineData("zoo:bert?hidden=100", "divisible by heads")]
    [InlineData("zoo:resnet50?size=big", "size=big")]
    public void Invalid_options_are_explained(string spec, string expected)
    {
        var e = Assert.Throws<BatchwiseException>(() => ModelZoo.BuildStructure(spec));
        Assert.Contains(expected, e.OneLine, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("zoo:resnet50?size=1600x1008", 1600, 1008)]
    [InlineData("zoo:resnet50?size=96X64", 96, 64)]
    [InlineData("zoo:mobilenetv2?size=64x96", 64, 96)]
    [InlineData("zoo:resnet18?size=160", 160, 160)]
    public void Classifier_size_is_square_or_height_by_width(string spec, long height, long width)
    {
        var input = ModelZoo.BuildStructure(spec).Inputs[0];
        Assert.Equal([3, height, width], input.Shape.Skip(1).Select(d => d.Value!.Value));
    }

    [Fact]
    public void A_non_square_classifier_runs_and_gives_one_row_of_logits_per_sample()
    {
        using var session = new OrtEngine().Load(ModelZoo.Build("zoo:resnet18?size=64x96&classes=10"), new EngineOptions());
        var output = session.Run([RandomInput(session.Inputs[0], 2)])[0];
        Assert.Equal([2L, 10L], output.Shape);
    }

    [Theory]
    [InlineData("zoo:resnet50?size=224x", "size=224x")]
    [InlineData("zoo:resnet50?size=16x224", "at least 32")]
    [InlineData("zoo:mobilenetv2?size=1x2x3", "HEIGHTxWIDTH")]
    public void Bad_image_sizes_are_explained(string spec, string expected)
    {
        var e = Assert.Throws<BatchwiseException>(() => ModelZoo.BuildStructure(spec));
        Assert.Contains(expected, e.OneLine, StringComparison.Ordinal);
    }

    [Fact]
    public void Zoo_models_use_only_operators_the_gpu_engine_implements()
    {
        string[] gpuOperators =
        [
            "Conv", "BatchNormalization", "Relu", "Sigmoid", "Mul", "Add", "Sub", "Div", "Clip", "MaxPool", "GlobalAveragePool", "Flatten",
            "Gemm", "MatMul", "Concat", "Split", "Slice", "Resize", "Reshape", "Transpose", "Softmax", "LayerNormalization", "Gather", "Cast",
            "Unsqueeze", "Erf", "Pow", "Sqrt", "ReduceMean", "Shape", "Constant", "Identity", "Expand", "Where",
        ];
        // The models that look like real exports (issue 15) add ConvTranspose (unet, dbnet), LSTM and Squeeze (crnn):
        // the CUDA engine gains them in issue 15's engine part; until then they are the only operators beyond the list.
        string[] exportOperators = ["ConvTranspose", "LSTM", "Squeeze"];
        foreach (var e in ModelZoo.Entries)
        {
            var used = ModelZoo.BuildStructure(e.Name).Graph.Node.Select(n => n.OpType).Distinct();
            Assert.Empty(used.Except(gpuOperators).Except(e.Options.ContainsKey("opset") ? exportOperators : []));
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
