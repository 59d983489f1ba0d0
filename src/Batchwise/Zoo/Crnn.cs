using Batchwise.Onnx;

namespace Batchwise.Zoo;

/// <summary>
/// A CRNN text recogniser as torch exports it: a VGG-style conv stack that collapses a 32-pixel line to height 1,
/// Squeeze, time-major Transpose, a bidirectional LSTM, a Linear over both directions and a softmax per time step.
/// </summary>
internal static class Crnn
{
    private const int Height = 32;

    public static ZooEntry Entry { get; } = new(
        "crnn",
        "CRNN text recogniser: conv stack, bidirectional LSTM, per-step softmax -> [batch, steps, classes]",
        new Dictionary<string, string> { ["width"] = "64", ["base"] = "16", ["hidden"] = "32", ["classes"] = "37", ["opset"] = "17", ["seed"] = "0" },
        Build);

    /// <summary>Time steps for an image width: the conv stack keeps a quarter of the width, less one for its final 2x2 valid convolution.</summary>
    public static long Steps(long width) => (width / 4) - 1;

    private static OnnxModel Build(ZooOptions o)
    {
        int width = o.Int("width", 8), b = o.Int("base"), hidden = o.Int("hidden"), classes = o.Int("classes", 2);
        if (width % 4 != 0)
        {
            throw new BatchwiseException($"crnn needs a width divisible by 4 (two 2x2 poolings), got width={width}", $"Use e.g. width={Math.Max(8, width / 4 * 4)}.");
        }

        var g = o.CreateBuilder("crnn");
        var x = g.Input("image", ElementType.Float, "batch", 1L, (long)Height, (long)width);

        // VGG-style stack: 32 x W -> 16 x W/2 -> 8 x W/4 -> 4 x W/4 -> 2 x W/4 -> 1 x (W/4 - 1).
        x = g.MaxPool(g.Activate(g.Conv(x, 1, b, 3, bias: true, name: "cnn.conv0"), Activation.Relu), 2, 2, 0);
        x = g.MaxPool(g.Activate(g.Conv(x, b, 2 * b, 3, bias: true, name: "cnn.conv1"), Activation.Relu), 2, 2, 0);
        x = g.ConvBnAct(x, 2 * b, 4 * b, 3, 1, Activation.Relu, "cnn.conv2");
        x = PoolHeight(g, g.Activate(g.Conv(x, 4 * b, 4 * b, 3, bias: true, name: "cnn.conv3"), Activation.Relu));
        x = g.ConvBnAct(x, 4 * b, 8 * b, 3, 1, Activation.Relu, "cnn.conv4");
        x = PoolHeight(g, g.ConvBnAct(x, 8 * b, 8 * b, 3, 1, Activation.Relu, "cnn.conv5"));
        x = g.ConvBnAct(x, 8 * b, 8 * b, 2, 1, Activation.Relu, "cnn.conv6", padding: 0);

        // [batch, C, 1, T] -> [T, batch, C] -> BiLSTM -> [T, 2, batch, H] -> [batch, T, 2H] -> Linear -> softmax per step.
        var sequence = g.Node("Transpose", [g.Squeeze(x, 2)], GraphBuilder.Attr("perm", 2L, 0L, 1L));
        var y = g.Lstm(sequence, 8 * b, hidden, bidirectional: true, name: "rnn.lstm");
        y = g.Node("Transpose", [y], GraphBuilder.Attr("perm", 2L, 0L, 1L, 3L));
        y = g.Node("Reshape", [y, g.Int64s("rnn.merge_directions", [0, 0, 2L * hidden])]);
        var logits = g.Linear(y, 2L * hidden, classes, "rnn.embedding");
        var probabilities = g.Rename(g.Softmax(logits, -1, 3), "probabilities");
        g.Output(probabilities, ElementType.Float, "batch", Steps(width), (long)classes);
        return g.Build("crnn");
    }

    // MaxPool over height only (kernel and stride 2 x 1), as CRNN's later stages pool.
    private static string PoolHeight(GraphBuilder g, string x) =>
        g.Node("MaxPool", [x], GraphBuilder.Attr("kernel_shape", 2L, 1L), GraphBuilder.Attr("strides", 2L, 1L));
}
