using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Operators;

/// <summary>
/// Small graphs for the engine's own kernels that replace library calls or copies (issue 16): depthwise convolutions,
/// spatial reductions, layout no-op transposes, LayerNormalization and Softmax. The CPU plan tests run their kernels
/// with g++, the GPU tests on the device; both against ONNX Runtime.
/// </summary>
internal static class KernelCaseModels
{
    /// <summary>Every case by name: the model and its inputs.</summary>
    public static IReadOnlyDictionary<string, Func<(OnnxModel Model, List<Tensor> Inputs)>> All { get; } = new Dictionary<string, Func<(OnnxModel, List<Tensor>)>>(StringComparer.Ordinal)
    {
        // Depthwise convolutions: (N, C, H, W), kernel, strides, pads [top, left, bottom, right], dilations, bias, what follows.
        ["dw-3x3-relu"] = () => Depthwise([2, 16, 9, 11], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], true, "Relu"),
        ["dw-7x7-convnext"] = () => Depthwise([2, 24, 14, 14], [7, 7], [1, 1], [3, 3, 3, 3], [1, 1], true, null),
        ["dw-3x3-stride2-asymmetric-hardswish"] = () => Depthwise([2, 16, 13, 12], [3, 3], [2, 2], [0, 0, 1, 1], [1, 1], true, "HardSwish"),
        ["dw-5x5-dilation2-silu"] = () => Depthwise([1, 8, 12, 12], [5, 5], [1, 1], [4, 4, 4, 4], [2, 2], true, "SiLU"),
        ["dw-3x3-odd-channels-batchnorm"] = () => Depthwise([2, 5, 7, 7], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], false, "BatchNormalization"),
        ["dw-3x3-stride2-narrow-no-bias"] = () => Depthwise([1, 10, 5, 6], [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], false, null),
        ["dw-1x5-wide-stride-3"] = () => Depthwise([1, 12, 4, 23], [1, 5], [1, 3], [0, 2, 0, 1], [1, 1], true, null),
        ["dw-1d-k5"] = () => Depthwise1d([2, 6, 20], 5, 2),
        // Several channel groups and output tiles of the tiled kernel, the last ones partial (96 channels: 2 groups of 24
        // lanes in half precision, 3 of 32 in float; 128 at stride 2).
        ["dw-3x3-tiles-and-channel-groups"] = () => Depthwise([1, 96, 23, 37], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], true, "Relu"),
        ["dw-3x3-stride2-tiles-and-channel-groups"] = () => Depthwise([2, 128, 17, 19], [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], true, null),

        // Reductions, read as stored (channels-last in the half-precision plans): an SE block, spatial sums and maxima,
        // channel means, and the general and row-wise cases.
        ["reducemean-hw-squeeze-excite"] = SqueezeExcite,
        ["reducemean-hw-opset18-no-keepdims"] = () => Reduce("ReduceMean", [2, 24, 7, 9], [2, 3], keep: false, opset: 18),
        ["reducesum-hw"] = () => Reduce("ReduceSum", [2, 10, 6, 5], [2, 3], keep: true, opset: 13),
        ["reducemax-hw"] = () => Reduce("ReduceMax", [2, 12, 5, 6], [-2, -1], keep: true),
        ["reducemean-channels"] = () => Reduce("ReduceMean", [2, 24, 5, 6], [1], keep: true),
        ["reducemean-width-no-keepdims"] = () => Reduce("ReduceMean", [2, 8, 5, 6], [3], keep: false),
        ["reducemean-hw-split-ranges"] = () => Reduce("ReduceMean", [1, 32, 40, 40], [2, 3], keep: true),
        ["reducemax-hw-81-split-ranges"] = () => Reduce("ReduceMax", [2, 16, 72, 72], [2, 3], keep: true),
        ["reducemax-hw-split-ranges-odd-channels"] = () => Reduce("ReduceMax", [2, 5, 20, 20], [2, 3], keep: false),
        ["reducesum-long-rows"] = () => Reduce("ReduceSum", [2, 3, 64, 48], [2, 3], keep: true, opset: 13),
        ["reducemax-last-axis"] = () => Reduce("ReduceMax", [4, 5, 33], [2], keep: false),
        ["reducel2-middle-axis"] = () => Reduce("ReduceL2", [3, 17, 10], [1], keep: true),
        ["reducelogsum-middle-axis"] = () => Reduce("ReduceLogSum", [3, 17, 10], [1], keep: false, positive: true),
        ["reducemin-hw"] = () => Reduce("ReduceMin", [1, 6, 4, 4], [2, 3], keep: true),
        ["reducesumsquare-batch-and-channels"] = () => Reduce("ReduceSumSquare", [2, 6, 3, 4], [0, 1], keep: true),

        // Pooling of channels-last values: 8 channels per thread where the channels allow (ResNet-50's stem max pool),
        // one per thread otherwise.
        ["maxpool-3x3-stride2-channels-last-vector"] = () => Pool("MaxPool", [2, 16, 11, 9], [3, 3], [2, 2], [1, 1, 1, 1], false),
        ["averagepool-3x3-include-pad-vector"] = () => Pool("AveragePool", [1, 24, 7, 8], [3, 3], [1, 1], [1, 1, 1, 1], true),
        ["maxpool-2x2-odd-channels"] = () => Pool("MaxPool", [2, 6, 6, 7], [2, 2], [2, 2], [0, 0, 0, 0], false),

        // Slices of channels-last values, read as stored (no layout copy), and a slice of the whole tensor (no copy at all).
        ["slice-channels-and-width-channels-last"] = () => Slice([2, 16, 5, 7], [0, 3, 0, 1], [2, 13, 5, 7], [1, 2, 1, 3]),
        ["slice-whole-tensor"] = () => Slice([2, 8, 4, 4], [0, 0, 0, 0], [2, 8, 4, 4], [1, 1, 1, 1]),

        // Transposes of channels-last values: around a LayerNorm over channels (ConvNeXt), and a general permutation.
        ["transpose-channels-last-layernorm"] = ConvNextBlock,
        ["transpose-general-permutation"] = () => Transpose([2, 6, 5, 4], [0, 2, 1, 3]),
        ["transpose-to-channels-first"] = () => Transpose([2, 5, 4, 6], [0, 3, 1, 2]),

        // LayerNormalization and Softmax over rows held in registers (and the wider rows that are not).
        ["layernorm-384"] = () => LayerNorm([4, 10, 384], bias: true),
        ["layernorm-96-no-bias"] = () => LayerNorm([50, 96], bias: false),
        ["layernorm-37"] = () => LayerNorm([6, 37], bias: true),
        ["layernorm-1500"] = () => LayerNorm([3, 1500], bias: true),
        ["softmax-197"] = () => Softmax([2, 2, 10, 197], log: false),
        ["softmax-64"] = () => Softmax([40, 64], log: false),
        ["logsoftmax-100"] = () => Softmax([7, 100], log: true),
        ["softmax-3000"] = () => Softmax([3, 3000], log: false),
    };

    /// <summary>
    /// Cases whose plans hold a library call (cuBLASLt) as well as own kernels, so they run on the GPU only: patch
    /// embeddings (window == stride) as one GEMM in half precision (float32 plans keep cuDNN).
    /// </summary>
    public static IReadOnlyDictionary<string, Func<(OnnxModel Model, List<Tensor> Inputs)>> GpuOnly { get; } = new Dictionary<string, Func<(OnnxModel, List<Tensor>)>>(StringComparer.Ordinal)
    {
        ["patches-16x16-vit"] = () => Patches([2, 3, 64, 64], [16, 16], 32, bias: true),
        ["patches-4x4-swin-no-bias"] = () => Patches([2, 3, 16, 20], [4, 4], 24, bias: false),
        ["patches-4x4-floored-border"] = () => Patches([2, 3, 18, 17], [4, 4], 16, bias: true),
        ["patches-2x2-16-channels"] = () => Patches([2, 16, 8, 8], [2, 2], 32, bias: true),
    };

    /// <summary>A case's model, its random inputs and ONNX Runtime's outputs for them.</summary>
    public static (OnnxModel Model, List<Tensor> Inputs, IReadOnlyList<Tensor> Expected) Build(string name)
    {
        var (model, inputs) = (All.TryGetValue(name, out var make) ? make : GpuOnly[name])();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        return (model, inputs, ort.Run(inputs));
    }

    /// <summary>
    /// Float16 agreement as the house measures it: cosine similarity at least 0.9999 per output and every element within
    /// 2% of the output's largest magnitude; float32: within 1e-4 of it. Returns what differs, or null.
    /// </summary>
    public static string? Difference(IReadOnlyList<Tensor> actual, IReadOnlyList<Tensor> expected, bool half)
    {
        if (OperatorCaseModels.Difference(actual, expected, half ? 2e-2 : 1e-4) is { } d)
        {
            return d;
        }

        for (var i = 0; i < expected.Count && half; i++)
        {
            var a = actual[i].ToDoubles();
            var e = expected[i].ToDoubles();
            double dot = 0, na = 0, ne = 0;
            for (var j = 0; j < e.Length; j++)
            {
                dot += a[j] * e[j];
                na += a[j] * a[j];
                ne += e[j] * e[j];
            }

            var cosine = na == 0 && ne == 0 ? 1 : dot / Math.Sqrt(na * ne);
            if (cosine < 0.9999)
            {
                return $"output {i}: cosine {cosine:F6} < 0.9999";
            }
        }

        return null;
    }

    private static Tensor Random(long[] shape, int seed)
    {
        var rng = new Random(seed);
        var n = (int)Tensor.ElementCountOf(shape);
        return Tensor.From<float>(ElementType.Float, shape, Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray());
    }

    private static long Out(long size, long kernel, long stride, long padBegin, long padEnd, long dilation) =>
        ((size + padBegin + padEnd - (((kernel - 1) * dilation) + 1)) / stride) + 1;

    private static (OnnxModel, List<Tensor>) Depthwise(long[] x, long[] kernel, long[] strides, long[] pads, long[] dilations, bool bias, string? after)
    {
        var g = new GraphBuilder("depthwise", seed: 3);
        var c = x[1];
        var input = g.Input("x", ElementType.Float, x[0], c, x[2], x[3]);
        var w = g.Weight("w", [c, 1, kernel[0], kernel[1]], 0.5f);
        string[] ins = bias ? [input, w, g.Weight("b", [c], 0.5f)] : [input, w];
        var y = g.Node("Conv", ins, GraphBuilder.Attr("group", c), GraphBuilder.Attr("kernel_shape", kernel), GraphBuilder.Attr("strides", strides), GraphBuilder.Attr("pads", pads), GraphBuilder.Attr("dilations", dilations));
        y = after switch
        {
            null => y,
            "SiLU" => g.Node("Mul", [y, g.Node("Sigmoid", [y])]),
            "BatchNormalization" => g.Node("BatchNormalization", [y, g.Uniform("gamma", [c], 0.5f, 1.5f), g.Weight("beta", [c], 0.5f), g.Weight("mean", [c], 0.2f), g.Uniform("var", [c], 0.5f, 1.5f)]),
            _ => g.Node(after, [y]),
        };
        var oh = Out(x[2], kernel[0], strides[0], pads[0], pads[2], dilations[0]);
        var ow = Out(x[3], kernel[1], strides[1], pads[1], pads[3], dilations[1]);
        g.Output(g.Rename(y, "y"), ElementType.Float, x[0], c, oh, ow);
        return (g.Build("depthwise"), [Random(x, 7)]);
    }

    private static (OnnxModel, List<Tensor>) SqueezeExcite()
    {
        // EfficientNet's squeeze-and-excitation: x * sigmoid(conv(silu(conv(mean over H, W)))), here with 1x1 convs as Gemm-free Mul/Add.
        var g = new GraphBuilder("se", seed: 5);
        var x = g.Input("x", ElementType.Float, 2L, 24L, 7L, 9L);
        var mean = g.Node("ReduceMean", [x], GraphBuilder.Attr("axes", 2L, 3L), GraphBuilder.Attr("keepdims", 1L));
        var scaled = g.Node("Add", [g.Node("Mul", [mean, g.Weight("s", [1, 24, 1, 1], 2f)]), g.Weight("t", [1, 24, 1, 1], 0.5f)]);
        var y = g.Node("Mul", [x, g.Node("Sigmoid", [scaled])]);
        g.Output(g.Rename(y, "y"), ElementType.Float, 2L, 24L, 7L, 9L);
        return (g.Build("se"), [Random([2, 24, 7, 9], 9)]);
    }

    private static (OnnxModel, List<Tensor>) Reduce(string op, long[] shape, long[] axes, bool keep, long opset = 17, bool positive = false)
    {
        var g = new GraphBuilder(op, seed: 6) { Opset = opset };
        var x = g.Input("x", ElementType.Float, [.. shape.Cast<object>()]);
        var fromInput = opset >= 18 || (op == "ReduceSum" && opset >= 13);
        var keepAttr = GraphBuilder.Attr("keepdims", keep ? 1L : 0L);
        var y = fromInput ? g.Node(op, [positive ? g.Node("Abs", [x]) : x, g.Int64s("axes", axes)], keepAttr) : g.Node(op, [positive ? g.Node("Abs", [x]) : x], GraphBuilder.Attr("axes", axes), keepAttr);
        var rank = shape.Length;
        var reduced = axes.Select(a => a < 0 ? a + rank : a).ToHashSet();
        var outShape = keep ? shape.Select((d, i) => reduced.Contains(i) ? 1 : d).ToArray() : shape.Where((_, i) => !reduced.Contains(i)).ToArray();
        g.Output(g.Rename(y, "y"), ElementType.Float, [.. outShape.Cast<object>()]);
        return (g.Build(op, opset), [Random(shape, 10)]);
    }

    private static (OnnxModel, List<Tensor>) Slice(long[] shape, long[] starts, long[] ends, long[] steps)
    {
        var g = new GraphBuilder("Slice", seed: 9);
        var x = g.Input("x", ElementType.Float, [.. shape.Cast<object>()]);
        var y = g.Node("Slice", [x, g.Int64s("starts", starts), g.Int64s("ends", ends), g.Int64s("axes", [0, 1, 2, 3]), g.Int64s("steps", steps)]);
        var outShape = shape.Select((_, d) => (ends[d] - starts[d] + steps[d] - 1) / steps[d]).ToArray();
        g.Output(g.Rename(y, "y"), ElementType.Float, [.. outShape.Cast<object>()]);
        return (g.Build("Slice"), [Random(shape, 13)]);
    }

    private static (OnnxModel, List<Tensor>) Pool(string op, long[] shape, long[] kernel, long[] strides, long[] pads, bool countIncludePad)
    {
        var g = new GraphBuilder(op, seed: 8);
        var x = g.Input("x", ElementType.Float, [.. shape.Cast<object>()]);
        var attrs = new List<global::Onnx.AttributeProto> { GraphBuilder.Attr("kernel_shape", kernel), GraphBuilder.Attr("strides", strides), GraphBuilder.Attr("pads", pads) };
        if (op == "AveragePool")
        {
            attrs.Add(GraphBuilder.Attr("count_include_pad", countIncludePad ? 1L : 0L));
        }

        var y = g.Node(op, [x], [.. attrs]);
        var outShape = new long[] { shape[0], shape[1] }.Concat(Enumerable.Range(0, 2).Select(d => ((shape[d + 2] + pads[d] + pads[d + 2] - kernel[d]) / strides[d]) + 1)).ToArray();
        g.Output(g.Rename(y, "y"), ElementType.Float, [.. outShape.Cast<object>()]);
        return (g.Build(op), [Random(shape, 12)]);
    }

    private static (OnnxModel, List<Tensor>) ConvNextBlock()
    {
        // ConvNeXt's block tail: permute to [N, H, W, C], LayerNorm over C, a channel scale, permute back, residual add.
        var g = new GraphBuilder("convnext-ln", seed: 7);
        var x = g.Input("x", ElementType.Float, 2L, 16L, 5L, 6L);
        var nhwc = g.Node("Transpose", [x], GraphBuilder.Attr("perm", 0L, 2L, 3L, 1L));
        var ln = g.Node("LayerNormalization", [nhwc, g.Uniform("gamma", [16], 0.5f, 1.5f), g.Weight("beta", [16], 0.5f)], GraphBuilder.Attr("axis", -1L), GraphBuilder.Attr("epsilon", 1e-6f));
        var scaled = g.Node("Mul", [ln, g.Weight("layer_scale", [16], 1f)]);
        var back = g.Node("Transpose", [scaled], GraphBuilder.Attr("perm", 0L, 3L, 1L, 2L));
        var y = g.Node("Add", [x, back]);
        g.Output(g.Rename(y, "y"), ElementType.Float, 2L, 16L, 5L, 6L);
        return (g.Build("convnext-ln"), [Random([2, 16, 5, 6], 11)]);
    }

    private static (OnnxModel, List<Tensor>) Transpose(long[] shape, long[] perm)
    {
        var g = new GraphBuilder("transpose", seed: 8);
        var x = g.Input("x", ElementType.Float, [.. shape.Cast<object>()]);
        var y = g.Node("Relu", [g.Node("Transpose", [x], GraphBuilder.Attr("perm", perm))]);
        g.Output(g.Rename(y, "y"), ElementType.Float, [.. perm.Select(p => (object)shape[p])]);
        return (g.Build("transpose"), [Random(shape, 12)]);
    }

    private static (OnnxModel, List<Tensor>) LayerNorm(long[] shape, bool bias)
    {
        var g = new GraphBuilder("layernorm", seed: 9);
        var x = g.Input("x", ElementType.Float, [.. shape.Cast<object>()]);
        var c = shape[^1];
        string[] ins = bias ? [x, g.Uniform("gamma", [c], 0.5f, 1.5f), g.Weight("beta", [c], 0.5f)] : [x, g.Uniform("gamma", [c], 0.5f, 1.5f)];
        var y = g.Node("LayerNormalization", ins, GraphBuilder.Attr("axis", -1L), GraphBuilder.Attr("epsilon", 1e-5f));
        g.Output(g.Rename(y, "y"), ElementType.Float, [.. shape.Cast<object>()]);
        return (g.Build("layernorm"), [Random(shape, 13)]);
    }

    private static (OnnxModel, List<Tensor>) Softmax(long[] shape, bool log)
    {
        var g = new GraphBuilder("softmax", seed: 10);
        var x = g.Input("x", ElementType.Float, [.. shape.Cast<object>()]);
        var y = g.Node(log ? "LogSoftmax" : "Softmax", [g.Node("Mul", [x, g.Scalar(4f)])], GraphBuilder.Attr("axis", -1L));
        g.Output(g.Rename(y, "y"), ElementType.Float, [.. shape.Cast<object>()]);
        return (g.Build("softmax"), [Random(shape, 14)]);
    }

    private static (OnnxModel, List<Tensor>) Patches(long[] x, long[] kernel, long channels, bool bias)
    {
        // A patch embedding (kernel == stride, no pads) followed by a GELU-free ReLU, as ViT and Swin begin.
        var g = new GraphBuilder("patches", seed: 11);
        var input = g.Input("x", ElementType.Float, x[0], x[1], x[2], x[3]);
        var w = g.Weight("w", [channels, x[1], kernel[0], kernel[1]], 0.2f);
        string[] ins = bias ? [input, w, g.Weight("b", [channels], 0.5f)] : [input, w];
        var y = g.Node("Relu", [g.Node("Conv", ins, GraphBuilder.Attr("kernel_shape", kernel), GraphBuilder.Attr("strides", kernel))]);
        g.Output(g.Rename(y, "y"), ElementType.Float, x[0], channels, x[2] / kernel[0], x[3] / kernel[1]);
        return (g.Build("patches"), [Random(x, 15)]);
    }

    private static (OnnxModel, List<Tensor>) Depthwise1d(long[] x, long kernel, long pad)
    {
        var g = new GraphBuilder("depthwise-1d", seed: 4);
        var c = x[1];
        var input = g.Input("x", ElementType.Float, x[0], c, x[2]);
        var y = g.Node("Conv", [input, g.Weight("w", [c, 1, kernel], 0.5f), g.Weight("b", [c], 0.5f)], GraphBuilder.Attr("group", c), GraphBuilder.Attr("pads", pad, pad));
        g.Output(g.Rename(y, "y"), ElementType.Float, x[0], c, Out(x[2], kernel, 1, pad, pad, 1));
        return (g.Build("depthwise-1d"), [Random(x, 8)]);
    }
}
