using Batchwise.Onnx;

namespace Batchwise.Zoo;

/// <summary>
/// A model that does almost nothing: each image's per-channel mean (ReduceMean over height and width). Serving it
/// measures the transport alone (issue 12: 602 KB float32 [1,3,224,224] requests), and each answer still depends on its
/// own request's bytes, so a crossed response shows.
/// </summary>
internal static class Transport
{
    public static readonly ZooEntry Entry = new(
        "transport",
        "Per-channel mean of an image (one ReduceMean): measures a server's transport, not its compute",
        new Dictionary<string, string> { ["channels"] = "3", ["size"] = "224" },
        Build);

    private static OnnxModel Build(ZooOptions o)
    {
        var channels = o.Int("channels");
        var (height, width) = o.ImageSize("size");
        var g = o.CreateBuilder("transport");
        var x = g.Input("input", ElementType.Float, "batch", (long)channels, (long)height, (long)width);
        var mean = g.Rename(g.ReduceMean(x, [2, 3], keepDims: false), "mean");
        g.Output(mean, ElementType.Float, "batch", (long)channels);
        return g.Build("transport");
    }
}
