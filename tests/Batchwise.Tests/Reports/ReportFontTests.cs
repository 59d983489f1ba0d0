using Batchwise.Reports;

namespace Batchwise.Tests.Reports;

public sealed class ReportFontTests
{
    [Fact]
    public void The_shipped_font_is_dejavu_sans_and_its_license_goes_with_it()
    {
        using var typeface = ReportFont.CreateTypeface();
        Assert.Equal("DejaVu Sans", typeface.FamilyName);
        Assert.True(typeface.GlyphCount > 1000, $"{typeface.GlyphCount} glyphs");

        var license = ReportFont.License();
        Assert.Contains("Bitstream Vera", license, StringComparison.Ordinal);
        Assert.Contains("DejaVu changes are in public domain", license, StringComparison.Ordinal);
    }
}
