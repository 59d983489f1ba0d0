using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A saved engine's processed weights, planned without a GPU: a session loaded with them derives nothing (no recipe runs,
/// no weight is decoded) and uploads exactly the bytes a fresh session would; damaged constants are refused in one line.
/// </summary>
public sealed class SavedConstantsTests
{
    /// <summary>A target that keeps session constants, as a cuda session does.</summary>
    private sealed class SessionTarget(SessionConstants constants) : IPlanTarget
    {
        public Precision Precision => Precision.Fp16;

        public int ComputeCapability => 90;

        public bool AllowTf32 => false;

        public CudnnHandle PlanningCudnn => throw new InvalidOperationException(NoGpuTarget.NoLibraries);

        public CublasLtHandle PlanningCublasLt => throw new InvalidOperationException(NoGpuTarget.NoLibraries);

        public T Derive<T>(string recipe, IReadOnlyList<HostTensor?> sources, Func<T> make)
            where T : class => constants.Derive(recipe, sources, make);
    }

    /// <summary>y = (x + reshape(b)) * -s + w: a folded reshape, a folded Neg and a weight used as it is.</summary>
    private static OnnxModel Model()
    {
        var g = new GraphBuilder("saved-constants");
        var x = g.Input("x", ElementType.Float, "batch", 4L, 3L, 3L);
        var b = g.Node("Reshape", [g.Initializer("b", [4], [1, -2, 3, 0.1f]), g.Int64s("shape", [1, 4, 1, 1])]);
        var s = g.Node("Neg", [g.Initializer("s", [1], [0.3f])]);
        var w = g.Initializer("w", [1, 4, 3, 3], [.. Enumerable.Range(0, 36).Select(i => (i * 0.37f) - 5)]);
        var y = g.Rename(g.Node("Add", [g.Node("Mul", [g.Node("Add", [x, b]), s]), w]), "y");
        g.Output(y, ElementType.Float, "batch", 4L, 3L, 3L);
        return g.Build("saved-constants");
    }

    /// <summary>Plans the model in a session; returns the plan and every uploaded session constant's device bytes by buffer.</summary>
    private static (ExecutionPlan Plan, Dictionary<int, byte[]> Bytes, List<(string, ElementType, ReadOnlyMemory<byte>)> Uploads) Plan(OnnxModel model, SessionConstants constants, Dictionary<string, HostTensor> initializers, long[]? inputShape = null)
    {
        var inputs = new[] { Tensor.Zeros(ElementType.Float, inputShape ?? [2, 4, 3, 3]) };
        var plan = new GraphCompiler(model, new SessionTarget(constants)).Compile(inputs, initializers, GraphCompiler.HostValueInputs(model));
        var bytes = new Dictionary<int, byte[]>();
        var uploads = new List<(string, ElementType, ReadOnlyMemory<byte>)>();
        foreach (var buffer in plan.Buffers.Where(b => !b.IsArena))
        {
            var t = buffer.Constant!;
            var b = constants.SavedBytes(t, buffer.StorageType)?.ToArray() ?? CudaSession.StorageBytes(t, buffer.StorageType);
            bytes[buffer.Id] = b;
            if (t.IsInitializer && constants.NameOf(t) is { } name)
            {
                uploads.Add((name, buffer.StorageType, b));
            }
        }

        return (plan, bytes, uploads);
    }

    [Fact]
    public void A_session_loaded_with_saved_constants_derives_nothing_and_uploads_the_same_bytes()
    {
        var model = Model();
        var fresh = new SessionConstants();
        var (plan, bytes, uploads) = Plan(model, fresh, fresh.AddInitializers(model.Graph.Initializer, defer: false));
        Assert.True(fresh.Made >= 2, $"{fresh.Made} derived"); // the reshape and the Neg at least
        Assert.NotEmpty(uploads);
        var (index, blob) = SavedConstants.Write(fresh.Derivations, uploads);

        var loaded = new SessionConstants();
        loaded.Load(SavedConstants.Read("test.bwengine", index, blob)!);
        var initializers = loaded.AddInitializers(model.Graph.Initializer, defer: true);
        var (again, againBytes, _) = Plan(model, loaded, initializers);

        Assert.Equal(0, loaded.Made);
        Assert.Equal(fresh.Made, loaded.Reused);
        Assert.All(initializers.Where(p => p.Value.IsFloat), p => Assert.False(p.Value.HasValuesMade, $"weight '{p.Key}' was decoded"));
        Assert.Equal(plan.Steps.Count, again.Steps.Count);
        Assert.Equal(bytes.Keys.Order(), againBytes.Keys.Order());
        Assert.All(bytes, p => Assert.Equal(p.Value, againBytes[p.Key]));
    }

    [Fact]
    public void A_saved_value_without_device_bytes_is_made_by_its_recipe_when_read()
    {
        var model = Model();
        var fresh = new SessionConstants();
        var (_, freshBytes, _) = Plan(model, fresh, fresh.AddInitializers(model.Graph.Initializer, defer: false));
        var (index, blob) = SavedConstants.Write(fresh.Derivations, []); // forms only, no bytes

        var loaded = new SessionConstants();
        loaded.Load(SavedConstants.Read("test.bwengine", index, blob)!);
        var (_, bytes, _) = Plan(model, loaded, loaded.AddInitializers(model.Graph.Initializer, defer: true));

        // Deferred when derived (no recipe ran then), made from the recipe when the upload read them: the same bytes.
        Assert.Equal(0, loaded.Made);
        Assert.Equal(fresh.Made, loaded.Reused);
        Assert.Equal(freshBytes.Keys.Order(), bytes.Keys.Order());
        Assert.All(freshBytes, p => Assert.Equal(p.Value, bytes[p.Key]));
    }

    [Fact]
    public void Damaged_saved_constants_are_refused_in_one_line()
    {
        var model = Model();
        var fresh = new SessionConstants();
        var (_, _, uploads) = Plan(model, fresh, fresh.AddInitializers(model.Graph.Initializer, defer: false));
        var (index, blob) = SavedConstants.Write(fresh.Derivations, uploads);

        var truncated = Assert.Throws<BatchwiseException>(() => SavedConstants.Read("e.bwengine", index, blob[..(blob.Length / 2)]));
        Assert.Contains("is damaged", truncated.Message, StringComparison.Ordinal);
        Assert.Contains("truncated", truncated.Message, StringComparison.Ordinal);

        // One byte of the weights altered (a zip does not check a stored entry's checksum): refused, not uploaded.
        var altered = (byte[])blob.Clone();
        altered[altered.Length / 3] ^= 0x10;
        var changed = Assert.Throws<BatchwiseException>(() => SavedConstants.Read("e.bwengine", index, altered));
        Assert.Contains("do not match their checksum", changed.Message, StringComparison.Ordinal);

        var garbage = Assert.Throws<BatchwiseException>(() => SavedConstants.Read("e.bwengine", [.. index[..(index.Length / 2)]], blob));
        Assert.Contains("constants index does not parse", garbage.Message, StringComparison.Ordinal);

        var half = Assert.Throws<BatchwiseException>(() => SavedConstants.Read("e.bwengine", index, null));
        Assert.Contains("without the bytes", half.Message, StringComparison.Ordinal);
        Assert.Null(SavedConstants.Read("e.bwengine", null, null)); // an engine saved without them

        // Bytes of another length than the plan needs (an index edited by hand, or a recipe that changed).
        var saved = SavedConstants.Read("e.bwengine", index, blob)!;
        var (name, storage, bytes) = uploads[0];
        var wrong = Assert.Throws<BatchwiseException>(() => saved.Bytes(name, storage, bytes.Length + 2));
        Assert.Contains("is damaged", wrong.Message, StringComparison.Ordinal);
        Assert.Equal(bytes.ToArray(), saved.Bytes(name, storage, bytes.Length)!.Value.ToArray());
    }

    /// <summary>y = x + w (w: 2,048 float values, more than a saved engine's model carries) + reshape(b) (b: 4 values).</summary>
    private static OnnxModel LargeWeightModel()
    {
        var g = new GraphBuilder("large-weight");
        var x = g.Input("x", ElementType.Float, "batch", 4L, 16L, 32L);
        var w = g.Initializer("w", [1, 4, 16, 32], [.. Enumerable.Range(0, 2048).Select(i => (i * 0.013f) - 9)]);
        var b = g.Node("Reshape", [g.Initializer("b", [4], [1, -2, 3, 0.1f]), g.Int64s("shape", [1, 4, 1, 1])]);
        var y = g.Rename(g.Node("Add", [g.Node("Add", [x, w]), b]), "y");
        g.Output(y, ElementType.Float, "batch", 4L, 16L, 32L);
        return g.Build("large-weight");
    }

    [Fact]
    public void A_saved_engines_model_without_its_large_float_weights_plans_from_the_saved_bytes_alone()
    {
        var model = LargeWeightModel();
        var fresh = new SessionConstants();
        var (plan, bytes, uploads) = Plan(model, fresh, fresh.AddInitializers(model.Graph.Initializer, defer: false), [2, 4, 16, 32]);
        var (index, blob) = SavedConstants.Write(fresh.Derivations, uploads);

        // The structure a saved engine carries: w declared by type and shape only, the small b as it was.
        var structure = SavedEngineFile.StructureOf(model, out var leftOut);
        Assert.Equal(2048, leftOut);
        Assert.True(structure.Length < model.ToBytes().Length - (2048 * 4) + 256, $"{structure.Length} bytes of structure, {model.ToBytes().Length} of model");
        var parsed = OnnxModel.FromBytes(structure, "large-weight");
        var w = parsed.Graph.Initializer.Single(t => t.Name == "w");
        Assert.True(SavedEngineFile.IsLeftOut(w));
        Assert.False(HostTensor.HasValues(w));
        Assert.True(HostTensor.HasValues(parsed.Graph.Initializer.Single(t => t.Name == "b")));

        // Planned from it with the saved constants: the same steps and the same device bytes, nothing read on the host.
        var loaded = new SessionConstants();
        loaded.Load(SavedConstants.Read("test.bwengine", index, blob)!);
        var (again, againBytes, _) = Plan(parsed, loaded, loaded.AddInitializers(parsed.Graph.Initializer, defer: true), [2, 4, 16, 32]);
        Assert.Equal(plan.Steps.Count, again.Steps.Count);
        Assert.Equal(bytes.Keys.Order(), againBytes.Keys.Order());
        Assert.All(bytes, p => Assert.Equal(p.Value, againBytes[p.Key]));
    }

    [Fact]
    public void A_plan_that_reads_a_left_out_weight_on_the_host_is_refused_in_one_line()
    {
        // Cast(w, int64) folds on the host into integers, which a saved engine does not defer: its recipe reads w.
        var g = new GraphBuilder("reads-weight");
        var x = g.Input("x", ElementType.Float, "batch", 2048L);
        var w = g.Initializer("w", [2048], [.. Enumerable.Range(0, 2048).Select(i => i * 0.5f)]);
        var asInts = g.Node("Cast", [w], GraphBuilder.Attr("to", (long)ElementType.Int64));
        var back = g.Node("Cast", [asInts], GraphBuilder.Attr("to", (long)ElementType.Float));
        g.Output(g.Rename(g.Node("Add", [x, back]), "y"), ElementType.Float, "batch", 2048L);
        var model = g.Build("reads-weight");
        var inputs = new[] { Tensor.Zeros(ElementType.Float, [1, 2048]) };

        var fresh = new SessionConstants();
        var freshInitializers = fresh.AddInitializers(model.Graph.Initializer, defer: false);
        var plan = new GraphCompiler(model, new SessionTarget(fresh)).Compile(inputs, freshInitializers, GraphCompiler.HostValueInputs(model));
        var uploads = plan.Buffers.Where(b => !b.IsArena && b.Constant!.IsInitializer && fresh.NameOf(b.Constant) is not null)
            .Select(b => (fresh.NameOf(b.Constant!)!, b.StorageType, (ReadOnlyMemory<byte>)CudaSession.StorageBytes(b.Constant!, b.StorageType))).ToList();
        var (index, blob) = SavedConstants.Write(fresh.Derivations, uploads);

        var parsed = OnnxModel.FromBytes(SavedEngineFile.StructureOf(model, out _), "reads-weight");
        var loaded = new SessionConstants();
        loaded.Load(SavedConstants.Read("test.bwengine", index, blob)!);
        var initializers = loaded.AddInitializers(parsed.Graph.Initializer, defer: true);
        var e = Assert.ThrowsAny<BatchwiseException>(() => new GraphCompiler(parsed, new SessionTarget(loaded)).Compile(inputs, initializers, GraphCompiler.HostValueInputs(parsed)));
        var refused = e as WeightsLeftOutException ?? e.InnerException as WeightsLeftOutException;
        Assert.NotNull(refused);
        Assert.Contains("'w'", refused.Message, StringComparison.Ordinal);
        Assert.Contains("batchwise build", refused.Hint, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }
}
