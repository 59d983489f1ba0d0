using Batchwise.Onnx;

namespace Batchwise.Zoo;

/// <summary>MobileNetV2 as torchvision builds it: inverted residuals with depthwise convolutions and ReLU6.</summary>
internal static class MobileNetV2
{
    // (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
    private static readonly (int T, int C, int N, int S)[] Stages =
    [
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    ];

    public static ZooEntry Entry { get; } = new(
        "mobilenetv2",
        "MobileNetV2 (torchvision): inverted residuals, depthwise Conv, ReLU6",
        new Dictionary<string, string> { ["size"] = "224", ["classes"] = "1000", ["seed"] = "0" },
        Build);

    private static OnnxModel Build(ZooOptions o)
    {
        var (height, width) = o.ImageSize("size", 32);
        var classes = o.Int("classes");
        var g = o.CreateBuilder("mobilenetv2");
        var x = g.Input("input", ElementType.Float, "batch", 3L, (long)height, (long)width);
        x = g.ConvBnAct(x, 3, 32, 3, 2, Activation.Relu6, "features.0");
        long inChannels = 32;
        var index = 1;
        foreach (var (t, c, n, s) in Stages)
        {
            for (var i = 0; i < n; i++)
            {
                x = InvertedResidual(g, x, inChannels, c, i == 0 ? s : 1, t, $"features.{index++}");
                inChannels = c;
            }
        }

        x = g.ConvBnAct(x, inChannels, 1280, 1, 1, Activation.Relu6, $"features.{index}");
        x = g.Node("GlobalAveragePool", [x]);
        x = g.Node("Flatten", [x], GraphBuilder.Attr("axis", 1L));
        // Spread the logits as a trained classifier's are (see ResNet), so softmax outputs are peaked.
        var logits = g.Rename(g.Gemm(x, 1280, classes, "classifier.1", gain: 16f), "logits");
        g.Output(logits, ElementType.Float, "batch", (long)classes);
        return g.Build("mobilenetv2");
    }

    private static string InvertedResidual(GraphBuilder g, string x, long inChannels, long outChannels, int stride, int expansion, string prefix)
    {
        var hidden = inChannels * expansion;
        var y = x;
        if (expansion != 1)
        {
            y = g.ConvBnAct(y, inChannels, hidden, 1, 1, Activation.Relu6, prefix + ".expand");
        }

        var residual = stride == 1 && inChannels == outChannels;
        y = g.ConvBnAct(y, hidden, hidden, 3, stride, Activation.Relu6, prefix + ".depthwise", group: hidden);
        y = g.ConvBnAct(y, hidden, outChannels, 1, 1, Activation.None, prefix + ".project", gamma: residual ? 0.3f : 1f);
        return residual ? g.Node("Add", [x, y]) : y;
    }
}
