using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A small model planned for the CPU runner (<see cref="CpuKernelRunner"/>) beside ONNX Runtime's float32 outputs for the
/// same inputs: the own-kernel tests (grouped, split-K, stem) plan every case, then compile all their kernels in one g++ run.
/// </summary>
internal sealed record OwnKernelCase(List<Tensor> Inputs, IReadOnlyList<Tensor> Expected, ExecutionPlan Plan)
{
    /// <summary>Each case's model and inputs (<paramref name="build"/>) run on ONNX Runtime (graph optimizations off) and planned (<paramref name="plan"/>); then one g++ run for all.</summary>
    public static Dictionary<string, OwnKernelCase> PrepareAll<T>(IEnumerable<KeyValuePair<string, T>> cases, Func<string, T, (OnnxModel Model, List<Tensor> Inputs)> build, Func<string, OnnxModel, List<Tensor>, ExecutionPlan> plan)
    {
        var all = cases.ToDictionary(p => p.Key, p =>
        {
            var (model, inputs) = build(p.Key, p.Value);
            using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
            return new OwnKernelCase(inputs, ort.Run(inputs), plan(p.Key, model, inputs));
        }, StringComparer.Ordinal);
        CpuKernelRunner.Prepare(all.Values.Select(p => p.Plan));
        return all;
    }

    /// <summary>
    /// Runs the plan on the CPU: it must be runnable there, hold exactly one step whose name contains <paramref name="route"/>
    /// (so the own kernel was chosen), and agree with ONNX Runtime within half precision's tolerance.
    /// </summary>
    public KernelStep RunsOnTheCpuAndAgrees(string name, string route)
    {
        CpuKernelRunner.Require();
        Assert.Null(CpuKernelRunner.CannotRun(Plan));
        var step = Assert.IsType<KernelStep>(Assert.Single(Plan.Steps, s => s.Node.Contains(route, StringComparison.Ordinal)));
        var difference = KernelCaseModels.Difference(CpuKernelRunner.Run(Plan, Inputs), Expected, half: true);
        Assert.True(difference is null, $"{name}: {difference}");
        return step;
    }
}
