using Batchwise.Operators;
using Batchwise.Zoo;
using OnnxProto = Onnx;

namespace Batchwise.Tests.Operators;

/// <summary>ConvTranspose's output size and begin padding by ONNX's rules (its reference implementation's floor division).</summary>
public sealed class ConvolutionGeometryTests
{
    private static NodeAttributes Attributes(params OnnxProto.AttributeProto[] attributes)
    {
        var node = new OnnxProto.NodeProto { OpType = "ConvTranspose" };
        node.Attribute.AddRange(attributes);
        return new NodeAttributes(node);
    }

    [Fact]
    public void An_output_shape_one_larger_than_the_full_result_adds_the_row_at_the_end()
    {
        // ONNX's test_convtranspose_output_shape: 3x3 input, 3x3 kernel, strides 3x2 (full result 9x7), output_shape 10x8.
        var (output, begin) = ConvolutionGeometry.Transposed(Attributes(GraphBuilder.Attr("strides", 3L, 2L), GraphBuilder.Attr("output_shape", 10L, 8L)), [3, 3], [3, 3]);

        Assert.Equal([10L, 8L], output);
        Assert.Equal([0L, 0L], begin);
    }

    [Fact]
    public void An_odd_total_padding_begins_with_the_larger_half_unless_same_upper()
    {
        // Full result 7 (2 x (3 - 1) + 3), output_shape 6: total padding 1.
        var notSet = ConvolutionGeometry.Transposed(Attributes(GraphBuilder.Attr("strides", [2L]), GraphBuilder.Attr("output_shape", [6L])), [3], [3]);
        var sameUpper = ConvolutionGeometry.Transposed(Attributes(GraphBuilder.Attr("strides", [2L]), GraphBuilder.Attr("output_shape", [6L]), GraphBuilder.Attr("auto_pad", "SAME_UPPER")), [3], [3]);

        Assert.Equal([6L], notSet.Output);
        Assert.Equal([1L], notSet.Begin);
        Assert.Equal([6L], sameUpper.Output);
        Assert.Equal([0L], sameUpper.Begin);
    }
}
