namespace Batchwise.Cli.Tests;

public sealed class ZooCommandTests
{
    [Fact]
    public async Task Zoo_list_names_every_model()
    {
        var (code, output, _) = await CliRunner.RunAsync("zoo", "list");
        Assert.Equal(0, code);
        foreach (var e in Batchwise.Zoo.ModelZoo.Entries)
        {
            Assert.Contains(e.Name, output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Zoo_alone_lists_the_models_as_zoo_list_does()
    {
        var (code, output, _) = await CliRunner.RunAsync("zoo");
        Assert.Equal(0, code);
        var (_, listed, _) = await CliRunner.RunAsync("zoo", "list");
        Assert.Equal(listed, output);
        Assert.Contains("resnet50", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Zoo_list_shows_parameters_and_macs_of_each_model()
    {
        var (code, output, _) = await CliRunner.RunAsync("zoo", "list");
        Assert.Equal(0, code);
        var resnet50 = output.Split('\n').First(l => l.Contains("resnet50", StringComparison.Ordinal));
        Assert.Contains("25.6 M", resnet50, StringComparison.Ordinal);
        Assert.Contains("4.09", resnet50, StringComparison.Ordinal);
        Assert.Contains("108.9 M", output.Split('\n').First(l => l.Contains("bert", StringComparison.Ordinal)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Zoo_export_takes_options_in_the_zoo_spec()
    {
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.onnx");
        try
        {
            var (code, output, _) = await CliRunner.RunAsync("zoo", "export", "zoo:resnet18?size=96", "-o", path);
            Assert.Equal(0, code);
            Assert.Contains("[batch, 3, 96, 96]", output, StringComparison.Ordinal);
            Assert.Equal("[batch, 3, 96, 96]", Batchwise.Onnx.OnnxModel.Load(path).Inputs[0].ShapeText);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Zoo_export_writes_a_loadable_model()
    {
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.onnx");
        try
        {
            var (code, output, _) = await CliRunner.RunAsync("zoo", "export", "mlp?hidden=32", "-o", path);
            Assert.Equal(0, code);
            Assert.Contains("wrote", output, StringComparison.Ordinal);
            var model = Batchwise.Onnx.OnnxModel.Load(path);
            Assert.Equal(32, model.Graph.Initializer[0].Dims[0]);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Unknown_zoo_model_is_a_one_line_error_with_exit_code_2()
    {
        var (code, _, err) = await CliRunner.RunAsync("zoo", "export", "resnet9000", "-o", "x.onnx");
        Assert.Equal(2, code);
        Assert.Contains("No zoo model named 'resnet9000'", err, StringComparison.Ordinal);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Fact]
    public async Task Unknown_zoo_option_lists_the_known_options()
    {
        var (code, _, err) = await CliRunner.RunAsync("zoo", "export", "mlp?colour=blue", "-o", "x.onnx");
        Assert.Equal(2, code);
        Assert.Contains("hidden=256", err, StringComparison.Ordinal);
    }
}
