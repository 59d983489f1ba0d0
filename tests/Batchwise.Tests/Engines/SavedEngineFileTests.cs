using Batchwise.Engines;
using Batchwise.Zoo;

namespace Batchwise.Tests.Engines;

public sealed class SavedEngineFileTests
{
    private static SavedEngineManifest Manifest(byte[] model) => new(
        SavedEngineFile.FormatName, SavedEngineFile.CurrentSchema, "cuda", "1.0", DateTimeOffset.UnixEpoch, "mlp", SavedEngineFile.Hash(model),
        "fp16", false, true, [1, 8], ["x:1x4..1x8:2"], new SortedDictionary<string, string>(StringComparer.Ordinal) { ["device"] = "GPU", ["cudnn"] = "9.14.0" });

    [Fact]
    public void A_saved_engine_carries_its_model_manifest_and_artefacts()
    {
        var model = ModelZoo.Build("zoo:mlp");
        var bytes = model.ToBytes();
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.bwengine");
        try
        {
            SavedEngineFile.Write(path, Manifest(bytes), bytes, new Dictionary<string, byte[]> { ["cuda/kernels/a.cubin"] = [1, 2, 3] });

            var (manifest, loaded) = ModelSource.Load(path) is { SavedEngine: not null } m ? SavedEngineFile.ReadModel(path) : throw new InvalidOperationException("not read as a saved engine");
            var (_, artefacts) = SavedEngineFile.ReadArtefacts(path, "cuda/");
            Assert.Equal("fp16", manifest.Precision);
            Assert.Equal([1, 8], manifest.BatchProfiles);
            Assert.Equal(path, loaded.SavedEngine);
            Assert.Equal(model.Graph.Node.Count, loaded.Graph.Node.Count);
            Assert.Equal([1, 2, 3], artefacts["cuda/kernels/a.cubin"]);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_damaged_model_or_a_foreign_file_is_refused_in_one_line()
    {
        var bytes = ModelZoo.Build("zoo:mlp").ToBytes();
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.bwengine");
        try
        {
            // A manifest whose hash does not match the model it travels with.
            SavedEngineFile.Write(path, Manifest(bytes) with { ModelSha256 = "00" }, bytes, new Dictionary<string, byte[]>());
            var damaged = Assert.Throws<BatchwiseException>(() => SavedEngineFile.ReadModel(path));
            Assert.Contains("is damaged", damaged.Message, StringComparison.Ordinal);

            // A newer layout.
            SavedEngineFile.Write(path, Manifest(bytes) with { Schema = 99 }, bytes, new Dictionary<string, byte[]>());
            var newer = Assert.Throws<BatchwiseException>(() => SavedEngineFile.ReadModel(path));
            Assert.Contains("layout version 99", newer.Message, StringComparison.Ordinal);

            // Not a zip at all.
            File.WriteAllText(path, "not an engine");
            var foreign = Assert.Throws<BatchwiseException>(() => SavedEngineFile.ReadModel(path));
            Assert.Contains("Cannot read saved engine", foreign.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_truncated_saved_engine_is_refused_in_one_line_and_weights_are_stored_uncompressed()
    {
        var bytes = ModelZoo.Build("zoo:mlp").ToBytes();
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.bwengine");
        var weights = Enumerable.Range(0, 1 << 16).Select(i => (byte)(i * 7)).ToArray();
        try
        {
            SavedEngineFile.Write(path, Manifest(bytes), bytes, new Dictionary<string, byte[]> { ["cuda/constants.bin"] = weights, ["cuda/constants.json"] = [1, 2] });
            Assert.Equal(weights, SavedEngineFile.ReadArtefacts(path, "cuda/").Entries["cuda/constants.bin"]);
            Assert.Equal("fp16", SavedEngineFile.ReadManifest(path).Precision);
            var whole = File.ReadAllBytes(path);
            Assert.True(whole.AsSpan().IndexOf(weights.AsSpan(1000, 64)) > 0, "the weights are stored uncompressed");

            // Cut short (a copy that stopped half way): the zip's directory at its end is gone.
            File.WriteAllBytes(path, whole[..(whole.Length / 2)]);
            var truncated = Assert.Throws<BatchwiseException>(() => SavedEngineFile.ReadArtefacts(path, "cuda/"));
            Assert.Contains("Cannot read saved engine", truncated.Message, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', truncated.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void The_ort_engine_refuses_a_saved_cuda_engine()
    {
        var bytes = ModelZoo.Build("zoo:mlp").ToBytes();
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.bwengine");
        try
        {
            SavedEngineFile.Write(path, Manifest(bytes), bytes, new Dictionary<string, byte[]>());
            var e = Assert.Throws<BatchwiseException>(() => new OrtEngine().Load(ModelSource.Load(path), new EngineOptions()));
            Assert.Contains("is a saved cuda engine", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_saved_engine_carries_the_models_structure_without_its_float_weights_and_refuses_to_hand_it_on()
    {
        var model = ModelZoo.Build("zoo:resnet18?size=64");
        var full = model.ToBytes();
        var structure = SavedEngineFile.StructureOf(model, out var leftOut);
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.bwengine");
        try
        {
            SavedEngineFile.Write(path, Manifest(structure), structure, new Dictionary<string, byte[]>());

            // ResNet-18's 11.7 M weights are out: the file is the graph and its small constants (BN parameters of 64
            // channels stay), less than 1% of the model.
            Assert.True(leftOut > 11_000_000, $"{leftOut} values left out");
            Assert.True(new FileInfo(path).Length < full.Length / 100, $"{new FileInfo(path).Length} bytes of file, {full.Length} of model");
            var loaded = ModelSource.Load(path);
            Assert.True(loaded.WeightsLeftOut);
            Assert.Equal(model.Graph.Node.Count, loaded.Graph.Node.Count);
            Assert.Equal(model.Graph.Initializer.Count, loaded.Graph.Initializer.Count);
            Assert.All(loaded.Graph.Initializer.Where(t => !Batchwise.Operators.HostTensor.HasValues(t)), t => Assert.True(SavedEngineFile.IsLeftOut(t), t.Name));
            Assert.All(loaded.Graph.Initializer.Where(SavedEngineFile.IsLeftOut), t => Assert.True(Tensor.ElementCountOf(t.Dims) > SavedEngineFile.MaxCarriedFloats, t.Name));
            Assert.Contains(loaded.ReadSpans.Keys, k => k == "read_hash");

            // Never written out as a model (it would be one without weights), nor its weights read: one line each.
            var written = Assert.Throws<BatchwiseException>(() => loaded.Save(Path.ChangeExtension(path, ".onnx")));
            Assert.Contains("original .onnx model", written.Hint, StringComparison.Ordinal);
            var leftOutWeight = loaded.Graph.Initializer.First(SavedEngineFile.IsLeftOut);
            var read = Assert.Throws<WeightsLeftOutException>(() => Batchwise.Operators.HostTensor.FromProto(leftOutWeight));
            Assert.Contains(leftOutWeight.Name, read.Message, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', read.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void An_older_layout_is_refused_in_one_line_with_the_command_that_rebuilds_it()
    {
        var bytes = ModelZoo.Build("zoo:mlp").ToBytes();
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.bwengine");
        try
        {
            SavedEngineFile.Write(path, Manifest(bytes) with { Schema = 2 }, bytes, new Dictionary<string, byte[]>());
            var old = Assert.Throws<BatchwiseException>(() => SavedEngineFile.ReadModel(path));
            Assert.Contains("layout version 2", old.Message, StringComparison.Ordinal);
            Assert.Contains($"batchwise build <model.onnx> --engine cuda --precision fp16 --batch-profile 1,8 --shape-profile x:1x4..1x8:2 -o {path}", old.Hint, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', old.OneLine);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void An_int8_engines_rebuild_command_carries_its_calibration_and_only_a_symmetric_scheme()
    {
        var bytes = ModelZoo.Build("zoo:mlp").ToBytes();
        var int8 = Manifest(bytes) with { Precision = "int8", Calibration = "random:4", CalibrationMethod = "entropy", Int8Activations = "asymmetric" };
        Assert.Equal("batchwise build <model.onnx> --engine cuda --precision int8 --calibration random:4 --calibration-method entropy --batch-profile 1,8 --shape-profile x:1x4..1x8:2 -o e.bwengine", SavedEngineFile.RebuildCommand(int8, "e.bwengine"));
        Assert.Contains("--calibration-method entropy --int8-activations symmetric --batch-profile", SavedEngineFile.RebuildCommand(int8 with { Int8Activations = "symmetric" }, "e.bwengine"), StringComparison.Ordinal);
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.bwengine");
        try
        {
            SavedEngineFile.Write(path, int8 with { Int8Activations = "symmetric" }, bytes, new Dictionary<string, byte[]>());
            Assert.Equal("symmetric", SavedEngineFile.ReadManifest(path).Int8Activations);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
