using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// A plan for a new image size confirms its octave's convolution choices on query threads (BATCHWISE_PLAN_THREADS)
/// beside the lowering: the same choices, workspaces and outputs as the queries made in sequence, and the build times.
/// </summary>
[Trait("Category", "GPU")]
public sealed class PlanThreadsGpuTests
{
    private static readonly (long H, long W)[] Sizes =
        [(320, 320), (320, 352), (352, 320), (384, 416), (416, 384), (448, 448), (480, 512), (512, 480), (512, 512), (352, 512), (416, 320)];

    [Fact]
    public void Workspace_queries_on_threads_give_the_sequential_plans_choices_and_outputs()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:yolov8n?size=320");
        var name = model.Inputs[0].Name;
        var options = new EngineOptions { Precision = Precision.Fp16, ShapeProfiles = [ShapeProfile.Parse($"{name}:1x3x320x320..1x3x512x512:32")] };
        using var sequential = (CudaSession)new CudaEngine().Load(model, options);
        sequential.PlanThreads = 0;
        using var threaded = (CudaSession)new CudaEngine().Load(model, options);
        threaded.PlanThreads = 4;
        foreach (var (h, w) in Sizes)
        {
            var input = Gpu.RandomInput(new TensorSpec(name, ElementType.Float, [Dim.Fixed(1), Dim.Fixed(3), Dim.Fixed(h), Dim.Fixed(w)]), 1, seed: (int)(h + w));
            var want = sequential.Run([input]);
            var got = threaded.Run([input]);
            foreach (var r in Gpu.Compare(got, want, model.Outputs))
            {
                // The same algorithms on the same data: equal but for the order of a split reduction's atomics.
                Assert.True(r.Cosine >= 0.99999 && r.MaxRel <= 1e-3, $"{h}x{w} {r.Name}: max rel {r.MaxRel}, cosine {r.Cosine}, threaded against sequential");
            }
        }

        // Every choice (algorithm, math type, workspace) of every exact shape and octave is the same.
        static List<string> Choices(CudaSession s) => [.. s.Choices.Snapshot().Select(kv => kv.Key + "=" + Convert.ToHexString(kv.Value)).Order(StringComparer.Ordinal)];
        Assert.Equal(Choices(sequential), Choices(threaded));

        // Sizes 320..512 share every feature map's octave: each later plan confirmed the first plan's choices, the
        // sequential session in sequence (conv_workspace_reuse), the threaded one on its threads (conv_workspace_wait).
        var (seqLater, thrLater) = (sequential.Builds.Skip(1).ToList(), threaded.Builds.Skip(1).ToList());
        Assert.Equal(Sizes.Length - 1, thrLater.Count);
        Assert.All(seqLater, b => Assert.True(b.Details.ContainsKey("conv_workspace_reuse") && !b.Details.ContainsKey("conv_workspace_wait"), $"{b.Shapes}: {string.Join(", ", b.Details.Keys)}"));
        Assert.All(thrLater, b => Assert.True(b.Details.ContainsKey("conv_workspace_wait") && !b.Details.ContainsKey("conv_workspace_reuse"), $"{b.Shapes}: {string.Join(", ", b.Details.Keys)}"));

        // Measured, not asserted: the plans after the second (which compiles the new sizes' few kernels).
        static string Median(IEnumerable<double> values)
        {
            var v = values.Order().ToList();
            return v.Count == 0 ? "-" : (v.Count % 2 == 1 ? v[v.Count / 2] : (v[(v.Count / 2) - 1] + v[v.Count / 2]) / 2).ToString("F1", CultureInfo.InvariantCulture);
        }

        string Line(string label, IReadOnlyList<PlanBuild> builds) =>
            $"{label}: median {Median(builds.Select(b => b.Seconds * 1000))} ms (library_queries {Median(builds.Select(b => b.Phases.GetValueOrDefault("library_queries") * 1000))}, graph {Median(builds.Select(b => b.Phases.GetValueOrDefault("graph") * 1000))}); "
            + string.Join(", ", builds.Select(b => string.Create(CultureInfo.InvariantCulture, $"{b.Seconds * 1000:F1}")));
        Gpu.Publish("shapes.md", $"| yolov8n fp16 new image sizes 320..512, plans 3..{Sizes.Length} | {Line("sequential", seqLater.Skip(1).ToList())} | {Line($"{threaded.PlanThreads} query threads", thrLater.Skip(1).ToList())} |");
    }
}
