using System.Globalization;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// The own grouped convolution kernel on the GPU at RegNet and ResNeXt layer sizes: against ONNX Runtime in float32, and
/// its time against cuDNN's for the same layer (both reported to grouped-conv.md under BATCHWISE_REPORT_DIR).
/// </summary>
[Trait("Category", "GPU")]
public sealed class GroupedConvGpuTests
{
    public static TheoryData<string> Layers => [.. GroupedConvModels.Layers(1).Keys];

    private static CudaSession Session(OnnxModel model, GroupedConvChoice choice)
    {
        var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        session.GroupedConvolutions = choice;
        return session;
    }

    /// <summary>The convolution's layer in a profile (the own kernel's name says so; cuDNN's is the node's).</summary>
    private static LayerTime Conv(IReadOnlyList<LayerTime> layers) => Assert.Single(layers, l => l.Layer.StartsWith("Conv", StringComparison.Ordinal));

    /// <summary>Each layer at batch 4 with the own kernel forced, against ONNX Runtime fp32: cosine at least 0.9999.</summary>
    [Theory]
    [MemberData(nameof(Layers))]
    public void Own_grouped_kernel_matches_onnx_runtime_at_layer_sizes(string name)
    {
        Gpu.Require();
        var c = GroupedConvModels.Layers(4)[name];
        var model = c.Model();
        var inputs = c.Inputs(3);
        using var cuda = Session(model, GroupedConvChoice.Own);
        Gpu.AgreesWithOrt(model, inputs, cuda, "own grouped kernel", "grouped-conv.md", $"{name} b=4");
    }

    /// <summary>
    /// Each layer at b=64: the own kernel's time and cuDNN's (CUDA events around each step, 50 runs), their TFLOP/s, the
    /// ratio, and which one BATCHWISE_GROUPED_CONV=auto picks; the two outputs agree. Printed and reported, not asserted
    /// beyond both running and agreeing.
    /// </summary>
    [Theory]
    [MemberData(nameof(Layers))]
    public void Own_grouped_kernel_time_against_cudnn_is_reported(string name)
    {
        Gpu.Require();
        var c = GroupedConvModels.Layers(64)[name];
        var model = c.Model();
        var inputs = c.Inputs(3);
        (double Ms, IReadOnlyList<Tensor> Outputs) Time(GroupedConvChoice choice)
        {
            using var cuda = Session(model, choice);
            using var run = cuda.Prepare(inputs);
            run.Run();
            var ms = Conv(Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(50)).Milliseconds;
            return (ms, cuda.Run(inputs));
        }

        var own = Time(GroupedConvChoice.Own);
        var cudnn = Time(GroupedConvChoice.Cudnn);
        var cosine = Gpu.Compare(own.Outputs, cudnn.Outputs, model.Outputs).Min(r => r.Cosine);
        var (gIn, gOut) = (c.Channels / c.Groups, c.K / c.Groups);
        var auto = GraphCompiler.PrefersOwnGroupedConv(gIn, gOut) ? "own" : "cudnn";
        var line = string.Create(CultureInfo.InvariantCulture,
            $"| {name} b=64 | x [{c.Batch},{c.Channels},{c.Height},{c.Width}] g={c.Groups} gw={gIn} s={c.Stride} | own {own.Ms:F4} ms ({c.Flops / (own.Ms * 1e9):F1} TFLOP/s) | cuDNN {cudnn.Ms:F4} ms ({c.Flops / (cudnn.Ms * 1e9):F1} TFLOP/s) | cuDNN/own {cudnn.Ms / own.Ms:F2}x | auto: {auto} | cosine {cosine:F6} |");
        Gpu.Publish("grouped-conv.md", line);
        Assert.True(own.Ms > 0 && cudnn.Ms > 0, line);
        Assert.True(cosine >= 0.999, line);
    }

    /// <summary>
    /// Registers per thread and local memory (spills) of the kernels RegNet uses (group width 24, strides 1
    /// and 2, both tile heights, the residual epilogue) and ResNeXt's width 32, as this device's NVRTC compiles them:
    /// reported, and none may use local memory.
    /// </summary>
    [Fact]
    public void Grouped_conv_registers_are_reported()
    {
        Gpu.Require();
        GroupedConvEpilogue biasRelu = new(ElementType.Float16, true, false);
        var kernels = new (string Name, KernelCode Code)[]
        {
            ("gw24 s1 tile 16", KernelSource.GroupedConv(24, 24, [3, 3], [1, 1], [1, 1], 2, biasRelu, 64, 2, [112, 112], [112, 112], [1, 1])),
            ("gw24 s2 tile 8", KernelSource.GroupedConv(24, 24, [3, 3], [2, 2], [1, 1], 1, biasRelu, 64, 2, [112, 112], [56, 56], [1, 1])),
            ("gw24 s2 tile 16", KernelSource.GroupedConv(24, 24, [3, 3], [2, 2], [1, 1], 2, biasRelu, 64, 3, [224, 224], [112, 112], [1, 1])),
            ("gw24 s1 residual", KernelSource.GroupedConv(24, 24, [3, 3], [1, 1], [1, 1], 1, new(ElementType.Float16, true, true), 64, 37, [7, 7], [7, 7], [1, 1])),
            ("gw32 s1 tile 8", KernelSource.GroupedConv(32, 32, [3, 3], [1, 1], [1, 1], 1, biasRelu, 64, 32, [7, 7], [7, 7], [1, 1])),
        };
        foreach (var ((name, _), (toolchain, registers, local)) in kernels.Zip(Gpu.KernelResources(kernels.Select(k => k.Code))))
        {
            var line = string.Create(CultureInfo.InvariantCulture, $"| grouped conv kernel {name} | {toolchain} | {registers} registers | {local} bytes local memory |");
            Gpu.Publish("grouped-conv.md", line);
            Assert.True(local == 0, line);
        }
    }
}
