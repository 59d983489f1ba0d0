using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Planning;

public sealed class TimingCacheTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "batchwise-conv-cache-" + Guid.NewGuid().ToString("N"));

    private static ConvShapeKey Key(long batch = 8, string precision = "fp32", int groups = 1, long workspace = 256L << 20) =>
        new(precision, [batch, 64, 56, 56], [64, 64 / groups, 3, 3], [batch, 64, 56, 56], [1, 1], [1, 1], [1, 1], groups, workspace);

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    [Fact]
    public void Key_text_names_every_parameter_and_tells_shapes_precision_groups_and_workspace_apart()
    {
        Assert.Equal("fp32|x=8x64x56x56|w=64x64x3x3|y=8x64x56x56|pad=1x1|stride=1x1|dil=1x1|g=1|ws=268435456", Key().Text);
        var keys = new[] { Key(), Key(batch: 16), Key(precision: "fp32+tf32"), Key(groups: 2), Key(workspace: 1 << 20) }.Select(k => k.Text).ToList();
        Assert.Equal(keys.Count, keys.Distinct().Count());
    }

    [Fact]
    public void Keys_list_every_entry_read_from_the_file_and_set_since_as_a_copy()
    {
        var cache = TimingCache.ForDevice(_dir, "NVIDIA H200", 90, "9.14.0");
        Assert.Empty(cache.Keys());
        cache.Set(Key(), new TacticChoice(1, 3, 0, 0.125));
        cache.Save();

        var again = TimingCache.ForDevice(_dir, "NVIDIA H200", 90, "9.14.0");
        again.Set("int8graph-ab8|x=64x1024x14x14", new TacticChoice(3, 3, 0, 0.02));
        var keys = again.Keys();
        Assert.Equal(new[] { Key().Text, "int8graph-ab8|x=64x1024x14x14" }, keys.Order(StringComparer.Ordinal));
        again.Set(Key(batch: 64), new TacticChoice(1, 3, 0, 0.5));
        Assert.Equal(2, keys.Count);
    }

    [Fact]
    public void Choices_survive_a_round_trip_through_the_file()
    {
        var cache = TimingCache.ForDevice(_dir, "NVIDIA H100 80GB HBM3", 90, "9.14.0");
        Assert.False(cache.TryGet(Key(), out _));
        cache.Set(Key(), new TacticChoice(1, 3, 12345, 0.125));
        cache.Set(Key(batch: 64), new TacticChoice(6, 3, 0, 1.5));
        cache.Save();
        Assert.True(File.Exists(cache.Path));
        Assert.StartsWith(Path.Combine(_dir, "cuda"), cache.Path, StringComparison.Ordinal);

        var again = TimingCache.ForDevice(_dir, "NVIDIA H100 80GB HBM3", 90, "9.14.0");
        Assert.Equal(2, again.Count);
        Assert.True(again.TryGet(Key(), out var c));
        Assert.Equal(new TacticChoice(1, 3, 12345, 0.125), c);
        Assert.True(again.TryGet(Key(batch: 64), out var d));
        Assert.Equal(6, d.Algo);
        Assert.False(again.TryGet(Key(batch: 2), out _));
        Assert.Equal((2, 1), (again.Hits, again.Misses));
    }

    [Fact]
    public void A_choice_kept_untimed_or_with_no_candidate_run_is_saved_and_read_back_with_its_algorithm()
    {
        var cache = TimingCache.ForDevice(_dir, "NVIDIA H100 80GB HBM3", 90, "9.14.0");
        cache.Set("cudnn-sdpa|configs=8|one", new TacticChoice(0, 0, 256, double.NaN));
        cache.Set("matmul|none-ran", new TacticChoice(0, 0, 0, double.PositiveInfinity));
        cache.Save();
        Assert.Contains("\"ms\": null", File.ReadAllText(cache.Path), StringComparison.Ordinal);

        var again = TimingCache.ForDevice(_dir, "NVIDIA H100 80GB HBM3", 90, "9.14.0");
        Assert.True(again.TryGet("cudnn-sdpa|configs=8|one", out var untimed));
        Assert.Equal((0, 256L), (untimed.Algo, untimed.WorkspaceBytes));
        Assert.True(double.IsNaN(untimed.Milliseconds));
        Assert.True(again.TryGet("matmul|none-ran", out _));
    }

    [Fact]
    public void Another_device_capability_or_cudnn_version_gets_its_own_file()
    {
        var a = TimingCache.ForDevice(_dir, "NVIDIA H100 80GB HBM3", 90, "9.14.0");
        var b = TimingCache.ForDevice(_dir, "NVIDIA H200", 90, "9.14.0");
        var c = TimingCache.ForDevice(_dir, "NVIDIA H100 80GB HBM3", 90, "9.15.0");
        var d = TimingCache.ForDevice(_dir, "NVIDIA H100 80GB HBM3", 89, "9.14.0");
        Assert.Equal(4, new[] { a.Path, b.Path, c.Path, d.Path }.Distinct().Count());
        Assert.DoesNotContain(' ', Path.GetFileName(a.Path));
    }

    [Theory]
    [InlineData("{ not json")]
    [InlineData("")]
    [InlineData("{\"schema\":1,\"device\":\"NVIDIA H100 80GB HBM3\",\"computeCapability\":90,\"cudnn\":\"9.14.0\",\"convolutions\":{\"k\":{\"algo\":\"one\"}}}")]
    [InlineData("{\"schema\":99,\"device\":\"NVIDIA H100 80GB HBM3\",\"computeCapability\":90,\"cudnn\":\"9.14.0\",\"convolutions\":{}}")]
    [InlineData("[1,2,3]")]
    public void A_damaged_or_foreign_file_is_ignored_and_rewritten(string content)
    {
        var path = TimingCache.ForDevice(_dir, "NVIDIA H100 80GB HBM3", 90, "9.14.0").Path;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content);

        var cache = TimingCache.ForDevice(_dir, "NVIDIA H100 80GB HBM3", 90, "9.14.0");
        Assert.Equal(0, cache.Count);
        cache.Save();
        var rewritten = TimingCache.ForDevice(_dir, "NVIDIA H100 80GB HBM3", 90, "9.14.0");
        Assert.NotEqual(content, File.ReadAllText(path));
        Assert.Equal(0, rewritten.Count);

        rewritten.Set(Key(), new TacticChoice(2, 3, 0, 0.5));
        rewritten.Save();
        Assert.True(TimingCache.ForDevice(_dir, "NVIDIA H100 80GB HBM3", 90, "9.14.0").TryGet(Key(), out var c));
        Assert.Equal(2, c.Algo);
    }

    [Fact]
    public void The_cache_directory_follows_BATCHWISE_CACHE_DIR_then_XDG_CACHE_HOME()
    {
        var saved = (Environment.GetEnvironmentVariable("BATCHWISE_CACHE_DIR"), Environment.GetEnvironmentVariable("XDG_CACHE_HOME"));
        try
        {
            Environment.SetEnvironmentVariable("BATCHWISE_CACHE_DIR", _dir);
            Environment.SetEnvironmentVariable("XDG_CACHE_HOME", "/tmp/xdg");
            Assert.Equal(_dir, CacheDirectory.Root);
            Environment.SetEnvironmentVariable("BATCHWISE_CACHE_DIR", null);
            Assert.Equal(Path.Combine("/tmp/xdg", "batchwise"), CacheDirectory.Root);
        }
        finally
        {
            Environment.SetEnvironmentVariable("BATCHWISE_CACHE_DIR", saved.Item1);
            Environment.SetEnvironmentVariable("XDG_CACHE_HOME", saved.Item2);
        }
    }
}
