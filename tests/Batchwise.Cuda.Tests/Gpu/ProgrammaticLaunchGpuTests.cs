using System.Diagnostics;
using System.Globalization;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// Programmatic dependent launch (BATCHWISE_PDL=on): the generated kernels scheduled while the kernel before them ends,
/// each waiting for it in its first statement. The schedule changes, nothing else: the outputs agree with ONNX Runtime
/// and are bit for bit those of ordinary launches, run after run (the first run step by step, the later ones replayed
/// from the CUDA graph, where the launches are captured as programmatic edges). Its time beside ordinary launches is
/// reported to pdl.md under BATCHWISE_REPORT_DIR (bench/ measures the models). ResNet-50 at batch 1 runs with every
/// convolution on the split-K kernel, unsplit ones included, so the agreement covers them too.
/// </summary>
[Trait("Category", "GPU")]
public sealed class ProgrammaticLaunchGpuTests
{
    public static TheoryData<string, long, Precision, bool> Cases => new()
    {
        // ResNet-50 at batch 1 with every convolution but the stem on the own split-K kernel (BATCHWISE_SPLITK_CONV=every): all its kernels generated.
        { "zoo:resnet50", 1, Precision.Fp16, true },
        { "zoo:resnet50?size=64", 8, Precision.Fp16, false },
        { "zoo:mobilenetv2", 2, Precision.Fp16, false },
        { "zoo:bert", 1, Precision.Fp16, false },
        { "zoo:resnet50?size=64", 2, Precision.Fp32, false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Programmatic_launches_compute_bit_for_bit_what_ordinary_launches_compute(string name, long batch, Precision precision, bool splitKEverywhere)
    {
        Gpu.Require();
        var model = ModelZoo.Build(name);
        var inputs = Enumerable.Range(1, 3).Select(seed => model.Inputs.Select(i => Gpu.RandomInput(i, batch, seed)).ToList()).ToList();
        var (on, onKernels, onMs) = Outputs(model, precision, splitKEverywhere, inputs, programmatic: true);
        var (off, offKernels, offMs) = Outputs(model, precision, splitKEverywhere, inputs, programmatic: false);
        Assert.True(onKernels > 0, $"{name}: no generated kernel was launched with programmatic dependent launch");
        Assert.Equal(0, offKernels);
        using var ort = new OrtEngine().Load(model, new EngineOptions());
        var expected = inputs.Select(i => ort.Run(i)).ToList();
        var floor = precision == Precision.Fp16 ? 0.999 : 0.99999;
        for (var r = 0; r < on.Count; r++)
        {
            foreach (var c in Gpu.Compare(on[r], expected[r % inputs.Count], model.Outputs))
            {
                Assert.True(c.Cosine >= floor, $"{name} b={batch} {precision}, run {r}, {c.Name}: cosine {c.Cosine} against ONNX Runtime with programmatic launches");
            }

            foreach (var c in Gpu.Compare(on[r], off[r], model.Outputs))
            {
                Assert.True(c.MaxAbs == 0, $"{name} b={batch} {precision}, run {r}, {c.Name}: max |difference| {c.MaxAbs} between programmatic and ordinary launches (the same kernels in the same order must give the same bits)");
            }
        }

        Gpu.Report("pdl.md", string.Create(CultureInfo.InvariantCulture, $"| {name} | {batch} | {precision} | {onKernels} kernels programmatic | {onMs:F4} ms a run against {offMs:F4} ordinary ({offMs / onMs:F3}x) | bit for bit over {on.Count} runs |"));
    }

    /// <summary>Each input set run three times over, the kernels launched programmatically, and the mean time of 200 graph replays of the first input set.</summary>
    private static (List<IReadOnlyList<Tensor>> Outputs, int ProgrammaticKernels, double Ms) Outputs(OnnxModel model, Precision precision, bool splitKEverywhere, List<List<Tensor>> inputs, bool programmatic)
    {
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = precision, Tactics = TacticSelection.Heuristic });
        session.SplitKConvolutions = splitKEverywhere ? SplitKConvChoice.Every : SplitKConvChoice.Auto;
        session.ProgrammaticLaunch = programmatic;
        var outputs = new List<IReadOnlyList<Tensor>>();
        for (var round = 0; round < 3; round++)
        {
            outputs.AddRange(inputs.Select(i => session.Run(i)));
        }

        using var run = session.Prepare(inputs[0]);
        for (var i = 0; i < 20; i++)
        {
            run.Run();
        }

        var clock = Stopwatch.StartNew();
        for (var i = 0; i < 200; i++)
        {
            run.Run();
        }

        return (outputs, ((IPlanBuilds)session).Builds.Max(b => b.ProgrammaticKernels), clock.Elapsed.TotalMilliseconds / 200);
    }
}
