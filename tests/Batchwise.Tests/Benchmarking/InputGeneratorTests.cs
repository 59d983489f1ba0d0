using System.Text;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Tests.Benchmarking;

public sealed class InputGeneratorTests
{
    private static readonly long[][] TokenShapes = [[4, 64], [4, 64], [4, 4]];

    /// <summary>
    /// Seeded inputs are the same in every process: each input's generator starts from a seed made from the run's seed
    /// and the input's index by plain arithmetic. (HashCode.Combine, used before, is randomized per process: the same
    /// seed gave other inputs on every run, and a cosine check in CI drifted past its bound.)
    /// </summary>
    [Fact]
    public void A_seed_gives_the_same_float_inputs_in_every_process()
    {
        var g = new Batchwise.Zoo.GraphBuilder("seeded");
        var x = g.Input("x", ElementType.Float, "batch", 4L);
        var y = g.Input("y", ElementType.Float, "batch", 4L);
        g.Output(g.Rename(g.Node("Add", [x, y]), "z"), ElementType.Float, "batch", 4L);
        var inputs = new InputGenerator(g.Build("seeded"), 42).Generate([[2, 4], [2, 4]]);
        for (var input = 0; input < 2; input++)
        {
            var rng = new Random((42 * 7919) + input);
            var expected = Enumerable.Range(0, 8).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray();
            Assert.Equal(expected, inputs[input].AsSpan<float>().ToArray());
        }
    }

    [Fact]
    public void Token_ids_lie_in_the_vocabulary_of_their_gather()
    {
        var model = TestModels.Tokens();
        Assert.Equal(TestModels.Vocabulary, InputGenerator.VocabularySize(model, "input_ids"));
        var ids = new InputGenerator(model, 1).Generate(TokenShapes)[0];
        Assert.Equal(ElementType.Int64, ids.ElementType);
        var values = ids.AsSpan<long>().ToArray();
        Assert.All(values, v => Assert.InRange(v, 0, TestModels.Vocabulary - 1));

        // 256 draws from 500 values: far more than the default range of 100 would allow.
        Assert.True(values.Max() >= 100);
    }

    [Fact]
    public void Masks_are_ones_and_bools_are_random_bits()
    {
        var inputs = new InputGenerator(TestModels.Tokens(), 1).Generate(TokenShapes);
        Assert.All(inputs[1].AsSpan<long>().ToArray(), v => Assert.Equal(1, v));
        Assert.Equal(ElementType.Bool, inputs[2].ElementType);
        Assert.Contains((byte)0, inputs[2].Data);
        Assert.Contains((byte)1, inputs[2].Data);
        Assert.All(inputs[2].Data, v => Assert.InRange(v, (byte)0, (byte)1));
    }

    [Fact]
    public void Integers_without_a_gather_use_the_default_range()
    {
        var model = TestModels.PlainInt32();
        Assert.Null(InputGenerator.VocabularySize(model, "codes"));
        var t = new InputGenerator(model, 2).Generate([[50, 6]])[0];
        Assert.All(t.AsSpan<int>().ToArray(), v => Assert.InRange(v, 0, (int)InputGenerator.DefaultIntegerRange - 1));
    }

    [Fact]
    public void Floats_are_uniform_in_minus_one_to_one()
    {
        var model = Batchwise.Zoo.ModelZoo.Build("zoo:mlp");
        var t = new InputGenerator(model, 3).Generate([[16, 64]])[0];
        var v = t.AsSpan<float>().ToArray();
        Assert.All(v, x => Assert.InRange(x, -1f, 1f));
        Assert.True(v.Min() < -0.5f && v.Max() > 0.5f);
    }

    [Fact]
    public void Same_seed_same_data_other_seed_other_data()
    {
        var model = Batchwise.Zoo.ModelZoo.Build("zoo:mlp");
        long[][] shape = [[2, 64]];
        var a = new InputGenerator(model, 7).Generate(shape)[0].Data;
        var b = new InputGenerator(model, 7).Generate(shape)[0].Data;
        var c = new InputGenerator(model, 8).Generate(shape)[0].Data;
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void Npy_samples_repeat_along_the_batch()
    {
        var model = Batchwise.Zoo.ModelZoo.Build("zoo:mlp");
        var rows = Enumerable.Range(0, 2 * 64).Select(i => (float)i).ToArray();
        var data = NpyReader.Parse(Npy("<f4", "(2, 64)", rows), "x.npy");
        Assert.Equal([2L, 64L], data.Shape);
        var t = new InputGenerator(model, 0, new Dictionary<string, Tensor> { ["input"] = data }).Generate([[5, 64]])[0];
        var v = t.AsSpan<float>();
        Assert.Equal(0f, v[0]);
        Assert.Equal(64f, v[64]);
        Assert.Equal(0f, v[128]);
        Assert.Equal(127f, v[(3 * 64) + 63]);
        Assert.Equal(63f, v[(4 * 64) + 63]);
    }

    [Fact]
    public void Npy_single_sample_fills_every_row()
    {
        var model = Batchwise.Zoo.ModelZoo.Build("zoo:mlp");
        var data = NpyReader.Parse(Npy("<f4", "(64,)", Enumerable.Repeat(2.5f, 64).ToArray()), "one.npy");
        var t = new InputGenerator(model, 0, new Dictionary<string, Tensor> { ["input"] = data }).Generate([[3, 64]])[0];
        Assert.All(t.AsSpan<float>().ToArray(), x => Assert.Equal(2.5f, x));
    }

    [Fact]
    public void Npy_of_the_wrong_type_or_shape_is_explained()
    {
        var model = Batchwise.Zoo.ModelZoo.Build("zoo:mlp");
        var ints = NpyReader.Parse(Npy("<i8", "(64,)", new long[64]), "ints.npy");
        var e = Assert.Throws<BatchwiseException>(() => new InputGenerator(model, 0, new Dictionary<string, Tensor> { ["input"] = ints }));
        Assert.Contains("int64", e.Message, StringComparison.Ordinal);
        Assert.Contains("astype('float32')", e.Hint, StringComparison.Ordinal);

        var wide = NpyReader.Parse(Npy("<f4", "(65,)", new float[65]), "wide.npy");
        var g = new InputGenerator(model, 0, new Dictionary<string, Tensor> { ["input"] = wide });
        Assert.Contains("shape [65]", Assert.Throws<BatchwiseException>(() => g.Generate([[2, 64]])).Message, StringComparison.Ordinal);

        Assert.Throws<BatchwiseException>(() => new InputGenerator(model, 0, new Dictionary<string, Tensor> { ["nope"] = wide }));
    }

    [Fact]
    public void Npy_reader_rejects_bad_files()
    {
        Assert.Contains("not a .npy", Assert.Throws<BatchwiseException>(() => NpyReader.Parse([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "a")).Message, StringComparison.Ordinal);
        Assert.Contains("Fortran", Assert.Throws<BatchwiseException>(() => NpyReader.Parse(Npy("<f4", "(2,)", new float[2], fortran: true), "b")).Message, StringComparison.Ordinal);
        Assert.Contains("big-endian", Assert.Throws<BatchwiseException>(() => NpyReader.Parse(Npy(">f4", "(2,)", new float[2]), "c")).Message, StringComparison.Ordinal);
        var truncated = Npy("<f4", "(4,)", new float[4]);
        Assert.Contains("data bytes", Assert.Throws<BatchwiseException>(() => NpyReader.Parse(truncated[..^3], "d")).Message, StringComparison.Ordinal);
        Assert.Contains("not found", Assert.Throws<BatchwiseException>(() => NpyReader.Read("/nonexistent/x.npy")).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("|b1", ElementType.Bool)]
    [InlineData("<i4", ElementType.Int32)]
    [InlineData("<f2", ElementType.Float16)]
    [InlineData("|u1", ElementType.UInt8)]
    public void Npy_dtypes_map_to_element_types(string descr, ElementType expected)
    {
        Assert.Equal(expected, NpyReader.ElementTypeOf(descr, "x"));
    }

    /// <summary>Writes .npy v1 bytes as numpy.save does (header padded to a multiple of 64 with a newline).</summary>
    internal static byte[] Npy<T>(string descr, string shape, T[] values, bool fortran = false)
        where T : unmanaged
    {
        var header = $"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': {shape}, }}";
        var total = 10 + header.Length + 1;
        header = header.PadRight(header.Length + ((64 - (total % 64)) % 64)) + "\n";
        var bytes = new List<byte> { 0x93 };
        bytes.AddRange(Encoding.ASCII.GetBytes("NUMPY"));
        bytes.AddRange([1, 0]);
        bytes.AddRange(BitConverter.GetBytes((ushort)header.Length));
        bytes.AddRange(Encoding.ASCII.GetBytes(header));
        bytes.AddRange(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        return bytes.ToArray();
    }
}
