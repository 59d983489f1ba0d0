using System.CommandLine;
using System.Globalization;
using Batchwise.Analysis;
using Batchwise.Onnx;
using Batchwise.Zoo;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise zoo list` (also `batchwise zoo` alone) and `batchwise zoo export NAME -o FILE`.</summary>
public static class ZooCommand
{
    /// <summary>Creates the zoo command.</summary>
    public static Command Create()
    {
        var zoo = new Command("zoo", "The built-in models, built in code with seeded random weights (alone: their list)");

        var list = new Command("list", "List the built-in models and their options");
        list.SetGuardedAction(_ => ListModels());
        zoo.SetGuardedAction(_ => ListModels());

        var name = new Argument<string>("name") { Description = "Zoo model, e.g. resnet50 or resnet50?size=640" };
        var output = Options.SharedOptions.Output();
        var export = new Command("export", "Write a built-in model to an .onnx file") { name, output };
        export.SetGuardedAction(parse =>
        {
            var model = ModelZoo.Build(parse.GetValue(name)!);
            var path = parse.GetValue(output)!;
            model.Save(path);
            Console.WriteLine($"wrote {path}: {model.Graph.Node.Count} nodes, {model.LearnedParameterCount():N0} parameters, inputs {string.Join(", ", model.Inputs)}, outputs {string.Join(", ", model.Outputs)}");
            return 0;
        });

        zoo.Subcommands.Add(list);
        zoo.Subcommands.Add(export);
        return zoo;
    }

    /// <summary>The zoo's table: each model's name, architecture, options, parameters and GMACs at batch 1.</summary>
    private static int ListModels()
    {
        var table = new Table().AddColumns("name", "architecture", "options (defaults)", "parameters", "GMACs (b=1)");
        table.Columns[3].RightAligned();
        table.Columns[4].RightAligned();
        var uncosted = new List<string>();
        foreach (var e in ModelZoo.Entries)
        {
            // Built as structure only (shapes, no weight data): counting BERT-base takes milliseconds.
            var structure = ModelZoo.BuildStructure(e.Name);
            string gmacs;
            try
            {
                var macs = CostModel.Compute(structure, 1).Macs;
                gmacs = (macs / 1e9).ToString(macs < 1e8 ? "0.0000" : "0.00", CultureInfo.InvariantCulture);
            }
            catch (BatchwiseException x)
            {
                // A model the cost model cannot cost yet is listed all the same, with the reason below the table.
                gmacs = "?";
                uncosted.Add($"{e.Name}: {x.Message}");
            }

            table.AddRow(
                e.Name,
                Markup.Escape(e.Description),
                Markup.Escape(string.Join(" ", e.Options.Select(o => $"{o.Key}={o.Value}"))),
                FormatCount(structure.LearnedParameterCount()),
                gmacs);
        }

        AnsiConsole.Write(table);
        foreach (var line in uncosted)
        {
            AnsiConsole.MarkupLine($"GMACs ? {Markup.Escape(line.Length > 160 ? line[..160] + "..." : line)}");
        }

        AnsiConsole.MarkupLine("Use a zoo model anywhere a model is expected: [bold]zoo:NAME[/] or [bold]zoo:NAME?size=640[/].");
        return 0;
    }

    private static string FormatCount(long n) => n >= 1_000_000
        ? (n / 1e6).ToString("0.0", CultureInfo.InvariantCulture) + " M"
        : (n / 1e3).ToString("0.0", CultureInfo.InvariantCulture) + " k";
}
