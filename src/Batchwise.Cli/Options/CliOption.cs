using System.CommandLine;
using System.Globalization;
using Batchwise.Analysis;

namespace Batchwise.Cli.Options;

/// <summary>
/// Typed options with one parser per kind of value (integer, list, duration, fraction, choice, size). A value that does
/// not parse is a parse error naming the flag, what it expects and an example, so every command says it the same way.
/// </summary>
public static class CliOption
{
    /// <summary>A whole number of at least <paramref name="min"/>.</summary>
    public static Option<int> Integer(string name, string description, int min, int defaultValue, params string[] aliases) =>
        Typed(name, description, "N", defaultValue, aliases, text =>
            (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) && v >= min, v),
            min == int.MinValue ? "an integer" : $"an integer of at least {min}", $"{name} {Math.Max(min, 1)}");

    /// <summary>A whole number of at least <paramref name="min"/>, or null when not given.</summary>
    public static Option<int?> OptionalInteger(string name, string description, int min, params string[] aliases) =>
        Typed<int?>(name, description, "N", null, aliases, text =>
            (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) && v >= min, v),
            min == int.MinValue ? "an integer" : $"an integer of at least {min}", $"{name} {Math.Max(min, 1)}");

    /// <summary>A comma-separated list of positive integers (1,2,4,8); null when not given and no default.</summary>
    public static Option<int[]?> IntegerList(string name, string description, string example, int[]? defaultValue, params string[] aliases) =>
        Typed(name, description, example, defaultValue, aliases, text => ParsePositiveList(text) is { } list ? (true, list) : (false, null), "a comma-separated list of positive integers", $"{name} {example}");

    /// <summary>A comma-separated list of positive numbers (50,100,200.5); null when not given.</summary>
    public static Option<double[]?> NumberList(string name, string description, string example, params string[] aliases) =>
        Typed<double[]?>(name, description, example, null, aliases, text =>
        {
            var parts = text.Split(',', StringSplitOptions.TrimEntries);
            var values = new double[parts.Length];
            for (var i = 0; i < parts.Length; i++)
            {
                if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out values[i]) || !double.IsFinite(values[i]) || values[i] <= 0)
                {
                    return (false, null);
                }
            }

            return (true, values);
        }, "a comma-separated list of positive numbers", $"{name} {example}");

    /// <summary>A non-negative number (a tolerance, a ratio).</summary>
    public static Option<double> Number(string name, string description, double defaultValue, params string[] aliases) =>
        Typed(name, description, "X", defaultValue, aliases, text =>
            (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) && v >= 0, v),
            "a number of at least 0", $"{name} {defaultValue.ToString(CultureInfo.InvariantCulture)}");

    /// <summary>A duration: seconds (3, 0.5) or with a unit (500ms, 3s, 2m, 1h).</summary>
    public static Option<TimeSpan> Duration(string name, string description, TimeSpan defaultValue, bool allowZero, params string[] aliases) =>
        Typed(name, description, "TIME", defaultValue, aliases, text => ParseDuration(text, allowZero) is { } d ? (true, d) : (false, default),
            allowZero ? "a duration of 0 or more" : "a positive duration", $"{name} 3s (or 3, 500ms, 2m)");

    /// <summary>A share: a fraction (0.1) or a percentage (10%).</summary>
    public static Option<double> Fraction(string name, string description, double defaultValue, params string[] aliases) =>
        Typed(name, description, "SHARE", defaultValue, aliases, text =>
        {
            var percent = text.EndsWith('%');
            var ok = double.TryParse(percent ? text[..^1] : text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v);
            return (ok, percent ? v / 100 : v);
        }, "a fraction or a percentage", $"{name} 0.1 (or 10%)");

    /// <summary>One of a fixed set of words (case-insensitive; the value is lower case).</summary>
    public static Option<string> Choice(string name, string description, string defaultValue, IReadOnlyList<string> allowed, params string[] aliases) =>
        Typed(name, description, string.Join('|', allowed), defaultValue, aliases, text => Word(text, allowed), $"one of {string.Join(", ", allowed)}", $"{name} {allowed[0]}");

    /// <summary>One of a fixed set of words (case-insensitive; the value is lower case), or null when not given.</summary>
    public static Option<string?> OptionalChoice(string name, string description, IReadOnlyList<string> allowed, params string[] aliases) =>
        Typed<string?>(name, description, string.Join('|', allowed), null, aliases, text => Word(text, allowed), $"one of {string.Join(", ", allowed)}", $"{name} {allowed[0]}");

    /// <summary>The word in lower case, and whether it is one of <paramref name="allowed"/>.</summary>
    private static (bool Ok, string Value) Word(string text, IReadOnlyList<string> allowed)
    {
        var value = text.ToLowerInvariant();
        return (allowed.Contains(value), value);
    }

    /// <summary>An input size in the one convention Batchwise uses everywhere: SIZE, or HEIGHTxWIDTH as in NCHW.</summary>
    public static Option<InputSize?> Size(string name, string description, params string[] aliases) =>
        Typed<InputSize?>(name, description, "SIZE|HxW", null, aliases, text => (InputSize.TryParse(text, out var size), size),
            $"a size: {InputSize.Convention}", $"{name} {InputSize.Example}");

    /// <summary>A file to write a report to, or - for standard output.</summary>
    public static Option<string?> ReportFile(string name, string description) =>
        new(name) { Description = description, HelpName = "FILE|-" };

    /// <summary>The positive integers of "1,2,4" (null when one is not).</summary>
    public static int[]? ParsePositiveList(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var values = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out values[i]) || values[i] <= 0)
            {
                return null;
            }
        }

        return values;
    }

    /// <summary>Seconds (3, 0.5), a number with a unit (500ms, 3s, 2m, 1h) or hh:mm:ss as help shows defaults; null when the text is not one.</summary>
    public static TimeSpan? ParseDuration(string text, bool allowZero)
    {
        ArgumentNullException.ThrowIfNull(text);
        var t = text.Trim().ToLowerInvariant();
        if (t.Contains(':', StringComparison.Ordinal))
        {
            return TimeSpan.TryParse(t, CultureInfo.InvariantCulture, out var span) && (span > TimeSpan.Zero || (allowZero && span == TimeSpan.Zero)) ? span : null;
        }

        var (number, scale) = t.EndsWith("ms", StringComparison.Ordinal) ? (t[..^2], 0.001)
            : t.EndsWith('s') ? (t[..^1], 1.0)
            : t.EndsWith('m') ? (t[..^1], 60.0)
            : t.EndsWith('h') ? (t[..^1], 3600.0)
            : (t, 1.0);
        return double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) && (v > 0 || (allowZero && v == 0)) && v * scale < TimeSpan.MaxValue.TotalSeconds
            ? TimeSpan.FromSeconds(v * scale)
            : null;
    }

    /// <summary>An option whose text is parsed by <paramref name="parse"/> (Ok false: not valid), with one error wording for all.</summary>
    private static Option<T> Typed<T>(string name, string description, string helpName, T defaultValue, string[] aliases, Func<string, (bool Ok, T Value)> parse, string expected, string example)
    {
        var option = new Option<T>(name, aliases) { Description = description, HelpName = helpName, DefaultValueFactory = _ => defaultValue };
        option.CustomParser = result =>
        {
            if (result.Tokens.Count == 0)
            {
                return defaultValue;
            }

            var text = result.Tokens[^1].Value.Trim();
            var (ok, value) = parse(text);
            if (!ok)
            {
                result.AddError($"{name} '{text}' is not {expected}; write e.g. {example}");
                return defaultValue;
            }

            return value;
        };
        return option;
    }
}
