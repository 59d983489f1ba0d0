// ONNX Runtime per-operator profile of a model at b=1 and b=4 on one thread, best run and kernel time per sample by
// operator: where batching changes the time per sample. Run: dotnet run bench/explain-ort-profile.cs [zoo:MODEL?opts]
#:project ../src/Batchwise/Batchwise.csproj
#:property TreatWarningsAsErrors=false
#:property EnforceCodeStyleInBuild=false
#:property AnalysisLevel=none
using System.Text.Json;
using Batchwise.Zoo;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

var model = ModelZoo.Build(args.Length > 0 ? args[0] : "zoo:resnet18?size=112");
var bytes = model.ToBytes();
var input = model.Inputs[0];
if (model.Inputs.Count != 1 || input.Shape.Count != 4 || input.Shape[2].Value is null || input.Shape[3].Value is null)
{
    Console.Error.WriteLine($"{model.Name}: this profile takes an image model with one fixed-size NCHW input (zoo:resnet18, zoo:mobilenetv2, zoo:yolov8n)");
    return 2;
}

foreach (var b in new[] { 1, 4 })
{
    using var so = new SessionOptions { IntraOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
    so.ProfileOutputPathPrefix = Path.Combine(Path.GetTempPath(), $"batchwise-ort-profile-b{b}");
    so.EnableProfiling = true;
    using var session = new InferenceSession(bytes, so);
    var shape = new[] { b, 3, (int)input.Shape[2].Value!, (int)input.Shape[3].Value! };
    var t = new DenseTensor<float>(shape);
    var inputs = new[] { NamedOnnxValue.CreateFromTensor(input.Name, t) };
    for (var i = 0; i < 3; i++) { using var _ = session.Run(inputs); }
    var sw = System.Diagnostics.Stopwatch.StartNew();
    const int Runs = 15;
    var best = double.MaxValue;
    for (var i = 0; i < Runs; i++) { var s = System.Diagnostics.Stopwatch.StartNew(); using var _ = session.Run(inputs); best = Math.Min(best, s.Elapsed.TotalMilliseconds); }
    var file = session.EndProfiling();
    using var doc = JsonDocument.Parse(File.ReadAllText(file));
    var byOp = new Dictionary<string, (double Us, int N)>();
    foreach (var e in doc.RootElement.EnumerateArray())
    {
        if (e.GetProperty("cat").GetString() != "Node" || !e.GetProperty("name").GetString()!.EndsWith("_kernel_time")) continue;
        var op = e.GetProperty("args").GetProperty("op_name").GetString()!;
        var d = e.GetProperty("dur").GetDouble();
        byOp[op] = (byOp.GetValueOrDefault(op).Us + d, byOp.GetValueOrDefault(op).N + 1);
    }
    var runs = Runs + 3;
    Console.WriteLine($"b={b}: best run {best:F2} ms = {best / b:F2} ms/sample; kernel time per sample by op (ms):");
    foreach (var (op, v) in byOp.OrderByDescending(x => x.Value.Us)) Console.WriteLine($"  {op,-28} {v.Us / 1e3 / runs / b,8:F3}  ({v.N / runs} kernels/run)");
    File.Delete(file);
}

return 0;
