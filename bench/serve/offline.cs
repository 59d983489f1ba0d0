#:project ../../src/Batchwise/Batchwise.csproj
// Offline reference for the serve measurements: the model's own throughput at fixed batch sizes through
// IEngineSession.Prepare (no server, no protocol), and batch-1 latency percentiles.
// Usage: dotnet run bench/serve/offline.cs -- zoo:resnet18 1,8,16,32 SECONDS
using System.Diagnostics;
using Batchwise.Engines;
using Batchwise.Zoo;

var spec = args.Length > 0 ? args[0] : "zoo:resnet18";
var batches = (args.Length > 1 ? args[1] : "1,8,16,32").Split(',').Select(int.Parse).ToArray();
var seconds = args.Length > 2 ? double.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 5;
var model = ModelSource.Load(spec);
using var session = new OrtEngine().Load(model, new EngineOptions());
var input = session.Inputs[0];
var rng = new Random(0);
Console.WriteLine($"{spec} on ONNX Runtime CPU, {Environment.ProcessorCount} cores; {seconds} s per batch size after 1 s warm-up");
foreach (var b in batches)
{
    var shape = input.Shape.Select((d, i) => d.Value ?? (i == 0 ? b : 1)).ToArray();
    var t = Tensor.Zeros(input.ElementType, shape);
    var f = t.AsSpan<float>();
    for (var i = 0; i < f.Length; i++) { f[i] = (float)rng.NextDouble(); }
    using var run = session.Prepare([t]);
    var warm = Stopwatch.StartNew();
    while (warm.Elapsed.TotalSeconds < 1) { run.Run(); }
    var times = new List<double>();
    var clock = Stopwatch.StartNew();
    while (clock.Elapsed.TotalSeconds < seconds) { times.Add(run.Run()); }
    var total = clock.Elapsed.TotalSeconds;
    times.Sort();
    double P(double p) => times[(int)Math.Round(p / 100 * (times.Count - 1))] * 1000;
    Console.WriteLine($"batch {b,3}: {times.Count * b / total,8:F1} img/s  run p50 {P(50):F2} ms  p90 {P(90):F2} ms  p99 {P(99):F2} ms  ({times.Count} runs)");
}
