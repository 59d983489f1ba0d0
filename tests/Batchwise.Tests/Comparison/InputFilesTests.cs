using Batchwise.Benchmarking;
using Batchwise.Comparison;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Tests.Comparison;

public sealed class InputFilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bw-inputs-").FullName;

    [Fact]
    public void Npy_files_round_trip()
    {
        var t = Tensor.From<long>(ElementType.Int64, [2, 3], [1, 2, 3, 4, 5, 6]);
        var path = Path.Combine(_dir, "a.npy");
        InputFiles.WriteNpy(path, t);
        var back = NpyReader.Read(path);
        Assert.Equal(ElementType.Int64, back.ElementType);
        Assert.Equal(t.Shape, back.Shape);
        Assert.Equal(t.Data, back.Data);
        Assert.Equal(0, (new FileInfo(path).Length - 48) % 64); // header padded to 64 bytes, as numpy writes it
    }

    [Fact]
    public void Inputs_are_found_by_name_before_position()
    {
        var model = ModelZoo.Build("mlp");
        var zeros = Tensor.From<float>(ElementType.Float, [1, 64], new float[64]);
        File.WriteAllBytes(Path.Combine(_dir, "input_0.pb"), Google.Protobuf.MessageExtensions.ToByteArray(TensorProtos.FromTensor(zeros)));
        Assert.Equal([1L, 64], InputFiles.Load(_dir, model.Inputs)["input"].Shape);

        InputFiles.WriteNpy(Path.Combine(_dir, "input.npy"), Tensor.From<float>(ElementType.Float, [2, 64], new float[128]));
        Assert.Equal([2L, 64], InputFiles.Load(_dir, model.Inputs)["input"].Shape);
    }

    [Fact]
    public void A_folder_without_any_input_file_lists_what_was_looked_for()
    {
        var e = Assert.Throws<BatchwiseException>(() => InputFiles.Load(_dir, ModelZoo.Build("mlp").Inputs));
        Assert.Contains("input.npy", e.Message, StringComparison.Ordinal);
        Assert.Contains("input_0.pb", e.Message, StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
