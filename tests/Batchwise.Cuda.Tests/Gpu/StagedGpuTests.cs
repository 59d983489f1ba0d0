using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Engines;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>Staged runs (what serve uses): rows written into page-locked memory, device inputs, padded batches.</summary>
[Trait("Category", "GPU")]
public sealed class StagedGpuTests
{
    [Theory]
    [InlineData(3, "fp16")]
    [InlineData(4, "fp32")]
    public async Task A_staged_run_gives_what_run_gives(int batch, string precision)
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        var options = new EngineOptions { Precision = precision == "fp16" ? Precision.Fp16 : Precision.Fp32, BatchProfiles = [1, 4, 8] };
        using var session = (CudaSession)new CudaEngine().Load(model, options);
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, batch)).ToList();
        var expected = session.Run(inputs);
        for (var round = 0; round < 3; round++)
        {
            // Three rounds on the same slot: the second captures the CUDA graph, the third replays it.
            using var staged = session.Stage([.. inputs.Select(t => t.Shape)]);
            inputs[0].Data.CopyTo(staged.Input(0));
            await staged.RunAsync(TestContext.Current.CancellationToken);
            Assert.Equal(expected[0].Shape, staged.OutputShapes![0]);
            Assert.True(staged.Output(0).Span.SequenceEqual(expected[0].Data), $"round {round}: staged output differs from Run's");
        }
    }

    [Fact]
    public async Task A_staged_run_reads_inputs_from_and_writes_outputs_to_device_memory()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:mlp");
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions());
        var input = Gpu.RandomInput(model.Inputs[0], 5);
        var expected = session.Run([input]);
        session.MakeCurrent();
        using var deviceIn = CudaDriver.Allocate(input.Data.Length);
        using var deviceOut = CudaDriver.Allocate(expected[0].Data.Length);
        Upload(deviceIn.Pointer, input.Data);
        using (var staged = session.Stage([input.Shape]))
        {
            staged.SetDeviceInput(0, deviceIn.Pointer);
            staged.SetDeviceOutput(0, deviceOut.Pointer);
            await staged.RunAsync(TestContext.Current.CancellationToken);
        }

        session.MakeCurrent();
        Assert.Equal(expected[0].Data, Download(deviceOut.Pointer, expected[0].Data.Length));
    }

    [Fact]
    public async Task A_staged_run_copies_rows_in_place_from_page_locked_host_memory_and_device_memory_at_their_offsets()
    {
        // Six rows of one batch from three places: rows 0-1 in a page-locked (registered) host range, rows 2-3 written into
        // staging, rows 4-5 in device memory; twice (the second run replays a captured graph). Each answer is Run's.
        Gpu.Require();
        var model = ModelZoo.Build("zoo:mlp");
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions());
        var input = Gpu.RandomInput(model.Inputs[0], 6);
        var expected = session.Run([input]);
        var third = input.Data.Length / 3;
        var host = AllocateHost(third);
        try
        {
            System.Runtime.InteropServices.Marshal.Copy(input.Data, 0, host, third);
            using var registration = session.TryRegister(host, third, out var failure);
            Assert.True(registration is not null, failure);
            session.MakeCurrent();
            using var device = CudaDriver.Allocate(third);
            Upload(device.Pointer, input.Data[(2 * third)..]);
            session.HostRowBytes = third; // rows this large or larger are copied in place (the default is 32 KB)
            for (var round = 0; round < 2; round++)
            {
                using var staged = session.Stage([input.Shape]);
                Assert.False(staged.TryCopyInput(0, 0, new HostTensorSource(host, third, pageLocked: false)), "pageable host memory goes through staging");
                Assert.False(staged.TryCopyInput(0, 0, new HostTensorSource(host, third - 1, pageLocked: true)), "a page-locked row under HostRowBytes goes through staging");
                Assert.True(staged.TryCopyInput(0, 0, new HostTensorSource(host, third, pageLocked: true)));
                Assert.True(staged.TryCopyInput(0, 2 * third, new DeviceTensorSource(new DeviceRange(0, device.Pointer, third), 0, third)));
                Assert.False(staged.TryCopyInput(0, 2 * third, new DeviceTensorSource(new DeviceRange(1, device.Pointer, third), 0, third)), "another GPU's memory goes through the host");
                staged.Input(0).Span.Clear();
                input.Data.AsSpan(third, third).CopyTo(staged.Input(0).Span[third..]);
                await staged.RunAsync(TestContext.Current.CancellationToken);
                Assert.True(staged.Output(0).Span.SequenceEqual(expected[0].Data), $"round {round}: rows from three places differ from Run's");
            }
        }
        finally
        {
            FreeHost(host);
        }
    }

    [Fact]
    public async Task A_staged_run_writes_output_rows_in_place_to_page_locked_host_memory_and_device_memory_at_their_offsets()
    {
        // Six rows of one batch's output to three places: rows 0-1 into a page-locked (registered) host range, rows 2-3
        // to staging, rows 4-5 into device memory; twice (the second run replays a captured graph). Each is Run's.
        Gpu.Require();
        var model = ModelZoo.Build("zoo:mlp");
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions());
        var input = Gpu.RandomInput(model.Inputs[0], 6);
        var expected = session.Run([input])[0].Data;
        var third = expected.Length / 3;
        var host = AllocateHost(third);
        try
        {
            using var registration = session.TryRegister(host, third, out var failure);
            Assert.True(registration is not null, failure);
            session.MakeCurrent();
            using var device = CudaDriver.Allocate(third);
            session.HostRowBytes = third; // rows this large or larger are copied in place (the default is 32 KB)
            for (var round = 0; round < 2; round++)
            {
                System.Runtime.InteropServices.Marshal.Copy(new byte[third], 0, host, third);
                using var staged = session.Stage([input.Shape]);
                Assert.False(staged.TryCopyOutput(0, 0, third, new HostTensorTarget(host, third, pageLocked: false)), "pageable host memory goes through staging");
                Assert.False(staged.TryCopyOutput(0, 0, third - 1, new HostTensorTarget(host, third, pageLocked: true)), "a page-locked row under HostRowBytes goes through staging");
                Assert.False(staged.TryCopyOutput(0, 0, third + 1, new HostTensorTarget(host, third, pageLocked: true)), "rows larger than the target are refused");
                Assert.True(staged.TryCopyOutput(0, 0, third, new HostTensorTarget(host, third, pageLocked: true)));
                Assert.True(staged.TryCopyOutput(0, 2 * third, third, new DeviceTensorTarget(new DeviceRange(0, device.Pointer, third), 0, third)));
                Assert.False(staged.TryCopyOutput(0, 2 * third, third, new DeviceTensorTarget(new DeviceRange(1, device.Pointer, third), 0, third)), "another GPU's memory goes through the host");
                input.Data.CopyTo(staged.Input(0).Span);
                await staged.RunAsync(TestContext.Current.CancellationToken);
                var inHost = new byte[third];
                System.Runtime.InteropServices.Marshal.Copy(host, inHost, 0, third);
                Assert.True(inHost.AsSpan().SequenceEqual(expected.AsSpan(0, third)), $"round {round}: rows 0-1 in host memory differ from Run's");
                Assert.True(staged.Output(0).Span.Slice(third, third).SequenceEqual(expected.AsSpan(third, third)), $"round {round}: rows 2-3 in staging differ from Run's");
                Assert.Equal(expected[(2 * third)..], Download(device.Pointer, third));
            }
        }
        finally
        {
            FreeHost(host);
        }
    }

    [Fact]
    public async Task Device_rows_copied_by_one_segment_launch_give_the_bytes_one_copy_a_row_gives()
    {
        // Eight rows in and out: rows 0-1 and 4-6 in device memory (row 5 at an address 3 bytes off the others'
        // alignment: the kernel's byte path), row 3 in a page-locked (registered) host range, rows 2 and 7 through
        // staging. With BATCHWISE_GATHER=kernel (the device rows in one launch each way) and =copies (one copy a row),
        // twice each (the second replays a captured graph), every byte is Run's.
        Gpu.Require();
        var model = ModelZoo.Build("zoo:mlp");
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions());
        const int batch = 8;
        var input = Gpu.RandomInput(model.Inputs[0], batch);
        var expected = session.Run([input])[0].Data;
        var (inRow, outRow) = (input.Data.Length / batch, expected.Length / batch);
        int[] onDevice = [0, 1, 4, 5, 6];
        var hostIn = AllocateHost(inRow);
        var hostOut = AllocateHost(outRow);
        try
        {
            System.Runtime.InteropServices.Marshal.Copy(input.Data, 3 * inRow, hostIn, inRow);
            using var registeredIn = session.TryRegister(hostIn, inRow, out var failure);
            Assert.True(registeredIn is not null, failure);
            using var registeredOut = session.TryRegister(hostOut, outRow, out failure);
            Assert.True(registeredOut is not null, failure);
            session.MakeCurrent();
            var shift = (batch * inRow) + 3; // where the shifted copy of the input starts
            session.HostRowBytes = 0; // every page-locked row in place, however small
            using var deviceIn = CudaDriver.Allocate(shift + (batch * inRow));
            Upload(deviceIn.Pointer, input.Data);
            Upload(deviceIn.Pointer + (ulong)shift, input.Data);
            var shiftOut = (batch * outRow) + 3;
            using var deviceOut = CudaDriver.Allocate(shiftOut + (batch * outRow));
            var inMemory = new DeviceRange(0, deviceIn.Pointer, deviceIn.Bytes);
            var outMemory = new DeviceRange(0, deviceOut.Pointer, deviceOut.Bytes);
            foreach (var byKernel in new[] { true, false })
            {
                session.RowsByKernel = byKernel;
                for (var round = 0; round < 2; round++)
                {
                    session.MakeCurrent();
                    Upload(deviceOut.Pointer, new byte[deviceOut.Bytes]);
                    System.Runtime.InteropServices.Marshal.Copy(new byte[outRow], 0, hostOut, outRow);
                    var answer = new byte[expected.Length];
                    using (var staged = session.Stage([input.Shape]))
                    {
                        staged.Input(0).Span.Clear();
                        foreach (var r in onDevice)
                        {
                            var at = r == 5 ? shift + (r * inRow) : r * inRow;
                            Assert.True(staged.TryCopyInput(0, r * inRow, new DeviceTensorSource(inMemory, at, inRow)));
                            var to = r == 5 ? shiftOut + (r * outRow) : r * outRow;
                            Assert.True(staged.TryCopyOutput(0, r * outRow, outRow, new DeviceTensorTarget(outMemory, to, outRow)));
                        }

                        Assert.True(staged.TryCopyInput(0, 3 * inRow, new HostTensorSource(hostIn, inRow, pageLocked: true)));
                        Assert.True(staged.TryCopyOutput(0, 3 * outRow, outRow, new HostTensorTarget(hostOut, outRow, pageLocked: true)));
                        foreach (var r in new[] { 2, 7 })
                        {
                            input.Data.AsSpan(r * inRow, inRow).CopyTo(staged.Input(0).Span[(r * inRow)..]);
                        }

                        await staged.RunAsync(TestContext.Current.CancellationToken);
                        foreach (var r in new[] { 2, 7 })
                        {
                            staged.Output(0).Span.Slice(r * outRow, outRow).CopyTo(answer.AsSpan(r * outRow));
                        }
                    }

                    session.MakeCurrent();
                    var fromDevice = Download(deviceOut.Pointer, (int)deviceOut.Bytes);
                    foreach (var r in onDevice)
                    {
                        fromDevice.AsSpan(r == 5 ? shiftOut + (r * outRow) : r * outRow, outRow).CopyTo(answer.AsSpan(r * outRow));
                    }

                    System.Runtime.InteropServices.Marshal.Copy(hostOut, answer, 3 * outRow, outRow);
                    var wrong = answer.AsSpan().CommonPrefixLength(expected);
                    Assert.True(wrong == expected.Length, $"BATCHWISE_GATHER={(byKernel ? "kernel" : "copies")}, round {round}: byte {wrong} (row {wrong / outRow}) differs from Run's");
                }
            }
        }
        finally
        {
            FreeHost(hostIn);
            FreeHost(hostOut);
        }
    }

    [Fact]
    public unsafe void Gathering_64_ResNet_input_rows_by_one_launch_and_by_one_copy_a_row_give_the_same_bytes_and_are_timed()
    {
        // The served CUDA shared-memory gather at b=64 on its own: 64 rows of float32 [3,224,224] (602,112 bytes), from
        // addresses in reverse order, into one batch. Measured (not asserted): host time to enqueue and finish each way,
        // median of 200; published to gather-gpu.txt for the lead's A/B beside the served numbers.
        Gpu.Require();
        var model = ModelZoo.Build("zoo:mlp");
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions());
        session.MakeCurrent();
        const int rows = 64;
        const long row = 3 * 224 * 224 * 4;
        using var sources = CudaDriver.Allocate(rows * row);
        using var target = CudaDriver.Allocate(rows * row);
        using var stream = CudaDriver.CreateStream();
        using var hostTable = CudaDriver.AllocatePinned(rows * KernelSource.SegmentEntryWords * 8);
        using var deviceTable = CudaDriver.Allocate(hostTable.Bytes);
        var random = new Random(7);
        var data = new byte[rows * row];
        random.NextBytes(data);
        Upload(sources.Pointer, data);
        var table = new Span<ulong>((void*)hostTable.DangerousGetHandle(), rows * KernelSource.SegmentEntryWords);
        var (count, blocks) = (0, 0L);
        for (var r = 0; r < rows; r++)
        {
            RowCopies.Add(table, ref count, ref blocks, sources.Pointer + (ulong)((rows - 1 - r) * row), target.Pointer + (ulong)(r * row), row);
        }

        var function = session.CopySegmentsFunction;
        void Copies()
        {
            for (var r = 0; r < rows; r++)
            {
                CudaDriver.CopyDeviceToDevice(target.Pointer + (ulong)(r * row), sources.Pointer + (ulong)((rows - 1 - r) * row), row, stream.Handle);
            }
        }

        void Kernel()
        {
            CudaDriver.CopyToDevice(deviceTable.Pointer, (void*)hostTable.DangerousGetHandle(), (long)count * KernelSource.SegmentEntryWords * 8, stream);
            CudaStagedRun.LaunchSegments(function, deviceTable.Pointer, count, blocks, stream.Handle, "gather");
        }

        byte[] Result(Action gather)
        {
            CudaDriver.MemsetD8(target.Pointer, 0, rows * row, stream.Handle);
            gather();
            CudaDriver.Synchronize(stream);
            return Download(target.Pointer, (int)(rows * row));
        }

        var byKernel = Result(Kernel);
        var byCopies = Result(Copies);
        for (var r = 0; r < rows; r++)
        {
            Assert.True(byKernel.AsSpan((int)(r * row), (int)row).SequenceEqual(data.AsSpan((int)((rows - 1 - r) * row), (int)row)), $"row {r} gathered by the kernel is not its source row");
        }

        Assert.True(byKernel.AsSpan().SequenceEqual(byCopies), "the kernel's batch differs from the copies'");

        (double Enqueue, double Total) Time(Action gather)
        {
            var enqueue = new List<double>();
            var total = new List<double>();
            for (var i = 0; i < 220; i++)
            {
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                gather();
                var enqueued = System.Diagnostics.Stopwatch.GetTimestamp();
                CudaDriver.Synchronize(stream);
                var done = System.Diagnostics.Stopwatch.GetTimestamp();
                if (i >= 20)
                {
                    enqueue.Add(System.Diagnostics.Stopwatch.GetElapsedTime(started, enqueued).TotalMicroseconds);
                    total.Add(System.Diagnostics.Stopwatch.GetElapsedTime(started, done).TotalMicroseconds);
                }
            }

            enqueue.Sort();
            total.Sort();
            return (enqueue[enqueue.Count / 2], total[total.Count / 2]);
        }

        var copies = Time(Copies);
        var kernel = Time(Kernel);
        Gpu.Publish("gather-gpu.txt", FormattableString.Invariant($"gather {rows} rows x {row} B (device to device): copies enqueue {copies.Enqueue:F1} us, enqueue+finish {copies.Total:F1} us; kernel (table upload + one launch) enqueue {kernel.Enqueue:F1} us, enqueue+finish {kernel.Total:F1} us ({count} segments, {blocks} blocks); medians of 200"));
    }

    /// <summary>A device range as CUDA shared memory presents it (only its pointer is used by a device-to-device copy).</summary>
    internal sealed class DeviceRange(int device, ulong pointer, long bytes) : IDeviceMemory
    {
        public int Device => device;

        public ulong Pointer => pointer;

        public long Bytes => bytes;

        public void Read(long offset, Span<byte> target) => throw new InvalidOperationException("read through the host: the in-place path was not taken");

        public void Write(long offset, ReadOnlySpan<byte> source) => throw new InvalidOperationException("not used");

        public void Dispose()
        {
        }
    }

    private static unsafe IntPtr AllocateHost(int bytes) => (IntPtr)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)bytes, 4096);

    private static unsafe void FreeHost(IntPtr host) => System.Runtime.InteropServices.NativeMemory.AlignedFree((void*)host);

    internal static unsafe void Upload(ulong device, byte[] data)
    {
        using var stream = CudaDriver.CreateStream();
        fixed (byte* p = data)
        {
            CudaDriver.CopyToDevice(device, p, data.Length, stream);
            CudaDriver.Synchronize(stream);
        }
    }

    internal static unsafe byte[] Download(ulong device, int bytes)
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
