using Batchwise.Benchmarking;
using Batchwise.Cli.Reports;
using Batchwise.Engines;
using Batchwise.Zoo;
using Spectre.Console;

namespace Batchwise.Cli.Tests.Reports;

public sealed class BenchmarkTableTests
{
    private static readonly Lazy<BenchmarkResult> Result = new(() =>
        new BenchmarkRunner(new OrtEngine(), new EngineOptions { IntraOpThreads = 1 }).Run(
            ModelZoo.Build("zoo:mlp"),
            "zoo:mlp",
            new BenchmarkOptions { BatchSizes = [1], Duration = TimeSpan.FromMilliseconds(60), Warmup = TimeSpan.Zero, MaxWindows = 3 }));

    [Fact]
    public void Transfer_breakdown_adds_phase_columns_and_a_legend()
    {
        var phases = new TransferBreakdown(Statistics.Summarize([0.5]), Statistics.Summarize([7.25]), Statistics.Summarize([0.125]));
        var result = Result.Value with { Points = Result.Value.Points.Select(p => p with { Transfers = phases }).ToList() };

        var text = Render(result);

        Assert.Contains("H2D ms", text, StringComparison.Ordinal);
        Assert.Contains("compute ms", text, StringComparison.Ordinal);
        Assert.Contains("D2H ms", text, StringComparison.Ordinal);
        Assert.Contains("7.250", text, StringComparison.Ordinal);
        Assert.Contains("0.125", text, StringComparison.Ordinal);
        Assert.Contains("--transfers: latency = H2D", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Compute_only_results_have_no_phase_columns()
    {
        var text = Render(Result.Value);

        Assert.DoesNotContain("H2D ms", text, StringComparison.Ordinal);
        Assert.DoesNotContain("--transfers", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Device_clocks_add_a_clock_column_naming_what_held_it_and_a_legend()
    {
        var held = new DeviceClocks(1755, 690, new Dictionary<string, double> { ["power cap"] = 0.6, ["thermal (software)"] = 0.05 }, 12);
        var text = Render(Result.Value with { Points = Result.Value.Points.Select(p => p with { DeviceClocks = held }).ToList() });
        Assert.Contains("clock", text, StringComparison.Ordinal);
        Assert.Contains("1,755 power cap", text, StringComparison.Ordinal);
        Assert.DoesNotContain("thermal (software)", text, StringComparison.Ordinal); // in 5% of the samples: below the tenth shown
        Assert.Contains("clock: the mean SM clock over the measurement", text, StringComparison.Ordinal);

        var free = new DeviceClocks(1980, null, new Dictionary<string, double> { ["applications clocks"] = 1.0 }, 12); // a setting, not a slowdown
        var plain = Render(Result.Value with { Points = Result.Value.Points.Select(p => p with { DeviceClocks = free }).ToList() });
        Assert.Contains("1,980", plain, StringComparison.Ordinal);
        Assert.Matches(@"│\s*1,980\s*│", plain); // the clock alone: nothing held it
        Assert.DoesNotContain("clock:", Render(Result.Value), StringComparison.Ordinal);
    }

    private static string Render(BenchmarkResult result)
    {
        using var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(writer), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors });
        console.Profile.Width = 240;
        BenchmarkTable.Write(console, result);
        return writer.ToString();
    }
}
