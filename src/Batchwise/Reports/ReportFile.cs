namespace Batchwise.Reports;

/// <summary>Writes report files safely: a clear error for a bad path, never a half-written file.</summary>
public static class ReportFile
{
    /// <summary>Writes a file through a temporary file, with one-line errors.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full);
        if (dir is not null && !Directory.Exists(dir))
        {
            throw new BatchwiseException($"Cannot write '{path}': folder '{dir}' does not exist", "Create the folder first or choose another path.");
        }

        var tmp = full + ".tmp";
        try
        {
            using (var stream = File.Create(tmp))
            {
                write(stream);
            }

            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BatchwiseException($"Cannot write '{path}': {e.Message}", "Check the path and its permissions.", e);
        }
    }

    /// <summary>Writes UTF-8 text (no byte-order mark) through a temporary file, with one-line errors.</summary>
    public static void WriteText(string path, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        Write(path, stream => stream.Write(new System.Text.UTF8Encoding(false).GetBytes(text)));
    }

    /// <summary>Checks up front that a report can be written there, so a long sweep does not end in a path error.</summary>
    public static void CheckWritable(string path, string option)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null && !Directory.Exists(dir))
        {
            throw new BatchwiseException($"{option} '{path}': folder '{dir}' does not exist", "Create the folder first or choose another path.");
        }

        if (Directory.Exists(path))
        {
            throw new BatchwiseException($"{option} '{path}' is a directory", "Give a file name.");
        }
    }
}
