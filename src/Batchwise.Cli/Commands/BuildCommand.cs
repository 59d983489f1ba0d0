using System.CommandLine;
using System.Globalization;
using Batchwise.Benchmarking;
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
        var output = new Option<string>("--output", "-o") { Description = "The saved engine to write (.bwengine); bench, serve and compare take it where they take a model", Required = true };
        var engine = new Option<string>("--engine", "-e") { Description = "Engine to build for (only cuda builds plans ahead)", DefaultValueFactory = _ => "cuda" };
        var precision = new Option<string>("--precision") { Description = "Arithmetic precision: fp32, fp16", DefaultValueFactory = _ => "fp32" };
        var tf32 = new Option<bool>("--tf32") { Description = "Allow TF32 tensor-core math for fp32" };
        var device = new Option<string>("--device") { Description = "GPU ordinal", DefaultValueFactory = _ => "0" };
        var batchProfile = new Option<string>("--batch-profile") { Description = "Batch sizes to build plans for, e.g. 1,8,32,64; a batch in between runs padded to the next", DefaultValueFactory = _ => "1,2,4,8,16,32,64" };
        var noCudaGraph = new Option<bool>("--no-cuda-graph") { Description = "Do not capture CUDA graphs" };
        var shapeProfile = new Option<string[]>("--shape-profile") { Description = "Range of another dynamic dimension's shapes to build plans for: " + ShapeProfile.Syntax + "; repeatable (one per input)" };
        var command = new Command("build", "Build an engine's plans for a set of batch sizes ahead of time and save them with the model (a saved engine)")
        {
            model, output, engine, precision, tf32, device, batchProfile, noCudaGraph, shapeProfile,
        };
        command.SetGuardedAction(parse =>
        {
            var engineName = BenchCommand.OneOf(parse.GetValue(engine)!, "--engine", "cuda", "ort");
            if (engineName != "cuda")
            {
                throw new BatchwiseException("The ort engine builds nothing ahead: it runs the .onnx file as it is", "Use --engine cuda, or give the .onnx model to ort directly.");
            }

            var options = new EngineOptions
            {
                Precision = BenchCommand.OneOf(parse.GetValue(precision)!, "--precision", "fp32", "fp16") == "fp16" ? Precision.Fp16 : Precision.Fp32,
                AllowTf32 = parse.GetValue(tf32),
                DeviceId = BenchCommand.Integer(parse.GetValue(device)!, "--device", 0),
                UseCudaGraph = !parse.GetValue(noCudaGraph),
                BatchProfiles = BenchCommand.IntegerList(parse.GetValue(batchProfile)!, "--batch-profile", "1,8,32,64"),
                ShapeProfiles = [.. (parse.GetValue(shapeProfile) ?? []).Select(ShapeProfile.Parse)],
            };
            var path = parse.GetValue(output)!;
            if (!SavedEngineFile.IsSavedEngine(path))
            {
                throw new BatchwiseException($"--output '{path}' does not end in {SavedEngineFile.Extension}", $"Name the file e.g. model{SavedEngineFile.Extension}, so that every command knows it for a saved engine.");
            }

            var onnx = ModelSource.Load(parse.GetValue(model)!);
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
