using Batchwise.Cli.Options;

namespace Batchwise.Cli.Tests.Options;

/// <summary>
/// An engine option the engine cannot honour is never dropped silently: each rule of <see cref="EngineOptionRules"/>,
/// through the real command line. None of these needs a GPU: the check comes before the engine starts.
/// </summary>
public sealed class EngineOptionRuleTests
{
    private static readonly string[] Quick = ["-b", "1", "--duration", "60ms", "--warmup", "0", "--max-windows", "3", "--max-time", "5s"];

    [Theory]
    [InlineData("ort", "--tf32", null, "--tf32 does not apply to the ort engine", "use --engine cuda")]
    [InlineData("ort", "--tactics", "timed", "--tactics timed does not apply to the ort engine", "use --engine cuda")]
    [InlineData("ort", "--tactics", "heuristic", "--tactics heuristic does not apply to the ort engine", "use --engine cuda")]
    [InlineData("ort", "--batch-profile", "1,8", "--batch-profile 1,8 does not apply to the ort engine", "use --engine cuda")]
    [InlineData("ort", "--exact-plans", null, "--exact-plans does not apply to the ort engine", "use --engine cuda")]
    [InlineData("ort", "--shape-profile", "x:1x4..8x4", "--shape-profile x:1x4..8x4 does not apply to the ort engine", "use --engine cuda")]
    [InlineData("ort", "--device", "1", "--device 1 does not apply to the ort engine", "--ep cuda")]
    [InlineData("ort", "--precision", "fp16", "--precision fp16 does not apply to the ort engine", "batchwise optimize")]
    [InlineData("cuda", "--threads", "4", "--threads 4 does not apply to the cuda engine", "use --engine ort")]
    [InlineData("cuda", "--inter-op-threads", "2", "--inter-op-threads 2 does not apply to the cuda engine", "use --engine ort")]
    [InlineData("cuda", "--graph-optimization", "basic", "--graph-optimization basic does not apply to the cuda engine", "use --engine ort")]
    [InlineData("cuda", "--ep", "cpu", "--ep cpu does not apply to the cuda engine", "--engine ort --ep cuda")]
    public async Task An_option_the_engine_cannot_honour_is_a_one_line_error_naming_option_and_engine(string engine, string flag, string? value, string expected, string fix)
    {
        string[] given = value is null ? [flag] : [flag, value];
        var (code, output, err) = await CliRunner.RunAsync(["bench", "zoo:mlp", "--engine", engine, .. given, .. Quick]);

        Assert.True(code == 2, $"exit {code}; out: {output}; err: {err}");
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains(expected, err, StringComparison.Ordinal);
        Assert.Contains(fix, err, StringComparison.Ordinal);
        Assert.Empty(output); // nothing measured
    }

    [Fact]
    public async Task No_cuda_graph_on_ort_is_a_warning_and_the_run_goes_on()
    {
        var (code, output, err) = await CliRunner.RunAsync(["bench", "zoo:mlp", "--engine", "ort", "--no-cuda-graph", .. Quick]);

        Assert.True(code == 0, err);
        Assert.Contains("warning: --no-cuda-graph does not apply to the ort engine: it never replays CUDA graphs", err, StringComparison.Ordinal);
        Assert.Contains("ignored", err, StringComparison.Ordinal);
        Assert.Contains("samples/s", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--device", "0")] // the one device ort's CPU provider has
    [InlineData("--precision", "fp32")]
    [InlineData("--threads", "1")]
    [InlineData("--graph-optimization", "basic")]
    public async Task An_option_ort_honours_passes_without_a_word(string flag, string value)
    {
        var (code, _, err) = await CliRunner.RunAsync(["bench", "zoo:mlp", "--engine", "ort", flag, value, .. Quick]);

        Assert.True(code == 0, err);
        Assert.DoesNotContain("does not apply", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_rules_hold_on_every_command_that_reads_the_group()
    {
        // explain reads the same group: the same sentence, before any model is measured.
        var (code, _, err) = await CliRunner.RunAsync("explain", "zoo:mlp", "--no-measure", "--batch-sizes", "1,2", "--tf32");
        Assert.Equal(2, code);
        Assert.Contains("--tf32 does not apply to the ort engine", err, StringComparison.Ordinal);

        // build defaults to cuda: ONNX Runtime's options are refused there too.
        (code, _, err) = await CliRunner.RunAsync("build", "zoo:mlp", "-o", "x.bwengine", "--graph-optimization", "basic");
        Assert.Equal(2, code);
        Assert.Contains("--graph-optimization basic does not apply to the cuda engine", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Compare_warns_about_an_option_one_of_its_two_engines_ignores()
    {
        // --threads goes to both engines; cuda ignores it. The warning comes first, whatever happens to cuda after.
        var (_, _, err) = await CliRunner.RunAsync("compare", "zoo:mlp", "--engines", "ort,cuda", "--threads", "2");
        Assert.Contains("warning: --threads 2 does not apply to the cuda engine: it is ONNX Runtime's intra-op thread count", err, StringComparison.Ordinal);
        Assert.Contains("it applies to the ort engine only", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Compare_checks_candidate_only_options_against_the_candidate_alone()
    {
        // --tf32 goes to the candidate (ort here) alone: an error, not a warning.
        var (code, _, err) = await CliRunner.RunAsync("compare", "zoo:mlp", "zoo:mlp", "--engines", "ort", "--tf32");
        Assert.Equal(2, code);
        Assert.Contains("--tf32 does not apply to the ort engine", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_rule_names_an_option_of_the_group_and_an_engine_that_exists()
    {
        var group = new EngineOptionGroup();
        var rules = EngineOptionRules.For(group);
        Assert.All(rules, r =>
        {
            Assert.Contains(r.Option, group.All);
            Assert.Contains(r.Engine, new[] { "ort", "cuda" });
            Assert.True(r.Severity == EngineOptionRules.Severity.Warning || r.Fix.Length > 0, $"{r.Option.Name} on {r.Engine} has no fix");
        });
        Assert.Equal(rules.Count, rules.Select(r => (r.Option, r.Engine)).Distinct().Count());
    }
}
