using System.Text;

namespace Batchwise.Cli.Commands;

/// <summary>A left-aligned text table that never wraps cells (Spectre wraps at 80 columns when output is redirected, which breaks grep and logs).</summary>
internal sealed class PlainTable
{
    private readonly string[] _headers;
    private readonly List<string[]> _rows = [];

    public PlainTable(params string[] headers) => _headers = headers;

    public PlainTable AddRow(params string[] cells)
    {
        if (cells.Length != _headers.Length)
        {
            throw new ArgumentException($"{cells.Length} cells for {_headers.Length} columns", nameof(cells));
        }

        _rows.Add(cells);
        return this;
    }

    public override string ToString()
    {
        var widths = _headers.Select((h, i) => _rows.Select(r => r[i].Length).Append(h.Length).Max()).ToArray();
        var text = new StringBuilder();
        void Line(IReadOnlyList<string> cells) =>
            text.AppendLine(string.Join("  ", cells.Select((c, i) => i == cells.Count - 1 ? c : c.PadRight(widths[i]))).TrimEnd());
        Line(_headers);
        Line(widths.Select(w => new string('-', w)).ToArray());
        foreach (var row in _rows)
        {
            Line(row);
        }

        return text.ToString();
    }
}
