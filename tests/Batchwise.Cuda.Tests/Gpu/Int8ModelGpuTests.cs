using System.Globalization;
using System.Text.RegularExpressions;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// ResNet-50 through `optimize --int8` (QDQ, random calibration) on the cuda engine's int8 path, each route in a child
/// process of its own (<see cref="ChildRun"/>, <see cref="Int8ChildGpuTests"/>): its speed at b=1, 64 and 256 beside the
/// float path between the pairs (BATCHWISE_INT8=off) and the float model in fp16; its agreement with ONNX Runtime's QDQ
/// run (cosine, top-1 over 256 seeded inputs); which layers took which route (and cuDNN engine) and why not the others.
/// A route whose plan-time trial faults the GPU names the layer and the engine; the parent then runs that route again
/// with the engine skipped (BATCHWISE_INT8_GRAPH_SKIP, up to three engines), so one run shows what works and what faults.
/// </summary>
[Trait("Category", "GPU")]
public sealed partial class Int8ModelGpuTests
{
    private static readonly Lazy<OnnxModel> Resnet50 = new(() => QuantizedModelGpuTests.Int8Resnet18("zoo:resnet50"));

    /// <summary>The routes: name, column title, BATCHWISE_INT8 and BATCHWISE_INT8_GRAPH (null: left as they are).</summary>
    private static readonly (string Name, string Title, string? Int8, string? Graph)[] Routes =
    [
        ("fp16", "float model fp16", null, null),
        ("qdq-float", "QDQ float path, BATCHWISE_INT8=off", "off", "off"),
        ("int8-legacy", "int8, graph API off", "on", "off"),
        ("int8-graph", "int8, cuDNN graph API", "on", "on"),
        ("int8-graph-pad", "int8, graph API, inputs padded explicitly", "on", "pad"),
    ];

    private static readonly int[] Batches = [1, 64, 256];

    private static void Print(string line) => Gpu.Publish("int8-resnet50.md", line);

    [Fact]
    public void Int8_resnet50_speed_of_each_route_in_its_own_process()
    {
        Gpu.Require();
        var folder = Directory.CreateTempSubdirectory("batchwise-int8-").FullName;
        try
        {
            var modelPath = Path.Combine(folder, "resnet50-qdq.onnx");
            Resnet50.Value.Save(modelPath);
            var rows = new Dictionary<(string Route, int Batch), (double Ms, double Build)>();
            var layers = new Dictionary<(string Route, int Batch), List<string[]>>();
            var problems = new List<string>();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            foreach (var route in Routes)
            {
                var (attempts, faults) = RunRoute(nameof(Int8ChildGpuTests.Resnet50_rows_of_one_route_in_a_child), "rows", route, modelPath, null, clock);
                problems.AddRange(faults.Select(f => $"{route.Name}: {f}"));
                foreach (var (r, skipped) in attempts)
                {
                    // A later attempt (with more engines skipped) replaces the rows of an earlier one; a fault at b=256 keeps b=1's row.
                    foreach (var row in r.Tagged("ROW"))
                    {
                        rows[(route.Name, int.Parse(row[0], CultureInfo.InvariantCulture))] = (double.Parse(row[1], CultureInfo.InvariantCulture), double.Parse(row[2], CultureInfo.InvariantCulture));
                        if (skipped.Length > 0)
                        {
                            problems.Add($"{route.Name} b={row[0]}: measured with {Int8Layers.GraphSkipSwitch}={skipped}");
                        }
                    }

                    foreach (var batch in r.Tagged("LAYERS").GroupBy(l => int.Parse(l[0], CultureInfo.InvariantCulture)))
                    {
                        layers[(route.Name, batch.Key)] = [.. batch];
                    }

                    if (!r.Passed)
                    {
                        problems.Add($"{route.Name}{(skipped.Length > 0 ? $" ({Int8Layers.GraphSkipSwitch}={skipped})" : string.Empty)}: the child {(r.TimedOut ? "timed out" : $"exited {r.ExitCode}")} after {r.Seconds:F0} s; last lines: {string.Join(" // ", r.Tail(15))}");
                    }
                }
            }

            string Ms(string route, int batch) => rows.TryGetValue((route, batch), out var v) ? v.Ms.ToString("F3", CultureInfo.InvariantCulture) : "FAILED";
            Print($"| batch | {string.Join(" | ", Routes.Select(r => r.Title + " (ms)"))} | int8 graph img/s | fp16 img/s | int8 graph / fp16 | padded / fp16 | int8 graph plan build + first run (s) |");
            Print("|---|" + string.Concat(Enumerable.Repeat("---|", Routes.Length + 5)));
            foreach (var b in Batches)
            {
                var fp16 = rows.TryGetValue(("fp16", b), out var f) ? f.Ms : double.NaN;
                var graph = rows.TryGetValue(("int8-graph", b), out var g) ? g.Ms : double.NaN;
                var pad = rows.TryGetValue(("int8-graph-pad", b), out var p) ? p.Ms : double.NaN;
                Print(string.Create(CultureInfo.InvariantCulture, $"| {b} | {string.Join(" | ", Routes.Select(r => Ms(r.Name, b)))} | {b / graph * 1e3:N0} | {b / fp16 * 1e3:N0} | {fp16 / graph:F2}x | {fp16 / pad:F2}x | {g.Build:F2} |"));
            }

            foreach (var ((route, batch), list) in layers.Where(l => l.Key.Route.StartsWith("int8-graph", StringComparison.Ordinal)).OrderBy(l => l.Key.Route).ThenBy(l => l.Key.Batch))
            {
                Print($"- {route} b={batch}: " + string.Join("; ", list.Select(l => $"{l[1]} x {l[2]} (e.g. {l[3]})")));
            }

            foreach (var problem in problems)
            {
                Print("- PROBLEM " + problem);
            }

            Assert.True(Batches.All(b => rows.ContainsKey(("fp16", b)) && rows.ContainsKey(("int8-graph", b))), "rows missing: " + string.Join(Environment.NewLine, problems));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Int8_resnet50_agrees_with_onnx_runtime_qdq_on_each_route_in_its_own_process()
    {
        Gpu.Require();
        var folder = Directory.CreateTempSubdirectory("batchwise-int8-").FullName;
        try
        {
            var model = Resnet50.Value;
            var modelPath = Path.Combine(folder, "resnet50-qdq.onnx");
            model.Save(modelPath);
            using (var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" }))
            {
                for (var i = 0; i < Int8ChildGpuTests.AccuracyBatches; i++)
                {
                    var inputs = model.Inputs.Select(v => Gpu.RandomInput(v, Int8ChildGpuTests.AccuracyBatch, seed: 7 + i)).ToList();
                    Int8ChildGpuTests.WriteExpected(folder, i, ort.Run(inputs)[0].ToDoubles());
                }
            }

            var clock = System.Diagnostics.Stopwatch.StartNew();
            var failures = new List<string>();
            Print($"# int8 resnet50 (QDQ, optimize --int8) against ORT QDQ (no graph optimizations), {Int8ChildGpuTests.AccuracyBatches * Int8ChildGpuTests.AccuracyBatch} seeded inputs in batches of {Int8ChildGpuTests.AccuracyBatch}, fp16 plans");
            foreach (var route in Routes.Where(r => r.Int8 == "on"))
            {
                var (attempts, faults) = RunRoute(nameof(Int8ChildGpuTests.Resnet50_accuracy_of_one_route_in_a_child), "accuracy", route, modelPath, folder, clock);
                foreach (var f in faults)
                {
                    Print($"- {route.Name}: FAULT {f}");
                }

                var (r, skipped) = attempts[^1];
                var acc = r.Tagged("ACC").FirstOrDefault();
                if (acc is null)
                {
                    failures.Add($"{route.Name}: no result; the child {(r.TimedOut ? "timed out" : $"exited {r.ExitCode}")}; last lines: {string.Join(" // ", r.Tail(15))}");
                    Print($"- {route.Name}: FAILED (see the test's failure)");
                    continue;
                }

                var (cosine, agree, total, int8, graph) = (double.Parse(acc[0], CultureInfo.InvariantCulture), int.Parse(acc[2], CultureInfo.InvariantCulture), int.Parse(acc[3], CultureInfo.InvariantCulture), int.Parse(acc[4], CultureInfo.InvariantCulture), int.Parse(acc[5], CultureInfo.InvariantCulture));
                Print(string.Create(CultureInfo.InvariantCulture, $"- {route.Name}{(skipped.Length > 0 ? $" ({Int8Layers.GraphSkipSwitch}={skipped})" : string.Empty)}: cosine min {cosine:F6}, max abs {acc[1]}, top-1 agreement {agree}/{total} ({100.0 * agree / total:F1}%), {int8} of {acc[6]} layers int8, {graph} through cuDNN's graph API"));
                foreach (var l in r.Tagged("LAYERS"))
                {
                    Print($"  - {l[1]} x {l[2]} (e.g. {l[3]})");
                }

                if (cosine < 0.99 || agree < total * 0.97 || int8 == 0 || (route.Graph != "off" && graph == 0))
                {
                    failures.Add(string.Create(CultureInfo.InvariantCulture, $"{route.Name}: cosine {cosine}, top-1 {agree}/{total}, {int8} int8 layers, {graph} graph layers"));
                }
            }

            Assert.True(failures.Count == 0, string.Join(Environment.NewLine, failures));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>
    /// Runs the child method for one route; where its plan-time trial (or traced first run) faulted the GPU (the child's
    /// trace names the cuDNN engine), runs it again with that engine skipped, up to three engines and while the whole test
    /// has run under five minutes. Returns every attempt (its result and skip list) and the faults met.
    /// </summary>
    private static (List<(ChildRun.Result Result, string Skipped)> Attempts, List<string> Faults) RunRoute(string method, string mode, (string Name, string Title, string? Int8, string? Graph) route, string modelPath, string? expected, System.Diagnostics.Stopwatch clock)
    {
        var skip = new List<long>();
        var faults = new List<string>();
        var attempts = new List<(ChildRun.Result, string)>();
        while (true)
        {
            var environment = new Dictionary<string, string?>
            {
                [Int8ChildGpuTests.Mode] = mode,
                [Int8ChildGpuTests.Route] = route.Name,
                [Int8ChildGpuTests.ModelPath] = modelPath,
                [Int8ChildGpuTests.Batches] = string.Join(',', Batches),
                [Int8ChildGpuTests.Expected] = expected,
                [Int8Layers.TraceSwitch] = "1",
                [Int8Layers.GraphSkipSwitch] = skip.Count > 0 ? string.Join(',', skip) : null,
                ["BATCHWISE_REPORT_DIR"] = null,
            };
            if (route.Int8 is not null)
            {
                environment[Int8Layers.Switch] = route.Int8;
                environment[Int8Layers.GraphSwitch] = route.Graph;
            }

            var r = ChildRun.Run(typeof(Int8ChildGpuTests).FullName + "." + method, environment, TimeSpan.FromMinutes(3));
            attempts.Add((r, string.Join(',', skip)));
            if (r.Passed)
            {
                return (attempts, faults);
            }

            var fault = r.Lines.LastOrDefault(l => l.Contains("faulted", StringComparison.Ordinal) && l.StartsWith("[int8]", StringComparison.Ordinal));
            var engine = fault is null ? null : FaultedEngine().Match(fault);
            if (fault is not null)
            {
                faults.Add(fault);
            }

            if (engine is not { Success: true } || skip.Count >= 3 || clock.Elapsed > TimeSpan.FromMinutes(5))
            {
                return (attempts, faults);
            }

            skip.Add(long.Parse(engine.Groups[1].Value, CultureInfo.InvariantCulture));
        }
    }

    [GeneratedRegex(@"engine (\d+)")]
    private static partial Regex FaultedEngine();
}
