using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// L2 persistence for a plan's constants (BATCHWISE_L2_PERSIST): the CUDA graph's kernels get an access-policy window
/// over the weights, and a share of the L2 is set aside for them. A cache policy changes where bytes are read from,
/// nothing else: the graph is still captured and replayed, the window covers the plan's constants, and the outputs are
/// bit for bit those of a session without it. The time beside that session goes to l2.md under BATCHWISE_REPORT_DIR
/// (bench/ measures the models).
/// </summary>
[Trait("Category", "GPU")]
public sealed class L2PersistenceGpuTests
{
    [Theory]
    [InlineData("zoo:resnet50", 1, Precision.Fp16)]
    [InlineData("zoo:bert", 1, Precision.Fp16)] // weights larger than the set-aside: a hit ratio below 1
    public void Kept_weights_change_nothing_but_where_they_are_read_from(string name, long batch, Precision precision)
    {
        Gpu.Require();
        var model = ModelZoo.Build(name);
        var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, batch, 3)).ToList();
        var (kept, window, keptMs) = Outputs(model, precision, inputs, long.MaxValue);
        var (plain, none, plainMs) = Outputs(model, precision, inputs, null);
        Assert.Null(none);
        Assert.NotNull(window);
        Assert.True(window.HitRatio is > 0 and <= 1, $"{name}: hit ratio {window.HitRatio}");
        // The constants are separate allocations, so the window (at most the device's largest) holds what one range can.
        Assert.True(window.ConstantBytes > 0 && window.ConstantBytes <= Math.Min(window.Bytes, window.TotalConstantBytes), $"{name}: the window of {window.Bytes} bytes holds {window.ConstantBytes} of {window.TotalConstantBytes} constant bytes");
        foreach (var c in Gpu.Compare(kept, plain, model.Outputs))
        {
            Assert.True(c.MaxAbs == 0, $"{name}: max |difference| {c.MaxAbs} in {c.Name} between runs with and without the L2 window");
        }

        Gpu.Report("l2.md", string.Create(CultureInfo.InvariantCulture, $"| {name} | {batch} | {precision} | {window.Describe()} | {keptMs:F4} ms a run against {plainMs:F4} without ({plainMs / keptMs:F3}x) |"));
    }

    /// <summary>The outputs of a replayed run, the window its graph got, and the mean time of 500 replays queued back to back.</summary>
    private static (IReadOnlyList<Tensor> Outputs, Batchwise.Cuda.Planning.L2Window? Window, double Ms) Outputs(OnnxModel model, Precision precision, List<Tensor> inputs, long? setAside)
    {
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = precision, Tactics = TacticSelection.Heuristic });
        session.L2SetAside = setAside;
        using var run = (CudaPreparedRun)session.Prepare(inputs);
        run.Run(); // step by step
        run.RunQueued(20); // captured, then replayed
        var (usesGraph, problem, window) = run.Graph;
        Assert.True(usesGraph, $"the plan was not replayed as a CUDA graph: {problem}");
        var seconds = run.RunQueued(500);
        return (run.ReadOutputs(), window, seconds * 1e3 / 500);
    }
}
