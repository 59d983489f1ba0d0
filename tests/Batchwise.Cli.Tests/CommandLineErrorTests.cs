namespace Batchwise.Cli.Tests;

public sealed class CommandLineErrorTests
{
    [Fact]
    public async Task Unknown_option_is_one_line_naming_it_and_the_help_command_with_exit_code_2()
    {
        var (code, output, err) = await CliRunner.RunAsync("bench", "zoo:mlp", "--bogus");
        Assert.Equal(2, code);
        Assert.Contains("--bogus", err, StringComparison.Ordinal);
        Assert.Contains("batchwise bench --help", err, StringComparison.Ordinal);
        Assert.Single(err.Trim().Split('\n'));
        Assert.DoesNotContain("Usage", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Missing_subcommand_is_a_one_line_error()
    {
        var (code, _, err) = await CliRunner.RunAsync();
        Assert.Equal(2, code);
        Assert.Contains("batchwise --help", err, StringComparison.Ordinal);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Fact]
    public async Task Help_is_not_an_error()
    {
        var (code, output, _) = await CliRunner.RunAsync("bench", "--help");
        Assert.Equal(0, code);
        Assert.Contains("--batch-sizes", output, StringComparison.Ordinal);
    }
}
