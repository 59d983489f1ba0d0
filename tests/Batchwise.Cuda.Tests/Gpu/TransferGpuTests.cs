using Batchwise.Benchmarking;
using Batchwise.Cuda.Interop;
using Batchwise.Engines;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>End-to-end runs (--transfers): inputs uploaded from page-locked memory, the plan, outputs downloaded, every run.</summary>
[Trait("Category", "GPU")]
public sealed class TransferGpuTests
{
    private static readonly EngineOptions Transfers = new() { IncludeTransfers = true };

    public static TheoryData<string, int, Precision> Models() => new()
    {
        { "zoo:mlp", 8, Precision.Fp32 },
        { "zoo:resnet18?size=64", 3, Precision.Fp32 },
        { "zoo:resnet18?size=64", 3, Precision.Fp16 },
        { "zoo:bert", 2, Precision.Fp32 },
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void End_to_end_runs_give_the_outputs_of_compute_only_runs(string spec, int batch, Precision precision)
    {
        Gpu.Require();
        var model = ModelZoo.Build(spec);
        using var computeOnly = new CudaEngine().Load(model, new EngineOptions { Precision = precision });
        using var endToEnd = new CudaEngine().Load(model, Transfers with { Precision = precision });

        // The same plan either way: any difference beyond rounding noise (fp16: cuDNN may pick a non-deterministic
        // algorithm) means the copies moved the wrong bytes.
        var tolerance = precision == Precision.Fp16 ? 1e-3 : 1e-6;
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, batch)).ToList();
        using var reference = computeOnly.Prepare(inputs);
        reference.Run();
        var expected = reference.ReadOutputs();

        using var run = endToEnd.Prepare(inputs);

        // Three runs: step by step, graph capture, graph replay; each downloads afresh.
        for (var r = 0; r < 3; r++)
        {
            run.Run();
            foreach (var c in Gpu.Compare(run.ReadOutputs(), expected, model.Outputs))
            {
                Assert.True(c.MaxRel <= tolerance, $"{spec} {precision} run {r} {c.Name}: max abs error {c.MaxAbs:E2} ({c.MaxRel:E2} of the largest output)");
            }
        }

        Assert.Equal(expected.Count, endToEnd.Run(inputs).Count);
    }

    [Fact]
    public void A_reused_context_uploads_the_new_inputs()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        using var computeOnly = new CudaEngine().Load(model, new EngineOptions());
        using var endToEnd = new CudaEngine().Load(model, Transfers);
        foreach (var seed in new[] { 1, 2, 3 })
        {
            var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 2, seed)).ToList();
            var expected = computeOnly.Run(inputs);

            // Prepared and disposed in turn, so the session hands the same execution context (and staging) back.
            using var run = endToEnd.Prepare(inputs);
            run.Run();
            run.Run();
            var c = Assert.Single(Gpu.Compare(run.ReadOutputs(), expected, model.Outputs));
            Assert.True(c.MaxRel <= 1e-6, $"seed {seed}: max abs error {c.MaxAbs:E2}");
        }
    }

    [Fact]
    public void The_phases_are_timed_apart_and_add_up_to_the_run_time()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        using var session = new CudaEngine().Load(model, Transfers);
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 16)).ToList();
        using var run = session.Prepare(inputs);
        var timing = Assert.IsAssignableFrom<ITransferTiming>(run);
        Assert.Null(timing.LastTransferTimes);
        for (var r = 0; r < 5; r++)
        {
            var seconds = run.Run();
            var t = Assert.IsType<TransferTimes>(timing.LastTransferTimes);
            Gpu.Report("transfers.md", $"| resnet18@64 b=16 run {r} | {t.HostToDeviceSeconds * 1e3:F4} | {t.ComputeSeconds * 1e3:F4} | {t.DeviceToHostSeconds * 1e3:F4} | {seconds * 1e3:F4} |");
            Assert.True(t.HostToDeviceSeconds > 0, "H2D of 16 x 3 x 64 x 64 floats took no time");
            Assert.True(t.ComputeSeconds > 0);
            Assert.True(t.DeviceToHostSeconds > 0);
            Assert.Equal(t.TotalSeconds, seconds);
            Assert.True(seconds >= t.ComputeSeconds && seconds >= t.HostToDeviceSeconds && seconds >= t.DeviceToHostSeconds);
        }

        // A per-layer profile moves no data: the outputs then come from the device, and the last run has no phases.
        var staged = run.ReadOutputs()[0].ToDoubles();
        ((ILayerProfiling)run).ProfileLayers(1);
        Assert.Null(timing.LastTransferTimes);
        Assert.Equal(staged, run.ReadOutputs()[0].ToDoubles());
    }

    [Fact]
    public void Profiling_an_end_to_end_run_before_any_run_sees_the_inputs()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:mlp");
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 4)).ToList();
        using var computeOnly = new CudaEngine().Load(model, new EngineOptions());
        var expected = computeOnly.Run(inputs);
        using var session = new CudaEngine().Load(model, Transfers);
        using var run = session.Prepare(inputs);

        ((ILayerProfiling)run).ProfileLayers(1);

        var c = Assert.Single(Gpu.Compare(run.ReadOutputs(), expected, model.Outputs));
        Assert.True(c.MaxRel <= 1e-6, $"max abs error {c.MaxAbs:E2}");
    }

    [Fact]
    public void Concurrent_end_to_end_runs_on_two_contexts_keep_their_own_data()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        using var computeOnly = new CudaEngine().Load(model, new EngineOptions());
        using var session = new CudaEngine().Load(model, Transfers);
        var inputs = new[] { 11, 12 }.Select(seed => model.Inputs.Select(i => Gpu.RandomInput(i, 4, seed)).ToList()).ToArray();
        var expected = inputs.Select(i => computeOnly.Run(i)).ToArray();
        var runs = inputs.Select(session.Prepare).ToArray();
        try
        {
            var errors = new double[2];
            var threads = Enumerable.Range(0, 2).Select(k => new Thread(() =>
            {
                for (var r = 0; r < 20; r++)
                {
                    runs[k].Run();
                    var c = Gpu.Compare(runs[k].ReadOutputs(), expected[k], model.Outputs)[0];
                    errors[k] = Math.Max(errors[k], c.MaxRel);
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.All(errors, e => Assert.True(e <= 1e-6, $"largest relative error {e:E2}"));
        }
        finally
        {
            foreach (var r in runs)
            {
                r.Dispose();
            }
        }
    }

    [Fact]
    public void Two_contexts_upload_while_the_other_computes()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18");
        using var session = new CudaEngine().Load(model, Transfers);
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, 32)).ToList();
        var runs = new[] { (CudaPreparedRun)session.Prepare(inputs), (CudaPreparedRun)session.Prepare(inputs) };
        using var origin = CudaDriver.CreateEvent();
        try
        {
            // Warm up (step by step, capture, replay), then put every event on one time axis: seconds since `origin`.
            foreach (var r in runs)
            {
                for (var i = 0; i < 3; i++)
                {
                    r.Run();
                }
            }

            CudaDriver.Record(origin, runs[0].Context.Stream);
            CudaDriver.Synchronize(runs[0].Context.Stream);
            const int Runs = 30;
            var phases = new (double Start, double Uploaded, double Computed, double Downloaded)[2][];
            var threads = Enumerable.Range(0, 2).Select(k => new Thread(() =>
            {
                phases[k] = new (double, double, double, double)[Runs];
                var s = runs[k].Context.Staging;
                for (var i = 0; i < Runs; i++)
                {
                    runs[k].Run();
                    phases[k][i] = (CudaDriver.ElapsedSeconds(origin, s.Start), CudaDriver.ElapsedSeconds(origin, s.Uploaded), CudaDriver.ElapsedSeconds(origin, s.Computed), CudaDriver.ElapsedSeconds(origin, s.Downloaded));
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());

            // Seconds of each context's uploads spent while the other context computed.
            double Overlapped(int uploader) =>
                phases[uploader].Sum(u => phases[1 - uploader].Sum(c => Math.Max(0, Math.Min(u.Uploaded, c.Computed) - Math.Max(u.Start, c.Uploaded))));
            var overlapped = Overlapped(0) + Overlapped(1);
            var uploads = phases.Sum(p => p.Sum(x => x.Uploaded - x.Start));
            Gpu.Report("transfers.md", $"| resnet18 b=32, two contexts x {Runs} runs | uploads {uploads * 1e3:F2} ms in all, {overlapped * 1e3:F2} ms of it under the other context's compute ({overlapped / uploads:P0}) |");
            Assert.True(overlapped > 0, $"no upload of one context overlapped the other's compute in {2 * Runs} runs ({uploads * 1e3:F2} ms of uploads): the copies are serialised with compute");
        }
        finally
        {
            foreach (var r in runs)
            {
                r.Dispose();
            }
        }
    }

    [Fact]
    public void Bench_with_transfers_reports_a_breakdown_that_adds_up_at_each_concurrency()
    {
        Gpu.Require();
        var options = new BenchmarkOptions { BatchSizes = [1, 32], Concurrency = [1, 2], Duration = TimeSpan.FromMilliseconds(300), Warmup = TimeSpan.FromMilliseconds(100), MaxWindows = 3 };
        var result = new BenchmarkRunner(new CudaEngine(), Transfers).Run(ModelZoo.Build("zoo:resnet18?size=64"), "zoo:resnet18?size=64", options, cancellationToken: TestContext.Current.CancellationToken);

        Assert.Equal(4, result.Points.Count);
        Assert.Equal("h2d+compute+d2h", result.Context.Engine.Details["transfers"]);
        foreach (var p in result.Points)
        {
            var t = Assert.IsType<TransferBreakdown>(p.Transfers);
            Gpu.Report("transfers.md", $"| bench b={p.BatchSize} c={p.Concurrency} | {t.HostToDeviceMs.Mean:F4} | {t.ComputeMs.Mean:F4} | {t.DeviceToHostMs.Mean:F4} | {p.LatencyMs.Mean:F4} | {p.Throughput:F0}/s |");
            Assert.Equal(p.LatencyMs.Count, t.ComputeMs.Count);
            Assert.Equal(p.LatencyMs.Mean, t.HostToDeviceMs.Mean + t.ComputeMs.Mean + t.DeviceToHostMs.Mean, 6);
            Assert.True(t.HostToDeviceMs.Min > 0 && t.ComputeMs.Min > 0 && t.DeviceToHostMs.Min > 0);
        }
    }
}
