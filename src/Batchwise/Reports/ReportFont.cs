using ScottPlot;
using SkiaSharp;

namespace Batchwise.Reports;

/// <summary>
/// The font every plot is drawn in: DejaVu Sans, shipped inside Batchwise.dll (Reports/Fonts, license beside it), so
/// a report made on a headless GPU host without system fonts has the same labels as one made on a desktop. Without
/// it ScottPlot finds no typeface there and the SVGs carry no text at all.
/// </summary>
public static class ReportFont
{
    /// <summary>The family name the plots ask for.</summary>
    public const string Family = "DejaVu Sans";

    /// <summary>The resource names of the font and its license.</summary>
    public const string FontResource = "Batchwise.Reports.Fonts.DejaVuSans.ttf";

    /// <summary>The license's resource name.</summary>
    public const string LicenseResource = "Batchwise.Reports.Fonts.LICENSE-DejaVu.txt";

    private static readonly Lazy<byte[]> Bytes = new(() => Read(FontResource));
    private static readonly object Gate = new();
    private static bool _installed;

    /// <summary>Makes ScottPlot draw every label in the shipped font, whatever the system has (idempotent).</summary>
    public static void Install()
    {
        lock (Gate)
        {
            if (_installed)
            {
                return;
            }

            Fonts.FontResolvers.Insert(0, new ShippedFontResolver());
            Fonts.Default = Family;
            _installed = true;
        }
    }

    /// <summary>The license text that goes with the font.</summary>
    public static string License() => System.Text.Encoding.UTF8.GetString(Read(LicenseResource));

    /// <summary>A new typeface of the shipped font (ScottPlot owns and disposes what a resolver returns).</summary>
    internal static SKTypeface CreateTypeface()
    {
        using var data = SKData.CreateCopy(Bytes.Value);
        return SKTypeface.FromData(data) ?? throw new InvalidOperationException($"{FontResource} is not a font SkiaSharp can read");
    }

    private static byte[] Read(string resource)
    {
        using var stream = typeof(ReportFont).Assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"{resource} is not embedded in {typeof(ReportFont).Assembly.GetName().Name}");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>Answers every request for <see cref="Family"/> (bold and italic included) with the shipped font; others fall through.</summary>
    private sealed class ShippedFontResolver : IFontResolver
    {
        public SKTypeface? CreateTypeface(string fontName, FontWeight weight, FontSlant slant, FontSpacing spacing) =>
            string.Equals(fontName, Family, StringComparison.OrdinalIgnoreCase) ? ReportFont.CreateTypeface() : null;

        public SKTypeface? CreateTypeface(string fontName, bool bold, bool italic) =>
            string.Equals(fontName, Family, StringComparison.OrdinalIgnoreCase) ? ReportFont.CreateTypeface() : null;
    }
}
