// Overhead of Batchwise's bench runner against a bare ONNX Runtime InferenceSession.Run loop:
// same model, batch, thread settings and input data, in one process, in alternating rounds so that
// drift on a shared machine hits both sides alike. Prints each round and the median ratio.
//
// dotnet run --project bench/overhead -c Release -- [MODEL=zoo:resnet18] [--batch 1] [--intra-op-threads 0]
//     [--rounds 6] [--seconds 3]
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Batchwise;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;
using Microsoft.ML.OnnxRuntime;

var ic = CultureInfo.InvariantCulture;
var spec = "zoo:resnet18";
int batch = 1, intra = 0, rounds = 6;
var seconds = 3.0;
for (var i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new BatchwiseException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--batch": batch = int.Parse(Next(), ic); break;
        case "--intra-op-threads": intra = int.Parse(Next(), ic); break;
        case "--rounds": rounds = int.Parse(Next(), ic); break;
        case "--seconds": seconds = double.Parse(Next(), ic); break;
        default: spec = args[i]; break;
    }
}

var model = ModelSource.Load(spec);
var axis = model.FindBatchAxis();
var shapes = ShapeBindings.None.Resolve(model.Inputs, axis, batch);
var inputs = new InputGenerator(model, seed: 0).Generate(shapes);
var engineOptions = new EngineOptions { IntraOpThreads = intra };
var benchOptions = new BenchmarkOptions
{
    BatchSizes = [batch],
    Concurrency = [1],
    Duration = TimeSpan.FromSeconds(seconds),
    Warmup = TimeSpan.FromSeconds(0.5),
    MaxWindows = 3, // a fixed measurement length, as the bare loop has
};

// The bare side: ONNX Runtime's own API, the session options OrtEngine sets, inputs bound once.
using var sessionOptions = new SessionOptions
{
    IntraOpNumThreads = intra,
    GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
    ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
};
using var session = new InferenceSession(model.ToBytes(), sessionOptions);
var inputNames = model.Inputs.Select(x => x.Name).ToArray();
var outputNames = model.Outputs.Select(x => x.Name).ToArray();
var handles = inputs.Select(t => GCHandle.Alloc(t.Data, GCHandleType.Pinned)).ToArray();
var values = inputs.Select((t, k) => OrtValue.CreateTensorValueWithData(
    OrtMemoryInfo.DefaultInstance, ToOrt(t.ElementType), t.Shape, handles[k].AddrOfPinnedObject(), t.Data.LongLength)).ToArray();
using var runOptions = new RunOptions();

double Bare()
{
    void Loop(TimeSpan length, out long runs, out double elapsed)
    {
        runs = 0;
        var start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(start) < length)
        {
            using var outputs = session.Run(runOptions, inputNames, values, outputNames);
            runs++;
        }

        elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    Loop(benchOptions.Warmup, out _, out _);
    Loop(benchOptions.Duration, out var n, out var s);
    return n * batch / s;
}

double Ours()
{
    var result = new BenchmarkRunner(new OrtEngine(), engineOptions).Run(model, spec, benchOptions);
    return result.Points[0].Throughput;
}

Console.WriteLine($"model {spec}, batch {batch}, intra-op threads {intra} (0 = ORT default), {rounds} rounds of {seconds} s each side, alternating");
Console.WriteLine($"machine {HostInfo.MachineName}: {HostInfo.CpuName}, {HostInfo.LogicalCores} logical cores, {HostInfo.OperatingSystem}, {HostInfo.Runtime}, ONNX Runtime {OrtEnv.Instance().GetVersionString()}");
Console.WriteLine("| round | bare samples/s | runner samples/s | overhead |");
Console.WriteLine("|---|---|---|---|");
var ratios = new List<double>();
var bareAll = new List<double>();
var oursAll = new List<double>();
for (var r = 1; r <= rounds; r++)
{
    // Alternate which side goes first, so neither always runs on a warmer (or busier) machine.
    double bare, ours;
    if (r % 2 == 1)
    {
        bare = Bare();
        ours = Ours();
    }
    else
    {
        ours = Ours();
        bare = Bare();
    }

    bareAll.Add(bare);
    oursAll.Add(ours);
    ratios.Add((bare / ours) - 1);
    Console.WriteLine(string.Create(ic, $"| {r} | {bare:N1} | {ours:N1} | {(bare / ours) - 1:+0.00%;-0.00%} |"));
}

var median = Statistics.PercentileOfSorted(ratios.Order().ToList(), 50);
var medianBare = Statistics.PercentileOfSorted(bareAll.Order().ToList(), 50);
var medianOurs = Statistics.PercentileOfSorted(oursAll.Order().ToList(), 50);
Console.WriteLine(string.Create(ic, $"median: bare {medianBare:N1} samples/s, runner {medianOurs:N1} samples/s; overhead (bare/runner - 1) median {median:+0.00%;-0.00%}, range {ratios.Min():+0.00%;-0.00%} .. {ratios.Max():+0.00%;-0.00%}; goal <= 2%: {(median <= 0.02 ? "met" : "NOT met")}"));

foreach (var v in values)
{
    v.Dispose();
}

foreach (var h in handles)
{
    h.Free();
}

return 0;

static Microsoft.ML.OnnxRuntime.Tensors.TensorElementType ToOrt(ElementType t) => t switch
{
    ElementType.Float => Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float,
    ElementType.Int64 => Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int64,
    ElementType.Int32 => Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int32,
    ElementType.Bool => Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Bool,
    _ => throw new BatchwiseException($"The overhead bench feeds float, int64, int32 and bool inputs, not {t.ShortName()}"),
};
