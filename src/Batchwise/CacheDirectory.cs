namespace Batchwise;

/// <summary>Where batchwise keeps its caches on disk (device ceilings, timed tactics, compiled kernels, int8 ranges).</summary>
public static class CacheDirectory
{
    /// <summary>$BATCHWISE_CACHE_DIR, else $XDG_CACHE_HOME/batchwise, else ~/.cache/batchwise (read each time: tests and device calls set it).</summary>
    public static string Root
    {
        get
        {
            var explicitDir = Environment.GetEnvironmentVariable("BATCHWISE_CACHE_DIR");
            if (!string.IsNullOrWhiteSpace(explicitDir))
            {
                return explicitDir;
            }

            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            var root = !string.IsNullOrWhiteSpace(xdg) ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(root, "batchwise");
        }
    }
}
