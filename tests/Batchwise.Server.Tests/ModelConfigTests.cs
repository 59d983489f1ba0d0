namespace Batchwise.Server.Tests;

/// <summary>D6: every config field is checked against its range, and the error names the file, the key, the value and the range.</summary>
public sealed class ModelConfigTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("bw-config-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Theory]
    [InlineData("""{ "max_batch_size": -5 }""", "max_batch_size is -5, outside 0..65536")]
    [InlineData("""{ "max_batch_size": 2000000000 }""", "max_batch_size is 2000000000, outside 0..65536")]
    [InlineData("""{ "instance_count": 0 }""", "instance_count is 0, outside 1..256")]
    [InlineData("""{ "instance_count": 100000 }""", "instance_count is 100000, outside 1..256")]
    [InlineData("""{ "pipeline_depth": 0 }""", "pipeline_depth is 0, outside 1..4")]
    [InlineData("""{ "pipeline_depth": 5 }""", "pipeline_depth is 5, outside 1..4")]
    [InlineData("""{ "intra_op_threads": -1 }""", "intra_op_threads is -1, outside 0..1024")]
    [InlineData("""{ "precision": "int4" }""", "precision 'int4' is not fp32, fp16 or int8")]
    [InlineData("""{ "engine": "" }""", "engine is empty")]
    [InlineData("""{ "calibration": "random:4" }""", "calibration applies to precision int8 only")]
    [InlineData("""{ "precision": "fp16", "int8_activations": "symmetric" }""", "int8_activations applies to precision int8 only")]
    [InlineData("""{ "precision": "int8", "calibration_method": "median" }""", "Unknown calibration method 'median'")]
    [InlineData("""{ "precision": "int8", "int8_activations": "signed" }""", "Unknown int8 activation scheme 'signed'")]
    [InlineData("""{ "version": "1/../2" }""", "version '1/../2' is not 1 to 64 letters")]
    [InlineData("""{ "dynamic_batching": { "max_queue_delay_microseconds": -1 } }""", "dynamic_batching.max_queue_delay_microseconds is -1, outside 0..60000000")]
    [InlineData("""{ "dynamic_batching": { "priority_levels": -2 } }""", "dynamic_batching.priority_levels is -2, outside 0..1000")]
    [InlineData("""{ "dynamic_batching": { "priority_levels": 2, "default_priority_level": 3 } }""", "dynamic_batching.default_priority_level is 3, outside 0..2")]
    [InlineData("""{ "dynamic_batching": { "default_timeout_microseconds": 1000000000000000000 } }""", "dynamic_batching.default_timeout_microseconds is 1000000000000000000, outside 0..86400000000")]
    [InlineData("""{ "dynamic_batching": { "max_queue_size": -1 } }""", "dynamic_batching.max_queue_size is -1, outside 0..1000000")]
    [InlineData("""{ "max_batch_size": 8, "dynamic_batching": { "preferred_batch_size": [0] } }""", "dynamic_batching.preferred_batch_size is 0, outside 1..8")]
    [InlineData("""{ "max_batch_size": 8, "dynamic_batching": { "preferred_batch_size": [16] } }""", "dynamic_batching.preferred_batch_size is 16, outside 1..8")]
    public void A_value_out_of_range_is_refused_with_the_file_key_value_and_range(string json, string message)
    {
        var path = Path.Combine(_dir.FullName, "config.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<BatchwiseException>(() => ModelConfig.Load(path));
        Assert.Contains($"'{path}': {message}", e.Message, StringComparison.Ordinal);
        Assert.NotNull(e.Hint);
    }

    [Fact]
    public void Values_at_the_ends_of_their_ranges_are_accepted()
    {
        var path = Path.Combine(_dir.FullName, "config.json");
        File.WriteAllText(path, """
            { "max_batch_size": 65536, "instance_count": 256, "intra_op_threads": 0, "precision": "FP16", "version": "2024.1-rc_1",
              "dynamic_batching": { "max_queue_delay_microseconds": 60000000, "priority_levels": 1000, "default_priority_level": 1000,
                                    "default_timeout_microseconds": 86400000000, "max_queue_size": 1000000, "preferred_batch_size": [1, 65536] } }
            """);
        var config = ModelConfig.Load(path);
        Assert.Equal(65536, config.MaxBatchSize);
    }

    [Fact]
    public void Exact_plans_in_the_file_win_over_the_command_line_and_reach_the_engine_options()
    {
        var path = Path.Combine(_dir.FullName, "config.json");
        File.WriteAllText(path, """{ "max_batch_size": 64, "batch_profiles": [1, 8, 64], "exact_plans": true }""");
        var fromFile = ModelConfig.Load(path) with { CommandLineEngineOptions = new Engines.EngineOptions { ExactPlans = false } };
        Assert.True(fromFile.ToEngineOptions(64).ExactPlans);
        Assert.Equal([1, 8, 64], fromFile.ToEngineOptions(64).BatchProfiles);

        var fromCommandLine = new ModelConfig { MaxBatchSize = 64, CommandLineEngineOptions = new Engines.EngineOptions { ExactPlans = true } };
        Assert.True(fromCommandLine.ToEngineOptions(64).ExactPlans);
        Assert.False(new ModelConfig { MaxBatchSize = 64 }.ToEngineOptions(64).ExactPlans);
    }

    [Fact]
    public void Int8_calibration_keys_reach_the_engine_options_over_the_command_line_a_folder_read_from_the_model_folder()
    {
        var path = Path.Combine(_dir.FullName, "config.json");
        File.WriteAllText(path, """{ "precision": "int8", "calibration": "samples", "int8_activations": "symmetric" }""");
        var commandLine = new Engines.EngineOptions { Calibration = new Transforms.Int8Calibration("random:4", Transforms.CalibrationMethod.Entropy) };
        var options = (ModelConfig.Load(path) with { CommandLineEngineOptions = commandLine }).ToEngineOptions(8, _dir.FullName);
        Assert.Equal(Engines.Precision.Int8, options.Precision);
        Assert.Equal(new Transforms.Int8Calibration(Path.Combine(_dir.FullName, "samples"), Transforms.CalibrationMethod.Entropy, Symmetric: true), options.Calibration);

        // Unset keys leave the command line's (or the default) calibration as it is.
        Assert.Equal(commandLine.Calibration, new ModelConfig { Precision = "int8", CommandLineEngineOptions = commandLine }.ToEngineOptions(8, _dir.FullName).Calibration);
        Assert.Equal(Transforms.Int8Calibration.Default, new ModelConfig { Precision = "int8" }.ToEngineOptions(8).Calibration);
        Assert.Equal("random:2", new ModelConfig { Precision = "int8", Calibration = "random:2" }.ToEngineOptions(8, _dir.FullName).Calibration.Data);
    }

    [Fact]
    public void Pipeline_depth_reaches_the_batcher_and_the_engine_options_and_defaults_to_2_on_cuda_and_1_elsewhere()
    {
        var path = Path.Combine(_dir.FullName, "config.json");
        File.WriteAllText(path, """{ "max_batch_size": 64, "instance_count": 2, "pipeline_depth": 4, "engine": "cuda" }""");
        var config = ModelConfig.Load(path);
        Assert.Equal(4, config.ToBatcherOptions(64).PipelineDepth);
        Assert.Equal(2, config.ToBatcherOptions(64).InstanceCount);
        Assert.Equal(4, config.ToEngineOptions(64).PipelineDepth);

        var plain = new ModelConfig { MaxBatchSize = 64 };
        Assert.Equal(1, plain.ToBatcherOptions(64).PipelineDepth);
        Assert.Equal(1, plain.ToEngineOptions(64).PipelineDepth);

        var cuda = new ModelConfig { MaxBatchSize = 64, Engine = "cuda" };
        Assert.Equal(2, cuda.ToBatcherOptions(64).PipelineDepth);
        Assert.Equal(2, cuda.ToEngineOptions(64).PipelineDepth);
        var cudaOne = new ModelConfig { MaxBatchSize = 64, Engine = "cuda", PipelineDepth = 1 };
        Assert.Equal(1, cudaOne.ToBatcherOptions(64).PipelineDepth);
    }

    [Fact]
    public void A_config_built_in_code_is_checked_when_its_model_loads()
    {
        var e = Assert.Throws<BatchwiseException>(() => ServedModel.Load("mlp", Zoo.ModelZoo.Build("zoo:mlp"), new ModelConfig { MaxBatchSize = -5 }, new ServerMetrics()));
        Assert.Contains("Model 'mlp': max_batch_size is -5, outside 0..65536", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("ort", 0, 4, 16, 4)]
    [InlineData("ort", 0, 1, 16, 16)]
    [InlineData("ort", 0, 3, 16, 5)]
    [InlineData("ort", 0, 4, 2, 1)]
    [InlineData("ort", 6, 4, 16, 6)]
    [InlineData("cuda", 0, 2, 16, 0)]
    public void Served_ort_instances_share_the_cores_unless_intra_op_threads_is_set(string engine, int configured, int instances, int cores, int expected) =>
        Assert.Equal(expected, ModelConfig.ServedIntraOpThreads(engine, configured, instances, cores));

    [Fact]
    public void Served_engine_options_turn_spinning_off_unless_the_config_turns_it_on()
    {
        Assert.False(new ModelConfig().ToEngineOptions().IntraOpSpinning);
        var path = Path.Combine(_dir.FullName, "config.json");
        File.WriteAllText(path, """{ "intra_op_spinning": true }""");
        Assert.True(ModelConfig.Load(path).ToEngineOptions().IntraOpSpinning);
        Assert.True(new Engines.EngineOptions().IntraOpSpinning); // bench and the CLI keep ONNX Runtime's own default
    }

    [Fact]
    public async Task A_served_ort_model_warms_up_with_spinning_off_and_logs_its_threads()
    {
        var lines = new List<string>();
        await using var model = ServedModel.Load("mlp", Zoo.ModelZoo.Build("zoo:mlp"), new ModelConfig { InstanceCount = 2 }, new ServerMetrics(), log: l => { lock (lines) { lines.Add(l); } });
        var threads = ModelConfig.ServedIntraOpThreads("ort", 0, 2, Environment.ProcessorCount);
        Assert.Contains(lines, l => l.StartsWith($"mlp: 2 instance(s) x {threads} intra-op thread(s) on {Environment.ProcessorCount} cores", StringComparison.Ordinal) && l.EndsWith("spinning off", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_served_int8_model_is_quantized_as_its_config_says_and_its_config_endpoint_tells_how()
    {
        var config = new ModelConfig { MaxBatchSize = 4, Precision = "int8", Calibration = "random:2", Int8Activations = "symmetric" };
        await using var model = ServedModel.Load("mlp", Zoo.ModelZoo.Build("zoo:mlp"), config, new ServerMetrics(), folder: _dir.FullName);
        var described = TritonModelConfig.Describe(model);
        Assert.Equal("int8", described.Parameters["batchwise_precision"].StringValue);
        Assert.Equal("int8 (QDQ, calibrated on random:2, minmax, symmetric activations)", described.Parameters["batchwise_int8"].StringValue);
        var missing = Assert.Throws<BatchwiseException>(() => ServedModel.Load("mlp", Zoo.ModelZoo.Build("zoo:mlp"), config with { Calibration = "samples" }, new ServerMetrics(), folder: _dir.FullName));
        Assert.Contains($"Model 'mlp': calibration folder '{Path.Combine(_dir.FullName, "samples")}' not found", missing.Message, StringComparison.Ordinal);
        await using var fp32 = ServedModel.Load("mlp", Zoo.ModelZoo.Build("zoo:mlp"), new ModelConfig { MaxBatchSize = 4 }, new ServerMetrics());
        Assert.False(TritonModelConfig.Describe(fp32).Parameters.ContainsKey("batchwise_int8"));
    }
}
