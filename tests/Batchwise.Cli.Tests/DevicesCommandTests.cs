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
    public async Task Devices_json_to_standard_output_is_the_devices_document_alone()
    {
        var (code, stdout, _) = await CliRunner.RunAsync("devices", "--json", "-");

        Assert.Equal(0, code);
        using var doc = System.Text.Json.JsonDocument.Parse(stdout); // nothing but the document on standard output
        Assert.Equal("batchwise.devices", doc.RootElement.GetProperty("schema").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.Array, doc.RootElement.GetProperty("devices").ValueKind);
    }

    [Fact]
    public async Task Devices_ceilings_without_a_gpu_says_there_is_none()
    {
        var (code, stdout, _) = await CliRunner.RunAsync("devices", "--ceilings");

        Assert.Equal(0, code);
        if (!stdout.StartsWith("no NVIDIA GPU found", StringComparison.Ordinal))
        {
            // A GPU is here: the ceilings table follows the devices.
            Assert.Contains("fp16 GEMM", stdout, StringComparison.Ordinal);
            Assert.Contains("TFLOP/s", stdout, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void The_cli_measures_cuda_ceilings_with_the_cublaslt_probe()
    {
        Program.CreateRoot();
        Assert.IsType<Batchwise.Cuda.Analysis.GpuCeilingsProbe>(Batchwise.Analysis.DeviceCeilingsSource.ProbeFor("cuda"));
        Assert.IsType<Batchwise.Analysis.CeilingsProbe>(Batchwise.Analysis.DeviceCeilingsSource.ProbeFor("ort"));
    }
}
