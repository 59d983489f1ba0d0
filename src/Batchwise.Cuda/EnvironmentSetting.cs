using System.Globalization;

namespace Batchwise.Cuda;

/// <summary>
/// Numeric settings from BATCHWISE_* environment variables: unset or blank gives the default; anything else must parse
/// (invariant culture) and fall in range, or it is refused in one line naming the variable, what it takes and the fix.
/// </summary>
internal static class EnvironmentSetting
{
    /// <summary>Variable <paramref name="name"/> as a whole number from <paramref name="low"/> to <paramref name="high"/> (unset: <paramref name="fallback"/>).</summary>
    public static int Int(string name, int fallback, int low, int high, string? fix = null) =>
        ParseInt(name, Environment.GetEnvironmentVariable(name), fallback, low, high, fix);

    /// <summary><paramref name="text"/>, the value of <paramref name="name"/>, as <see cref="Int"/> reads it; <paramref name="fix"/> replaces the default advice.</summary>
    public static int ParseInt(string name, string? text, int fallback, int low, int high, string? fix = null)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return fallback;
        }

        return int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= low && v <= high
            ? v
            : throw new BatchwiseException($"{name} '{text.Trim()}' is not a whole number from {low} to {high}", fix ?? $"Unset it (default {fallback}) or set a whole number from {low} to {high}.");
    }

    /// <summary><paramref name="text"/>, the value of <paramref name="name"/>, as seconds from <paramref name="low"/> to <paramref name="high"/> (unset: <paramref name="fallback"/>).</summary>
    public static double ParseSeconds(string name, string? text, double fallback, double low, double high, string fix)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return fallback;
        }

        return double.TryParse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var s) && s >= low && s <= high
            ? s
            : throw new BatchwiseException(string.Create(CultureInfo.InvariantCulture, $"{name} '{text.Trim()}' is not a number of seconds from {low} to {high}"), fix);
    }
}
