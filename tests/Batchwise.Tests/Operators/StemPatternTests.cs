using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Zoo;
using OnnxProto = Onnx;

namespace Batchwise.Tests.Operators;

/// <summary>The stem the cuda engine fuses (<see cref="StemPattern"/>), as the planner and explain both ask for it.</summary>
public sealed class StemPatternTests
{
    private static StemPattern.Match? Find(OnnxModel model, IReadOnlyList<long> shape)
    {
        var nodes = model.Graph.Node;
        var outputs = model.Outputs.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        OnnxProto.NodeProto? Sole(string value) => !outputs.Contains(value) && nodes.Where(n => n.Input.Contains(value)).ToList() is [var only] ? only : null;
        long[]? Initializer(string name) => model.Graph.Initializer.FirstOrDefault(t => t.Name == name)?.Dims.ToArray();
        return StemPattern.Find(model.Inputs[0].Name, shape, Sole, Initializer);
    }

    [Fact]
    public void Resnets_stem_at_224_is_conv_batch_norm_relu_and_pool_with_its_window_and_output()
    {
        var stem = Find(ModelZoo.Build("zoo:resnet50"), [1, 3, 224, 224]);
        Assert.NotNull(stem);
        Assert.Equal(("Conv", "BatchNormalization", "Relu", "MaxPool"), (stem.Conv.OpType, stem.BatchNorm?.OpType, stem.Relu.OpType, stem.Pool.OpType));
        Assert.Equal([7L, 7], stem.Kernel);
        Assert.Equal([3L, 3], stem.PadsBegin);
        Assert.Equal([112L, 112], stem.OutSpatial);
    }

    [Theory]
    [InlineData(256, true)] // 128 output columns: eight warps of 16
    [InlineData(258, false)] // 129 columns: past the kernel's widest row
    [InlineData(512, false)]
    public void The_kernels_widest_row_bounds_the_input_width(int width, bool fits)
    {
        var model = ModelZoo.Build("zoo:resnet18");
        Assert.Equal(fits, Find(model, [1, 3, 224, width]) is not null);
    }

    [Fact]
    public void A_pooling_in_ceil_mode_is_not_the_kernels()
    {
        var model = ModelZoo.Build("zoo:resnet18");
        Assert.NotNull(Find(model, [1, 3, 224, 224]));
        model.Graph.Node.First(n => n.OpType == "MaxPool").Attribute.Add(new OnnxProto.AttributeProto { Name = "ceil_mode", Type = OnnxProto.AttributeProto.Types.AttributeType.Int, I = 1 });
        Assert.Null(Find(model, [1, 3, 224, 224]));
    }

    [Fact]
    public void A_graph_without_that_stem_has_none()
    {
        Assert.Null(Find(ModelZoo.Build("zoo:mobilenetv2"), [1, 3, 224, 224]));
    }
}
