using System.Text.Json.Serialization;

namespace Batchwise.Reports;

/// <summary>
/// What every report document starts with, declared once: the schema's name and version (docs/report-schemas.md), written
/// first so that a reader can tell a document's kind and version before reading the rest.
/// </summary>
public abstract record VersionedDocument
{
    /// <summary>Heads a document of schema <paramref name="schema"/> at <paramref name="version"/>.</summary>
    protected VersionedDocument(string schema, int version)
    {
        Schema = schema;
        SchemaVersion = version;
    }

    /// <summary>The schema's name as written (batchwise.bench, batchwise.explain, ...).</summary>
    [JsonPropertyOrder(-2)]
    public string Schema { get; init; }

    /// <summary>The schema's version; bumped on any incompatible change.</summary>
    [JsonPropertyOrder(-1)]
    public int SchemaVersion { get; init; }
}
