using Batchwise.Analysis;
using Batchwise.Engines;

namespace Batchwise.Tests.Analysis;

public sealed class CeilingsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"bw-ceilings-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, true);
        }
    }

    [Fact]
    public void Cache_round_trips_every_field()
    {
        var cache = new CeilingsCache(_dir);
        var path = cache.PathFor("host", "ort", "cpu");
        var original = Synthetic.Int8Gpu() with
        {
            PeakConvFlops = 50e9,
            PeakConvFlopsInt8 = 60e9,
            Details = new Dictionary<string, string> { ["k"] = "v" },
            SustainedLoad = new Dictionary<string, IReadOnlyList<SustainedPoint>> { ["fp16"] = [new(0.25, 1.0), new(0.9, 0.8)] },
        };
        cache.Write(path, original);
        var read = cache.TryRead(path);
        Assert.NotNull(read);
        Assert.Equal(original.PeakFlops, read!.PeakFlops);
        Assert.Equal(original.PeakConvFlops, read.PeakConvFlops);
        Assert.Equal(original.BandwidthBytesPerSecond, read.BandwidthBytesPerSecond);
        Assert.Equal(original.SaturationN, read.SaturationN);
        Assert.Equal(original.RunOverheadSeconds, read.RunOverheadSeconds);
        Assert.Equal(original.OpOverheadSeconds, read.OpOverheadSeconds);
        Assert.Equal(original.MeasuredAt, read.MeasuredAt);
        Assert.Equal("v", read.Details["k"]);
        Assert.Equal(original.PeakFlopsTf32, read.PeakFlopsTf32);
        Assert.Equal(original.PeakFlopsFp16, read.PeakFlopsFp16);
        Assert.Equal(original.KernelLaunchSeconds, read.KernelLaunchSeconds);
        Assert.Equal(original.StreamRunOverheadSeconds, read.StreamRunOverheadSeconds);
        Assert.Equal(original.Launch, read.Launch);
        Assert.Equal(original.Precision, read.Precision);
        Assert.Equal(original.PeakFlopsInt8, read.PeakFlopsInt8);
        Assert.Equal(original.PeakConvFlopsInt8, read.PeakConvFlopsInt8);
        Assert.Equal(["fp16", "fp32", "int8", "tf32"], read.RateCurves.Keys.Order());
        foreach (var (precision, curve) in original.RateCurves)
        {
            Assert.Equal(curve, read.RateCurves[precision]);
        }

        Assert.Equal(original.SustainedLoad["fp16"], read.SustainedLoad["fp16"]);
    }

    [Fact]
    public void Damaged_or_old_cache_files_read_as_absent()
    {
        var cache = new CeilingsCache(_dir);
        var path = cache.PathFor("host", "ort", "cpu");
        Assert.Null(cache.TryRead(path));
        Directory.CreateDirectory(_dir);
        File.WriteAllText(path, "{ not json");
        Assert.Null(cache.TryRead(path));
        cache.Write(path, Synthetic.Device() with { Schema = DeviceCeilings.CurrentSchema - 1 });
        Assert.Null(cache.TryRead(path));
    }

    [Fact]
    public void A_file_the_user_names_is_read_from_the_oldest_readable_schema_on_the_cache_only_at_the_current_one()
    {
        var cache = new CeilingsCache(_dir);
        var path = cache.PathFor("host", "cuda", "gpu");
        cache.Write(path, Synthetic.Device() with { Schema = DeviceCeilings.OldestReadableSchema });
        Assert.Null(cache.TryRead(path));
        Assert.Equal(DeviceCeilings.OldestReadableSchema, cache.TryRead(path, olderSchemas: true)!.Schema);

        cache.Write(path, Synthetic.Device() with { Schema = DeviceCeilings.OldestReadableSchema - 1 });
        Assert.Null(cache.TryRead(path, olderSchemas: true));
        cache.Write(path, Synthetic.Device() with { Schema = DeviceCeilings.CurrentSchema + 1 });
        Assert.Null(cache.TryRead(path, olderSchemas: true));
    }

    [Fact]
    public void A_file_from_before_the_sustained_load_reads_with_none_and_predicts_at_the_full_clock()
    {
        // Schema 9 had no sustained_load: the field is absent, not empty (a null here made every prediction throw).
        var cache = new CeilingsCache(_dir);
        var path = cache.PathFor("host", "cuda", "gpu");
        cache.Write(path, Synthetic.Gpu() with { Schema = 9 });
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        json.Remove("sustained_load");
        File.WriteAllText(path, json.ToJsonString());

        var read = cache.TryRead(path, olderSchemas: true)!;
        Assert.Empty(read.SustainedLoad);
        Assert.Equal(1.0, read.WithPrecision("fp16").SustainedFactor(0.9));
    }

    [Fact]
    public void Cache_files_differ_per_machine_engine_device_and_settings()
    {
        var cache = new CeilingsCache(_dir);
        var paths = new[]
        {
            cache.PathFor("a", "ort", "cpu"), cache.PathFor("b", "ort", "cpu"), cache.PathFor("a", "cuda", "cpu"),
            cache.PathFor("a", "ort", "gpu"), cache.PathFor("a", "ort", "cpu", "threads=1"),
        };
        Assert.Equal(paths.Length, paths.Distinct().Count());
    }

    [Fact]
    public void Source_measures_once_then_reads_the_cache_until_recalibrated()
    {
        var cache = new CeilingsCache(_dir);
        var probe = new CountingProbe();
        DeviceCeilingsSource.Register("counting-test", () => probe);
        var engine = new OrtEngine();
        var (first, fromCache1, path) = DeviceCeilingsSource.Get(new NamedEngine(engine, "counting-test"), new EngineOptions(), cache, recalibrate: false);
        var (second, fromCache2, _) = DeviceCeilingsSource.Get(new NamedEngine(engine, "counting-test"), new EngineOptions(), cache, recalibrate: false);
        var (_, fromCache3, _) = DeviceCeilingsSource.Get(new NamedEngine(engine, "counting-test"), new EngineOptions(), cache, recalibrate: true);
        Assert.False(fromCache1);
        Assert.True(fromCache2);
        Assert.False(fromCache3);
        Assert.Equal(2, probe.Calls);
        Assert.Equal(first.PeakFlops, second.PeakFlops);
        Assert.True(File.Exists(path));
    }

    [Fact]
    public void Probes_measure_plain_fp32_whatever_precision_the_run_asks_for()
    {
        var probe = new CountingProbe();
        DeviceCeilingsSource.Register("precision-test", () => probe);
        var options = new EngineOptions { Precision = Precision.Fp16, AllowTf32 = true, IntraOpThreads = 1 };
        DeviceCeilingsSource.Get(new NamedEngine(new OrtEngine(), "precision-test"), options, new CeilingsCache(_dir), recalibrate: true);
        Assert.Equal(options with { Precision = Precision.Fp32, AllowTf32 = false }, probe.LastOptions);
        Assert.Equal(
            DeviceCeilingsSource.CachePath(new NamedEngine(new OrtEngine(), "precision-test"), options, new CeilingsCache(_dir)),
            DeviceCeilingsSource.CachePath(new NamedEngine(new OrtEngine(), "precision-test"), new EngineOptions { IntraOpThreads = 1 }, new CeilingsCache(_dir)));
    }

    [Fact]
    public void Cuda_probe_is_sized_for_a_gpu()
    {
        var probe = Assert.IsType<CeilingsProbe>(DeviceCeilingsSource.ProbeFor("cuda"));
        Assert.True(probe.PeakGemmSize >= 4096);
        Assert.True(probe.ConvSides.Max() * probe.ConvSides.Max() >= 65536, "a GPU's GEMMs fill at N in the tens of thousands");
        Assert.Equal(512, Assert.IsType<CeilingsProbe>(DeviceCeilingsSource.ProbeFor("ort")).PeakGemmSize);
    }

    [Fact]
    public void Engine_probe_measures_positive_ceilings_on_this_cpu()
    {
        var probe = new CeilingsProbe { SecondsPerMeasurement = 0.02, PeakGemmSize = 128, BandwidthElements = 1 << 18, ConvChannels = 32, ConvLayers = 2, ConvSides = [1, 4, 8] };
        var c = probe.Measure(new OrtEngine(), new EngineOptions { IntraOpThreads = 1 });
        // Rates and costs exist and are finite; how fast this CPU is belongs to bench/results (explain-cpu), not here.
        Assert.True(double.IsFinite(c.PeakFlops) && c.PeakFlops > 0, $"peak {c.PeakFlops}");
        Assert.True(c.PeakConvFlops is { } conv && double.IsFinite(conv) && conv > 0, $"conv {c.PeakConvFlops}");
        Assert.True(double.IsFinite(c.BandwidthBytesPerSecond) && c.BandwidthBytesPerSecond > 0, $"bandwidth {c.BandwidthBytesPerSecond}");
        Assert.True(double.IsFinite(c.RunOverheadSeconds) && c.RunOverheadSeconds >= 0, $"run overhead {c.RunOverheadSeconds}");
        Assert.True(double.IsFinite(c.OpOverheadSeconds) && c.OpOverheadSeconds >= 0, $"op overhead {c.OpOverheadSeconds}");
        Assert.True(c.SaturationN >= 1, $"saturation N {c.SaturationN}");
        Assert.Equal("ort", c.Engine);
        Assert.Contains("conv_curve", c.Details.Keys);
        Assert.Equal([1.0, 16, 64], c.RateCurves["fp32"].Select(p => p.N));
        Assert.All(c.RateCurves["fp32"], p => Assert.True(p.Flops > 0));
        Assert.Equal(c.PeakConvFlops, c.RateCurves["fp32"].Max(p => p.Flops));
        Assert.Null(c.PeakFlopsFp16); // ONNX Runtime refuses --precision fp16, so there is no fp16 ceiling
        Assert.StartsWith("not measured", c.Details["fp16"], StringComparison.Ordinal);
    }

    [Fact]
    public void Int8_probe_runs_qdq_products_on_ort()
    {
        var probe = new CeilingsProbe { SecondsPerMeasurement = 0.02, PeakGemmSize = 128, BandwidthElements = 1 << 16, ConvChannels = 32, ConvLayers = 2, ConvSides = [1, 4] };
        var c = probe.Measure(new OrtEngine(), new EngineOptions { IntraOpThreads = 1 });
        Assert.True(c.PeakFlopsInt8 is { } q && double.IsFinite(q) && q > 0, $"int8 {c.PeakFlopsInt8}; {string.Join("; ", c.Details)}");
        Assert.True(c.HasInt8);
        Assert.Equal([1.0, 16], c.RateCurves["int8"].Select(p => p.N));
        Assert.Equal(c.PeakConvFlopsInt8, c.RateCurves["int8"].Max(p => p.Flops));
        Assert.Contains("int8_conv_curve", c.Details.Keys);
        Assert.Contains(" int8,", c.Summary(), StringComparison.Ordinal);
    }

    [Fact]
    public void Options_pick_the_fp32_tf32_or_fp16_gemm_ceiling()
    {
        var gpu = Synthetic.Gpu();
        var fp32 = gpu.For(new EngineOptions());
        var tf32 = gpu.For(new EngineOptions { AllowTf32 = true });
        var fp16 = gpu.For(new EngineOptions { Precision = Precision.Fp16 });
        var fp16Tf32 = gpu.For(new EngineOptions { Precision = Precision.Fp16, AllowTf32 = true });
        Assert.Equal(("fp32", 50e12), (fp32.Precision, fp32.PeakInUse));
        Assert.Equal(("tf32", 350e12), (tf32.Precision, tf32.PeakInUse));
        Assert.Equal(("fp16", 700e12), (fp16.Precision, fp16.PeakInUse));
        Assert.Equal("fp16", fp16Tf32.Precision);
        Assert.Equal(700e12, fp16.EffectiveFlops(1e9));
        Assert.Equal(700e12, fp16.PeakFor("Conv"));
        Assert.Equal(fp16.RateCurves["fp16"], fp16.RateCurve);
    }

    [Fact]
    public void Each_precision_saturates_at_the_n_of_its_own_curve()
    {
        var gpu = Synthetic.Gpu();
        Assert.Equal(4096, gpu.For(new EngineOptions()).SaturationN, 6);

        // 90% of the best between the curve's points N = 4,096 and 16,384, in log N: fp16 is at 25% and tf32 at 50% at 4,096.
        Assert.Equal(4096 * Math.Pow(4, 0.65 / 0.75), gpu.For(new EngineOptions { Precision = Precision.Fp16 }).SaturationN, 6);
        Assert.Equal(4096 * Math.Pow(4, 0.4 / 0.5), gpu.For(new EngineOptions { AllowTf32 = true }).SaturationN, 6);
    }

    [Fact]
    public void Int8_predicts_with_the_fp16_ceiling_where_measured_else_fp32()
    {
        Assert.Equal("fp16", Synthetic.Gpu().For(new EngineOptions { Precision = Precision.Int8 }).Precision);
        Assert.Equal("fp32", Synthetic.Device().For(new EngineOptions { Precision = Precision.Int8 }).Precision);
    }

    [Fact]
    public void Tf32_on_a_device_without_a_tf32_ceiling_predicts_in_fp32()
    {
        var cpu = Synthetic.Device();
        var c = cpu.For(new EngineOptions { AllowTf32 = true });
        Assert.Equal("fp32", c.Precision);
        Assert.Equal(cpu.PeakFlops, c.PeakInUse);
    }

    [Fact]
    public void Fp16_without_an_fp16_ceiling_is_a_clear_error()
    {
        var e = Assert.Throws<BatchwiseException>(() => Synthetic.Device().For(new EngineOptions { Precision = Precision.Fp16 }));
        Assert.Contains("no fp16 GEMM ceiling for synthetic device via test", e.Message, StringComparison.Ordinal);
        Assert.Contains("--precision fp32", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Without_cuda_graphs_each_kernel_pays_a_host_launch()
    {
        var gpu = Synthetic.Gpu();
        var graph = gpu.For(new EngineOptions());
        var stream = gpu.For(new EngineOptions { UseCudaGraph = false });
        Assert.Equal((1e-6, 5e-6, "cuda graph"), (graph.OpOverheadSeconds, graph.RunOverheadSeconds, graph.Launch));
        Assert.Equal((4e-6, 12e-6, "stream"), (stream.OpOverheadSeconds, stream.RunOverheadSeconds, stream.Launch));

        // A CPU has no launch costs of its own to swap in.
        Assert.Equal(Synthetic.Device().OpOverheadSeconds, Synthetic.Device().For(new EngineOptions { UseCudaGraph = false }).OpOverheadSeconds);
    }

    private sealed class CountingProbe : ICeilingsProbe
    {
        public int Calls { get; private set; }

        public EngineOptions? LastOptions { get; private set; }

        public DeviceCeilings Measure(IEngine engine, EngineOptions options, Action<string>? log = null, CancellationToken cancellationToken = default)
        {
            Calls++;
            LastOptions = options;
            return Synthetic.Device() with { Engine = engine.Name };
        }
    }

    [Fact]
    public void An_engine_that_reports_how_it_picks_tactics_gets_a_cache_file_per_way()
    {
        // The cuda probe times the cuDNN algorithms the engine's way of picking would run, so heuristic and timed differ.
        var cache = new CeilingsCache(_dir);
        var options = new EngineOptions();
        var heuristic = DeviceCeilingsSource.CachePath(new TacticsEngine("heuristic"), options, cache);
        Assert.NotEqual(heuristic, DeviceCeilingsSource.CachePath(new TacticsEngine("timed"), options, cache));
        Assert.Equal(heuristic, DeviceCeilingsSource.CachePath(new TacticsEngine("heuristic"), options, cache));
    }

    private sealed class TacticsEngine(string tactics) : IEngine
    {
        public string Name => "tactics-test";

        public EngineDescription Describe(EngineOptions options) => new("tactics-test", "1", "device", new Dictionary<string, string> { ["tactics"] = tactics });

        public IEngineSession Load(Batchwise.Onnx.OnnxModel model, EngineOptions options) => throw new NotSupportedException();
    }

    private sealed class NamedEngine(IEngine inner, string name) : IEngine
    {
        public string Name => name;

        public EngineDescription Describe(EngineOptions options) => inner.Describe(options);

        public IEngineSession Load(Batchwise.Onnx.OnnxModel model, EngineOptions options) => inner.Load(model, options);
    }
}
