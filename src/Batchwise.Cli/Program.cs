using System.CommandLine;
using System.CommandLine.Help;
using Batchwise.Cli.Commands;
using Batchwise.Cli.Options;

namespace Batchwise.Cli;

/// <summary>The batchwise command.</summary>
public static class Program
{
    /// <summary>The program's name in help, usage and errors, whatever the executable file is called.</summary>
    public const string Name = "batchwise";

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
                path.Insert(0, r.Command.Name);
            }

            var message = RetiredFlags.Explain(parse) ?? parse.Errors[0].Message.TrimEnd('.');
            CommonOptions.WriteError($"{message}. Run `{string.Join(' ', path)} --help` for the usage.");
            return Task.FromResult(CommonOptions.UserError);
        }

        if (parse.CommandResult.Command.Name == "serve")
        {
            // serve drains on SIGTERM / Ctrl+C itself (up to --drain-timeout) and exits 0; System.CommandLine's own
            // handler would cut it off after 2 s with exit code 143 / 130.
            configuration ??= new InvocationConfiguration();
            configuration.ProcessTerminationTimeout = null;
        }

        return parse.InvokeAsync(configuration);
    }

    /// <summary>
    /// The root command with every subcommand (each owned by a file under Commands/). It is a plain command named
    /// batchwise rather than a RootCommand, which takes the executable's file name (Batchwise.Cli) for help and usage.
    /// </summary>
    public static Command CreateRoot()
    {
        Engines.EngineRegistry.Register("cuda", () => new Cuda.CudaEngine());
        Analysis.DeviceCeilingsSource.Register("cuda", () => new Cuda.Analysis.GpuCeilingsProbe());
        Engines.GpuTelemetry.Register(Cuda.NvmlTelemetry.TryCreate);
        Engines.CudaIpc.Register(Cuda.DriverCudaIpc.Create);
        var root = new Command(Name, "Batchwise: does batching make my ONNX model faster here, by how much, why, and what is the fastest way to run it?")
        {
            new HelpOption(),
            new VersionOption(),
            CommonOptions.Verbose,
        };
        root.Subcommands.Add(ZooCommand.Create());
        root.Subcommands.Add(DevicesCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(BuildCommand.Create());
        root.Subcommands.Add(ExplainCommand.Create());
        root.Subcommands.Add(CompareCommand.Create());
        root.Subcommands.Add(ConformanceCommand.Create());
        root.Subcommands.Add(OptimizeCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(LoadCommand.Create());
        return root;
    }
}
