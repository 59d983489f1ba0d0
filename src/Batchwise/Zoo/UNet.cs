using Batchwise.Onnx;

namespace Batchwise.Zoo;

/// <summary>A U-Net segmenter as torch exports it: DoubleConv encoder, ConvTranspose upsampling, skip Concats, a class map, its softmax and a half-resolution deep-supervision head.</summary>
internal static class UNet
{
    public static ZooEntry Entry { get; } = new(
        "unet",
        "U-Net segmenter: ConvTranspose decoder with skip Concats -> logits, probabilities, aux_logits (half size)",
        new Dictionary<string, string> { ["size"] = "64", ["base"] = "8", ["depth"] = "3", ["classes"] = "2", ["opset"] = "17", ["seed"] = "0" },
        Build);

    private static OnnxModel Build(ZooOptions o)
    {
        var (height, width) = o.ImageSize("size", 8);
        int baseWidth = o.Int("base"), depth = o.Int("depth"), classes = o.Int("classes");
        var stride = 1 << depth;
        if (height % stride != 0 || width % stride != 0)
        {
            throw new BatchwiseException($"unet with depth={depth} needs a size divisible by {stride}, got size={height}x{width}", $"Use e.g. size={Math.Max(stride, height / stride * stride)}.");
        }

        var g = o.CreateBuilder("unet");
        var x = g.Input("image", ElementType.Float, "batch", 3L, (long)height, (long)width);

        // Encoder: DoubleConv at each level, MaxPool between; the deepest level is the bottleneck.
        var skips = new List<(string Value, long Channels)>();
        long channels = 3;
        for (var level = 0; level <= depth; level++)
        {
            var c = (long)baseWidth << level;
            x = DoubleConv(g, x, channels, c, level == depth ? "bottleneck" : $"down{level}");
            channels = c;
            if (level < depth)
            {
                skips.Add((x, c));
                x = g.MaxPool(x, 2, 2, 0);
            }
        }

        // Decoder: ConvTranspose (k2, s2) halves the channels and doubles the size, Concat with the skip, DoubleConv.
        string? aux = null;
        for (var level = depth - 1; level >= 0; level--)
        {
            var (skip, c) = skips[level];
            var up = g.ConvTranspose(x, channels, c, 2, 2, name: $"up{level}.upsample");
            x = DoubleConv(g, g.Node("Concat", [up, skip], GraphBuilder.Attr("axis", 1L)), 2 * c, c, $"up{level}");
            channels = c;
            if (level == 1)
            {
                aux = g.Conv(x, c, classes, 1, bias: true, name: "aux_head", gain: 1f);
            }
        }

        var logits = g.Rename(g.Conv(x, channels, classes, 1, bias: true, name: "head", gain: 1f), "logits");
        var probabilities = g.Rename(g.Softmax(logits, 1, 4), "probabilities");
        g.Output(logits, ElementType.Float, "batch", (long)classes, (long)height, (long)width);
        g.Output(probabilities, ElementType.Float, "batch", (long)classes, (long)height, (long)width);
        if (aux is not null)
        {
            g.Output(g.Rename(aux, "aux_logits"), ElementType.Float, "batch", (long)classes, (long)height / 2, (long)width / 2);
        }

        return g.Build("unet");
    }

    // Conv3x3 (no bias) + BatchNormalization + Relu, twice.
    private static string DoubleConv(GraphBuilder g, string x, long inChannels, long outChannels, string name)
    {
        var y = g.ConvBnAct(x, inChannels, outChannels, 3, 1, Activation.Relu, name + ".conv1");
        return g.ConvBnAct(y, outChannels, outChannels, 3, 1, Activation.Relu, name + ".conv2");
    }
}
