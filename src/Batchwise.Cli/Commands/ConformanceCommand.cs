using System.CommandLine;
using System.Globalization;
using System.Text.RegularExpressions;
using Batchwise.Cli.Options;
using Batchwise.Comparison;
using Batchwise.Conformance;
using Batchwise.Reports;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise conformance [DIR] --engine E`: ONNX's backend node tests through an engine, reported per operator.</summary>
public static class ConformanceCommand
{
    /// <summary>Exit code when a case failed.</summary>
    public const int CasesFailed = 3;

    /// <summary>Creates the conformance command.</summary>
    public static Command Create()
    {
        var directory = new Argument<string?>("dir")
        {
            Description = $"Folder of node tests (test_*/model.onnx); default: {NodeTestSuite.DebianDirectory}, else the Python onnx package's onnx/backend/test/data/node",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var ops = new Option<string?>("--ops") { Description = $"Only cases whose operators are all in this comma-separated list; presets: {string.Join(", ", OperatorSets.Presets.Keys)}" };
        var filter = new Option<string?>("--filter") { Description = "Only cases whose name matches this regular expression", HelpName = "REGEX" };
        var rtol = SharedOptions.Rtol(Tolerance.OnnxBackendTest.Rtol);
        var atol = SharedOptions.Atol(Tolerance.OnnxBackendTest.Atol);
        var list = new Option<bool>("--list") { Description = "List the selected cases and their operators without running them" };
        var copyTo = new Option<string?>("--copy-to") { Description = "Copy the selected cases into this folder without running them (to carry them to a machine without the test data)", HelpName = "DIR" };
        var command = new Command("conformance", "Run ONNX's backend node tests through an engine; report ran/passed/failed/unsupported/skipped per operator (exit 3 when a case fails or none ran)")
        {
            directory, ops, filter, rtol, atol, list, copyTo,
        };
        var engine = EngineOptionGroup.AddTo(command);
        var reports = ReportOptions.AddTo(command);

        command.SetGuardedAction((parse, ct) =>
        {
            var targets = reports.Read(parse);
            var dir = parse.GetValue(directory) ?? NodeTestSuite.FindDefault();
            var opSet = parse.GetValue(ops) is { } opsText ? OperatorSets.Parse(opsText) : null;
            Regex? regex = null;
            if (parse.GetValue(filter) is { } pattern)
            {
                try
                {
                    regex = new Regex(pattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
                }
                catch (ArgumentException e)
                {
                    throw new BatchwiseException($"--filter '{pattern}' is not a regular expression: {e.Message}", "Write e.g. --filter '^test_conv'.");
                }
            }

            var tolerance = new Tolerance(parse.GetValue(rtol), parse.GetValue(atol)).Validated();
            var cases = NodeTestSuite.Discover(dir, regex, opSet);
            if (cases.Count == 0)
            {
                throw new BatchwiseException($"No node test cases in '{dir}' match", "Loosen --ops or --filter, or check the folder holds test_*/model.onnx.");
            }

            if (parse.GetValue(list))
            {
                foreach (var c in cases)
                {
                    Console.WriteLine($"{c.Name}\t{string.Join(",", c.Ops)}\t{c.DataSets.Count} data set(s)");
                }

                Console.WriteLine($"{cases.Count} cases");
                return Task.FromResult(0);
            }

            if (parse.GetValue(copyTo) is { } target)
            {
                var bytes = NodeTestSuite.Copy(cases, target);
                Console.WriteLine($"copied {cases.Count} cases ({bytes / 1048576.0:F1} MiB) to {target}; run them with: batchwise conformance {target} --engine E");
                return Task.FromResult(0);
            }

            var verbose = parse.GetValue(CommonOptions.Verbose);
            var output = targets.Human;
            var runner = new ConformanceRunner(engine.CreateEngine(parse), engine.Read(parse), tolerance);
            output.WriteLine($"running {cases.Count} node test cases from {dir} on {engine.EngineName(parse)} (rtol {CompareCommand.Number(tolerance.Rtol)}, atol {CompareCommand.Number(tolerance.Atol)})");
            var report = runner.Run(dir, cases, verbose ? r => output.WriteLine($"{r.Status.ToString().ToLowerInvariant(),-11} {r.Name}{(r.Reason is null ? string.Empty : ": " + r.Reason)}") : null, ct);

            Print(output, report);
            var document = ConformanceDocument.From(report, opSet, regex?.ToString());
            targets.WriteJson(() => ReportJson.Serialize(document));
            targets.WriteCsv(document.ToCsv);
            targets.SayWritten();
            if (report.Total.Ran == 0)
            {
                // Nothing was verified: say so and do not pass.
                output.WriteLine("no case ran: every selected case was unsupported by the engine or skipped");
                return Task.FromResult(CasesFailed);
            }

            return Task.FromResult(report.Total.Failed == 0 ? 0 : CasesFailed);
        });
        return command;
    }

    private static void Print(TextWriter output, ConformanceReport report)
    {
        var table = new PlainTable("operator", "ran", "passed", "failed", "unsupported", "skipped");
        foreach (var op in report.Operators)
        {
            table.AddRow(
                op.Op,
                op.Ran.ToString(CultureInfo.InvariantCulture),
                op.Passed.ToString(CultureInfo.InvariantCulture),
                op.Failed.ToString(CultureInfo.InvariantCulture),
                op.Unsupported.ToString(CultureInfo.InvariantCulture),
                op.Skipped.ToString(CultureInfo.InvariantCulture));
        }

        output.Write(table.ToString());
        output.WriteLine("(a case whose model holds several operators counts under each of them)");
        foreach (var (status, title) in new[] { (CaseStatus.Failed, "failed"), (CaseStatus.Unsupported, "unsupported (refused at load, not failures)"), (CaseStatus.Skipped, "skipped") })
        {
            var cases = report.Cases.Where(c => c.Status == status).ToList();
            if (cases.Count == 0)
            {
                continue;
            }

            output.WriteLine($"{title}:");
            foreach (var c in cases)
            {
                output.WriteLine($"  {c.Name}: {c.Reason ?? string.Empty}");
            }
        }

        var t = report.Total;
        var total = t.Ran + t.Unsupported + t.Skipped;
        output.WriteLine(
            $"total: {total} cases on {report.Engine.Engine} ({report.Engine.Version}): ran {t.Ran}, " +
            $"passed {t.Passed}, {(t.Failed == 0 ? "failed 0" : $"failed {t.Failed}")}, unsupported {t.Unsupported}, skipped {t.Skipped}");
    }
}
