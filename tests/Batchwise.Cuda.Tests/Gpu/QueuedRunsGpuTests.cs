using Batchwise.Engines;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>Runs enqueued back to back on one stream (bench --queue): the outputs of a single run; the refusals.</summary>
[Trait("Category", "GPU")]
public sealed class QueuedRunsGpuTests
{
    [Theory]
    [InlineData("zoo:resnet18?size=64", 2, Precision.Fp16)]
    [InlineData("zoo:bert", 2, Precision.Fp32)]
    public void Queued_runs_leave_the_outputs_of_one_run_and_time_every_run(string spec, int batch, Precision precision)
    {
        Gpu.Require();
        var model = ModelZoo.Build(spec);
        using var session = new CudaEngine().Load(model, new EngineOptions { Precision = precision });
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, batch)).ToList();
        using var run = session.Prepare(inputs);
        var single = run.Run(); // step by step: the libraries' first calls
        var expected = run.ReadOutputs();
        var queued = Assert.IsAssignableFrom<IQueuedRuns>(run);

        // The first queue captures the graph before its first event; the second replays it 16 times.
        queued.RunQueued(4);
        var seconds = queued.RunQueued(16);
        // The same plan and inputs: beyond rounding noise (fp16: cuDNN may pick a non-deterministic algorithm) the queue
        // left other outputs than a run.
        var tolerance = precision == Precision.Fp16 ? 1e-3 : 1e-6;
        foreach (var c in Gpu.Compare(run.ReadOutputs(), expected, model.Outputs))
        {
            Assert.True(c.MaxRel <= tolerance, $"{spec}: the queued runs' {c.Name} differs from one run's by up to {c.MaxAbs:E2} ({c.MaxRel:E2} of the largest output)");
        }

        // A time for all sixteen, not one: no replay runs 100 times faster than the step-by-step run (a loose bound any
        // real run meets; a queue that ran one graph would still pass it, which the bench comparison on the device checks).
        Assert.True(seconds > 0 && double.IsFinite(seconds), $"{spec}: {seconds} s for 16 queued runs");
        Assert.True(seconds > single / 100, $"{spec}: 16 queued runs took {seconds * 1e3:F3} ms against one run's {single * 1e3:F3} ms: they cannot all have run");
    }

    [Fact]
    public void Queued_runs_with_transfers_are_refused_saying_what_to_drop()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:mlp");
        using var session = new CudaEngine().Load(model, new EngineOptions { IncludeTransfers = true });
        using var run = session.Prepare(model.Inputs.Select(i => Gpu.RandomInput(i, 2)).ToList());
        var e = Assert.Throws<BatchwiseException>(() => ((IQueuedRuns)run).RunQueued(4));
        Assert.Contains("--queue with --transfers", e.Message, StringComparison.Ordinal);
        Assert.Contains("Drop --queue", e.Hint, StringComparison.Ordinal);
    }
}
