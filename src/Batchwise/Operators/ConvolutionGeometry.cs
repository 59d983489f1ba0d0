namespace Batchwise.Operators;

/// <summary>Convolution geometry by ONNX's rules, for every engine.</summary>
public static class ConvolutionGeometry
{
    /// <summary>
    /// A transposed convolution's output size and begin padding (the offset of its window in the full result) per spatial
    /// axis, by ONNX's rules (output_shape, auto_pad, pads, output_padding); shared by shape inference, the host reference
    /// and the CUDA lowering.
    /// </summary>
    public static (long[] Output, long[] Begin) Transposed(NodeAttributes a, long[] input, long[] kernel)
    {
        var n = input.Length;
        var strides = a.Ints("strides") ?? [.. Enumerable.Repeat(1L, n)];
        var dilations = a.Ints("dilations") ?? [.. Enumerable.Repeat(1L, n)];
        var outputPadding = a.Ints("output_padding") ?? new long[n];
        var pads = a.Ints("pads") ?? new long[2 * n];
        var autoPad = a.String("auto_pad", "NOTSET");
        var requested = a.Ints("output_shape") is { } os ? os[^n..] : null;
        var output = new long[n];
        var begin = new long[n];
        for (var i = 0; i < n; i++)
        {
            var full = (strides[i] * (input[i] - 1)) + outputPadding[i] + ((kernel[i] - 1) * dilations[i]) + 1;
            if (requested is not null || autoPad is "SAME_UPPER" or "SAME_LOWER")
            {
                // ONNX's reference halves with floor division: an output_shape larger than the full result (a negative
                // total) puts the extra rows at the end (begin 0 for -1), not a row of zeros at the start.
                output[i] = requested?[i] ?? input[i] * strides[i];
                var total = full - output[i];
                var half = (long)Math.Floor(total / 2.0);
                begin[i] = autoPad == "SAME_UPPER" ? half : total - half;
            }
            else
            {
                var (b, e) = autoPad == "VALID" ? (0L, 0L) : (pads[i], pads[i + n]);
                output[i] = full - b - e;
                begin[i] = b;
            }
        }

        return (output, begin);
    }
}
