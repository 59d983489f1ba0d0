using System.Diagnostics;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Tests.Benchmarking;

public sealed class BenchmarkRunnerTests
{
    private static readonly BenchmarkOptions Quick = new()
    {
        Duration = TimeSpan.FromMilliseconds(90),
        Warmup = TimeSpan.Zero,
        MaxWindows = 4,
    };

    [Fact]
    public void Mlp_sweep_measures_every_point_with_consistent_statistics()
    {
        var runner = new BenchmarkRunner(new OrtEngine(), new EngineOptions { IntraOpThreads = 1 });
        var result = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [1, 4], Concurrency = [1, 2] }, cancellationToken: TestContext.Current.CancellationToken);

        Assert.Equal(StopReason.Completed, result.StopReason);
        Assert.Equal([(1, 1), (1, 2), (4, 1), (4, 2)], result.Points.Select(p => (p.BatchSize, p.Concurrency)));
        foreach (var p in result.Points)
        {
            Assert.True(p.Throughput > 0);
            Assert.InRange(p.WindowThroughputs.Count, 3, 4);
            Assert.Equal(p.LatencySamplesMs.Count, p.LatencyMs.Count);
            Assert.True(p.LatencyMs.Count > 0);
            Assert.True(p.LatencyMs.P50 <= p.LatencyMs.P99);
            Assert.Equal(1000 / p.Throughput, p.TimePerSampleMs, 9);
            Assert.Equal(p.BatchesPerSecond * p.BatchSize, p.Throughput, 6);
            Assert.True(p.PeakWorkingSetBytes > 0);
            Assert.True(p.WarmupRuns >= p.Concurrency);
            Assert.Equal([p.BatchSize, 64L], p.InputShapes[0]);
            Assert.Null(p.DeviceUtilizationPercent);
        }

        Assert.Equal([1, 2], result.Knees.Select(k => k.Concurrency));
        Assert.Equal("ort", result.Context.Engine.Engine);
        Assert.Equal(64, result.Context.Model.Sha256.Length);
    }

    [Fact]
    public void The_cold_start_probes_the_engines_environment_beside_loading_and_splits_into_named_spans()
    {
        var runner = new BenchmarkRunner(new OrtEngine(), new EngineOptions { IntraOpThreads = 1 });
        var result = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [1] }, cancellationToken: TestContext.Current.CancellationToken);

        var cold = result.ColdStart!;
        Assert.True(cold.Spans.TryGetValue("environment", out var environment), string.Join(", ", cold.Spans.Keys));
        Assert.True(environment > 0);

        // Everything from the file opened to the first result is in the first inference: reading, loading, preparing and
        // running; the engine's description (a GPU engine initialises its driver and opens its libraries there) runs on
        // another thread beside loading and counts where loading waits for it.
        var parts = cold.ReadSeconds + cold.LoadSeconds + cold.PrepareSeconds + cold.FirstRunSeconds;
        Assert.True(cold.FirstInferenceSeconds >= parts - 1e-6, $"first inference {cold.FirstInferenceSeconds} s, parts {parts} s");
    }

    [Fact]
    public void Engine_failure_at_a_larger_batch_stops_the_sweep_there_and_keeps_the_rest()
    {
        var runner = new BenchmarkRunner(new FakeEngine(failFromBatch: 4), new EngineOptions());
        var result = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { MaxBatchSize = 16 }, cancellationToken: TestContext.Current.CancellationToken);

        Assert.Equal(StopReason.BatchFailed, result.StopReason);
        Assert.Equal([1, 2], result.Points.Select(p => p.BatchSize));
        Assert.Contains(result.Notes, n => n.Contains("stopped at b=4", StringComparison.Ordinal) && n.Contains("out of memory", StringComparison.Ordinal));
    }

    [Fact]
    public void Failure_at_the_first_batch_is_an_error()
    {
        var runner = new BenchmarkRunner(new FakeEngine(failFromBatch: 1), new EngineOptions());
        Assert.Throws<BatchwiseException>(() => runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick, cancellationToken: TestContext.Current.CancellationToken));
    }

    [Fact]
    public void Fake_engine_latency_is_what_the_engine_reports()
    {
        var runner = new BenchmarkRunner(new FakeEngine(), new EngineOptions());
        var result = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [2] }, cancellationToken: TestContext.Current.CancellationToken);
        Assert.All(result.Points[0].LatencySamplesMs, s => Assert.Equal(FakeEngine.ReportedSeconds * 1000, s, 9));
    }

    [Fact]
    public void Queued_runs_all_count_and_a_latency_sample_is_a_queues_mean_run()
    {
        var runner = new BenchmarkRunner(new FakeEngine(queued: true), new EngineOptions());
        var result = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [2], Queue = 5 }, cancellationToken: TestContext.Current.CancellationToken);
        var point = result.Points[0];
        Assert.All(point.LatencySamplesMs, s => Assert.Equal(FakeEngine.ReportedSeconds * 1000, s, 9));
        Assert.Equal(point.BatchesPerSecond * point.MeasuredSeconds, point.LatencySamplesMs.Count * 5, 6); // five runs a sample
        Assert.Contains(result.Notes, n => n.Contains("enqueued 5 runs back to back before waiting (--queue 5)", StringComparison.Ordinal));
        Assert.Equal(5, result.Context.Options.Queue);
    }

    [Fact]
    public void An_engine_without_a_device_queue_refuses_queue_saying_what_to_drop()
    {
        var runner = new BenchmarkRunner(new FakeEngine(), new EngineOptions());
        var e = Assert.Throws<BatchwiseException>(() => runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [2], Queue = 4 }, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Contains("--queue 4", e.Message, StringComparison.Ordinal);
        Assert.Contains("Drop --queue", e.Hint, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(BenchmarkOptions.MaxQueue + 1)]
    public void A_queue_out_of_range_is_rejected(int queue)
    {
        var e = Assert.Throws<BatchwiseException>(() => new BenchmarkOptions { Queue = queue }.Validate());
        Assert.Contains("--queue must be a whole number", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Runs_nearly_as_long_as_a_window_give_the_rate_of_their_latency_not_a_whole_run_more_or_less()
    {
        // 40 ms runs in 50 ms windows: a window ending at an arbitrary instant held 1 run or 2 by chance, so three windows
        // (4-5 runs) were up to 25% off (a b=256 point measured 2,532/s where its runs' p50 gave 3,327/s). Windows now run
        // from one run's end to another's: one thread's throughput is its batch over its runs' mean time.
        var runner = new BenchmarkRunner(new FakeEngine(sleepMilliseconds: 40), new EngineOptions());
        var options = new BenchmarkOptions { Duration = TimeSpan.FromMilliseconds(150), Warmup = TimeSpan.Zero, MaxWindows = 3, BatchSizes = [4] };
        var point = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", options, cancellationToken: TestContext.Current.CancellationToken).Points[0];

        var fromLatency = 4 / (point.LatencySamplesMs.Average() / 1000);
        Assert.InRange(point.Throughput / fromLatency, 0.98, 1.02);
        Assert.Equal(point.BatchesPerSecond * point.MeasuredSeconds, point.LatencySamplesMs.Count, 6); // the latencies are exactly the runs counted
    }

    [Fact]
    public void Device_clocks_are_the_mean_of_the_measurements_samples_with_each_limits_share()
    {
        // The fake device alternates 1,500 MHz held by the power cap with 1,700 MHz unheld, at 600 W throughout.
        var runner = new BenchmarkRunner(new FakeEngine(reportClocks: true), new EngineOptions());
        var point = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [2] }, cancellationToken: TestContext.Current.CancellationToken).Points[0];

        var clocks = Assert.IsType<DeviceClocks>(point.DeviceClocks);
        Assert.True(clocks.Samples >= 2, $"{clocks.Samples} samples");
        Assert.InRange(clocks.SmClockMhz, 1500, 1700);
        Assert.Equal(600, clocks.PowerWatts!.Value, 9);
        Assert.InRange(clocks.Limits["power cap"], 0.2, 0.8);
        Assert.Null(new BenchmarkRunner(new FakeEngine(), new EngineOptions()).Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [2] }, cancellationToken: TestContext.Current.CancellationToken).Points[0].DeviceClocks);
    }

    [Fact]
    public void Runs_reporting_transfer_times_give_a_breakdown_that_adds_up_to_the_latency()
    {
        var runner = new BenchmarkRunner(new FakeEngine(reportTransfers: true), new EngineOptions());
        var result = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [2], Concurrency = [1, 2] }, cancellationToken: TestContext.Current.CancellationToken);

        Assert.Equal(2, result.Points.Count);
        foreach (var p in result.Points)
        {
            var t = Assert.IsType<TransferBreakdown>(p.Transfers);
            Assert.Equal(p.LatencyMs.Count, t.ComputeMs.Count);
            Assert.Equal(p.LatencyMs.Count, t.HostToDeviceMs.Count);
            Assert.Equal(p.LatencyMs.Count, t.DeviceToHostMs.Count);
            Assert.Equal(FakeEngine.Phases.HostToDeviceSeconds * 1000, t.HostToDeviceMs.Mean, 9);
            Assert.Equal(FakeEngine.Phases.ComputeSeconds * 1000, t.ComputeMs.Mean, 9);
            Assert.Equal(FakeEngine.Phases.DeviceToHostSeconds * 1000, t.DeviceToHostMs.Mean, 9);
            Assert.Equal(p.LatencyMs.Mean, t.HostToDeviceMs.Mean + t.ComputeMs.Mean + t.DeviceToHostMs.Mean, 9);
        }
    }

    [Fact]
    public void Runs_without_transfer_times_have_no_breakdown()
    {
        var runner = new BenchmarkRunner(new FakeEngine(), new EngineOptions());
        var result = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [2] }, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Null(Assert.Single(result.Points).Transfers);
    }

    [Fact]
    public void Cancelled_sweep_returns_what_was_measured()
    {
        using var cts = new CancellationTokenSource();
        var runner = new BenchmarkRunner(new FakeEngine(), new EngineOptions());
        var result = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [1, 2, 4] }, p =>
        {
            if (p.Phase == "done" && p.BatchSize == 2)
            {
                cts.Cancel();
            }
        }, cts.Token);

        Assert.Equal(StopReason.Cancelled, result.StopReason);
        Assert.Equal([1, 2], result.Points.Select(p => p.BatchSize));
        Assert.Contains(result.Notes, n => n.Contains("Ctrl+C", StringComparison.Ordinal));
    }

    [Fact]
    public void Cancelling_mid_point_drops_that_point()
    {
        using var cts = new CancellationTokenSource();
        var runner = new BenchmarkRunner(new FakeEngine(), new EngineOptions());
        var result = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [1, 2] }, p =>
        {
            if (p.Phase == "window 1" && p.BatchSize == 2)
            {
                cts.Cancel();
            }
        }, cts.Token);

        Assert.Equal([1], result.Points.Select(p => p.BatchSize));
        Assert.Equal(StopReason.Cancelled, result.StopReason);
        Assert.Contains(result.Notes, n => n.Contains("(b=2, c=1) was dropped", StringComparison.Ordinal));
    }

    [Fact]
    public void Time_budget_stops_before_the_next_point_after_the_first()
    {
        var runner = new BenchmarkRunner(new FakeEngine(), new EngineOptions());
        var result = runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [1, 2, 4], MaxTime = TimeSpan.FromMilliseconds(1) }, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(StopReason.TimeBudget, result.StopReason);
        Assert.Equal([1], result.Points.Select(p => p.BatchSize));
        Assert.Contains(result.Notes, n => n.Contains("--max-time", StringComparison.Ordinal));
    }

    [Fact]
    public void Time_budget_cuts_an_unstable_point_at_three_windows()
    {
        var runner = new BenchmarkRunner(new FakeEngine(), new EngineOptions());
        var options = Quick with { BatchSizes = [1], MaxWindows = 10, StabilityTolerance = 1e-9, MaxTime = TimeSpan.FromMilliseconds(1) };
        var point = Assert.Single(runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", options, cancellationToken: TestContext.Current.CancellationToken).Points);
        Assert.Equal(3, point.WindowThroughputs.Count);
        Assert.False(point.Stable);
    }

    [Fact]
    public void Unstable_point_measures_up_to_max_windows()
    {
        var runner = new BenchmarkRunner(new FakeEngine(), new EngineOptions());
        var options = Quick with { BatchSizes = [1], MaxWindows = 5, StabilityTolerance = 1e-9, Duration = TimeSpan.FromMilliseconds(60) };
        var point = Assert.Single(runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", options, cancellationToken: TestContext.Current.CancellationToken).Points);
        Assert.Equal(5, point.WindowThroughputs.Count);
        Assert.False(point.Stable);
        Assert.True(point.Spread > 0);
    }

    [Fact]
    public void Fixed_batch_model_runs_its_batch_only_and_says_why()
    {
        var runner = new BenchmarkRunner(new OrtEngine(), new EngineOptions());
        var result = runner.Run(TestModels.FixedBatch(), "fixed.onnx", Quick, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal([1], result.Points.Select(p => p.BatchSize));
        var note = Assert.Single(result.Notes);
        Assert.Contains("batching is impossible for this file", note, StringComparison.Ordinal);
        Assert.Contains("first dimension fixed at 1", note, StringComparison.Ordinal);
        Assert.Contains("re-export it with a dynamic batch axis", note, StringComparison.Ordinal);
    }

    [Fact]
    public void Fixed_batch_model_with_other_batch_sizes_is_an_error()
    {
        var runner = new BenchmarkRunner(new OrtEngine(), new EngineOptions());
        var e = Assert.Throws<BatchwiseException>(() => runner.Run(TestModels.FixedBatch(), "fixed.onnx", Quick with { BatchSizes = [1, 2] }, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Contains("Batching is impossible", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Dynamic_dimension_without_shape_fails_before_loading()
    {
        var engine = new FakeEngine();
        var runner = new BenchmarkRunner(engine, new EngineOptions());
        var e = Assert.Throws<BatchwiseException>(() => runner.Run(TestModels.Tokens(), "tokens", Quick, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Contains("'input_ids'", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, engine.Loads);
    }

    [Fact]
    public void Token_model_runs_with_a_symbol_binding()
    {
        var runner = new BenchmarkRunner(new OrtEngine(), new EngineOptions { IntraOpThreads = 1 });
        var options = Quick with { BatchSizes = [2], Shapes = ShapeBindings.Parse(["seq=16"]) };
        var result = runner.Run(TestModels.Tokens(), "tokens", options, cancellationToken: TestContext.Current.CancellationToken);
        var point = Assert.Single(result.Points);
        Assert.Equal([2L, 16L], point.InputShapes[0]);
        Assert.Contains("vocabulary", result.Context.Model.InputData["input_ids"], StringComparison.Ordinal);
        Assert.Equal("ones (mask)", result.Context.Model.InputData["attention_mask"]);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.5)]
    public void Bad_tolerance_is_rejected(double tolerance)
    {
        Assert.Throws<BatchwiseException>(() => (Quick with { StabilityTolerance = tolerance }).Validate());
    }

    [Fact]
    public void Default_batch_sizes_are_powers_of_two_up_to_the_limit()
    {
        Assert.Equal([1, 2, 4, 8, 16, 32], new BenchmarkOptions { MaxBatchSize = 40 }.PlannedBatchSizes());
    }

    [Fact]
    public void When_the_device_is_missing_the_description_error_is_reported_not_the_load_error_beside_it()
    {
        var runner = new BenchmarkRunner(new MissingDeviceEngine(), new EngineOptions());

        var e = Assert.Throws<BatchwiseException>(() => runner.Run(ModelZoo.Build("zoo:mlp"), "zoo:mlp", Quick with { BatchSizes = [1] }, cancellationToken: TestContext.Current.CancellationToken));

        Assert.Contains("GPU 7 does not exist", e.Message, StringComparison.Ordinal);
    }

    /// <summary>An engine whose description says the device is missing and whose load then fails in its own words.</summary>
    private sealed class MissingDeviceEngine : IEngine
    {
        public string Name => "missing";

        public EngineDescription Describe(EngineOptions options)
        {
            Thread.Sleep(50); // the description fails after loading has failed: its error is still the one reported
            throw new BatchwiseException("GPU 7 does not exist", "Run `batchwise devices`.");
        }

        public IEngineSession Load(OnnxModel model, EngineOptions options) => throw new BatchwiseException("no context could be created");
    }

    /// <summary>
    /// An engine whose runs take about 0.2 ms and report a fixed time (or, with <paramref name="sleepMilliseconds"/>,
    /// sleep that long and report the time they took); Prepare fails from a batch size on.
    /// </summary>
    private sealed class FakeEngine(int failFromBatch = int.MaxValue, bool reportTransfers = false, int sleepMilliseconds = 0, bool reportClocks = false, bool queued = false) : IEngine
    {
        public const double ReportedSeconds = 0.000123;

        /// <summary>What runs report as their phases with reportTransfers (adding up to <see cref="ReportedSeconds"/>).</summary>
        public static readonly TransferTimes Phases = new(0.00002, 0.0001, 0.000003);

        public int Loads { get; private set; }

        public string Name => "fake";

        public EngineDescription Describe(EngineOptions options) => new("fake", "0", "nothing", new Dictionary<string, string>());

        public IEngineSession Load(OnnxModel model, EngineOptions options)
        {
            Loads++;
            return new Session(model, failFromBatch, reportTransfers, sleepMilliseconds, reportClocks, queued);
        }

        private sealed class Session(OnnxModel model, int failFromBatch, bool reportTransfers, int sleepMilliseconds, bool reportClocks, bool queued) : IEngineSession
        {
            private int _samples;

            public DeviceSample? SampleDevice() => !reportClocks ? null
                : ++_samples % 2 == 0 ? new DeviceSample(90, 1 << 20, 1 << 30, 1500, 600, ["power cap"])
                : new DeviceSample(90, 1 << 20, 1 << 30, 1700, 600, []);

            public IReadOnlyList<TensorSpec> Inputs => model.Inputs;

            public IReadOnlyList<TensorSpec> Outputs => model.Outputs;

            public IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken = default) => [];

            public IPreparedRun Prepare(IReadOnlyList<Tensor> inputs) =>
                inputs[0].Shape[0] >= failFromBatch
                    ? throw new BatchwiseException($"fake engine out of memory at b={inputs[0].Shape[0]}")
                    : queued ? new QueuedRun() : reportTransfers ? new TransferRun() : sleepMilliseconds > 0 ? new SleepingRun(sleepMilliseconds) : new Run();

            public void Dispose()
            {
            }
        }

        /// <summary>A run that also takes several runs back to back, reporting their fixed times summed.</summary>
        private sealed class QueuedRun : Run, IQueuedRuns
        {
            public double RunQueued(int runs)
            {
                var seconds = 0.0;
                for (var i = 0; i < runs; i++)
                {
                    seconds += ((IPreparedRun)this).Run();
                }

                return seconds;
            }
        }

        /// <summary>A run that also splits its time into H2D, compute and D2H.</summary>
        private sealed class TransferRun : Run, ITransferTiming
        {
            public TransferTimes? LastTransferTimes => Phases;
        }

        /// <summary>A run as long as a large batch's (tens of ms), reporting the time it took.</summary>
        private sealed class SleepingRun(int milliseconds) : IPreparedRun
        {
            double IPreparedRun.Run()
            {
                var start = Stopwatch.GetTimestamp();
                Thread.Sleep(milliseconds);
                return Stopwatch.GetElapsedTime(start).TotalSeconds;
            }

            public IReadOnlyList<Tensor> ReadOutputs() => [];

            public void Dispose()
            {
            }
        }

        private class Run : IPreparedRun
        {
            double IPreparedRun.Run()
            {
                // Busy for about 0.2 ms so runs stay countable; the reported time is fixed.
                var start = Stopwatch.GetTimestamp();
                while (Stopwatch.GetElapsedTime(start).TotalMilliseconds < 0.2)
                {
                    Thread.SpinWait(20);
                }

                return ReportedSeconds;
            }

            public IReadOnlyList<Tensor> ReadOutputs() => [];

            public void Dispose()
            {
            }
        }
    }
}
