namespace Batchwise.Server.Tests;

public sealed class ModelRepositoryTests : IDisposable
{
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
        Directory.CreateDirectory(Path.Combine(_dir, "empty"));
        await using var repo = ModelRepository.LoadDirectory(_dir);
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
    public void A_bad_config_names_the_problem(string config, string message)
    {
        Zoo.ModelZoo.Build("zoo:mlp").Save(Write("m/model.onnx"));
        File.WriteAllText(Write("m/config.json"), config);
        var e = Assert.Throws<BatchwiseException>(() => ModelRepository.LoadDirectory(_dir));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_folder_without_models_is_refused()
    {
        var e = Assert.Throws<BatchwiseException>(() => ModelRepository.LoadDirectory(_dir));
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
