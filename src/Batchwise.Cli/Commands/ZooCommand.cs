using System.CommandLine;
using Batchwise.Zoo;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise zoo list` and `batchwise zoo export NAME -o FILE`.</summary>
public static class ZooCommand
{
    /// <summary>Creates the zoo command.</summary>
    public static Command Create()
    {
        var zoo = new Command("zoo", "The built-in models, built in code with seeded random weights");

        var list = new Command("list", "List the built-in models and their options");
        list.SetGuardedAction(_ =>
        {
            var table = new Table().AddColumns("name", "architecture", "options (defaults)");
            foreach (var e in ModelZoo.Entries)
            {
                table.AddRow(e.Name, Markup.Escape(e.Description), Markup.Escape(string.Join(" ", e.Options.Select(o => $"{o.Key}={o.Value}"))));
            }

            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine("Use a zoo model anywhere a model is expected: [bold]zoo:NAME[/] or [bold]zoo:NAME?size=640[/].");
            return 0;
        });

        var name = new Argument<string>("name") { Description = "Zoo model, e.g. resnet50 or resnet50?size=640" };
        var output = new Option<string>("--output", "-o") { Description = "Where to write the .onnx file", Required = true };
        var export = new Command("export", "Write a built-in model to an .onnx file") { name, output };
        export.SetGuardedAction(parse =>
        {
            var model = ModelZoo.Build(parse.GetValue(name)!);
            var path = parse.GetValue(output)!;
            model.Save(path);
            Console.WriteLine($"wrote {path}: {model.Graph.Node.Count} nodes, {model.ParameterCount:N0} parameters, inputs {string.Join(", ", model.Inputs)}");
            return 0;
        });

        zoo.Subcommands.Add(list);
        zoo.Subcommands.Add(export);
        return zoo;
    }
}
