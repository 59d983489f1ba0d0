using System.CommandLine;
using Batchwise.Cli.Commands;

namespace Batchwise.Cli;

/// <summary>The batchwise command.</summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static Task<int> Main(string[] args) => CreateRoot().Parse(args).InvokeAsync();

    /// <summary>The root command with every subcommand (each owned by a file under Commands/).</summary>
    public static RootCommand CreateRoot()
    {
        Engines.EngineRegistry.Register("cuda", () => new Cuda.CudaEngine());
        var root = new RootCommand("Batchwise: does batching make my ONNX model faster here, by how much, why, and what is the fastest way to run it?");
        root.Options.Add(CommonOptions.Verbose);
        root.Subcommands.Add(ZooCommand.Create());
        root.Subcommands.Add(DevicesCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(ExplainCommand.Create());
        root.Subcommands.Add(CompareCommand.Create());
        root.Subcommands.Add(ConformanceCommand.Create());
        root.Subcommands.Add(OptimizeCommand.Create());
        return root;
    }
}
