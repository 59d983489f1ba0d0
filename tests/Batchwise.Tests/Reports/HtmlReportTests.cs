using System.Diagnostics;
using System.Text.RegularExpressions;
using Batchwise.Analysis;
using Batchwise.Reports;
using Batchwise.Tests.Analysis;
using SkiaSharp;

namespace Batchwise.Tests.Reports;

public sealed partial class HtmlReportTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bw-report-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void Explain_report_is_one_file_with_inline_plots_and_no_external_resources()
    {
        var html = HtmlReport.RenderExplain(SampleExplanation(), new Dictionary<string, string> { ["model"] = "synthetic" });
        Assert.Equal(4, SvgOpen().Matches(html).Count);
        Assert.DoesNotMatch(ExternalReference(), html);
        Assert.Contains("<style>", html, StringComparison.Ordinal);
        Assert.Contains("The layers that cost most", html, StringComparison.Ordinal);
        Assert.Contains("off by more than 30", html, StringComparison.Ordinal);
        Assert.Contains("gemm", html, StringComparison.Ordinal);
    }

    [Fact]
    public void Bench_report_has_throughput_and_latency_plots_and_a_table_per_series()
    {
        var series = new[]
        {
            new BenchSeries("fp32", [new MeasuredPoint(1, 100, 0.01, 0.012, 50), new MeasuredPoint(8, 500, 0.016, 0.02, 40)]),
            new BenchSeries("fp16", [new MeasuredPoint(1, 150, 0.0066, 0.007, 50), new MeasuredPoint(8, 900, 0.0089, 0.01, 40)]),
        };
        var path = Path.Combine(_dir, "bench.html");
        HtmlReport.WriteBench(path, "bench of synthetic", series, new Dictionary<string, string> { ["engine"] = "test" });
        var html = File.ReadAllText(path);
        Assert.Equal(2, SvgOpen().Matches(html).Count);
        Assert.Contains("<h2>fp16</h2>", html, StringComparison.Ordinal);
        Assert.Contains("Knee: b=8", html, StringComparison.Ordinal);
        Assert.DoesNotMatch(ExternalReference(), html);
    }

    [Fact]
    public void Explain_report_renders_with_its_plots_in_headless_chromium()
    {
        var chromium = FindChromium();
        TestTools.Require(chromium is not null, "chromium is not installed (apt-get install -y chromium; .ci/run installs it)");
        var path = Path.Combine(_dir, "explain.html");
        HtmlReport.WriteExplain(path, SampleExplanation(), new Dictionary<string, string> { ["model"] = "synthetic" });

        var dom = RunChromium(chromium!, "--dump-dom", path);
        Assert.True(SvgOpen().Matches(dom).Count >= 4, "the rendered DOM should hold the four inline SVG plots");
        Assert.Contains("Why batching", dom, StringComparison.Ordinal);

        var png = Path.Combine(_dir, "shot.png");
        RunChromium(chromium!, $"--screenshot={png}", path, "--window-size=1300,1600");
        using var bitmap = SKBitmap.Decode(png);
        Assert.NotNull(bitmap);
        Assert.Equal(1300, bitmap.Width);

        // A page that drew its plots has many colours (lines, markers, bars), not a blank or text-only page.
        var colours = new HashSet<uint>();
        for (var y = 0; y < bitmap.Height; y += 3)
        {
            for (var x = 0; x < bitmap.Width; x += 3)
            {
                colours.Add((uint)bitmap.GetPixel(x, y));
            }
        }

        Assert.True(colours.Count > 200, $"only {colours.Count} distinct colours in the screenshot");
        var red = 0;
        for (var y = 0; y < bitmap.Height; y += 2)
        {
            for (var x = 0; x < bitmap.Width; x += 2)
            {
                var c = bitmap.GetPixel(x, y);
                if (c.Red > 180 && c.Green < 80 && c.Blue < 80)
                {
                    red++;
                }
            }
        }

        Assert.True(red > 100, $"the predicted curve and compute-bound bars are red; found {red} red pixels");
    }

    internal static Explanation SampleExplanation()
    {
        var device = Synthetic.Device();
        var work = ModelWork.FromLayers("synthetic", "x [1, 3, 32, 32]", [
            ModelWork.Layer("gemm", "MatMul", 1e9, 1e6, 1e6, new GemmShape(100, 64, 64)),
            ModelWork.Layer("conv", "Conv", 5e8, 3.9e6, 1e5, new GemmShape(32, 1024, 288)),
            ModelWork.Layer("add", "Add", 1e5, 1e6, 0),
        ]);
        var predicted = new ThroughputPredictor(device).Predict([1, 2, 4, 8, 16], work.At);
        var measured = predicted.Select(p => new MeasuredPoint(p.BatchSize, p.Throughput * 0.6, p.Seconds / 0.6, p.Seconds / 0.5, 20)).ToList();
        return Explainer.Explain(work, device, [1, 2, 4, 8, 16], measured);
    }

    internal static string? FindChromium()
    {
        foreach (var name in new[] { "chromium", "chromium-browser", "google-chrome", "google-chrome-stable" })
        {
            foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries))
            {
                var path = Path.Combine(dir, name);
                if (File.Exists(path))
                {
                    return path;
                }
            }
        }

        return null;
    }

    private string RunChromium(string chromium, string action, string htmlPath, string? extra = null)
    {
        var profile = Directory.CreateTempSubdirectory("bw-chromium-").FullName;
        try
        {
            var info = new ProcessStartInfo(chromium)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var arg in new[]
            {
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars", $"--user-data-dir={profile}", action,
            })
            {
                info.ArgumentList.Add(arg);
            }

            if (extra is not null)
            {
                info.ArgumentList.Add(extra);
            }

            info.ArgumentList.Add(new Uri(htmlPath).AbsoluteUri);
            using var process = Process.Start(info)!;
            var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
            var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
            if (!process.WaitForExit(TimeSpan.FromSeconds(90)))
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail("chromium did not finish within 90 s");
            }

            Assert.True(process.ExitCode == 0, $"chromium exited {process.ExitCode}: {stderr.Result}");
            return stdout.Result;
        }
        finally
        {
            Directory.Delete(profile, true);
        }
    }

    [GeneratedRegex("<svg[\\s>]")]
    private static partial Regex SvgOpen();

    [GeneratedRegex("(src|href)\\s*=\\s*[\"']?(https?:)?//|@import|url\\(\\s*[\"']?https?:", RegexOptions.IgnoreCase)]
    private static partial Regex ExternalReference();
}
