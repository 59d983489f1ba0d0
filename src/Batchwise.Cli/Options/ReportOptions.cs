using System.CommandLine;
using Spectre.Console;

namespace Batchwise.Cli.Options;

/// <summary>
/// --json FILE and --csv FILE (and --report FILE.html where a command draws plots), the same on every command that
/// reports: a file, or - for standard output (the human-readable table then goes to standard error, so the pipe stays
/// clean).
/// </summary>
public sealed class ReportOptions
{
    private ReportOptions(bool withHtml)
    {
        Html = withHtml ? new Option<string?>("--report") { Description = "Write a self-contained HTML report (plots and tables) to FILE", HelpName = "FILE" } : null;
    }

    /// <summary>--json FILE|-.</summary>
    public Option<string?> Json { get; } = CliOption.ReportFile("--json", "Write the report as JSON to FILE, or to standard output with - (versioned schemas: docs/report-schemas.md)");

    /// <summary>--csv FILE|-.</summary>
    public Option<string?> Csv { get; } = CliOption.ReportFile("--csv", "Write the report as CSV (a header, then one row per point, output, case or device) to FILE, or to standard output with -");

    /// <summary>--report FILE.html, where the command draws plots.</summary>
    public Option<string?>? Html { get; }

    /// <summary>Creates the options and adds them to a command.</summary>
    public static ReportOptions AddTo(Command command, bool withHtml = false)
    {
        ArgumentNullException.ThrowIfNull(command);
        var options = new ReportOptions(withHtml);
        command.Options.Add(options.Json);
        command.Options.Add(options.Csv);
        if (options.Html is not null)
        {
            command.Options.Add(options.Html);
        }

        return options;
    }

    /// <summary>Where the reports go; checks up front that each can be written, so a long run does not end in a path error.</summary>
    public ReportTargets Read(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        var targets = new ReportTargets(parse.GetValue(Json), parse.GetValue(Csv), Html is null ? null : parse.GetValue(Html));
        if (targets.Json == ReportTargets.StandardOutput && targets.Csv == ReportTargets.StandardOutput)
        {
            throw new BatchwiseException("--json - and --csv - both ask for standard output", "Send one of them to a file, e.g. --json - --csv out.csv.");
        }

        if (targets.Html == ReportTargets.StandardOutput)
        {
            throw new BatchwiseException("--report writes an HTML page with plots, not to standard output", "Give a file name, e.g. --report report.html.");
        }

        foreach (var (path, option) in new[] { (targets.Json, "--json"), (targets.Csv, "--csv"), (targets.Html, "--report") })
        {
            if (path is not null && path != ReportTargets.StandardOutput)
            {
                Batchwise.Reports.ReportFile.CheckWritable(path, option);
            }
        }

        return targets;
    }
}

/// <summary>Where a command's reports go: a file, <see cref="StandardOutput"/>, or nowhere (null).</summary>
/// <param name="Json">The JSON report's destination.</param>
/// <param name="Csv">The CSV report's destination.</param>
/// <param name="Html">The HTML report's destination.</param>
public sealed record ReportTargets(string? Json, string? Csv, string? Html)
{
    /// <summary>The name that means standard output.</summary>
    public const string StandardOutput = "-";

    /// <summary>Whether a report takes standard output (the human-readable output then goes to standard error).</summary>
    public bool TakesStandardOutput => Json == StandardOutput || Csv == StandardOutput;

    /// <summary>Where tables and messages for people go.</summary>
    public TextWriter Human => TakesStandardOutput ? Console.Error : Console.Out;

    /// <summary>The console for Spectre tables for people.</summary>
    public IAnsiConsole HumanConsole => TakesStandardOutput
        ? AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors })
        : AnsiConsole.Console;

    /// <summary>Writes the JSON report, when asked for.</summary>
    public void WriteJson(Func<string> render) => Write(Json, render);

    /// <summary>Writes the CSV report, when asked for.</summary>
    public void WriteCsv(Func<string> render) => Write(Csv, render);

    /// <summary>The files written (not standard output), for "wrote FILE" lines.</summary>
    public IEnumerable<string> Files => new[] { Json, Csv, Html }.OfType<string>().Where(p => p != StandardOutput);

    /// <summary>Says "wrote FILE" for each file written.</summary>
    public void SayWritten()
    {
        foreach (var path in Files)
        {
            Human.WriteLine($"wrote {path}");
        }
    }

    private static void Write(string? target, Func<string> render)
    {
        if (target is null)
        {
            return;
        }

        var text = render();
        if (target == StandardOutput)
        {
            Console.Out.Write(text);
            Console.Out.Flush();
            return;
        }

        Batchwise.Reports.ReportFile.WriteText(target, text);
    }
}
