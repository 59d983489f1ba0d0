using Batchwise.Cuda.Tests.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// NonZero on the GPU: a session's plan stops at the count, the host reads it back and the rest runs under a plan per
/// count. Boolean-mask selection (NonZero, Transpose, GatherND) whose count changes between runs of one session, from
/// several threads at once, and past the session's bound on kept plans, against ONNX Runtime.
/// </summary>
[Trait("Category", "GPU")]
public sealed class DataDependentGpuTests
{
    private static void AssertAgrees(IReadOnlyList<Tensor> expected, IReadOnlyList<Tensor> actual, Precision precision, string what)
    {
        Assert.Equal(expected[1].Shape, actual[1].Shape);
        Assert.Equal(expected[1].ToDoubles(), actual[1].ToDoubles());
        Assert.Equal(expected[0].Shape, actual[0].Shape);
        var difference = Operators.OperatorCaseModels.Difference([actual[0]], [expected[0]], precision == Precision.Fp16 ? 2e-2 : 1e-5);
        Assert.True(difference is null, $"{what}: {difference}");
    }

    [Theory]
    [InlineData(Precision.Fp32, 2)]
    [InlineData(Precision.Fp16, 2)]
    [InlineData(Precision.Fp16, 4)]
    public void Masked_selection_whose_count_changes_between_runs_agrees_with_onnx_runtime(Precision precision, int rank)
    {
        Gpu.Require();
        var shape = rank == 4 ? new long[] { 2, 3, 4, 5 } : [6, 7];
        var model = DataDependentPlanTests.MaskModel(shape);
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = precision });
        var counts = new HashSet<long>();

        // Seeds 1 and 2 twice: the second time the kept plans (and their captured CUDA graphs) replay.
        foreach (var seed in new[] { 1, 2, 1, 3, 2 })
        {
            var x = DataDependentPlanTests.Values(shape, seed);
            var expected = DataDependentPlanTests.OnOnnxRuntime(model, x);
            counts.Add(expected[1].Shape[1]);
            AssertAgrees(expected, session.Run([x]), precision, $"seed {seed}");
        }

        Assert.True(counts.Count > 1, "the seeds gave one count: the test would not see a count change");
        Assert.True(session.DataDependent);
        Assert.Contains(session.Builds, b => b.Shapes.Contains("host synchronisation", StringComparison.Ordinal));
        Gpu.Report("data-dependent.md", $"| mask rank {rank} | {precision} | counts {string.Join(",", counts)} | agrees |");
    }

    [Fact]
    public async Task Runs_from_several_threads_with_different_counts_each_get_their_own_shapes_and_values()
    {
        Gpu.Require();
        var model = DataDependentPlanTests.MaskModel(6, 7);
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions());
        var cases = Enumerable.Range(1, 8).Select(seed =>
        {
            var x = DataDependentPlanTests.Values([6, 7], seed);
            return (Input: x, Expected: DataDependentPlanTests.OnOnnxRuntime(model, x));
        }).ToList();

        void RunMany(int thread)
        {
            for (var r = 0; r < 12; r++)
            {
                var (input, expected) = cases[((thread * 3) + r) % cases.Count];
                AssertAgrees(expected, session.Run([input]), Precision.Fp32, $"thread {thread} run {r}");
            }
        }

        var runs = Enumerable.Range(0, 4).Select(t => Task.Run(() => RunMany(t), TestContext.Current.CancellationToken)).ToArray();

        // Bounded: a hang fails with a TimeoutException after 60 s.
        await Task.WhenAll(runs).WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
    }

    [Fact]
    public void Counts_past_the_bound_on_kept_plans_run_with_a_plan_built_for_the_run()
    {
        Gpu.Require();
        var model = DataDependentPlanTests.MaskModel(10, 10);
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions());
        for (var count = 0; count < CudaSession.MaxContinuationPlans + 6; count++)
        {
            // The first `count` elements pass the mask (> 0.25), the others do not: a new count each run.
            var k = count;
            var x = Tensor.From<float>(ElementType.Float, [10, 10], [.. Enumerable.Range(0, 100).Select(i => i < k ? 1f + i : -1f)]);
            AssertAgrees(DataDependentPlanTests.OnOnnxRuntime(model, x), session.Run([x]), Precision.Fp32, $"count {count}");
        }

        Assert.True(session.ContinuationPlans <= CudaSession.MaxContinuationPlans, $"{session.ContinuationPlans} plans kept");
    }
}
