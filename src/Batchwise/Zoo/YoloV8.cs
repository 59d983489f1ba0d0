using Batchwise.Onnx;

namespace Batchwise.Zoo;

/// <summary>A YOLOv8n-style detector (Ultralytics' layout): C2f backbone, SPPF, upsample+concat neck, decoupled anchor-free head with DFL.</summary>
internal static class YoloV8
{
    private const int RegMax = 16;

    public static ZooEntry Entry { get; } = new(
        "yolov8n",
        "YOLOv8n-style detector: C2f, SPPF, upsample+concat neck, DFL head -> [batch, 84, anchors]",
        new Dictionary<string, string> { ["size"] = "640", ["classes"] = "80", ["seed"] = "0" },
        Build);

    private static OnnxModel Build(ZooOptions o)
    {
        int size = o.Int("size", 32), classes = o.Int("classes");
        if (size % 32 != 0)
        {
            throw new BatchwiseException($"yolov8n needs an input size divisible by 32 (the largest stride), got size={size}", $"Use e.g. size={Math.Max(32, size / 32 * 32)}.");
        }

        var g = o.CreateBuilder("yolov8n");
        var x = g.Input("images", ElementType.Float, "batch", 3L, (long)size, (long)size);

        // Widths of the 'n' scale: 0.25 x (64, 128, 256, 512, 1024); depths 0.33 x (3, 6) rounded = 1, 2.
        var b0 = Conv(g, x, 3, 16, 3, 2, "model.0");
        var b1 = Conv(g, b0, 16, 32, 3, 2, "model.1");
        var b2 = C2f(g, b1, 32, 32, 1, true, "model.2");
        var b3 = Conv(g, b2, 32, 64, 3, 2, "model.3");
        var p3 = C2f(g, b3, 64, 64, 2, true, "model.4");
        var b5 = Conv(g, p3, 64, 128, 3, 2, "model.5");
        var p4 = C2f(g, b5, 128, 128, 2, true, "model.6");
        var b7 = Conv(g, p4, 128, 256, 3, 2, "model.7");
        var b8 = C2f(g, b7, 256, 256, 1, true, "model.8");
        var p5 = Sppf(g, b8, 256, 256, "model.9");

        var h12 = C2f(g, g.Node("Concat", [Upsample(g, p5), p4], GraphBuilder.Attr("axis", 1L)), 384, 128, 1, false, "model.12");
        var out3 = C2f(g, g.Node("Concat", [Upsample(g, h12), p3], GraphBuilder.Attr("axis", 1L)), 192, 64, 1, false, "model.15");
        var h16 = Conv(g, out3, 64, 64, 3, 2, "model.16");
        var out4 = C2f(g, g.Node("Concat", [h16, h12], GraphBuilder.Attr("axis", 1L)), 192, 128, 1, false, "model.18");
        var h19 = Conv(g, out4, 128, 128, 3, 2, "model.19");
        var out5 = C2f(g, g.Node("Concat", [h19, p5], GraphBuilder.Attr("axis", 1L)), 384, 256, 1, false, "model.21");

        var output = g.Rename(Detect(g, [(out3, 64, 8), (out4, 128, 16), (out5, 256, 32)], classes, size), "output0");
        var anchors = Anchors(size).Length / 2;
        g.Output(output, ElementType.Float, "batch", 4L + classes, (long)anchors);
        return g.Build("yolov8n");
    }

    private static string Conv(GraphBuilder g, string x, long c1, long c2, long k, long s, string name) =>
        g.ConvBnAct(x, c1, c2, k, s, Activation.Silu, name);

    // C2f: cv1 to 2c channels, split in halves, n bottlenecks on the last half, concat all, cv2.
    private static string C2f(GraphBuilder g, string x, long c1, long c2, int n, bool shortcut, string name)
    {
        var c = c2 / 2;
        var y = Conv(g, x, c1, 2 * c, 1, 1, name + ".cv1");
        var halves = g.NodeN("Split", [y, g.Int64s(name + ".split", [c, c])], 2, GraphBuilder.Attr("axis", 1L));
        var parts = new List<string>(halves);
        var last = halves[1];
        for (var i = 0; i < n; i++)
        {
            var b = Conv(g, last, c, c, 3, 1, $"{name}.m.{i}.cv1");
            b = Conv(g, b, c, c, 3, 1, $"{name}.m.{i}.cv2");
            last = shortcut ? g.Node("Add", [last, b]) : b;
            parts.Add(last);
        }

        return Conv(g, g.Node("Concat", [.. parts], GraphBuilder.Attr("axis", 1L)), (2 + n) * c, c2, 1, 1, name + ".cv2");
    }

    // SPPF: cv1 to c1/2, three chained MaxPool k5 s1, concat the four, cv2.
    private static string Sppf(GraphBuilder g, string x, long c1, long c2, string name)
    {
        var c = c1 / 2;
        var y = Conv(g, x, c1, c, 1, 1, name + ".cv1");
        var p1 = g.MaxPool(y, 5, 1, 2);
        var p2 = g.MaxPool(p1, 5, 1, 2);
        var p3 = g.MaxPool(p2, 5, 1, 2);
        return Conv(g, g.Node("Concat", [y, p1, p2, p3], GraphBuilder.Attr("axis", 1L)), 4 * c, c2, 1, 1, name + ".cv2");
    }

    private static string Upsample(GraphBuilder g, string x) =>
        g.Node(
            "Resize",
            [x, string.Empty, g.Initializer("upsample.scales", [4], [1f, 1f, 2f, 2f])],
            GraphBuilder.Attr("mode", "nearest"),
            GraphBuilder.Attr("coordinate_transformation_mode", "asymmetric"),
            GraphBuilder.Attr("nearest_mode", "floor"));

    // Decoupled head: per level a box branch (4 x RegMax distance bins) and a class branch; flattened to
    // [batch, 4*RegMax + classes, anchors], DFL turns bins into distances, distances become xywh boxes in pixels.
    private static string Detect(GraphBuilder g, (string X, long C, int Stride)[] levels, int classes, int size)
    {
        long boxWidth = Math.Max(16, Math.Max(levels[0].C / 4, RegMax * 4));
        long clsWidth = Math.Max(levels[0].C, Math.Min(classes, 100));
        var flat = new List<string>();
        for (var i = 0; i < levels.Length; i++)
        {
            var (x, c, _) = levels[i];
            var box = Conv(g, x, c, boxWidth, 3, 1, $"model.22.cv2.{i}.0");
            box = Conv(g, box, boxWidth, boxWidth, 3, 1, $"model.22.cv2.{i}.1");
            box = g.Conv(box, boxWidth, 4 * RegMax, 1, bias: true, name: $"model.22.cv2.{i}.2", gain: 1f);
            var cls = Conv(g, x, c, clsWidth, 3, 1, $"model.22.cv3.{i}.0");
            cls = Conv(g, cls, clsWidth, clsWidth, 3, 1, $"model.22.cv3.{i}.1");
            cls = g.Conv(cls, clsWidth, classes, 1, bias: true, name: $"model.22.cv3.{i}.2", gain: 1f);
            var both = g.Node("Concat", [box, cls], GraphBuilder.Attr("axis", 1L));
            flat.Add(g.Node("Reshape", [both, g.Int64s("head.flat_shape", [0, (4 * RegMax) + classes, -1])]));
        }

        var all = g.Node("Concat", [.. flat], GraphBuilder.Attr("axis", 2L));
        var split = g.NodeN("Split", [all, g.Int64s("head.split", [4 * RegMax, classes])], 2, GraphBuilder.Attr("axis", 1L));

        // DFL: softmax over the RegMax bins of each side, then the expected bin index (a fixed 1x1 conv with weights 0..15).
        var bins = g.Node("Reshape", [split[0], g.Int64s("dfl.shape", [0, 4, RegMax, -1])]);
        bins = g.Node("Transpose", [bins], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L));
        bins = g.Node("Softmax", [bins], GraphBuilder.Attr("axis", 1L));
        var dflWeight = g.Initializer("model.22.dfl.conv.weight", [1, RegMax, 1, 1], Enumerable.Range(0, RegMax).Select(v => (float)v).ToArray());
        var distance = g.Node("Conv", [bins, dflWeight], GraphBuilder.Attr("kernel_shape", 1L, 1L));
        distance = g.Node("Reshape", [distance, g.Int64s("dfl.out_shape", [0, 4, -1])]);

        // dist2bbox (xywh): anchor points in grid units, then scale by each anchor's stride.
        var (points, strides) = (Anchors(size), Strides(size));
        var anchorCount = strides.Length;
        var anchors = g.Initializer("head.anchors", [2, anchorCount], points);
        var lt = g.NodeN("Split", [distance, g.Int64s("head.lt_rb", [2, 2])], 2, GraphBuilder.Attr("axis", 1L));
        var x1y1 = g.Node("Sub", [anchors, lt[0]]);
        var x2y2 = g.Node("Add", [anchors, lt[1]]);
        var centre = g.Node("Mul", [g.Node("Add", [x1y1, x2y2]), g.Scalar(0.5f)]);
        var wh = g.Node("Sub", [x2y2, x1y1]);
        var boxes = g.Node("Mul", [g.Node("Concat", [centre, wh], GraphBuilder.Attr("axis", 1L)), g.Initializer("head.strides", [1, anchorCount], strides)]);
        var scores = g.Node("Sigmoid", [split[1]]);
        return g.Node("Concat", [boxes, scores], GraphBuilder.Attr("axis", 1L));
    }

    // Anchor centres (x + 0.5, y + 0.5) of every cell of the stride 8, 16 and 32 grids: row 0 holds x, row 1 holds y.
    private static float[] Anchors(int size)
    {
        var xs = new List<float>();
        var ys = new List<float>();
        foreach (var stride in new[] { 8, 16, 32 })
        {
            var n = size / stride;
            for (var y = 0; y < n; y++)
            {
                for (var x = 0; x < n; x++)
                {
                    xs.Add(x + 0.5f);
                    ys.Add(y + 0.5f);
                }
            }
        }

        return [.. xs, .. ys];
    }

    private static float[] Strides(int size) =>
        [.. new[] { 8, 16, 32 }.SelectMany(s => Enumerable.Repeat((float)s, (size / s) * (size / s)))];
}
