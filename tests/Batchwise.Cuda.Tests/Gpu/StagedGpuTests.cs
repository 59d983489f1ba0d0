using Batchwise.Cuda.Interop;
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
            Assert.Equal(expected[0].Shape, staged.OutputShapes[0]);
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
