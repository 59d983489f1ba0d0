using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// LayerNormalization over the last axis at transformer widths and odd ones: a warp per row up to 1,024 elements, a few
/// warps of a block per row up to 8,192 (the row in registers either way), the general kernel beyond; planned without a
/// GPU, run on the CPU runner against ONNX Runtime, with the Mean and InvStdDev outputs.
/// </summary>
public sealed class LayerNormPlanTests
{
    [Theory]
    [InlineData(384, "warp")]
    [InlineData(37, "warp")]
    [InlineData(1536, "block")]
    [InlineData(3000, "block")]
    [InlineData(4097, "block")]
    [InlineData(9000, "general")]
    public void Layer_norm_rows_match_onnx_runtime(long width, string kernel)
    {
        var g = new GraphBuilder("layernorm", 13);
        var x = g.Input("x", ElementType.Float, 5L, width);
        var outs = g.NodeN("LayerNormalization", [x, g.Uniform("scale", [width], 0.5f, 1.5f), g.Weight("bias", [width], 0.5f)], 3, GraphBuilder.Attr("axis", -1L), GraphBuilder.Attr("epsilon", 1e-5f));
        g.Output(g.Rename(outs[0], "y"), ElementType.Float, 5L, width);
        g.Output(outs[1], ElementType.Float, 5L, 1L);
        g.Output(outs[2], ElementType.Float, 5L, 1L);
        var model = g.Build("layernorm", 17);
        var rng = new Random(3);
        Tensor[] inputs = [Tensor.From<float>(ElementType.Float, [5, width], [.. Enumerable.Range(0, (int)(5 * width)).Select(i => (float)((rng.NextDouble() * 4) - 2 + (i / width)))])];

        var plans = PlansAtBothPrecisions(model, inputs);
        foreach (var (_, plan) in plans)
        {
            var source = Assert.Single(plan.Steps.OfType<KernelStep>(), s => s.Node.StartsWith("LayerNormalization", StringComparison.Ordinal)).Source;
            var found = source.Contains("__shared__ float part", StringComparison.Ordinal) ? "block" : source.Contains("v[it][u]", StringComparison.Ordinal) ? "warp" : "general";
            Assert.Equal(kernel, found);
        }

        AssertRunsMatchOnnxRuntime(model, inputs, plans, $"width {width}");
    }

    /// <summary>
    /// A BERT-style embedding sum (word rows gathered by the ids, position and token-type rows gathered by constant
    /// indices, two Adds) into a LayerNorm whose output is the graph's float output: one kernel reads the table rows
    /// through the ids, sums and normalises them and writes the output (float in a half plan), with no Gather, sum or
    /// conversion pass of its own; a negative id reads from the end, as ONNX says. Where the gathered rows are read by
    /// something else too, the Gather runs as planned before that reader; a Shape of them (DistilBERT's export takes the
    /// sequence length so) reads no element.
    /// </summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void Embedding_sum_layer_norm_reads_the_table_rows_through_the_ids(bool wordsReadElsewhere, bool shapeRead)
    {
        const long width = 40, seq = 6, vocab = 13;
        var g = new GraphBuilder("embeddings", 13);
        var ids = g.Input("input_ids", ElementType.Int64, 2L, seq);
        var word = g.Node("Gather", [g.Weight("word", [vocab, width], 1f), ids]);
        var position = g.Node("Gather", [g.Weight("position", [16, width], 1f), g.Int64s("position_ids", [.. Enumerable.Range(0, (int)seq).Select(i => (long)i)])]);
        var tokenType = g.Node("Gather", [g.Weight("token_type", [2, width], 1f), g.Int64s("token_type_ids", new long[seq])]);
        var sum = g.Node("Add", [g.Node("Add", [word, tokenType]), position]);
        var outs = g.NodeN("LayerNormalization", [sum, g.Uniform("scale", [width], 0.5f, 1.5f), g.Weight("bias", [width], 0.5f)], 1, GraphBuilder.Attr("axis", -1L), GraphBuilder.Attr("epsilon", 1e-12f));
        g.Output(g.Rename(outs[0], "y"), ElementType.Float, 2L, seq, width);
        if (wordsReadElsewhere)
        {
            g.Output(g.Rename(g.Node("Add", [word, word]), "twice"), ElementType.Float, 2L, seq, width);
        }

        if (shapeRead)
        {
            g.Output(g.Rename(g.Node("Shape", [word]), "shape"), ElementType.Int64, 3L);
        }

        var model = g.Build("embeddings", 17);
        Tensor[] inputs = [Tensor.From<long>(ElementType.Int64, [2, seq], [3, 0, 12, -1, 7, 7, 1, 2, 5, 11, -13, 4])];

        var plans = PlansAtBothPrecisions(model, inputs);
        foreach (var (precision, plan) in plans)
        {
            var norm = Assert.Single(plan.Steps.OfType<KernelStep>(), s => s.Node.StartsWith("LayerNormalization", StringComparison.Ordinal));
            Assert.Contains("1 embedding Gather(s) and their sum", norm.Node, StringComparison.Ordinal);
            Assert.Equal(wordsReadElsewhere ? 1 : 0, plan.Steps.Count(s => s.Node.StartsWith("Gather", StringComparison.Ordinal)));
            Assert.DoesNotContain(plan.Steps, s => s.Node == "output y"); // written as float by the LayerNorm itself
        }

        AssertRunsMatchOnnxRuntime(model, inputs, plans, "embeddings");
    }

    /// <summary>The model planned without a GPU in float32 and in float16.</summary>
    private static List<(Precision Precision, ExecutionPlan Plan)> PlansAtBothPrecisions(OnnxModel model, Tensor[] inputs)
    {
        var init = model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t));
        return [.. new[] { Precision.Fp32, Precision.Fp16 }.Select(p => (p, new GraphCompiler(model, new NoGpuTarget(p)).Compile(inputs, init, GraphCompiler.HostValueInputs(model))))];
    }

    /// <summary>Each plan run on the CPU kernel runner against ONNX Runtime (float16 to 2e-2, float32 to 1e-4).</summary>
    private static void AssertRunsMatchOnnxRuntime(OnnxModel model, Tensor[] inputs, List<(Precision Precision, ExecutionPlan Plan)> plans, string label)
    {
        CpuKernelRunner.Require();

        var expected = DataDependentPlanTests.OnOnnxRuntime(model, inputs);
        CpuKernelRunner.Prepare(plans.Select(p => p.Plan));
        foreach (var (precision, plan) in plans)
        {
            var difference = OperatorCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), expected, precision == Precision.Fp16 ? 2e-2 : 1e-4);
            Assert.True(difference is null, $"{label} ({precision}): {difference}");
        }
    }
}
