using System.Globalization;
using System.Text;

namespace Batchwise.Reports;

/// <summary>CSV text (RFC 4180) for every report: a header row, then one row per record, numbers culture-invariant.</summary>
public static class Csv
{
    /// <summary>The CSV text of a header and rows (each row as many fields as columns).</summary>
    public static string Write(IReadOnlyList<string> columns, IEnumerable<IReadOnlyList<object?>> rows)
    {
        ArgumentNullException.ThrowIfNull(columns);
        ArgumentNullException.ThrowIfNull(rows);
        var sb = new StringBuilder();
        sb.AppendLine(string.Join(',', columns.Select(Field)));
        foreach (var row in rows)
        {
            if (row.Count != columns.Count)
            {
                throw new ArgumentException($"a CSV row of {row.Count} fields under {columns.Count} columns", nameof(rows));
            }

            sb.AppendLine(string.Join(',', row.Select(Field)));
        }

        return sb.ToString();
    }

    /// <summary>One field: numbers invariant (doubles to 6 significant digits), booleans lower case, quoted where needed.</summary>
    public static string Field(object? value)
    {
        var text = value switch
        {
            null => string.Empty,
            bool b => b ? "true" : "false",
            double d => d.ToString("G6", CultureInfo.InvariantCulture),
            float f => f.ToString("G6", CultureInfo.InvariantCulture),
            DateTimeOffset t => t.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture),
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? string.Empty,
        };

        // RFC 4180: quote fields holding a comma, quote or line break.
        return text.AsSpan().IndexOfAny(",\"\r\n") >= 0 ? "\"" + text.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : text;
    }
}
