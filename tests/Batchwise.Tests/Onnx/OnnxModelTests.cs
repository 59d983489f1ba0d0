using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;
using Google.Protobuf;

namespace Batchwise.Tests.Onnx;

public sealed class OnnxModelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bw-onnx-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static OnnxModel Mlp() => ModelZoo.Build("zoo:mlp");

    [Fact]
    public void Missing_file_names_the_path_and_suggests_the_zoo()
    {
        var e = Assert.Throws<BatchwiseException>(() => OnnxModel.Load(Path.Combine(_dir, "nope.onnx")));
        Assert.Contains("not found", e.Message, StringComparison.Ordinal);
        Assert.Contains("zoo:", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void A_file_that_is_not_protobuf_is_rejected_as_not_onnx()
    {
        var path = Path.Combine(_dir, "text.onnx");
        File.WriteAllText(path, "this is not a model at all, just some text\n");
        var e = Assert.Throws<BatchwiseException>(() => OnnxModel.Load(path));
        Assert.Contains("not", e.Message, StringComparison.Ordinal);
        Assert.Contains("ONNX", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Truncated_file_is_reported_as_truncated()
    {
        var bytes = Mlp().ToBytes();
        var path = Path.Combine(_dir, "cut.onnx");
        File.WriteAllBytes(path, bytes[..(bytes.Length * 2 / 3)]);
        var e = Assert.Throws<BatchwiseException>(() => OnnxModel.Load(path));
        Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Empty_file_is_rejected()
    {
        var path = Path.Combine(_dir, "empty.onnx");
        File.WriteAllBytes(path, []);
        var e = Assert.Throws<BatchwiseException>(() => OnnxModel.Load(path));
        Assert.Contains("empty", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_ir_version_is_rejected_with_a_conversion_hint()
    {
        var proto = Mlp().Proto.Clone();
        proto.IrVersion = 99;
        var e = Assert.Throws<BatchwiseException>(() => OnnxModel.FromBytes(proto.ToByteArray(), "m"));
        Assert.Contains("IR version 99", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_opset_is_rejected()
    {
        var proto = Mlp().Proto.Clone();
        proto.OpsetImport[0].Version = 99;
        var e = Assert.Throws<BatchwiseException>(() => OnnxModel.FromBytes(proto.ToByteArray(), "m"));
        Assert.Contains("opset 99", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Nodes_out_of_order_are_sorted_on_load_and_run_as_before()
    {
        var model = ModelZoo.Build("zoo:mlp");
        var expected = Run(model);

        // The first node's producer moved to the end (as in an export whose Cast is node 643 and is read by node 0).
        var shuffled = model.Proto.Clone();
        var nodes = shuffled.Graph.Node.ToList();
        nodes.Reverse();
        shuffled.Graph.Node.Clear();
        shuffled.Graph.Node.AddRange(nodes);
        var path = Path.Combine(_dir, "shuffled.onnx");
        File.WriteAllBytes(path, shuffled.ToByteArray());

        var loaded = OnnxModel.Load(path);

        Assert.Equal(model.Graph.Node.Select(n => n.Name).Order(), loaded.Graph.Node.Select(n => n.Name).Order());
        Assert.Equal(ShapeInference.Run(model)[model.Outputs[0].Name], ShapeInference.Run(loaded)[model.Outputs[0].Name]);
        Assert.Equal(expected, Run(loaded));
    }

    [Fact]
    public void A_cycle_is_one_error_naming_a_node_on_it()
    {
        var g = new GraphBuilder("cycle");
        var x = g.Input("x", ElementType.Float, 1L, 4L);
        var a = g.Node("Relu", [x]);
        var b = g.Node("Sigmoid", [a]);
        g.Output(b, ElementType.Float, 1L, 4L);
        var proto = g.Build("cycle").Proto.Clone();
        proto.Graph.Node[0].Input[0] = proto.Graph.Node[1].Output[0]; // Relu now reads Sigmoid's output

        var e = Assert.Throws<BatchwiseException>(() => OnnxModel.FromProto(proto, "cycle"));

        Assert.Contains("cycle through", e.Message, StringComparison.Ordinal);
        Assert.Contains("'relu'", e.Message, StringComparison.Ordinal);
    }

    private static double[] Run(OnnxModel model)
    {
        using var session = new OrtEngine().Load(model, new EngineOptions());
        var input = Tensor.Zeros(session.Inputs[0].ElementType, [2, .. session.Inputs[0].Shape.Skip(1).Select(d => d.Value ?? 1)]);
        var values = input.AsSpan<float>();
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (i % 7) - 3;
        }

        return session.Run([input])[0].ToDoubles();
    }

    [Fact]
    public void Missing_initializer_names_the_node_and_the_tensor()
    {
        var proto = Mlp().Proto.Clone();
        var removed = proto.Graph.Initializer[0].Name;
        proto.Graph.Initializer.RemoveAt(0);
        var e = Assert.Throws<BatchwiseException>(() => OnnxModel.FromBytes(proto.ToByteArray(), "m"));
        Assert.Contains(removed, e.Message, StringComparison.Ordinal);
        Assert.Contains("Gemm", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void External_data_is_inlined_and_a_missing_data_file_is_named()
    {
        var proto = Mlp().Proto.Clone();
        var w = proto.Graph.Initializer[0];
        var raw = w.RawData.ToByteArray();
        File.WriteAllBytes(Path.Combine(_dir, "weights.bin"), raw);
        w.RawData = ByteString.Empty;
        w.DataLocation = global::Onnx.TensorProto.Types.DataLocation.External;
        w.ExternalData.Add(new global::Onnx.StringStringEntryProto { Key = "location", Value = "weights.bin" });
        var path = Path.Combine(_dir, "ext.onnx");
        File.WriteAllBytes(path, proto.ToByteArray());

        var loaded = OnnxModel.Load(path);
        Assert.Equal(raw, loaded.Graph.Initializer[0].RawData.ToByteArray());

        File.Delete(Path.Combine(_dir, "weights.bin"));
        var e = Assert.Throws<BatchwiseException>(() => OnnxModel.Load(path));
        Assert.Contains("weights.bin", e.Message, StringComparison.Ordinal);
        Assert.Contains("not found", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Inputs_and_outputs_carry_types_and_symbolic_dims()
    {
        var m = Mlp();
        var input = Assert.Single(m.Inputs);
        Assert.Equal("input", input.Name);
        Assert.Equal(ElementType.Float, input.ElementType);
        Assert.Equal("batch", input.Shape[0].Symbol);
        Assert.Equal(64, input.Shape[1].Value);
        Assert.Equal("probabilities", Assert.Single(m.Outputs).Name);
    }

    [Fact]
    public void Batch_axis_is_found_when_dimension_zero_is_symbolic()
    {
        var axis = Mlp().FindBatchAxis();
        Assert.True(axis.IsBatchable);
        Assert.Equal("batch", axis.Symbol);
    }

    [Fact]
    public void Fixed_batch_of_one_is_reported_as_not_batchable_with_the_reason()
    {
        var proto = Mlp().Proto.Clone();
        proto.Graph.Input[0].Type.TensorType.Shape.Dim[0] = new global::Onnx.TensorShapeProto.Types.Dimension { DimValue = 1 };
        var axis = OnnxModel.FromProto(proto, "fixed").FindBatchAxis();
        Assert.False(axis.IsBatchable);
        Assert.Contains("fixed at 1", axis.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Save_then_load_round_trips()
    {
        var path = Path.Combine(_dir, "m.onnx");
        var m = Mlp();
        m.Save(path);
        var back = OnnxModel.Load(path);
        Assert.Equal(m.ToBytes(), back.ToBytes());
        Assert.Equal("m", back.Name);
    }
}
