using System.Text.Json;

namespace Batchwise.Reports;

/// <summary>Small additions to <see cref="Utf8JsonWriter"/> shared by the JSON reports.</summary>
internal static class JsonWriterExtensions
{
    /// <summary>Writes a number, or null when there is none.</summary>
    public static void WriteNumberOrNull(this Utf8JsonWriter w, string name, double? value)
    {
        if (value is { } v)
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    /// <summary>Writes a number, or null when there is none.</summary>
    public static void WriteNumberOrNull(this Utf8JsonWriter w, string name, long? value)
    {
        if (value is { } v)
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }
}
