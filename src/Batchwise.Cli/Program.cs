using System.CommandLine;
using Batchwise.Cli.Commands;

namespace Batchwise.Cli;

/// <summary>The batchwise command.</summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static Task<int> Main(string[] args) => RunAsync(args);

    /// <summary>Parses and runs; a command line that does not parse is a one-line error with exit code 2.</summary>
    public static Task<int> RunAsync(string[] args, InvocationConfiguration? configuration = null)
    {
        var parse = CreateRoot().Parse(args);
        if (parse.Errors.Count > 0)
        {
            var path = new List<string>();
            for (var r = parse.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            {
                path.Insert(0, r.Parent is null ? "batchwise" : r.Command.Name);
            }

            CommonOptions.WriteError($"{parse.Errors[0].Message.TrimEnd('.')}. Run `{string.Join(' ', path)} --help` for the usage.");
            return Task.FromResult(CommonOptions.UserError);
        }

        return parse.InvokeAsync(configuration);
    }

    /// <summary>The root command with every subcommand (each owned by a file under Commands/).</summary>
    public static RootCommand CreateRoot()
    {
        Engines.EngineRegistry.Register("cuda", () => new Cuda.CudaEngine());
        Analysis.DeviceCeilingsSource.Register("cuda", () => new Cuda.Analysis.GpuCeilingsProbe());
        Engines.GpuTelemetry.Register(Cuda.NvmlTelemetry.TryCreate);
        var root = new RootCommand("Batchwise: does batching make my ONNX model faster here, by how much, why, and what is the fastest way to run it?");
        root.Options.Add(CommonOptions.Verbose);
        root.Subcommands.Add(ZooCommand.Create());
        root.Subcommands.Add(DevicesCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(ExplainCommand.Create());
        root.Subcommands.Add(CompareCommand.Create());
        root.Subcommands.Add(ConformanceCommand.Create());
        root.Subcommands.Add(OptimizeCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(LoadCommand.Create());
        return root;
    }
}
