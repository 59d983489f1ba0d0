using Batchwise.Onnx;

namespace Batchwise.Zoo;

/// <summary>
/// A DBNet text detector as PaddleOCR/MMOCR export it: a ResNet-style backbone (strides 4-32), an FPN (1x1 laterals,
/// nearest upsampling and Adds, 3x3 outputs upsampled to 1/4 and concatenated), and the binarization head (Conv, then
/// two ConvTranspose upsamplers back to full size) ending in a sigmoid probability map.
/// </summary>
internal static class DbNet
{
    public static ZooEntry Entry { get; } = new(
        "dbnet",
        "DBNet text detector: ResNet backbone, FPN, two ConvTranspose upsamplers -> sigmoid probability map",
        new Dictionary<string, string> { ["size"] = "64", ["base"] = "16", ["inner"] = "32", ["opset"] = "17", ["seed"] = "0" },
        Build);

    private static OnnxModel Build(ZooOptions o)
    {
        var (height, width) = o.ImageSize("size", 32);
        int baseWidth = o.Int("base"), inner = o.Int("inner", 4);
        if (height % 32 != 0 || width % 32 != 0)
        {
            throw new BatchwiseException($"dbnet needs a size divisible by 32 (the backbone's last stride), got size={height}x{width}", $"Use e.g. size={Math.Max(32, height / 32 * 32)}.");
        }

        if (inner % 4 != 0)
        {
            throw new BatchwiseException($"dbnet needs inner divisible by 4 (four FPN levels are concatenated), got inner={inner}", "Use e.g. inner=32.");
        }

        var g = o.CreateBuilder("dbnet");
        var x = g.Input("image", ElementType.Float, "batch", 3L, (long)height, (long)width);

        // Backbone: stem (stride 4), then one basic block per stage at strides 4, 8, 16, 32.
        x = g.ConvBnAct(x, 3, baseWidth, 3, 2, Activation.Relu, "backbone.stem");
        x = g.MaxPool(x, 3, 2, 1);
        var features = new List<(string Value, long Channels)>();
        long channels = baseWidth;
        for (var stage = 0; stage < 4; stage++)
        {
            var c = (long)baseWidth << stage;
            x = BasicBlock(g, x, channels, c, stage == 0 ? 1 : 2, $"backbone.layer{stage + 1}");
            channels = c;
            features.Add((x, c));
        }

        // FPN: laterals to `inner` channels, top-down nearest upsampling + Add, 3x3 convolutions to inner/4, each
        // upsampled to stride 4 and concatenated.
        var laterals = features.Select((f, i) => g.Conv(f.Value, f.Channels, inner, 1, name: $"neck.lateral{i + 2}", gain: 1f)).ToList();
        for (var i = laterals.Count - 2; i >= 0; i--)
        {
            laterals[i] = g.Node("Add", [laterals[i], g.Upsample(laterals[i + 1], 2)]);
        }

        var outputs = laterals.Select((l, i) =>
        {
            var y = g.Conv(l, inner, inner / 4, 3, name: $"neck.out{i + 2}", gain: 1f);
            return i == 0 ? y : g.Upsample(y, 1 << i);
        }).ToList();
        var fused = g.Node("Concat", [.. outputs], GraphBuilder.Attr("axis", 1L));

        // Binarization head: Conv+BN+Relu, ConvTranspose (x2)+BN+Relu, ConvTranspose (x2), Sigmoid.
        var h = g.ConvBnAct(fused, inner, inner / 4, 3, 1, Activation.Relu, "head.binarize.conv");
        h = g.ConvTranspose(h, inner / 4, inner / 4, 2, 2, name: "head.binarize.deconv1");
        h = g.Node("Relu", [g.BatchNorm(h, inner / 4, "head.binarize.bn2")]);
        h = g.ConvTranspose(h, inner / 4, 1, 2, 2, name: "head.binarize.deconv2");
        var map = g.Rename(g.Node("Sigmoid", [h]), "probability");
        g.Output(map, ElementType.Float, "batch", 1L, (long)height, (long)width);
        return g.Build("dbnet");
    }

    private static string BasicBlock(GraphBuilder g, string x, long inChannels, long outChannels, int stride, string name)
    {
        var y = g.ConvBnAct(x, inChannels, outChannels, 3, stride, Activation.Relu, name + ".conv1");
        y = g.ConvBnAct(y, outChannels, outChannels, 3, 1, Activation.None, name + ".conv2", gamma: 0.5f);
        var identity = stride == 1 && inChannels == outChannels ? x : g.ConvBnAct(x, inChannels, outChannels, 1, stride, Activation.None, name + ".downsample");
        return g.Node("Relu", [g.Node("Add", [y, identity])]);
    }
}
