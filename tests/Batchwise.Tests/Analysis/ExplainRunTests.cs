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
    public void Weight_bytes_count_float_initializers_at_the_run_precision_and_8_bit_ones_at_one_byte()
    {
        var model = ModelZoo.Build("zoo:mlp");
        var floats = model.Graph.Initializer.Where(t => (ElementType)t.DataType == ElementType.Float).Sum(t => t.Dims.Aggregate(1.0, (a, b) => a * b));
        Assert.True(floats > 1000, "the model has float weights");
        Assert.Equal(floats * 4, ExplainRun.WeightBytes(model, Batchwise.Engines.Precision.Fp32), 6);
        Assert.Equal(floats * 2, ExplainRun.WeightBytes(model, Batchwise.Engines.Precision.Fp16), 6);

        // int8 weights (a QDQ model from optimize --int8): a byte each, their float scales at two.
        var q = Batchwise.Transforms.CalibratedInt8.Quantize(model, new Batchwise.Transforms.Int8Calibration("random:2", Batchwise.Transforms.CalibrationMethod.MinMax), reduceRange: false);
        var int8 = q.Graph.Initializer.Where(t => (ElementType)t.DataType == ElementType.Int8).Sum(t => t.Dims.Aggregate(1.0, (a, b) => a * b));
        Assert.True(int8 > 1000, "the quantized model has int8 weights");
        Assert.True(ExplainRun.WeightBytes(q, Batchwise.Engines.Precision.Int8) < floats * 2, "int8 weights count less than their fp16 form");
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
