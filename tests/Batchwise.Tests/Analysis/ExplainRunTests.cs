using Batchwise.Analysis;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Tests.Analysis;

public sealed class ExplainRunTests
{
    private static OnnxModel Mask(bool withNonZero)
    {
        var g = new GraphBuilder("mask");
        var x = g.Input("x", ElementType.Float, 4L, 5L);
        if (withNonZero)
        {
            g.Output(g.Rename(g.Node("NonZero", [g.Node("Greater", [x, g.Scalar(0f)])]), "y"), ElementType.Int64, 2L, "count");
        }
        else
        {
            g.Output(g.Rename(g.Node("Relu", [x]), "y"), ElementType.Float, 4L, 5L);
        }

        return g.Build("mask");
    }

    [Fact]
    public void Explain_names_the_host_synchronisation_of_a_nonzero_on_the_cuda_engine()
    {
        var note = ExplainRun.HostSynchronisations(Mask(withNonZero: true), "cuda");

        Assert.NotNull(note);
        Assert.Contains("1 host synchronisation per run", note, StringComparison.Ordinal);
        Assert.Contains("NonZero 'nonzero", note, StringComparison.Ordinal);
    }

    [Fact]
    public void Explain_says_nothing_of_synchronisations_without_a_data_dependent_node_or_on_onnx_runtime()
    {
        Assert.Null(ExplainRun.HostSynchronisations(Mask(withNonZero: false), "cuda"));
        Assert.Null(ExplainRun.HostSynchronisations(Mask(withNonZero: true), "ort"));
    }
}
