using System.Globalization;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// A plan for a new image size confirms its octave's convolution choices on query threads (BATCHWISE_PLAN_THREADS)
/// beside the lowering: the same choices, workspaces and outputs as the queries made in sequence, and the build times.
/// </summary>
[Trait("Category", "GPU")]
public sealed class PlanThreadsGpuTests
{
    // The zoo's YOLOv8n has its head's anchors as constants of one image size: new shapes are new batch sizes here
    // (the same reuse of an octave's choices at an exact shape; image sizes: the CLI build of bench/device/run.sh).
    private static readonly long[] Batches = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

    [Fact]
    public void Workspace_queries_on_threads_give_the_sequential_plans_choices_and_outputs()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:yolov8n?size=320");
        var options = new EngineOptions { Precision = Precision.Fp16, Tactics = TacticSelection.Heuristic }; // the threads confirm heuristic octave choices; timed choices are exact and may differ run to run
        using var sequential = (CudaSession)new CudaEngine().Load(model, options);
        sequential.PlanThreads = 0;
        using var threaded = (CudaSession)new CudaEngine().Load(model, options);
        threaded.PlanThreads = 4;

        // cuDNN's choices are the subject: the own split-K kernel (session 21) takes some layers at some of these batches
        // and leaves them to cuDNN at others, whose first plan in an octave then asks the heuristics (12 builds, 4 asking).
        (sequential.SplitKConvolutions, threaded.SplitKConvolutions) = (SplitKConvChoice.Off, SplitKConvChoice.Off);
        foreach (var batch in Batches)
        {
            var inputs = model.Inputs.Select(i => Gpu.RandomInput(i, batch, seed: (int)batch)).ToList();
            var want = sequential.Run(inputs);
            var got = threaded.Run(inputs);
            foreach (var r in Gpu.Compare(got, want, model.Outputs))
            {
                // The same algorithms on the same data: equal but for the order of a split reduction's atomics.
                Assert.True(r.Cosine >= 0.99999 && r.MaxRel <= 1e-3, $"b={batch} {r.Name}: max rel {r.MaxRel}, cosine {r.Cosine}, threaded against sequential");
            }
        }

        // Every choice (algorithm, math type, workspace) of every exact shape and octave is the same.
        static List<string> Choices(CudaSession s) => [.. s.Choices.Snapshot().Select(kv => kv.Key + "=" + Convert.ToHexString(kv.Value)).Order(StringComparer.Ordinal)];
        Assert.Equal(Choices(sequential), Choices(threaded));

        // Batches 6-8 and 10-16 reuse their octave's choices (5 and 9 ask the heuristics): the sequential session
        // confirms them in sequence (conv_workspace_reuse), the threaded one on its threads (conv_workspace_wait).
        static bool Asked(PlanBuild b) => b.Details.ContainsKey("conv_heuristics");
        var (seqLater, thrLater) = (sequential.Builds.Where(b => !Asked(b)).ToList(), threaded.Builds.Where(b => !Asked(b)).ToList());
        Assert.Equal(Batches.Length, threaded.Builds.Count);
        Assert.Equal(Batches.Length - 2, thrLater.Count);
        Assert.All(seqLater, b => Assert.True(b.Details.ContainsKey("conv_workspace_reuse") && !b.Details.ContainsKey("conv_workspace_wait"), $"{b.Shapes}: {string.Join(", ", b.Details.Keys)}"));
        Assert.All(thrLater, b => Assert.True(b.Details.ContainsKey("conv_workspace_wait") && !b.Details.ContainsKey("conv_workspace_reuse"), $"{b.Shapes}: {string.Join(", ", b.Details.Keys)}"));

        // Measured, not asserted.
        static string Median(IEnumerable<double> values)
        {
            var v = values.Order().ToList();
            return v.Count == 0 ? "-" : (v.Count % 2 == 1 ? v[v.Count / 2] : (v[(v.Count / 2) - 1] + v[v.Count / 2]) / 2).ToString("F1", CultureInfo.InvariantCulture);
        }

        string Line(string label, IReadOnlyList<PlanBuild> builds) =>
            $"{label}: median {Median(builds.Select(b => b.Seconds * 1000))} ms (library_queries {Median(builds.Select(b => b.Phases.GetValueOrDefault("library_queries") * 1000))}, graph {Median(builds.Select(b => b.Phases.GetValueOrDefault("graph") * 1000))}); "
            + string.Join(", ", builds.Select(b => string.Create(CultureInfo.InvariantCulture, $"{b.Seconds * 1000:F1}")));
        Gpu.Publish("shapes.md", $"| yolov8n 320x320 fp16 new batch sizes 6-8, 10-16 (octave choices reused) | {Line("sequential", seqLater)} | {Line($"{threaded.PlanThreads} query threads", thrLater)} |");
    }
}
