namespace Batchwise.Server.Tests;

public sealed class ModelRepositoryTests : IDisposable
{
    private static readonly RepositoryOptions Quiet = new() { Log = _ => { } };

    private readonly string _dir = Directory.CreateTempSubdirectory("batchwise-repo-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task A_repository_folder_serves_each_subfolder_with_its_config()
    {
        Zoo.ModelZoo.Build("zoo:mlp").Save(Write("a/model.onnx"));
        Zoo.ModelZoo.Build("zoo:mlp?classes=3").Save(Write("b/model.onnx"));
        File.WriteAllText(Write("b/config.json"), """
            // comments are allowed
            { "max_batch_size": 4, "instance_count": 2,
              "dynamic_batching": { "max_queue_delay_microseconds": 100, "preferred_batch_size": [2, 4], "priority_levels": 3, "max_queue_size": 16 } }
            """);
        Directory.CreateDirectory(Path.Combine(_dir, ".hidden"));
        await using var repo = ModelRepository.LoadDirectory(_dir, Quiet);
        Assert.Equal(["a", "b"], repo.Models.Select(m => m.Name));
        var a = repo.Find("a");
        Assert.Equal(32, a.MaxBatchSize);
        Assert.Equal(0, a.Batcher.MaxBatchSize);
        var b = repo.Find("b", "1");
        Assert.Equal(4, b.Batcher.MaxBatchSize);
        Assert.Equal([2, 4], b.Batcher.PreferredBatchSizes);
        Assert.Equal(2, b.Batcher.InstanceCount);
        Assert.Equal(3, b.Batcher.PriorityLevels);
        Assert.Equal(16, b.Batcher.MaxQueueSize);
        Assert.Equal(TimeSpan.FromMicroseconds(100), b.Batcher.MaxQueueDelay);
        Assert.Equal("[-1, 3]", "[" + string.Join(", ", ServedModel.ProtocolShape(b.Outputs[0])) + "]");
    }

    [Theory]
    [InlineData("{ \"max_batch_size\": 4, \"max_batch\": 2 }", "not a valid model config")]
    [InlineData("{ \"dynamic_batching\": { \"preferred_batch_size\": [64] } }", "preferred_batch_size 64")]
    [InlineData("{ \"engine\": \"tensorflow\" }", "Unknown engine 'tensorflow'")]
    [InlineData("{ \"instance_count\": 0 }", "instance_count is 0")]
    public void A_bad_config_names_the_problem_and_refuses_startup_with_exit_on_error(string config, string message)
    {
        Zoo.ModelZoo.Build("zoo:mlp").Save(Write("m/model.onnx"));
        File.WriteAllText(Write("m/config.json"), config);
        var e = Assert.Throws<BatchwiseException>(() => ModelRepository.LoadDirectory(_dir, Quiet with { ExitOnError = true }));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Models_that_fail_to_load_are_reported_with_their_reason_while_the_others_serve()
    {
        Zoo.ModelZoo.Build("zoo:mlp").Save(Write("good/model.onnx"));
        Zoo.ModelZoo.Build("zoo:mlp").Save(Write("badconfig/model.onnx"));
        File.WriteAllText(Write("badconfig/config.json"), "{ \"max_batch\": 2 }");
        Directory.CreateDirectory(Path.Combine(_dir, "nofile"));
        Directory.CreateDirectory(Path.Combine(_dir, "isfolder", "model.onnx"));
        File.WriteAllBytes(Write("garbage/model.onnx"), [1, 2, 3, 4, 5, 6, 7, 8]);
        var log = new List<string>();
        await using var repo = ModelRepository.LoadDirectory(_dir, Quiet with { Log = line => { lock (log) { log.Add(line); } } });
        Assert.Equal(["good"], repo.Models.Select(m => m.Name));
        Assert.True(repo.IsReady);
        var index = repo.Index().ToDictionary(e => e.Name);
        Assert.Equal(["badconfig", "garbage", "good", "isfolder", "nofile"], index.Keys);
        Assert.Equal(("READY", "1", ""), (index["good"].State, index["good"].Version, index["good"].Reason));
        Assert.All(index.Values.Where(e => e.Name != "good"), e => Assert.Equal("UNAVAILABLE", e.State));
        Assert.Contains("not a valid model config", index["badconfig"].Reason, StringComparison.Ordinal);
        Assert.Contains("has no model.onnx", index["nofile"].Reason, StringComparison.Ordinal);
        Assert.Contains("is a folder, not an ONNX file", index["isfolder"].Reason, StringComparison.Ordinal);
        Assert.NotEmpty(index["garbage"].Reason);
        Assert.Equal(4, log.Count(l => l.Contains("failed to load", StringComparison.Ordinal)));
        var e = Assert.Throws<InferenceError>(() => repo.Find("nofile"));
        Assert.Equal(503, e.HttpStatus);
        Assert.Contains("has no model.onnx", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_repository_where_no_model_loads_refuses_to_start_naming_each_reason()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "nofile"));
        var e = Assert.Throws<BatchwiseException>(() => ModelRepository.LoadDirectory(_dir, Quiet));
        Assert.Contains("nofile: Model folder", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Explicit_mode_loads_only_the_startup_models_then_loads_and_unloads_by_name()
    {
        Zoo.ModelZoo.Build("zoo:mlp").Save(Write("a/model.onnx"));
        Zoo.ModelZoo.Build("zoo:mlp?classes=3").Save(Write("b/model.onnx"));
        await using var repo = ModelRepository.LoadDirectory(_dir, Quiet with { Mode = ModelControlMode.Explicit, StartupModels = ["a"] });
        Assert.Equal(["a"], repo.Models.Select(m => m.Name));
        Assert.Equal([("a", "READY"), ("b", "UNAVAILABLE")], repo.Index().Select(e => (e.Name, e.State)));
        Assert.Equal(["a"], repo.Index(readyOnly: true).Select(e => e.Name));

        await repo.LoadAsync("b");
        Assert.Equal(3, repo.Find("b").Outputs[0].Shape[1].Value);
        await repo.UnloadAsync("a");
        Assert.Equal(("UNAVAILABLE", "unloaded"), (repo.Index()[0].State, repo.Index()[0].Reason));
        Assert.Equal(503, Assert.Throws<InferenceError>(() => repo.Acquire("a")).HttpStatus);
        var missing = await Assert.ThrowsAsync<InferenceError>(() => repo.LoadAsync("nope"));
        Assert.Contains("has no folder 'nope'", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_failed_reload_keeps_the_previous_version_serving_and_says_so()
    {
        Zoo.ModelZoo.Build("zoo:mlp").Save(Write("a/model.onnx"));
        await using var repo = ModelRepository.LoadDirectory(_dir, Quiet with { Mode = ModelControlMode.Explicit, StartupModels = ["*"] });
        var before = repo.Find("a");
        File.WriteAllText(Write("a/config.json"), "{ \"instance_count\": 0 }");
        var e = await Assert.ThrowsAsync<InferenceError>(() => repo.LoadAsync("a"));
        Assert.Contains("instance_count is 0", e.Message, StringComparison.Ordinal);
        Assert.Same(before, repo.Find("a"));
        Assert.Equal("READY", repo.Index()[0].State);
        Assert.Contains("reload failed", repo.Index()[0].Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Load_and_unload_are_refused_unless_model_control_is_explicit()
    {
        Zoo.ModelZoo.Build("zoo:mlp").Save(Write("a/model.onnx"));
        await using var repo = ModelRepository.LoadDirectory(_dir, Quiet);
        var e = await Assert.ThrowsAsync<InferenceError>(() => repo.UnloadAsync("a"));
        Assert.Equal(503, e.HttpStatus);
        Assert.Contains("--model-control-mode explicit", e.Message, StringComparison.Ordinal);
        Assert.NotNull(repo.Find("a"));
    }

    [Fact]
    public async Task Poll_mode_follows_added_changed_and_removed_model_folders()
    {
        Zoo.ModelZoo.Build("zoo:mlp").Save(Write("a/model.onnx"));
        await using var repo = ModelRepository.LoadDirectory(_dir, Quiet with { Mode = ModelControlMode.Poll, PollInterval = TimeSpan.FromHours(1) });
        var first = repo.Find("a");
        Zoo.ModelZoo.Build("zoo:mlp?classes=3").Save(Write("b/model.onnx"));
        await repo.PollOnceAsync();
        Assert.Equal(["a", "b"], repo.Models.Select(m => m.Name));
        Assert.Same(first, repo.Find("a"));

        File.WriteAllText(Write("a/config.json"), "{ \"version\": \"2\" }");
        File.SetLastWriteTimeUtc(Path.Combine(_dir, "a", "config.json"), DateTime.UtcNow.AddMinutes(1));
        await repo.PollOnceAsync();
        Assert.Equal("2", repo.Find("a").Version);

        Directory.Delete(Path.Combine(_dir, "b"), recursive: true);
        await repo.PollOnceAsync();
        Assert.Equal(["a"], repo.Models.Select(m => m.Name));
        Assert.Equal(404, Assert.Throws<InferenceError>(() => repo.Find("b")).HttpStatus);
    }

    [Fact]
    public void A_folder_without_model_folders_is_refused()
    {
        var e = Assert.Throws<BatchwiseException>(() => ModelRepository.LoadDirectory(_dir, Quiet));
        Assert.Contains("holds no models", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("zoo:resnet18?size=96", "resnet18")]
    [InlineData("/models/detector.onnx", "detector")]
    public void A_single_model_is_named_after_its_file_or_zoo_name(string source, string name) =>
        Assert.Equal(name, ModelRepository.NameOf(source));

    private string Write(string relative)
    {
        var path = Path.Combine(_dir, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        return path;
    }
}
