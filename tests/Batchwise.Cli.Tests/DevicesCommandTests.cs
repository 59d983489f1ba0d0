namespace Batchwise.Cli.Tests;

public sealed class DevicesCommandTests
{
    [Fact]
    public async Task Devices_lists_gpus_or_says_there_is_none_and_exits_0()
    {
        var (code, stdout, stderr) = await CliRunner.RunAsync("devices");

        Assert.Equal(0, code);
        Assert.Equal(string.Empty, stderr);
        var noGpu = stdout.StartsWith("no NVIDIA GPU found", StringComparison.Ordinal);
        var listed = stdout.Contains("compute", StringComparison.Ordinal) && stdout.Contains("cuDNN", StringComparison.Ordinal);
        Assert.True(noGpu ^ listed, stdout);
        if (noGpu)
        {
            Assert.Single(stdout.TrimEnd().Split('\n'));
        }
    }

    [Fact]
    public async Task Devices_json_is_an_array()
    {
        var (code, stdout, _) = await CliRunner.RunAsync("devices", "--json");

        Assert.Equal(0, code);
        Assert.StartsWith("[", stdout.TrimStart(), StringComparison.Ordinal);
    }
}
