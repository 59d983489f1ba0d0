using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Engine;

/// <summary>Load fails before any GPU work on what the engine cannot run, so these hold on every machine.</summary>
public sealed class LoadValidationTests
{
    [Fact]
    public void An_unsupported_operator_fails_at_load_naming_the_operator_and_node()
    {
        var g = new GraphBuilder("bad");
        var x = g.Input("x", ElementType.Float, 1L, 4L);
        g.Output(g.Rename(g.Node("Hardmax", [x]), "y"), ElementType.Float, 1L, 4L);

        var e = Assert.Throws<BatchwiseException>(() => new CudaEngine().Load(g.Build("bad"), new EngineOptions()));

        Assert.Contains("operator Hardmax", e.Message, StringComparison.Ordinal);
        Assert.Contains("'hardmax'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unsupported_attribute_value_fails_at_load()
    {
        var g = new GraphBuilder("antialias");
        var x = g.Input("x", ElementType.Float, 1L, 1L, 8L, 8L);
        var y = g.Node("Resize", [x, string.Empty, g.Initializer("scales", [4], [1, 1, 0.5f, 0.5f])], GraphBuilder.Attr("mode", "linear"), GraphBuilder.Attr("antialias", 1L));
        g.Output(g.Rename(y, "y"), ElementType.Float, 1L, 1L, 4L, 4L);

        var e = Assert.Throws<BatchwiseException>(() => new CudaEngine().Load(g.Build("antialias", 18), new EngineOptions()));

        Assert.Contains("antialias", e.Message, StringComparison.Ordinal);
        Assert.Contains("Resize", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("zoo:resnet50")]
    [InlineData("zoo:mobilenetv2")]
    [InlineData("zoo:yolov8n")]
    [InlineData("zoo:bert")]
    public void Every_zoo_model_uses_only_supported_operators(string spec)
    {
        Batchwise.Cuda.Planning.OperatorSupport.Validate(ModelZoo.BuildStructure(spec));
    }
}
