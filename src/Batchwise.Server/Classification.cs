using System.Globalization;
using System.Text;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Server;

/// <summary>
/// Triton's classification extension: an output returned as its top-k classes, a BYTES tensor of "value:index[:label]"
/// per row ([batch, k] for a batched model, [k] otherwise), labels from the model folder's labels file.
/// </summary>
internal static class Classification
{
    /// <summary>Triton's bound on an output it will sort.</summary>
    public const int MaxElements = 1_000_000;

    /// <summary>The top <paramref name="count"/> classes of each row of <paramref name="output"/>.</summary>
    public static Tensor TopK(string name, Tensor output, int count, bool batched, IReadOnlyList<string>? labels)
    {
        if (count < 1)
        {
            throw InferenceError.BadRequest($"Output '{name}': classification count {count} must be at least 1");
        }

        var values = output.ElementType switch
        {
            ElementType.Float or ElementType.Double or ElementType.Int8 or ElementType.Int16 or ElementType.Int32 or ElementType.Int64
                or ElementType.UInt8 or ElementType.UInt16 or ElementType.UInt32 or ElementType.UInt64 => output.ToDoubles(),
            _ => throw InferenceError.BadRequest($"Output '{name}': class result not available for output due to unsupported type '{output.ElementType.ProtocolName()}'"),
        };
        var rows = batched && output.Shape.Length > 0 ? (int)output.Shape[0] : 1;
        var perRow = rows == 0 ? 0 : values.Length / rows;
        if (perRow > MaxElements)
        {
            throw InferenceError.BadRequest($"Output '{name}': classification output tensor too large ({perRow} elements a row; at most {MaxElements})");
        }

        var k = Math.Min(count, perRow);
        var isFloat = output.ElementType is ElementType.Float or ElementType.Double;
        var elements = new List<byte[]>(rows * k);
        var order = new int[perRow];
        for (var r = 0; r < rows; r++)
        {
            var row = values.AsSpan(r * perRow, perRow);
            for (var i = 0; i < perRow; i++)
            {
                order[i] = i;
            }

            // Highest value first; ties keep the lower index first.
            var rowValues = row.ToArray();
            Array.Sort(order, (a, b) => rowValues[b].CompareTo(rowValues[a]) is var c && c != 0 ? c : a.CompareTo(b));
            for (var j = 0; j < k; j++)
            {
                var index = order[j];
                var text = Format(rowValues[index], isFloat) + ":" + index.ToString(CultureInfo.InvariantCulture);
                if (labels is not null && index < labels.Count)
                {
                    text += ":" + labels[index];
                }

                elements.Add(Encoding.UTF8.GetBytes(text));
            }
        }

        return Tensor.FromStrings(batched ? [rows, k] : [k], elements);
    }

    /// <summary>Reads a labels file: one label per line, line i naming class i.</summary>
    public static IReadOnlyList<string> ReadLabels(string path)
    {
        try
        {
            return File.ReadAllLines(path);
        }
        catch (IOException e)
        {
            throw new BatchwiseException($"Cannot read the labels file '{path}': {e.Message}", "Give one label per line, line i naming class i.", e);
        }
    }

    // As Triton's std::to_string: six decimals for floating point, integers as they are.
    private static string Format(double value, bool isFloat) =>
        isFloat ? value.ToString("F6", CultureInfo.InvariantCulture) : ((long)value).ToString(CultureInfo.InvariantCulture);
}
