using System.Runtime.Intrinsics.X86;

namespace Batchwise.Transforms;

/// <summary>Symmetric per-channel int8 weights, shared by static (QDQ) and dynamic quantization.</summary>
internal static class Int8Weights
{
    /// <summary>
    /// True where this CPU multiplies uint8 activations by int8 weights without VNNI: ONNX Runtime's AVX2 kernels add
    /// pairs of u8·s8 products in int16 (vpmaddubsw), which saturates for full-range weights (255·127·2 &gt; 32,767), so
    /// weights keep to 7 bits there, as ONNX Runtime's own quantizer advises (reduce_range).
    /// </summary>
    public static bool ReduceRangeByDefault { get; } = (Avx2.IsSupported || Sse41.IsSupported) && !AvxVnni.IsSupported && !Avx10v1.IsSupported;

    /// <summary>Largest quantized magnitude: 127, or 63 with a reduced range.</summary>
    public static int Levels(bool reduceRange) => reduceRange ? 63 : 127;

    /// <summary>Quantizes <paramref name="values"/> symmetrically, one scale per channel (<paramref name="channelOf"/> maps an element index to its channel).</summary>
    public static (sbyte[] Quantized, float[] Scales) Quantize(float[] values, int channels, Func<int, int> channelOf, bool reduceRange)
    {
        var levels = Levels(reduceRange);
        var scales = new float[channels];
        for (var i = 0; i < values.Length; i++)
        {
            var c = channelOf(i);
            scales[c] = Math.Max(scales[c], Math.Abs(values[i]));
        }

        for (var c = 0; c < channels; c++)
        {
            scales[c] = scales[c] > 0 ? scales[c] / levels : 1f;
        }

        var q = new sbyte[values.Length];
        for (var i = 0; i < values.Length; i++)
        {
            q[i] = (sbyte)Math.Clamp(MathF.Round(values[i] / scales[channelOf(i)]), -levels, levels);
        }

        return (q, scales);
    }
}
