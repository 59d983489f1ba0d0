namespace Batchwise.Zoo;

/// <summary>Activation after a convolution.</summary>
public enum Activation
{
    /// <summary>No activation (linear).</summary>
    None,

    /// <summary>max(x, 0).</summary>
    Relu,

    /// <summary>min(max(x, 0), 6), as Clip(0, 6).</summary>
    Relu6,

    /// <summary>x * sigmoid(x) (SiLU, Swish), as Sigmoid and Mul.</summary>
    Silu,
}

/// <summary>Layer helpers: the building blocks of convolutional and transformer networks.</summary>
public sealed partial class GraphBuilder
{
    private readonly Dictionary<float, string> _scalars = [];

    /// <summary>A float scalar initializer, shared between all nodes that use the same value.</summary>
    public string Scalar(float value)
    {
        if (!_scalars.TryGetValue(value, out var name))
        {
            name = Initializer("const_" + value.ToString("R", System.Globalization.CultureInfo.InvariantCulture).Replace('-', 'm').Replace('.', 'p'), [], [value]);
            _scalars[value] = name;
        }

        return name;
    }

    /// <summary>Conv with a He-uniform weight (variance 2/fan-in, so ReLU activations keep their scale); padding k/2 unless given.</summary>
    public string Conv(string x, long inChannels, long outChannels, long kernel, long stride = 1, long group = 1, bool bias = false, string name = "conv", long padding = -1, float gain = 2f)
    {
        var pad = padding < 0 ? kernel / 2 : padding;
        var fanIn = inChannels / group * kernel * kernel;
        var w = Weight(name + ".weight", [outChannels, inChannels / group, kernel, kernel], MathF.Sqrt(3f * gain / fanIn));
        string[] inputs = bias ? [x, w, Weight(name + ".bias", [outChannels], 1f / MathF.Sqrt(fanIn))] : [x, w];
        return Node("Conv", inputs, Attr("kernel_shape", kernel, kernel), Attr("strides", stride, stride), Attr("pads", pad, pad, pad, pad), Attr("group", group), Attr("dilations", 1L, 1L));
    }

    /// <summary>BatchNormalization in inference form with plausible statistics; <paramref name="gamma"/> scales its output (small for the last BN of a residual branch, so depth does not blow activations up).</summary>
    public string BatchNorm(string x, long channels, string name = "bn", float gamma = 1f, float epsilon = 1e-5f)
    {
        var scale = Uniform(name + ".weight", [channels], 0.8f * gamma, 1.2f * gamma);
        var shift = Uniform(name + ".bias", [channels], -0.1f, 0.1f);
        var mean = Uniform(name + ".running_mean", [channels], -0.1f, 0.1f);
        var variance = Uniform(name + ".running_var", [channels], 0.8f, 1.2f);
        return Node("BatchNormalization", [x, scale, shift, mean, variance], Attr("epsilon", epsilon), Attr("momentum", 0.9f));
    }

    /// <summary>Applies an activation.</summary>
    public string Activate(string x, Activation activation) => activation switch
    {
        Activation.None => x,
        Activation.Relu => Node("Relu", [x]),
        Activation.Relu6 => Node("Clip", [x, Scalar(0f), Scalar(6f)]),
        Activation.Silu => Node("Mul", [x, Node("Sigmoid", [x])]),
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    /// <summary>Conv (no bias) + BatchNormalization + activation, the unit of ResNet, MobileNet and YOLO.</summary>
    public string ConvBnAct(string x, long inChannels, long outChannels, long kernel, long stride, Activation activation, string name, long group = 1, float gamma = 1f, long padding = -1)
    {
        var y = Conv(x, inChannels, outChannels, kernel, stride, group, bias: false, name: name, padding: padding, gain: activation == Activation.None ? 1f : 2f);
        y = BatchNorm(y, outChannels, name + ".bn", gamma);
        return Activate(y, activation);
    }

    /// <summary>Fully connected layer as Gemm (weight [out, in], transB=1) with bias; <paramref name="gain"/> scales the output variance.</summary>
    public string Gemm(string x, long inFeatures, long outFeatures, string name = "fc", float gain = 1f)
    {
        var w = Weight(name + ".weight", [outFeatures, inFeatures], MathF.Sqrt(3f * gain / inFeatures));
        var b = Weight(name + ".bias", [outFeatures], 1f / MathF.Sqrt(inFeatures));
        return Node("Gemm", [x, w, b], Attr("transB", 1L));
    }

    /// <summary>Linear layer as MatMul (weight [in, out]) + Add bias, as transformer exporters write it.</summary>
    public string Linear(string x, long inFeatures, long outFeatures, string name = "linear")
    {
        var w = Weight(name + ".weight", [inFeatures, outFeatures], MathF.Sqrt(3f / inFeatures));
        var b = Weight(name + ".bias", [outFeatures], 0.02f);
        return Node("Add", [Node("MatMul", [x, w]), b]);
    }

    /// <summary>LayerNormalization over the last axis with learned scale and shift.</summary>
    public string LayerNorm(string x, long features, string name = "ln", float epsilon = 1e-12f)
    {
        var scale = Uniform(name + ".weight", [features], 0.9f, 1.1f);
        var shift = Uniform(name + ".bias", [features], -0.05f, 0.05f);
        return Node("LayerNormalization", [x, scale, shift], Attr("axis", -1L), Attr("epsilon", epsilon));
    }

    /// <summary>MaxPool with a square kernel.</summary>
    public string MaxPool(string x, long kernel, long stride, long padding) =>
        Node("MaxPool", [x], Attr("kernel_shape", kernel, kernel), Attr("strides", stride, stride), Attr("pads", padding, padding, padding, padding));

    // xorshift64*: an order of magnitude faster than Random.NextDouble for the 110 M weights of BERT-base.
    private void Fill(Span<float> values, float low, float high)
    {
        var s = _state;
        var range = high - low;
        for (var i = 0; i < values.Length; i++)
        {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            var bits = (uint)((s * 0x2545F4914F6CDD1DUL) >> 40); // 24 random bits
            values[i] = low + (range * bits * (1f / (1 << 24)));
        }

        _state = s;
    }
}
