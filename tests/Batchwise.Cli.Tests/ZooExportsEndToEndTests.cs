using Batchwise.Analysis;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cli.Tests;

/// <summary>
/// CI for issue 15: the zoo models that look like real exports (unet, dbnet, crnn, vit), each at opsets 11 and 17,
/// through bench, explain, compare and every optimize lever on ONNX Runtime, at their small default sizes and the
/// shortest durations (a few minutes on 2 cores in all).
/// </summary>
[Collection(nameof(BatchwiseCacheDirectory))]
public sealed class ZooExportsEndToEndTests : IDisposable
{
    private static readonly string[] QuickBench = ["-b", "1,2", "--duration", "60ms", "--warmup", "0", "--max-windows", "3"];
    private static readonly string[] QuickVerify = ["--batch-sizes", "1", "--duration", "0.01"];
    private readonly BatchwiseCacheDirectory _cache = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("bw-zoo-e2e-").FullName;

    public static TheoryData<string, int> Models() => new()
    {
        { "unet", 11 }, { "unet", 17 }, { "dbnet", 11 }, { "dbnet", 17 }, { "crnn", 11 }, { "crnn", 17 }, { "vit", 11 }, { "vit", 17 },
    };

    public void Dispose()
    {
        _cache.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task Bench_and_compare_run(string name, int opset)
    {
        var spec = $"zoo:{name}?opset={opset}";
        var (code, output, err) = await CliRunner.RunAsync(["bench", spec, .. QuickBench]);
        Assert.True(code == 0, err);
        Assert.Contains("knee", output, StringComparison.OrdinalIgnoreCase);

        (code, output, err) = await CliRunner.RunAsync("compare", spec, "--engines", "ort,ort", "-b", "2");
        Assert.True(code == 0, err);
        Assert.Contains("PASS", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("unet", 11)]
    [InlineData("unet", 17)]
    [InlineData("dbnet", 11)]
    [InlineData("dbnet", 17)]
    [InlineData("crnn", 11)]
    [InlineData("crnn", 17)]
    [InlineData("vit", 11)]
    [InlineData("vit", 17)]
    public async Task Explain_runs(string name, int opset)
    {
        var (code, output, err) = await CliRunner.RunAsync("explain", $"zoo:{name}?opset={opset}", "--batch-sizes", "1,2", "--no-measure");
        Assert.True(code == 0, err);
        Assert.Contains("verdict", output, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task Fp16_int8_and_opset_conversion_verify(string name, int opset)
    {
        var spec = $"zoo:{name}?opset={opset}";
        await OptimizeAndVerify(spec, "fp16", "--fp16");
        await OptimizeAndVerify(spec, "int8", "--int8", "--calibration", "random:2");
        var converted = await OptimizeAndVerify(spec, "opset", "--opset", opset == 11 ? "17" : "21");
        Assert.Equal(opset == 11 ? 17 : 21, converted.Opset);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task Dynamic_int8_applies_to_the_matmul_models_and_is_refused_in_one_line_by_the_others(string name, int opset)
    {
        var spec = $"zoo:{name}?opset={opset}";
        if (name is "crnn" or "vit")
        {
            var result = await OptimizeAndVerify(spec, "int8-dynamic", "--int8-dynamic");
            Assert.Contains(result.Graph.Node, n => n.OpType == "MatMulInteger");
            return;
        }

        var (code, _, err) = await CliRunner.RunAsync(["optimize", spec, "-o", Path.Combine(_dir, "refused.onnx"), "--int8-dynamic", .. QuickVerify]);
        Assert.Equal(2, code);
        Assert.Contains("has no MatMul or Gemm", err, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task Pruning_and_input_size_change_the_cost_or_say_why_not(string name, int opset)
    {
        var spec = $"zoo:{name}?opset={opset}";
        var pruned = Path.Combine(_dir, $"{name}{opset}-prune.onnx");
        var (code, output, err) = await CliRunner.RunAsync(["optimize", spec, "-o", pruned, "--prune", "0.25", .. QuickVerify]);
        if (name == "vit")
        {
            // Its only convolution feeds a Reshape: nothing to prune, and it says so.
            Assert.Equal(2, code);
            Assert.Contains("would prune nothing", err, StringComparison.Ordinal);
        }
        else
        {
            // Without fine-tuning a pruned network's outputs move: verification may fail (exit 3, model written), never silently.
            Assert.True(code is 0 or 3, err);
            Assert.True(code == 0 || err.Contains("verification FAILED", StringComparison.Ordinal), err);
            Assert.Matches(@"conv MACs\s*│[^│]+│[^│]+│\s*-\d", output);
            Assert.NotNull(OnnxModel.Load(pruned));
        }

        // A smaller input: fully convolutional models take it, crnn another width at its height of 32; vit's position
        // embeddings fix its size (the default, 32), so another one is refused naming the node that fixes it.
        var size = name == "vit" ? "64x64" : "32x32";
        var resized = Path.Combine(_dir, $"{name}{opset}-size.onnx");
        (code, output, err) = await CliRunner.RunAsync(["optimize", spec, "-o", resized, "--input-size", size, .. QuickVerify]);
        if (name == "vit")
        {
            Assert.Equal(2, code);
            Assert.Contains("--input-size 64x64 is not possible", err, StringComparison.Ordinal);
            return;
        }

        Assert.True(code == 0, err);
        Assert.Contains("before at image [1,", output, StringComparison.Ordinal); // the fixed-size original and the result, each at its own size
        Assert.Equal(32, OnnxModel.Load(resized).Inputs[0].Shape[3].Value);
    }

    private async Task<OnnxModel> OptimizeAndVerify(string spec, string label, params string[] lever)
    {
        var path = Path.Combine(_dir, $"{label}.onnx");
        var (code, output, err) = await CliRunner.RunAsync(["optimize", spec, "-o", path, .. lever, .. QuickVerify]);
        Assert.True(code == 0, $"{spec} {string.Join(' ', lever)}: exit {code}: {err}");
        Assert.Contains("pass", output, StringComparison.Ordinal);
        Assert.DoesNotContain("FAIL", output, StringComparison.Ordinal);
        return OnnxModel.Load(path);
    }
}

/// <summary>
/// A private BATCHWISE_CACHE_DIR with synthetic CPU ceilings, so explain runs no calibration; the test classes that make
/// one share this collection, which runs alone (the variable is process-wide).
/// </summary>
[CollectionDefinition(nameof(BatchwiseCacheDirectory), DisableParallelization = true)]
public sealed class BatchwiseCacheDirectory : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bw-cache-").FullName;
    private readonly string? _old = Environment.GetEnvironmentVariable("BATCHWISE_CACHE_DIR");

    public BatchwiseCacheDirectory()
    {
        Environment.SetEnvironmentVariable("BATCHWISE_CACHE_DIR", _dir);
        var cache = CeilingsCache.Default();
        var engine = new OrtEngine();
        cache.Write(DeviceCeilingsSource.CachePath(engine, new EngineOptions(), cache), new DeviceCeilings
        {
            Engine = "ort",
            Device = "test CPU",
            Machine = HostInfo.MachineName,
            PeakFlops = 50e9,
            PeakConvFlops = 40e9,
            BandwidthBytesPerSecond = 10e9,
            RunOverheadSeconds = 5e-6,
            OpOverheadSeconds = 1e-6,
            SaturationN = 64,
            MeasuredAt = DateTimeOffset.UtcNow,
        });
    }

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("BATCHWISE_CACHE_DIR", _old);
        Directory.Delete(_dir, recursive: true);
    }
}
