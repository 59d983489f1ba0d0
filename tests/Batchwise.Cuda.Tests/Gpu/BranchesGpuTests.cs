using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// Independent branches on a second stream (BATCHWISE_BRANCHES, on by default): a ResNet's downsample convolutions
/// beside their blocks and a transformer's K and V projections beside Q compute what one stream computes, run after
/// run, replayed from the CUDA graph (where the side lane is part of the graph as a branch).
/// </summary>
[Collection(nameof(ProcessEnvironment))]
public sealed class BranchesGpuTests
{
    private static readonly Lock EnvironmentLock = new();

    public static TheoryData<string, long, Precision> Cases => new()
    {
        { "zoo:resnet50?size=64", 1, Precision.Fp16 },
        { "zoo:resnet50?size=64", 8, Precision.Fp16 },
        { "zoo:resnet50?size=64", 2, Precision.Fp32 },
        { "zoo:bert", 2, Precision.Fp16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Two_streams_compute_what_one_stream_computes_run_after_run(string name, long batch, Precision precision)
    {
        Gpu.Require();
        var model = ModelZoo.Build(name);
        var inputs = Enumerable.Range(1, 3).Select(seed => model.Inputs.Select(i => Gpu.RandomInput(i, batch, seed)).ToList()).ToList();
        using var ort = new OrtEngine().Load(model, new EngineOptions());
        var expected = inputs.Select(i => ort.Run(i)).ToList();
        var (on, onSide) = Outputs(model, precision, inputs, branches: true);
        var (off, offSide) = Outputs(model, precision, inputs, branches: false);
        Assert.True(onSide > 0, $"{name}: no step ran on the second stream");
        Assert.Equal(0, offSide);
        var floor = precision == Precision.Fp16 ? 0.999 : 0.99999;
        for (var r = 0; r < on.Count; r++)
        {
            var seed = (r % inputs.Count) + 1;
            foreach (var c in Gpu.Compare(on[r], expected[r % inputs.Count], model.Outputs))
            {
                Assert.True(c.Cosine >= floor, $"{name} b={batch} {precision}, run {r} (seed {seed}), {c.Name}: cosine {c.Cosine} against ONNX Runtime with branches on");
            }

            foreach (var c in Gpu.Compare(on[r], off[r], model.Outputs))
            {
                Assert.True(c.Cosine >= 0.9999, $"{name} b={batch} {precision}, run {r}, {c.Name}: cosine {c.Cosine} between branches on and off");
            }
        }

        Gpu.Report("branches.md", $"| {name} | {batch} | {precision} | {onSide} steps on the second stream | agrees over {on.Count} runs |");
    }

    /// <summary>Each input set run three times over (the first runs step by step, the later ones replay the graph), and the steps the session's plans put on the second stream.</summary>
    private static (List<IReadOnlyList<Tensor>> Outputs, int SideSteps) Outputs(OnnxModel model, Precision precision, List<List<Tensor>> inputs, bool branches)
    {
        IEngineSession session;
        lock (EnvironmentLock)
        {
            var before = Environment.GetEnvironmentVariable("BATCHWISE_BRANCHES");
            Environment.SetEnvironmentVariable("BATCHWISE_BRANCHES", branches ? "on" : "off");
            try
            {
                session = new CudaEngine().Load(model, new EngineOptions { Precision = precision });
            }
            finally
            {
                Environment.SetEnvironmentVariable("BATCHWISE_BRANCHES", before);
            }
        }

        using (session)
        {
            var outputs = new List<IReadOnlyList<Tensor>>();
            for (var round = 0; round < 3; round++)
            {
                outputs.AddRange(inputs.Select(i => session.Run(i)));
            }

            return (outputs, ((IPlanBuilds)session).Builds.Max(b => b.SideSteps));
        }
    }
}
