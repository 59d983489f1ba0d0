using System.Globalization;

namespace Batchwise.Engines;

/// <summary>
/// The range of shapes one input may take on an engine that builds a plan per shape (TensorRT's min/max shapes), on a
/// grid of <see cref="Step"/> so the number of plans stays bounded: every dimension that differs between
/// <see cref="Min"/> and <see cref="Max"/> takes the values Min, Min+Step, ... up to Max. The batch axis (dimension 0
/// of a batched model) is left to batch profiles.
/// </summary>
/// <param name="Input">The input's name.</param>
/// <param name="Min">The smallest shape.</param>
/// <param name="Max">The largest shape.</param>
/// <param name="Step">Grid step of the varying dimensions.</param>
public sealed record ShapeProfile(string Input, long[] Min, long[] Max, long Step)
{
    /// <summary>How a profile is written on the command line.</summary>
    public const string Syntax = "NAME:MINxDIMS..MAXxDIMS[:STEP], e.g. images:1x3x320x320..1x3x1280x1280:32";

    /// <summary>Parses <see cref="Syntax"/>; a bad text is a one-line error naming the part and the syntax.</summary>
    public static ShapeProfile Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        var range = colon > 0 ? text[(colon + 1)..] : string.Empty;
        var dots = range.IndexOf("..", StringComparison.Ordinal);
        if (colon <= 0 || dots < 0)
        {
            throw Bad(text, "it needs NAME:MIN..MAX");
        }

        var name = text[..colon].Trim();
        var rest = range[(dots + 2)..];
        var stepAt = rest.IndexOf(':', StringComparison.Ordinal);
        var step = stepAt < 0 ? 1 : Number(text, rest[(stepAt + 1)..], "step");
        var min = Dims(text, range[..dots]);
        var max = Dims(text, stepAt < 0 ? rest : rest[..stepAt]);
        if (min.Length != max.Length)
        {
            throw Bad(text, $"MIN has {min.Length} dimensions and MAX {max.Length}");
        }

        for (var d = 0; d < min.Length; d++)
        {
            if (min[d] > max[d])
            {
                throw Bad(text, $"dimension {d} goes from {min[d]} down to {max[d]}");
            }

            if ((max[d] - min[d]) % step != 0)
            {
                throw Bad(text, $"dimension {d} ({min[d]}..{max[d]}) is not a whole number of steps of {step}");
            }
        }

        if (step < 1)
        {
            throw Bad(text, "the step must be at least 1");
        }

        return new ShapeProfile(name, min, max, step);
    }

    /// <summary>
    /// Null when <paramref name="shape"/> lies in the profile (on the grid; dimension 0 skipped when
    /// <paramref name="batched"/>), else why not.
    /// </summary>
    public string? Check(long[] shape, bool batched)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (shape.Length != Min.Length)
        {
            return $"input '{Input}' has shape {Tensor.ShapeText(shape)}, of rank {shape.Length}; its shape profile has rank {Min.Length}";
        }

        for (var d = batched ? 1 : 0; d < shape.Length; d++)
        {
            if (shape[d] < Min[d] || shape[d] > Max[d])
            {
                return $"input '{Input}' has shape {Tensor.ShapeText(shape)}: dimension {d} is outside its shape profile {Text}";
            }

            if ((shape[d] - Min[d]) % Step != 0)
            {
                return $"input '{Input}' has shape {Tensor.ShapeText(shape)}: dimension {d} is off its shape profile's grid ({Min[d]} + a multiple of {Step})";
            }
        }

        return null;
    }

    /// <summary>Every shape on the grid, with <paramref name="batch"/> as dimension 0 when given.</summary>
    public IEnumerable<long[]> Grid(long? batch)
    {
        IEnumerable<long[]> shapes = [[]];
        for (var d = 0; d < Min.Length; d++)
        {
            var dim = d;
            var values = dim == 0 && batch is { } b ? [b] : Enumerable.Range(0, (int)((Max[dim] - Min[dim]) / Step) + 1).Select(k => Min[dim] + (k * Step)).ToArray();
            shapes = shapes.SelectMany(s => values.Select(v => (long[])[.. s, v]));
        }

        return shapes;
    }

    /// <summary>The profile as written.</summary>
    public string Text => $"{Input}:{string.Join('x', Min)}..{string.Join('x', Max)}:{Step.ToString(CultureInfo.InvariantCulture)}";

    private static long[] Dims(string text, string part) =>
        [.. part.Split('x', StringSplitOptions.TrimEntries).Select(p => Number(text, p, "dimension"))];

    private static long Number(string text, string part, string what) =>
        long.TryParse(part.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v > 0
            ? v
            : throw Bad(text, $"the {what} '{part}' is not a positive integer");

    private static BatchwiseException Bad(string text, string why) =>
        new($"--shape-profile '{text}': {why}", "Write " + Syntax + ".");
}
