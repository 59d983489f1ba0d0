using System.Diagnostics;
using Batchwise.Cuda.Interop;
using Batchwise.Engines;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// Pipeline depth 2 (serve --pipeline-depth 2): two staged runs of one session queued back to back on one slot's stream,
/// each on its own lane (staging blocks, segment table, completion event), give Run's bytes; and the time of 200 batches
/// one or two at a time per stream, on one and two sessions.
/// </summary>
[Trait("Category", "GPU")]
public sealed class PipelinedStagedGpuTests
{
    private const long InputRow = 3 * 224 * 224 * sizeof(float);

    [Theory]
    [InlineData(64)]
    [InlineData(32)]
    public async Task Two_staged_runs_queued_on_one_stream_each_give_what_run_gives(int batch)
    {
        // ResNet-50 fp16 on the b=64 profile (b=32 runs padded). Each round stages two batches before running either, so
        // the second goes on a companion lane of the first's slot, then runs both from two threads at once: one batch's
        // rows through staging (host), the other's from device memory row by row and out to device memory row by row
        // (CUDA shared memory's path: a segment-copy gather and scatter), alternating which lane gets which. Twelve
        // rounds: the first are step by step, later ones replay the CUDA graph both lanes share.
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet50");
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16, BatchProfiles = [64], PipelineDepth = 2 });
        var spec = model.Inputs[0];
        var a = Gpu.RandomInput(spec, batch, seed: 11);
        var b = Gpu.RandomInput(spec, batch, seed: 12);
        // The device-row batch reads its rows in reverse (batch row r is device row batch-1-r) and writes each output row
        // back to its source row's place: its expected bytes are Run's on the reversed batch, rows reversed again.
        var expectedA = session.Run([a])[0].Data;
        var expectedB = ReversedRows(session.Run([ReversedRows(b, batch)])[0], batch).Data;
        var outRow = expectedA.Length / batch;
        session.MakeCurrent();
        using var deviceIn = CudaDriver.Allocate(b.Data.Length);
        using var deviceOut = CudaDriver.Allocate(expectedB.Length);
        StagedGpuTests.Upload(deviceIn.Pointer, b.Data);
        var inMemory = new StagedGpuTests.DeviceRange(0, deviceIn.Pointer, deviceIn.Bytes);
        var outMemory = new StagedGpuTests.DeviceRange(0, deviceOut.Pointer, deviceOut.Bytes);
        for (var round = 0; round < 12; round++)
        {
            session.MakeCurrent();
            StagedGpuTests.Upload(deviceOut.Pointer, new byte[expectedB.Length]);
            var hostFirst = round % 2 == 0;
            using var first = session.Stage([a.Shape]);
            using var second = session.Stage([b.Shape]);
            Assert.Equal(1, session.SlotCount);
            var (hostRun, deviceRun) = hostFirst ? (first, second) : (second, first);
            a.Data.CopyTo(hostRun.Input(0));
            for (var r = 0; r < batch; r++)
            {
                Assert.True(deviceRun.TryCopyInput(0, r * InputRow, new DeviceTensorSource(inMemory, (batch - 1 - r) * InputRow, InputRow)));
                Assert.True(deviceRun.TryCopyOutput(0, (long)r * outRow, outRow, new DeviceTensorTarget(outMemory, (long)(batch - 1 - r) * outRow, outRow)));
            }

            var ct = TestContext.Current.CancellationToken;
            var runs = new[] { first, second }.Select(run => Task.Run(() => run.RunAsync(ct), ct)).ToArray();
            await Task.WhenAll(runs);
            Assert.True(hostRun.Output(0).Span.SequenceEqual(expectedA), $"round {round}: the host-row batch ({(hostFirst ? "first" : "companion")} lane) differs from Run's");
            session.MakeCurrent();
            var got = StagedGpuTests.Download(deviceOut.Pointer, expectedB.Length);
            Assert.True(got.AsSpan().SequenceEqual(expectedB), $"round {round}: the device-row batch ({(hostFirst ? "companion" : "first")} lane) differs from Run's");
        }

        Assert.Equal(1, session.SlotCount);
    }

    [Fact]
    public async Task Two_hundred_batches_one_or_two_at_a_time_per_stream_are_timed()
    {
        // The served CUDA shared-memory path without the server: ResNet-50 fp16 b=64, each batch's 64 rows gathered from
        // device memory, outputs through staging, 200 batches back to back. Two sessions at pipeline depth 2 (two
        // instances); one thread per session runs one batch at a time on its stream (depth 1's behaviour: the GPU waits
        // for the host between batches), two threads per session queue the next batch on the same stream while one
        // runs. Measured, not asserted (each batch's bytes are): img/s each way, published to pipeline-gpu.txt.
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet50");
        const int Batch = 64;
        const int Batches = 200;
        var input = Gpu.RandomInput(model.Inputs[0], Batch, seed: 3);
        var options = new EngineOptions { Precision = Precision.Fp16, BatchProfiles = [Batch], PipelineDepth = 2 };
        using var one = (CudaSession)new CudaEngine().Load(model, options);
        using var two = (CudaSession)new CudaEngine().Load(model, options);
        var expected = one.Run([input])[0].Data;
        Assert.True(two.Run([input])[0].Data.AsSpan().SequenceEqual(expected), "two sessions of one model disagree");
        var wrong = 0;
        var ct = TestContext.Current.CancellationToken;
        using var inOne = Resident(one, input.Data);
        using var inTwo = Resident(two, input.Data);

        async Task Loop(CudaSession session, DeviceMemory memory, int count)
        {
            var source = new StagedGpuTests.DeviceRange(0, memory.Pointer, memory.Bytes);
            for (var i = 0; i < count; i++)
            {
                using var run = session.Stage([input.Shape]);
                for (var r = 0; r < Batch; r++)
                {
                    Assert.True(run.TryCopyInput(0, r * InputRow, new DeviceTensorSource(source, r * InputRow, InputRow)));
                }

                await run.RunAsync(ct);
                if (!run.Output(0).Span.SequenceEqual(expected))
                {
                    Interlocked.Increment(ref wrong);
                }
            }
        }

        async Task<double> Time(int sessions, int threadsEach, int batches)
        {
            var started = Stopwatch.GetTimestamp();
            var loops = new List<Task>();
            for (var s = 0; s < sessions; s++)
            {
                var (session, memory) = s == 0 ? (one, inOne) : (two, inTwo);
                for (var t = 0; t < threadsEach; t++)
                {
                    loops.Add(Task.Run(() => Loop(session, memory, batches / (sessions * threadsEach)), ct));
                }
            }

            await Task.WhenAll(loops);
            return Stopwatch.GetElapsedTime(started).TotalSeconds;
        }

        await Time(2, 2, 40); // warm: every lane's staging and the shared graphs
        var lines = new List<string>();
        foreach (var (sessions, threads, what) in new[] { (1, 1, "1 stream, 1 batch at a time"), (1, 2, "1 stream, 2 batches queued (depth 2)"), (2, 1, "2 streams, 1 batch each (--instances 2)"), (2, 2, "2 streams, 2 batches each (--instances 2 --pipeline-depth 2)") })
        {
            var seconds = await Time(sessions, threads, Batches);
            lines.Add(FormattableString.Invariant($"{what}: {Batches * Batch / seconds:F0} img/s ({seconds * 1000 / Batches:F3} ms/batch)"));
        }

        Assert.Equal(0, wrong);
        Assert.Equal(1, one.SlotCount);
        Assert.Equal(1, two.SlotCount);
        Gpu.Publish("pipeline-gpu.txt", $"ResNet-50 fp16 b={Batch} staged, rows gathered from device memory, {Batches} batches: " + string.Join("; ", lines));
    }

    /// <summary>The bytes in device memory of <paramref name="session"/>'s GPU.</summary>
    private static DeviceMemory Resident(CudaSession session, byte[] data)
    {
        session.MakeCurrent();
        var memory = CudaDriver.Allocate(data.Length);
        StagedGpuTests.Upload(memory.Pointer, data);
        return memory;
    }

    /// <summary>The tensor with its rows in reverse order.</summary>
    private static Tensor ReversedRows(Tensor t, int batch)
    {
        var row = t.Data.Length / batch;
        var data = new byte[t.Data.Length];
        for (var r = 0; r < batch; r++)
        {
            t.Data.AsSpan(r * row, row).CopyTo(data.AsSpan((batch - 1 - r) * row));
        }

        return new Tensor(t.ElementType, (long[])t.Shape.Clone(), data);
    }
}
