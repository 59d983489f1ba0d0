using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Batchwise.Cli.Tests.Reports;

/// <summary>Plots render the same everywhere: with every system font hidden, the report's SVGs still carry every label.</summary>
public sealed partial class ReportFontTests : IDisposable
{
    private static readonly string[] FontFolders = ["/usr/share/fonts", "/usr/local/share/fonts"];

    private readonly string _dir = Directory.CreateTempSubdirectory("bw-fonts-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task A_report_made_with_no_system_fonts_has_every_label_in_the_shipped_font()
    {
        var unshare = new[] { "/usr/bin/unshare", "/bin/unshare" }.FirstOrDefault(File.Exists);
        var root = Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root";
        if (unshare is null || !root || !OperatingSystem.IsLinux())
        {
            var reason = "hiding the system fonts needs Linux, root and unshare (a private mount namespace)";
            if (Environment.GetEnvironmentVariable("BATCHWISE_REQUIRE_TEST_TOOLS") == "1")
            {
                Assert.Fail($"BATCHWISE_REQUIRE_TEST_TOOLS=1, yet {reason}");
            }

            Assert.Skip(reason);
        }

        // A private mount namespace with an empty folder over every system font folder: fontconfig finds nothing.
        var empty = Directory.CreateDirectory(Path.Combine(_dir, "no-fonts")).FullName;
        var report = Path.Combine(_dir, "bench.html");
        var cli = typeof(Program).Assembly.Location;
        var mounts = string.Join(" && ", FontFolders.Where(Directory.Exists).Select(f => $"mount --bind '{empty}' '{f}'"));
        var script = $"{mounts} && (fc-list 2>/dev/null | wc -l) && dotnet '{cli}' bench zoo:mlp -b 1,2 --duration 60ms --warmup 0 --max-windows 3 --report '{report}'";
        var (code, output) = await Run(unshare, ["-m", "sh", "-c", script]);
        Assert.True(code == 0, output);
        Assert.StartsWith("0", output.TrimStart(), StringComparison.Ordinal); // fontconfig saw no font at all

        var html = await File.ReadAllTextAsync(report, TestContext.Current.CancellationToken);
        var labels = Text().Matches(html).Select(m => m.Groups[1].Value.Trim()).ToHashSet(StringComparer.Ordinal);
        foreach (var label in new[] { "batch size (log2)", "samples / s", "latency per run, ms", "concurrency 1", "fastest run", "concurrency 1 median", "concurrency 1 p90", "1", "2" })
        {
            Assert.True(labels.Contains(label), $"'{label}' is missing from the plots; they hold: {string.Join(" | ", labels)}");
        }

        Assert.Equal(["DejaVu Sans"], FontFamily().Matches(html).Select(m => m.Groups[1].Value).Distinct());
    }

    private static async Task<(int Code, string Output)> Run(string file, string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await process.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromMinutes(2), TestContext.Current.CancellationToken);
        return (process.ExitCode, await stdout + await stderr);
    }

    [GeneratedRegex(@"<text[^>]*>([^<]*)</text>")]
    private static partial Regex Text();

    [GeneratedRegex("font-family=\"([^\"]*)\"")]
    private static partial Regex FontFamily();
}
