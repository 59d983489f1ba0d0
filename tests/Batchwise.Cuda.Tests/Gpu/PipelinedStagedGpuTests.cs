using System.Diagnostics;
using Batchwise.Cuda.Interop;
using Batchwise.Engines;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// Pipeline depth 2 (serve --pipeline-depth 2): two staged runs of one session queued back to back on one slot's stream,
/// each on its own lane (staging blocks, segment table, completion event), give Run's bytes; and the time of 200 batches
/// from two threads at depth 1 (two streams) and depth 2 (one stream, the next batch queued while one runs).
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
        Upload(deviceIn.Pointer, b.Data);
        var inMemory = new DeviceRange(deviceIn.Pointer, deviceIn.Bytes);
        var outMemory = new DeviceRange(deviceOut.Pointer, deviceOut.Bytes);
        for (var round = 0; round < 12; round++)
        {
            session.MakeCurrent();
            Upload(deviceOut.Pointer, new byte[expectedB.Length]);
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
            var got = Download(deviceOut.Pointer, expectedB.Length);
            Assert.True(got.AsSpan().SequenceEqual(expectedB), $"round {round}: the device-row batch ({(hostFirst ? "companion" : "first")} lane) differs from Run's");
        }

        Assert.Equal(1, session.SlotCount);
    }

    [Fact]
    public async Task Two_hundred_batches_from_two_threads_at_depth_1_and_2_are_timed()
    {
        // The served CUDA shared-memory path without the server: ResNet-50 fp16 b=64, each batch's 64 rows gathered from
        // device memory, outputs through staging, from two threads back to back (two instances' worth of batches on one
        // session: depth 1 gives each thread a slot and stream of its own, depth 2 queues both threads' batches on one
        // stream). Measured, not asserted: img/s each way, published to pipeline-gpu.txt for the lead's A/B.
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet50");
        var spec = model.Inputs[0];
        const int Batch = 64;
        const int Batches = 200;
        var input = Gpu.RandomInput(spec, Batch, seed: 3);
        var lines = new List<string>();
        foreach (var depth in new[] { 1, 2 })
        {
            using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16, BatchProfiles = [Batch], PipelineDepth = depth });
            var expected = session.Run([input])[0].Data;
            session.MakeCurrent();
            using var deviceIn = CudaDriver.Allocate(input.Data.Length);
            Upload(deviceIn.Pointer, input.Data);
            var inMemory = new DeviceRange(deviceIn.Pointer, deviceIn.Bytes);
            var wrong = 0;
            async Task Loop(int count, CancellationToken ct)
            {
                for (var i = 0; i < count; i++)
                {
                    using var run = session.Stage([input.Shape]);
                    for (var r = 0; r < Batch; r++)
                    {
                        run.TryCopyInput(0, r * InputRow, new DeviceTensorSource(inMemory, r * InputRow, InputRow));
                    }

                    await run.RunAsync(ct);
                    if (!run.Output(0).Span.SequenceEqual(expected))
                    {
                        Interlocked.Increment(ref wrong);
                    }
                }
            }

            var ct = TestContext.Current.CancellationToken;
            await Task.WhenAll(Task.Run(() => Loop(10, ct), ct), Task.Run(() => Loop(10, ct), ct)); // warm: graphs captured on every slot and lane
            var started = Stopwatch.GetTimestamp();
            await Task.WhenAll(Task.Run(() => Loop(Batches / 2, ct), ct), Task.Run(() => Loop(Batches / 2, ct), ct));
            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            Assert.Equal(0, wrong);
            lines.Add(FormattableString.Invariant($"depth {depth}: {Batches} batches of {Batch} from 2 threads in {seconds * 1000:F1} ms = {Batches * Batch / seconds:F0} img/s, {seconds * 1000 / Batches:F3} ms/batch, {session.SlotCount} slot(s)"));
        }

        Gpu.Publish("pipeline-gpu.txt", "ResNet-50 fp16 staged, 64 device rows gathered per batch: " + string.Join("; ", lines));
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

    /// <summary>Device memory as CUDA shared memory presents it (only its pointer is used by a device-side copy).</summary>
    private sealed class DeviceRange(ulong pointer, long bytes) : IDeviceMemory
    {
        public int Device => 0;

        public ulong Pointer => pointer;

        public long Bytes => bytes;

        public void Read(long offset, Span<byte> target) => throw new InvalidOperationException("read through the host: the in-place path was not taken");

        public void Write(long offset, ReadOnlySpan<byte> source) => throw new InvalidOperationException("not used");

        public void Dispose()
        {
        }
    }

    private static unsafe void Upload(ulong device, byte[] data)
    {
        using var stream = CudaDriver.CreateStream();
        fixed (byte* p = data)
        {
            CudaDriver.CopyToDevice(device, p, data.Length, stream);
            CudaDriver.Synchronize(stream);
        }
    }

    private static unsafe byte[] Download(ulong device, int bytes)
    {
        var data = new byte[bytes];
        using var stream = CudaDriver.CreateStream();
        fixed (byte* p = data)
        {
            CudaDriver.CopyToHost(p, device, bytes, stream);
            CudaDriver.Synchronize(stream);
        }

        return data;
    }
}
