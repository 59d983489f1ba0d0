using Batchwise.Onnx;

namespace Batchwise.Zoo;

/// <summary>ResNet-18 and ResNet-50 as torchvision builds them (v1.5: the stride sits on the 3x3 convolution of a bottleneck).</summary>
internal static class ResNet
{
    private static readonly int[] Resnet18Blocks = [2, 2, 2, 2];
    private static readonly int[] Resnet50Blocks = [3, 4, 6, 3];

    public static ZooEntry Resnet18 { get; } = new(
        "resnet18",
        "ResNet-18 (torchvision): basic blocks of Conv+BatchNormalization+Relu",
        new Dictionary<string, string> { ["size"] = "224", ["classes"] = "1000", ["seed"] = "0" },
        o => Build(o, "resnet18", Resnet18Blocks, bottleneck: false));

    public static ZooEntry Resnet50 { get; } = new(
        "resnet50",
        "ResNet-50 v1.5 (torchvision): bottleneck blocks of Conv+BatchNormalization+Relu",
        new Dictionary<string, string> { ["size"] = "224", ["classes"] = "1000", ["seed"] = "0" },
        o => Build(o, "resnet50", Resnet50Blocks, bottleneck: true));

    private static OnnxModel Build(ZooOptions o, string name, int[] blocks, bool bottleneck)
    {
        var (height, imageWidth) = o.ImageSize("size", 32);
        var classes = o.Int("classes");
        var g = o.CreateBuilder(name);
        var x = g.Input("input", ElementType.Float, "batch", 3L, (long)height, (long)imageWidth);
        x = g.ConvBnAct(x, 3, 64, 7, 2, Activation.Relu, "conv1");
        x = g.MaxPool(x, 3, 2, 1);
        long inChannels = 64;
        var expansion = bottleneck ? 4 : 1;
        for (var stage = 0; stage < blocks.Length; stage++)
        {
            var width = 64L << stage;
            for (var b = 0; b < blocks[stage]; b++)
            {
                var stride = stage > 0 && b == 0 ? 2 : 1;
                var prefix = $"layer{stage + 1}.{b}";
                x = bottleneck
                    ? Bottleneck(g, x, inChannels, width, stride, prefix)
                    : BasicBlock(g, x, inChannels, width, stride, prefix);
                inChannels = width * expansion;
            }
        }

        x = g.Node("GlobalAveragePool", [x]);
        x = g.Node("Flatten", [x], GraphBuilder.Attr("axis", 1L));
        var logits = g.Rename(g.Gemm(x, inChannels, classes, "fc", ClassifierGain), "logits");
        g.Output(logits, ElementType.Float, "batch", (long)classes);
        return g.Build(name);
    }

    // The last BatchNormalization of each residual branch gets a small scale, so the sum over 8-16 blocks keeps
    // activations near unit scale with random weights (torchvision's zero_init_residual, not quite zero).
    private const float ResidualGamma = 0.3f;

    // Pooled features of a random network are small (mean square ~0.2); this spreads the logits (std ~2.5) as a trained
    // classifier's are, so softmax gives a peaked distribution rather than a near-uniform one.
    private const float ClassifierGain = 30f;

    private static string BasicBlock(GraphBuilder g, string x, long inChannels, long width, int stride, string prefix)
    {
        var y = g.ConvBnAct(x, inChannels, width, 3, stride, Activation.Relu, prefix + ".conv1");
        y = g.ConvBnAct(y, width, width, 3, 1, Activation.None, prefix + ".conv2", gamma: ResidualGamma);
        var identity = Shortcut(g, x, inChannels, width, stride, prefix);
        return g.Node("Relu", [g.Node("Add", [y, identity])]);
    }

    private static string Bottleneck(GraphBuilder g, string x, long inChannels, long width, int stride, string prefix)
    {
        var y = g.ConvBnAct(x, inChannels, width, 1, 1, Activation.Relu, prefix + ".conv1");
        y = g.ConvBnAct(y, width, width, 3, stride, Activation.Relu, prefix + ".conv2");
        y = g.ConvBnAct(y, width, width * 4, 1, 1, Activation.None, prefix + ".conv3", gamma: ResidualGamma);
        var identity = Shortcut(g, x, inChannels, width * 4, stride, prefix);
        return g.Node("Relu", [g.Node("Add", [y, identity])]);
    }

    private static string Shortcut(GraphBuilder g, string x, long inChannels, long outChannels, int stride, string prefix) =>
        stride == 1 && inChannels == outChannels
            ? x
            : g.ConvBnAct(x, inChannels, outChannels, 1, stride, Activation.None, prefix + ".downsample");
}
