using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Recurrent layers on the cuda engine beyond the one-node registry cases: zoo:crnn's recurrent part (the same
/// builder, opsets 11 and 17) planned and run on the CPU against ONNX Runtime, and the load check's refusals.
/// </summary>
public sealed class RecurrentOnCpuTests
{
    /// <summary>CRNN's sequence head as zoo:crnn builds it: [batch, C, 1, T] -> Squeeze -> [T, batch, C] -> BiLSTM -> [batch, T, 2H] -> softmax.</summary>
    private static OnnxModel CrnnHead(long opset)
    {
        var g = new GraphBuilder("crnn-head", seed: 3) { Opset = opset };
        var x = g.Input("features", ElementType.Float, 2L, 24L, 1L, 7L);
        var sequence = g.Node("Transpose", [g.Squeeze(x, 2)], GraphBuilder.Attr("perm", 2L, 0L, 1L));
        var y = g.Lstm(sequence, 24, 20, bidirectional: true, name: "rnn.lstm");
        y = g.Node("Transpose", [y], GraphBuilder.Attr("perm", 2L, 0L, 1L, 3L));
        y = g.Node("Reshape", [y, g.Int64s("rnn.merge_directions", [0, 0, 40])]);
        g.Output(g.Rename(g.Softmax(y, -1, 3), "probabilities"), ElementType.Float, 2L, 7L, 40L);
        return g.Build("crnn-head");
    }

    [Theory]
    [InlineData(11)]
    [InlineData(17)]
    public void Crnn_bidirectional_lstm_head_runs_on_the_cpu_and_agrees_with_onnx_runtime(long opset)
    {
        CpuKernelRunner.Require();

        var model = CrnnHead(opset);
        OperatorSupport.Validate(model);
        var random = new Random(5);
        var input = HostTensor.Create(ElementType.Float, [2, 24, 1, 7], _ => (random.NextDouble() * 4) - 2).ToTensor();
        IReadOnlyList<Tensor> expected;
        using (var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" }))
        {
            expected = ort.Run([input]);
        }

        foreach (var precision in new[] { Precision.Fp32, Precision.Fp16 })
        {
            var init = model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t));
            var plan = new GraphCompiler(model, new NoGpuTarget(precision)).Compile([input], init, GraphCompiler.HostValueInputs(model));
            Assert.Contains(plan.Steps, s => s.Node.StartsWith("LSTM", StringComparison.Ordinal));
            var difference = OperatorCaseModels.Difference(CpuKernelRunner.Run(plan, [input]), expected, precision == Precision.Fp16 ? 2e-2 : 1e-4);
            Assert.True(difference is null, $"opset {opset} ({precision}): {difference}");
        }
    }

    [Theory]
    [InlineData("zoo:crnn")]
    [InlineData("zoo:crnn?opset=11")]
    public void Zoo_crnn_passes_the_cuda_load_check(string spec) => OperatorSupport.Validate(ModelZoo.BuildStructure(spec));

    [Fact]
    public void An_activation_onnx_does_not_define_is_refused_at_load_naming_it()
    {
        var g = new GraphBuilder("gelu-rnn");
        var x = g.Input("x", ElementType.Float, 3L, 1L, 2L);
        var y = g.Node("RNN", [x, g.Initializer("w", [1, 2, 2], [0.1f, 0.2f, 0.3f, 0.4f]), g.Initializer("r", [1, 2, 2], [0.1f, 0.2f, 0.3f, 0.4f])], GraphBuilder.Attr("hidden_size", 2L), Strings("activations", "Gelu"));
        g.Output(g.Rename(y, "y"), ElementType.Float, 3L, 1L, 1L, 2L);

        var e = Assert.Throws<BatchwiseException>(() => OperatorSupport.Validate(g.Build("gelu-rnn", 17)));

        Assert.Contains("activation 'Gelu'", e.Message, StringComparison.Ordinal);
        Assert.Contains("RNN", e.Message, StringComparison.Ordinal);
    }

    private static global::Onnx.AttributeProto Strings(string name, params string[] values)
    {
        var a = new global::Onnx.AttributeProto { Name = name, Type = global::Onnx.AttributeProto.Types.AttributeType.Strings };
        a.Strings.AddRange(values.Select(Google.Protobuf.ByteString.CopyFromUtf8));
        return a;
    }
}
