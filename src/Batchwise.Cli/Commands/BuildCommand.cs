using System.CommandLine;
using System.Globalization;
using Batchwise.Benchmarking;
using Batchwise.Cli.Options;
using Batchwise.Engines;
using Batchwise.Zoo;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>
/// `batchwise build MODEL --engine cuda --batch-profile 1,8,32,64 -o model.bwengine`: builds the plans of every batch
/// profile (kernels compiled, algorithms chosen) and saves them with the model, as trtexec --saveEngine does, so that
/// bench and serve start from the file quickly.
/// </summary>
public static class BuildCommand
{
    /// <summary>Creates the build command.</summary>
    public static Command Create()
    {
        var model = new Argument<string>("model") { Description = "An .onnx file or zoo:NAME" };
        var output = SharedOptions.Output();
        var command = new Command("build", "Build an engine's plans for a set of batch sizes ahead of time and save them with the model (a saved engine)")
        {
            model, output,
        };
        var engine = EngineOptionGroup.AddTo(command, defaultEngine: "cuda");
        command.SetGuardedAction(parse =>
        {
            if (engine.EngineName(parse) != "cuda")
            {
                throw new BatchwiseException($"The {engine.EngineName(parse)} engine builds nothing ahead: it runs the .onnx file as it is", "Use --engine cuda, or give the .onnx model to that engine directly.");
            }

            var options = engine.Read(parse);
            if (options.BatchProfiles.Count == 0)
            {
                options = options with { BatchProfiles = [1, 2, 4, 8, 16, 32, 64] };
            }

            var path = parse.GetValue(output)!;
            if (!SavedEngineFile.IsSavedEngine(path))
            {
                throw new BatchwiseException($"--output '{path}' does not end in {SavedEngineFile.Extension}", $"Name the file e.g. model{SavedEngineFile.Extension}, so that every command knows it for a saved engine.");
            }

            var onnx = ModelSource.Load(parse.GetValue(model)!);
            options = Transforms.CalibratedInt8.OptionsFor(options, onnx);
            var generator = new InputGenerator(onnx, 0);
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var builds = Cuda.CudaEngine.Build(onnx, options, path, generator.Generate, new LineProgress());
            var seconds = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
            AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                $"wrote {path} ({new FileInfo(path).Length / 1e6:F1} MB): {builds.Count} plans (batch {string.Join(',', options.BatchProfiles)}{string.Concat(options.ShapeProfiles.Select(p => ", " + p.Text))}), {builds.Sum(b => b.KernelsCompiled)} kernels compiled, plan builds median {Median(builds.Select(b => b.Seconds * 1000))} ms, {seconds:F1} s in all")));
            return 0;
        });
        return command;
    }

    private static string Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count == 0 ? "-" : sorted[sorted.Count / 2].ToString("F1", CultureInfo.InvariantCulture);
    }
}

/// <summary>Progress lines written to stderr as they come (Progress&lt;T&gt; would post them to the thread pool, out of order).</summary>
internal sealed class LineProgress : IProgress<string>
{
    public void Report(string value) => Console.Error.WriteLine(value);
}
