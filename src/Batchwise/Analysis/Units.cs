using System.Globalization;

namespace Batchwise.Analysis;

/// <summary>Numbers as people read them in tables: rates, durations, FLOPs and bytes with a fitting unit.</summary>
public static class Units
{
    /// <summary>A rate (samples/s): thousands separated, decimals only for small values.</summary>
    public static string Rate(double perSecond) => perSecond switch
    {
        >= 1000 => perSecond.ToString("N0", CultureInfo.InvariantCulture),
        >= 10 => perSecond.ToString("N1", CultureInfo.InvariantCulture),
        _ => perSecond.ToString("N2", CultureInfo.InvariantCulture),
    };

    /// <summary>A duration in s, ms or µs.</summary>
    public static string Duration(double seconds) => seconds switch
    {
        >= 1 => seconds.ToString("N2", CultureInfo.InvariantCulture) + " s",
        >= 1e-3 => (seconds * 1e3).ToString("N2", CultureInfo.InvariantCulture) + " ms",
        _ => (seconds * 1e6).ToString("N1", CultureInfo.InvariantCulture) + " µs",
    };

    /// <summary>FLOPs with a k/M/G/T prefix.</summary>
    public static string Flops(double flops) => Prefixed(flops, "FLOPs");

    /// <summary>A compute rate: GFLOP/s below a TFLOP/s, TFLOP/s from there, one decimal.</summary>
    public static string FlopRate(double flopsPerSecond) => flopsPerSecond >= 1e12
        ? (flopsPerSecond / 1e12).ToString("N1", CultureInfo.InvariantCulture) + " TFLOP/s"
        : (flopsPerSecond / 1e9).ToString("N1", CultureInfo.InvariantCulture) + " GFLOP/s";

    /// <summary>Bytes with a k/M/G prefix (decimal).</summary>
    public static string Bytes(double bytes) => Prefixed(bytes, "B");

    private static string Prefixed(double v, string unit)
    {
        var (scale, prefix) = Math.Abs(v) switch
        {
            >= 1e12 => (1e12, "T"),
            >= 1e9 => (1e9, "G"),
            >= 1e6 => (1e6, "M"),
            >= 1e3 => (1e3, "k"),
            _ => (1.0, string.Empty),
        };
        return (v / scale).ToString(v / scale >= 100 ? "N0" : "0.##", CultureInfo.InvariantCulture) + " " + prefix + unit;
    }
}
