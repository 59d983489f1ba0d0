using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>Any input shape without recompiling: batch profiles and padding, shape profiles, shape-generic kernels, saved engines.</summary>
[Trait("Category", "GPU")]
public sealed class ShapeGpuTests
{
    private static IReadOnlyList<Tensor> Rows(OnnxModel model, long batch, int seed = 3) => model.Inputs.Select(i => Gpu.RandomInput(i, batch, seed)).ToList();

    /// <summary>The first <paramref name="rows"/> rows of each input.</summary>
    private static Tensor[] Take(IReadOnlyList<Tensor> inputs, int rows) => [.. inputs.Select(t =>
    {
        var shape = (long[])t.Shape.Clone();
        shape[0] = rows;
        var cut = Tensor.Zeros(t.ElementType, shape);
        t.Data.AsSpan(0, cut.Data.Length).CopyTo(cut.Data);
        return cut;
    })];

    public static TheoryData<string, string> Models() => new()
    {
        { "zoo:resnet18?size=64", "fp32" },
        { "zoo:resnet18?size=64", "fp16" },
        { "zoo:yolov8n?size=128", "fp16" },
        { "zoo:bert?seq=32&layers=2", "fp32" },
    };

    /// <summary>
    /// cuDNN's first calls made on several threads before a plan's first run (BATCHWISE_CONV_WARM_THREADS) leave that run's
    /// inputs and outputs as they are: a fresh session's first run equals, row for row, one without the warm-up.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void Convolutions_warmed_on_several_threads_leave_the_first_run_unchanged(string spec, string precision)
    {
        Gpu.Require();
        var model = ModelZoo.Build(spec);
        var options = new EngineOptions { Precision = precision == "fp16" ? Precision.Fp16 : Precision.Fp32 };
        var inputs = Rows(model, 3);
        var before = Batchwise.Cuda.Planning.ExecutionContext.ConvWarmThreads;
        try
        {
            Batchwise.Cuda.Planning.ExecutionContext.ConvWarmThreads = 0;
            using var plain = new CudaEngine().Load(model, options);
            var want = plain.Run(inputs);
            Batchwise.Cuda.Planning.ExecutionContext.ConvWarmThreads = 4;
            using var warmed = (CudaSession)new CudaEngine().Load(model, options);
            var got = warmed.Run(inputs);
            foreach (var r in Gpu.Compare(got, want, model.Outputs))
            {
                // The same algorithms on the same data: equal but for the order of a split reduction's atomics.
                Assert.True(r.Cosine >= 0.99999 && r.MaxRel <= 1e-3, $"{spec} {precision} {r.Name}: max rel {r.MaxRel}, cosine {r.Cosine} after the warm-up");
            }

            if (model.Graph.Node.Any(n => n.OpType == "Conv"))
            {
                Assert.True(warmed.Startup.Has("first_run_enqueue_ConvWarmUp"), string.Join(", ", warmed.Startup.Snapshot().Keys));
            }

            // The second run captures the plan's CUDA graph (the warm-up belongs to the first run alone, never to a capture).
            warmed.Run(inputs);
            Assert.True(warmed.Startup.Has("after_first_graph_capture"), string.Join(", ", warmed.Startup.Snapshot().Keys));
        }
        finally
        {
            Batchwise.Cuda.Planning.ExecutionContext.ConvWarmThreads = before;
        }
    }

    /// <summary>A batch run padded to the next profile gives, row for row, what the exact plan of that batch gives.</summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void Padded_batches_give_the_rows_of_the_exact_plan(string spec, string precision)
    {
        Gpu.Require();
        var model = ModelZoo.Build(spec);
        var p = precision == "fp16" ? Precision.Fp16 : Precision.Fp32;
        using var padded = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = p, BatchProfiles = [1, 4, 8] });
        using var exact = new CudaEngine().Load(model, new EngineOptions { Precision = p });
        var all = Rows(model, 8);
        foreach (var batch in new[] { 3, 5, 8 })
        {
            var inputs = Take(all, batch);
            var builds = padded.Builds.Count;
            var got = padded.Run(inputs);
            var want = exact.Run(inputs);
            Assert.All(padded.Builds.Skip(builds), b => Assert.DoesNotContain($"[{batch},", b.Shapes, StringComparison.Ordinal)); // no plan of its own
            foreach (var r in Gpu.Compare(got, want, model.Outputs))
            {
                Gpu.Report("shapes.md", string.Create(CultureInfo.InvariantCulture, $"| padded {spec} {precision} | b={batch} | {r.Name} | {r.MaxAbs:E2} | {r.Cosine:F7} |"));
                Assert.True(p == Precision.Fp16 ? r.Cosine >= 0.9999 : r.MaxRel <= 1e-4, $"{spec} b={batch} {r.Name}: max rel {r.MaxRel}, cosine {r.Cosine}");
            }
        }
    }

    /// <summary>
    /// --exact-plans: a batch that runs padded starts the build of its own plan in the background and keeps running padded
    /// (no run waits); once that plan exists the batch runs on it, with the rows the padded plan gave.
    /// </summary>
    [Fact]
    public void Padded_batches_get_their_own_plan_in_the_background()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16, BatchProfiles = [1, 8], ExactPlans = true });
        var inputs = Take(Rows(model, 8), 5);
        var shapes = inputs.Select(t => t.Shape).ToList();
        var padded = session.Run(inputs);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!session.HasPlanFor(shapes))
        {
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(60), "the exact plan of b=5 was not built within 60 s");
            Thread.Sleep(5);
        }

        var builds = session.Builds.Count;
        var exact = session.Run(inputs);
        Assert.Equal(builds, session.Builds.Count);
        Assert.Equal(1, session.BackgroundBuilds);
        Assert.Single(session.Builds, b => b.Shapes.Contains("[5,", StringComparison.Ordinal));
        foreach (var r in Gpu.Compare(exact, padded, model.Outputs))
        {
            Gpu.Report("shapes.md", string.Create(CultureInfo.InvariantCulture, $"| exact plan in the background | b=5 (padded to 8 first) | {r.Name} | {r.MaxAbs:E2} | {r.Cosine:F7} |"));
            Assert.True(r.Cosine >= 0.9999, $"b=5 {r.Name}: exact plan against padded, cosine {r.Cosine}");
        }
    }

    /// <summary>Once a model's kernels exist, plans for other batch sizes compile none: their sources hold no shapes.</summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void New_batch_sizes_compile_no_kernels(string spec, string precision)
    {
        Gpu.Require();
        var model = ModelZoo.Build(spec);
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = precision == "fp16" ? Precision.Fp16 : Precision.Fp32 });
        session.Run(Rows(model, 2));
        foreach (var batch in new[] { 3, 7, 16, 33 })
        {
            session.Run(Rows(model, batch));
        }

        var later = session.Builds.Skip(1).ToList();
        Gpu.Report("shapes.md", string.Create(CultureInfo.InvariantCulture, $"| kernels {spec} {precision} | first plan {session.Builds[0].Seconds * 1000:F0} ms, {session.Builds[0].KernelsCompiled} compiled | later plans {string.Join(", ", later.Select(b => $"{b.Seconds * 1000:F1} ms/{b.KernelsCompiled}"))} |"));
        Assert.All(later, b => Assert.True(b.KernelsCompiled == 0, $"{b.Shapes}: {b.KernelsCompiled} kernels compiled"));
    }

    /// <summary>A small detector-like network (convolutions, SiLU, pooling, upsampling, a skip Concat) of any image size.</summary>
    private static OnnxModel AnySizeDetector()
    {
        var g = new GraphBuilder("any-size");
        var x = g.Input("images", ElementType.Float, "batch", 3L, "height", "width");
        var c1 = g.Conv(x, 3, 16, 3, stride: 2, bias: true, name: "c1");
        var s1 = g.Node("Mul", [c1, g.Node("Sigmoid", [c1])]);
        var c2 = g.Node("Relu", [g.Conv(s1, 16, 16, 3, bias: true, name: "c2")]);
        var pooled = g.MaxPool(c2, 2, 2, 0);
        var up = g.Node("Resize", [pooled, string.Empty, g.Initializer("scales", [4], [1, 1, 2, 2])], GraphBuilder.Attr("mode", "nearest"));
        var cat = g.Node("Concat", [up, s1], GraphBuilder.Attr("axis", 1L));
        var y = g.Rename(g.Node("Sigmoid", [g.Conv(cat, 32, 8, 1, bias: true, name: "head")]), "y");
        g.Output(y, ElementType.Float, "batch", 8L, "out_height", "out_width");
        return g.Build("any-size");
    }

    /// <summary>A detector at another image size on its shape profile's grid builds a plan without compiling.</summary>
    [Fact]
    public void New_image_sizes_on_the_grid_compile_no_kernels_and_off_the_grid_are_refused()
    {
        Gpu.Require();
        var model = AnySizeDetector();
        var name = model.Inputs[0].Name;
        using var session = (CudaSession)new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16, ShapeProfiles = [ShapeProfile.Parse($"{name}:1x3x128x128..1x3x256x256:32")] });
        foreach (var size in new[] { 128, 160, 192, 256 })
        {
            session.Run([Gpu.RandomInput(new TensorSpec(name, ElementType.Float, [Dim.Fixed(1), Dim.Fixed(3), Dim.Fixed(size), Dim.Fixed(size)]), 1)]);
        }

        var later = session.Builds.Skip(1).ToList();
        Gpu.Report("shapes.md", $"| any-size detector, 128..256 | {string.Join(", ", session.Builds.Select(b => string.Create(CultureInfo.InvariantCulture, $"{b.Seconds * 1000:F1} ms/{b.KernelsCompiled}")))} |");
        Assert.All(later, b => Assert.True(b.KernelsCompiled == 0, $"{b.Shapes}: {b.KernelsCompiled} kernels compiled"));
        var e = Assert.Throws<BatchwiseException>(() => session.Run([Tensor.Zeros(ElementType.Float, [1, 3, 130, 128])]));
        Assert.Contains("off its shape profile's grid", e.Message, StringComparison.Ordinal);
    }

    /// <summary>A saved engine runs in a new session without compiling; one from another environment is refused, naming what differs.</summary>
    [Fact]
    public void A_saved_engine_round_trips_and_a_mismatched_one_is_refused()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.bwengine");
        var options = new EngineOptions { Precision = Precision.Fp16, BatchProfiles = [1, 4] };
        try
        {
            var builds = CudaEngine.Build(model, options, path, shapes => [.. model.Inputs.Select((spec, i) => Gpu.RandomInput(spec, shapes[i][0]))]);
            Assert.Equal(2, builds.Count);

            // The file carries the model's structure, not its float weights (their device-ready form is saved).
            var loaded = ModelSource.Load(path);
            Assert.True(loaded.WeightsLeftOut, "the saved engine kept the model's float weights");
            Assert.True(new FileInfo(path).Length < model.ToBytes().Length, $"{new FileInfo(path).Length} bytes of saved engine, {model.ToBytes().Length} of model");
            using (var session = (CudaSession)new CudaEngine().Load(loaded, new EngineOptions()))
            {
                Assert.Equal(Precision.Fp16, session.Precision); // the file's precision, not the default
                var inputs = Rows(model, 3);
                var got = session.Run(inputs);
                Assert.All(session.Builds, b => Assert.Equal(0, b.KernelsCompiled));

                // Every convolution's algorithm and workspace came from the file: cuDNN was asked nothing while planning.
                var first = session.Builds[0];
                Assert.DoesNotContain(first.Details.Keys, k => k is "conv_heuristics" or "conv_workspace" or "conv_workspace_reuse");
                var spans = session.Startup.Snapshot();
                Assert.All(new[] { "load_context", "load_saved_read", "load_saved_checksum", "plan_graph", "plan_cudnn_handle", "slot_cudnn_handle", "first_run_enqueue", "first_run_gpu" }, k => Assert.True(spans.ContainsKey(k), $"no span {k}: {string.Join(", ", spans.Keys)}"));
                using var fresh = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
                Assert.All(Gpu.Compare(got, fresh.Run(inputs), model.Outputs), r => Assert.True(r.Cosine >= 0.9999, $"cosine {r.Cosine}"));

                // The processed weights came from the file: no BN fold, reorder or conversion ran, and the outputs are
                // those of a fresh build with the same options, bit for bit, at every profile.
                Assert.Equal(0, session.DerivedConstants.Made);
                Assert.True(session.DerivedConstants.Reused > 0, "no derived constant came from the file");
                using var same = new CudaEngine().Load(model, options);
                foreach (var batch in new[] { 1, 4 })
                {
                    var rows = Rows(model, batch, seed: batch);
                    var want = same.Run(rows);
                    var have = session.Run(rows);
                    Assert.Equal(want.Count, have.Count);
                    Assert.All(want.Zip(have), p => Assert.Equal(p.First.Data, p.Second.Data));
                }

                Assert.Equal(0, session.DerivedConstants.Made);
                Gpu.Report("shapes.md", $"| saved engine, resnet18 64x64 fp16 | {string.Join(", ", session.Builds.Select(b => string.Join(' ', b.Phases.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Key} {p.Value * 1000:F1}")))))} ms |");
            }

            // Its processed weights' index damaged: refused in one line, not run with wrong weights.
            using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
            {
                var index = zip.GetEntry("cuda/constants.json")!;
                index.Delete();
                using var w = zip.CreateEntry("cuda/constants.json").Open();
                w.Write("{\"derivations\": 3"u8);
            }

            var damaged = Assert.Throws<BatchwiseException>(() => new CudaEngine().Load(ModelSource.Load(path), new EngineOptions()));
            Assert.Contains("is damaged: its constants index does not parse", damaged.Message, StringComparison.Ordinal);

            // The same file, claiming another cuDNN: refused in one line that names it and says how to rebuild.
            RewriteManifest(path, m => m with { Environment = new SortedDictionary<string, string>(m.Environment, StringComparer.Ordinal) { ["cudnn"] = "0.0.1" } });
            var e = Assert.Throws<BatchwiseException>(() => new CudaEngine().Load(ModelSource.Load(path), new EngineOptions()));
            Assert.Contains("cudnn 0.0.1 there", e.Message, StringComparison.Ordinal);
            Assert.Contains("batchwise build", e.Hint, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// A saved engine's convolutions are called early, on threads of their own beside loading and planning (ConvWarmUp):
    /// the first run of the file's smallest batch waits for what is left of them and calls none itself, its outputs are
    /// those of a fresh session with the same options bit for bit, and the second run still captures its CUDA graph.
    /// </summary>
    [Fact]
    public void A_saved_engines_convolutions_are_warmed_while_it_loads()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.bwengine");
        var options = new EngineOptions { Precision = Precision.Fp16, BatchProfiles = [1, 4] };
        var before = Batchwise.Cuda.Planning.ExecutionContext.ConvWarmThreads;
        try
        {
            CudaEngine.Build(model, options, path, shapes => [.. model.Inputs.Select((spec, i) => Gpu.RandomInput(spec, shapes[i][0]))]);
            Batchwise.Cuda.Planning.ExecutionContext.ConvWarmThreads = 4;
            using var session = (CudaSession)new CudaEngine().Load(ModelSource.Load(path), new EngineOptions());
            var inputs = Rows(model, 1);
            var got = session.Run(inputs);
            var spans = session.Startup.Snapshot();
            var names = string.Join(", ", spans.Keys);
            Assert.True(spans.ContainsKey("load_conv_warm"), names);
            Assert.True(spans.ContainsKey("first_run_enqueue_ConvWarmWait"), names);
            Assert.False(spans.ContainsKey("first_run_enqueue_ConvWarmUp"), "the first run warmed convolutions the early warm-up had called: " + names);
            session.Run(inputs);
            Assert.True(session.Startup.Has("after_first_graph_capture"), string.Join(", ", session.Startup.Snapshot().Keys));

            using var same = new CudaEngine().Load(model, options);
            var want = same.Run(inputs);
            Assert.All(want.Zip(got), p => Assert.Equal(p.First.Data, p.Second.Data));
            Gpu.Report("shapes.md", string.Create(CultureInfo.InvariantCulture, $"| saved engine, resnet18 64x64 fp16, early conv warm-up | {spans["load_conv_warm"] * 1000:F1} ms on its threads, first run waited {spans["first_run_enqueue_ConvWarmWait"] * 1000:F1} ms |"));
        }
        finally
        {
            Batchwise.Cuda.Planning.ExecutionContext.ConvWarmThreads = before;
            File.Delete(path);
        }
    }

    /// <summary>
    /// BATCHWISE_CONV_CHOICES=nearest: a new batch octave's convolutions start from a known octave's cuDNN choices (no
    /// heuristics query); the outputs are those of the session that asked the heuristics, row for row, within the
    /// difference two valid algorithms may give.
    /// </summary>
    [Fact]
    public void A_new_batch_octave_can_start_from_the_nearest_known_choices()
    {
        Gpu.Require();
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        var options = new EngineOptions { Precision = Precision.Fp16, Tactics = TacticSelection.Heuristic }; // the octave and nearest reuse are the heuristics' (timed choices stay exact)
        using var nearest = (CudaSession)new CudaEngine().Load(model, options);
        nearest.NearestBatchChoices = true;
        using var octave = (CudaSession)new CudaEngine().Load(model, options);
        octave.NearestBatchChoices = false;
        foreach (var batch in new[] { 8, 3, 33 })
        {
            var rows = Rows(model, batch, seed: batch);
            var got = nearest.Run(rows);
            var want = octave.Run(rows);
            Assert.All(Gpu.Compare(got, want, model.Outputs), r => Assert.True(r.Cosine >= 0.9999, $"b={batch}: cosine {r.Cosine}"));
        }

        // The first plan asked the heuristics; the later octaves (3 -> 4, 33 -> 64) took the nearest known choices.
        Assert.Contains("conv_heuristics", nearest.Builds[0].Details.Keys);
        Assert.All(nearest.Builds.Skip(1), b => Assert.Contains("conv_workspace_nearest", b.Details.Keys));
        Assert.All(octave.Builds.Skip(1), b => Assert.Contains("conv_heuristics", b.Details.Keys));
        Gpu.Report("shapes.md", $"| new octave plans, resnet18 64x64 fp16, nearest / octave | {string.Join(", ", nearest.Builds.Skip(1).Select(b => string.Create(CultureInfo.InvariantCulture, $"{b.Seconds * 1000:F1}")))} / {string.Join(", ", octave.Builds.Skip(1).Select(b => string.Create(CultureInfo.InvariantCulture, $"{b.Seconds * 1000:F1}")))} ms |");
    }

    private static void RewriteManifest(string path, Func<SavedEngineManifest, SavedEngineManifest> change)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Update);
        var entry = zip.GetEntry("manifest.json")!;
        SavedEngineManifest manifest;
        using (var s = entry.Open())
        {
            manifest = JsonSerializer.Deserialize(s, SavedEngineJson.Default.SavedEngineManifest)!;
        }

        entry.Delete();
        using var w = zip.CreateEntry("manifest.json").Open();
        JsonSerializer.Serialize(w, change(manifest), SavedEngineJson.Default.SavedEngineManifest);
    }
}
