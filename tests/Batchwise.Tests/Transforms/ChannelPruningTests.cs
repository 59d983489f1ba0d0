using Batchwise.Onnx;
using Batchwise.Transforms;

namespace Batchwise.Tests.Transforms;

public sealed class ChannelPruningTests
{
    [Theory]
    [MemberData(nameof(TransformTestModels.Convolutional), MemberType = typeof(TransformTestModels))]
    public void Pruning_reduces_macs_and_the_model_still_runs_with_the_same_output_shape(string spec)
    {
        var (original, result) = TransformTestModels.CleanedUp(spec);
        var pruning = new ChannelPruning(0.25);
        pruning.Apply(result);

        Assert.True(pruning.After!.ConvMacs < pruning.Before!.ConvMacs * 0.85, $"conv MACs {pruning.Before.ConvMacs} -> {pruning.After.ConvMacs}");
        Assert.True(pruning.After.Parameters < pruning.Before.Parameters);
        Assert.Equal(TransformTestModels.RunFirstOutput(original).Shape, TransformTestModels.RunFirstOutput(result).Shape);
    }

    [Fact]
    public void Inner_bottleneck_convs_lose_the_square_of_the_kept_share()
    {
        var (_, result) = TransformTestModels.CleanedUp("zoo:resnet50?size=64");
        var before = Weights(result);
        new ChannelPruning(0.25).Apply(result);
        var after = Weights(result);

        // layer2.1.conv2: a 3x3 conv between two pruned 1x1 convs: in and out channels both drop to 75%, MACs to 56.25%.
        var name = Key(before, "layer2.1.conv2.weight");
        var (b, a) = (before[name], after[name]);
        Assert.Equal([96L, 96L, 3L, 3L], a);
        Assert.Equal([128L, 128L, 3L, 3L], b);
        var macRatio = (double)(a[0] * a[1]) / (b[0] * b[1]);
        Assert.Equal(1 - 0.4375, macRatio, 3);
    }

    [Fact]
    public void Residual_groups_are_pruned_together_and_the_last_stage_feeding_the_classifier_is_kept()
    {
        var (_, result) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        new ChannelPruning(0.5).Apply(result);
        var w = Weights(result);

        // Stage 1 stream (stem + both blocks' conv2, tied by residual Adds) is pruned as one: every member has 32 channels out.
        Assert.Equal(32L, w[Key(w, "conv1.weight")][0]);
        Assert.Equal(32L, w[Key(w, "layer1.0.conv2.weight")][0]);
        Assert.Equal(32L, w[Key(w, "layer1.1.conv2.weight")][0]);
        Assert.Equal(32L, w[Key(w, "layer1.1.conv1.weight")][1]);

        // Stage 4 feeds GlobalAveragePool -> Flatten -> Gemm: a constraint, kept whole.
        Assert.Equal(512L, w[Key(w, "layer4.1.conv2.weight")][0]);
        Assert.Equal(512L, w[Key(w, "fc.weight")][1]);
    }

    [Fact]
    public void Depthwise_convs_follow_the_pruned_expansion()
    {
        var (_, result) = TransformTestModels.CleanedUp("zoo:mobilenetv2?size=64");
        var groupsBefore = result.Graph.Node.Where(n => n.OpType == "Conv").Select(n => Batchwise.Transforms.GraphSurgery.Int(n, "group", 1)).Sum();
        new ChannelPruning(0.25).Apply(result);
        var inits = result.InitializersByName();
        var depthwise = result.Graph.Node.Where(n => n.OpType == "Conv" && Batchwise.Transforms.GraphSurgery.Int(n, "group", 1) > 1).ToList();
        Assert.NotEmpty(depthwise);
        Assert.All(depthwise, d => Assert.Equal(inits[d.Input[1]].Dims[0], Batchwise.Transforms.GraphSurgery.Int(d, "group", 1)));
        var groupsAfter = depthwise.Sum(d => Batchwise.Transforms.GraphSurgery.Int(d, "group", 1)) + result.Graph.Node.Count(n => n.OpType == "Conv" && Batchwise.Transforms.GraphSurgery.Int(n, "group", 1) == 1);
        Assert.InRange(groupsAfter, groupsBefore * 0.7, groupsBefore * 0.8);
    }

    [Fact]
    public void Concat_read_by_a_conv_passes_each_inputs_kept_channels_on()
    {
        var (_, result) = TransformTestModels.CleanedUp("zoo:yolov8n?size=64");
        new ChannelPruning(0.25).Apply(result);
        var w = Weights(result);

        // SPPF: cv1 (128 channels) -> three chained MaxPools -> Concat of the four -> cv2. One group, pruned to 96, read four times.
        Assert.Equal(96L, w[Key(w, "model.9.cv1.weight")][0]);
        Assert.Equal(4 * 96L, w[Key(w, "model.9.cv2.weight")][1]);

        // C2f cv1 feeds a Split: a constraint, kept whole.
        Assert.Equal(32L, w[Key(w, "model.2.cv1.weight")][0]);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(-0.5)]
    [InlineData(double.NaN)]
    public void Ratio_out_of_range_is_refused(double ratio)
    {
        var e = Assert.Throws<BatchwiseException>(() => new ChannelPruning(ratio));
        Assert.Contains("between 0 and 1", e.Message, StringComparison.Ordinal);
    }

    private static Dictionary<string, long[]> Weights(OnnxModel model) =>
        model.Graph.Initializer.ToDictionary(t => t.Name, t => t.Dims.ToArray(), StringComparer.Ordinal);

    private static string Key(Dictionary<string, long[]> weights, string prefix) =>
        weights.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).OrderBy(k => k.Length).First();
}
