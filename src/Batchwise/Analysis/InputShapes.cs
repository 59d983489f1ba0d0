using System.Globalization;
using Batchwise.Onnx;

namespace Batchwise.Analysis;

/// <summary>
/// An input size, written the one way Batchwise writes sizes everywhere (options, zoo specs, reports): SIZE for a square
/// image or a sequence length, or HEIGHTxWIDTH, height first as in NCHW (480x640 is 480 rows of 640 pixels).
/// </summary>
/// <param name="Height">Image height, or sequence length.</param>
/// <param name="Width">Image width (equal to the height for a single number).</param>
public sealed record InputSize(int Height, int Width)
{
    /// <summary>The convention in words, for errors and help.</summary>
    public const string Convention = "SIZE or HEIGHTxWIDTH, height first as in NCHW";

    /// <summary>An example in the convention.</summary>
    public const string Example = "480x640";

    /// <summary>Parses "224" or "480x640" (height x width); <paramref name="what"/> names the option or zoo key in the error.</summary>
    public static InputSize Parse(string text, string what = "--input-size") =>
        TryParse(text, out var size)
            ? size
            : throw new BatchwiseException($"{what} '{text}' is not a size", $"Write {Convention}, e.g. {what} 224 or {what} {Example}.");

    /// <summary>Parses "224" or "480x640" (height x width), each side a positive integer.</summary>
    public static bool TryParse(string? text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out InputSize? size)
    {
        size = null;
        var parts = (text ?? string.Empty).Trim().Split('x', 'X');
        if (parts.Length is not (1 or 2))
        {
            return false;
        }

        var sides = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out sides[i]) || sides[i] <= 0)
            {
                return false;
            }
        }

        size = new InputSize(sides[0], sides[^1]);
        return true;
    }

    /// <inheritdoc/>
    public override string ToString() => Width == Height ? Width.ToString(CultureInfo.InvariantCulture) : string.Create(CultureInfo.InvariantCulture, $"{Height}x{Width}");
}

/// <summary>Concrete input shapes for a model at a batch size and input size.</summary>
public static class InputShapes
{
    /// <summary>Default spatial size for a dynamic image input.</summary>
    public const int DefaultImageSize = 224;

    /// <summary>Default length for a dynamic sequence input.</summary>
    public const int DefaultSequenceLength = 128;

    /// <summary>
    /// The shape of each input: the first axis is the batch; rank-4 inputs take H and W from the size, rank-2
    /// and rank-3 inputs take their second axis (sequence) from it, where those axes are dynamic.
    /// </summary>
    public static IReadOnlyList<long[]> For(OnnxModel model, int batchSize, InputSize? size)
    {
        ArgumentNullException.ThrowIfNull(model);
        var axis = model.FindBatchAxis();
        if (!axis.IsBatchable && batchSize != 1)
        {
            throw new BatchwiseException($"'{model.Name}' has no dynamic batch axis ({axis.Reason})", "Export the model with a dynamic first dimension, or use --batch-sizes 1.");
        }

        return model.Inputs.Select(spec => Shape(model, spec, batchSize, size)).ToList();
    }

    /// <summary>Zero-filled input tensors (valid token ids and pixels alike) at a batch size and input size.</summary>
    public static IReadOnlyList<Engines.Tensor> Zeros(OnnxModel model, int batchSize, InputSize? size)
    {
        ArgumentNullException.ThrowIfNull(model);
        var shapes = For(model, batchSize, size);
        return model.Inputs.Select((spec, i) => Engines.Tensor.Zeros(spec.ElementType, shapes[i])).ToList();
    }

    /// <summary>The input size as bench shape bindings (INPUT:batch,D1,D2,...), so a sweep runs at the shapes explain costs.</summary>
    public static Benchmarking.ShapeBindings Bindings(OnnxModel model, InputSize? size)
    {
        ArgumentNullException.ThrowIfNull(model);
        var shapes = For(model, 1, size);
        var batchable = model.FindBatchAxis().IsBatchable;
        return Benchmarking.ShapeBindings.Parse(model.Inputs.Select((spec, i) =>
            spec.Name + ":" + string.Join(',', shapes[i].Select((d, k) => k == 0 && batchable ? "batch" : d.ToString(System.Globalization.CultureInfo.InvariantCulture)))));
    }

    /// <summary>The spatial (H, W) or sequence length a model runs at with this size, for reports.</summary>
    public static string Describe(OnnxModel model, InputSize? size)
    {
        ArgumentNullException.ThrowIfNull(model);
        return string.Join(", ", model.Inputs.Select(s => $"{s.Name} {Engines.Tensor.ShapeText(Shape(model, s, 1, size))}"));
    }

    private static long[] Shape(OnnxModel model, TensorSpec spec, int batchSize, InputSize? size)
    {
        var dims = new long[spec.Shape.Count];
        for (var d = 0; d < dims.Length; d++)
        {
            var dim = spec.Shape[d];
            long? wanted = d == 0 ? batchSize
                : dims.Length == 4 && d == 2 ? size?.Height
                : dims.Length == 4 && d == 3 ? size?.Width
                : dims.Length is 2 or 3 && d == 1 ? size?.Height
                : null;
            if (d == 0 && dim.Value is { } fixedBatch)
            {
                dims[d] = fixedBatch;
                continue;
            }

            if (dim.Value is { } v)
            {
                if (wanted is { } w && w != v && d > 0)
                {
                    throw new BatchwiseException(
                        $"Input '{spec.Name}' of '{model.Name}' has a fixed size {spec.ShapeText}; --input-size {size} asks for {w} on axis {d}",
                        "Export the model with dynamic spatial axes, or build the zoo model at that size (e.g. zoo:resnet50?size=640).");
                }

                dims[d] = v;
                continue;
            }

            dims[d] = wanted ?? (dims.Length == 4 && d >= 2 ? DefaultImageSize
                : dims.Length is 2 or 3 && d == 1 ? DefaultSequenceLength
                : throw new BatchwiseException($"Input '{spec.Name}' of '{model.Name}' has a dynamic axis {d} ({dim}) that Batchwise cannot size", "Export the model with that axis fixed."));
        }

        return dims;
    }
}
