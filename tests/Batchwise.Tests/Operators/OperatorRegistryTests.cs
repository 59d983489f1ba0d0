using Batchwise.Analysis;
using Batchwise.Operators;

namespace Batchwise.Tests.Operators;

public sealed class OperatorRegistryTests
{
    public static TheoryData<string> Operators => [.. OperatorRegistry.All.Select(s => s.QualifiedName)];

    [Theory]
    [MemberData(nameof(Operators))]
    public void Every_operator_has_versions_attributes_shape_inference_host_evaluation_and_cost(string name)
    {
        var schema = Find(name);
        Assert.NotEmpty(schema.Versions);
        Assert.Equal(schema.Versions.Order(), schema.Versions);
        Assert.Equal(schema.Versions.Distinct().Count(), schema.Versions.Count);
        Assert.True(schema.HasShapeInference, $"{name} has no shape inference");
        Assert.True(schema.HasHostEvaluation, $"{name} has no host evaluation");
        Assert.True(schema.HasCost, $"{name} has no cost");

        // At every opset it exists in, each attribute is listed once, and its default has the attribute's type.
        foreach (var opset in Enumerable.Range(schema.Versions[0], 24 - schema.Versions[0]).Where(v => schema.ExistsAt(v)))
        {
            var attributes = schema.AttributesAt(opset);
            Assert.Equal(attributes.Count, attributes.Select(a => a.Name).Distinct().Count());
            foreach (var a in attributes.Where(a => a.Default is not null))
            {
                Assert.True(
                    a.Kind switch
                    {
                        AttributeKind.Int => a.Default is long,
                        AttributeKind.Float => a.Default is float,
                        AttributeKind.String => a.Default is string,
                        AttributeKind.Ints => a.Default is long[],
                        AttributeKind.Floats => a.Default is float[],
                        AttributeKind.Strings => a.Default is string[],
                        _ => false,
                    },
                    $"{name}.{a.Name}: default {a.Default} is not a {a.Kind}");
            }

            Assert.All(schema.HostInputsAt(opset), p => Assert.InRange(p, 0, 8));
        }
    }

    [Fact]
    public void Operators_exist_only_in_their_opsets()
    {
        Assert.NotNull(OperatorRegistry.Find("", "Upsample", 9));
        Assert.Null(OperatorRegistry.Find("", "Upsample", 10));
        Assert.Null(OperatorRegistry.Find("", "Gelu", 17));
        Assert.NotNull(OperatorRegistry.Find("ai.onnx", "Gelu", 20));
        Assert.Null(OperatorRegistry.Find("", "NoSuchOperator", 17));
        Assert.Equal(13, OperatorRegistry.Find("", "Softmax", 17)!.VersionAt(17));
        Assert.Equal(11, OperatorRegistry.Find("", "Softmax", 12)!.VersionAt(12));
    }

    [Fact]
    public void Defaults_and_attributes_follow_the_opset()
    {
        var softmax = OperatorRegistry.FindAny("", "Softmax")!;
        Assert.Equal(1L, softmax.AttributesAt(11).Single(a => a.Name == "axis").Default);
        Assert.Equal(-1L, softmax.AttributesAt(13).Single(a => a.Name == "axis").Default);

        var clip = OperatorRegistry.FindAny("", "Clip")!;
        Assert.Contains(clip.AttributesAt(10), a => a.Name == "min");
        Assert.DoesNotContain(clip.AttributesAt(11), a => a.Name == "min");

        var split = OperatorRegistry.FindAny("", "Split")!;
        Assert.Contains(split.AttributesAt(12), a => a.Name == "split");
        Assert.DoesNotContain(split.AttributesAt(13), a => a.Name == "split");
        Assert.Contains(split.AttributesAt(18), a => a.Name == "num_outputs");
    }

    [Theory]
    [InlineData("Reshape", 13, new[] { 1 })]
    [InlineData("Squeeze", 11, new int[0])]
    [InlineData("Squeeze", 13, new[] { 1 })]
    [InlineData("Unsqueeze", 13, new[] { 1 })]
    [InlineData("Split", 11, new int[0])]
    [InlineData("Split", 13, new[] { 1 })]
    [InlineData("Slice", 9, new int[0])]
    [InlineData("Slice", 10, new[] { 1, 2, 3, 4 })]
    [InlineData("Pad", 11, new[] { 1, 2 })]
    [InlineData("Pad", 18, new[] { 1, 2, 3 })]
    [InlineData("Resize", 10, new[] { 1 })]
    [InlineData("Resize", 13, new[] { 1, 2, 3 })]
    [InlineData("ReduceSum", 13, new[] { 1 })]
    [InlineData("ReduceMean", 17, new int[0])]
    [InlineData("ReduceMean", 18, new[] { 1 })]
    [InlineData("Clip", 6, new int[0])]
    [InlineData("Clip", 11, new[] { 1, 2 })]
    [InlineData("ConstantOfShape", 17, new[] { 0 })]
    [InlineData("Range", 17, new[] { 0, 1, 2 })]
    [InlineData("Expand", 17, new[] { 1 })]
    [InlineData("Relu", 17, new int[0])]
    public void Host_valued_inputs_follow_the_opset(string op, int opset, int[] expected)
    {
        Assert.Equal(expected, OperatorRegistry.Find("", op, opset)!.HostInputsAt(opset));
    }

    [Fact]
    public void Categories_say_what_bounds_an_operator()
    {
        Assert.Equal(OpCategory.Gemm, OperatorRegistry.FindAny("", "Conv")!.Category);
        Assert.Equal(OpCategory.Metadata, OperatorRegistry.FindAny("", "Reshape")!.Category);
        Assert.Equal(OpCategory.DataMovement, OperatorRegistry.FindAny("", "Transpose")!.Category);
        Assert.Equal(OpCategory.Reduction, OperatorRegistry.FindAny("", "ReduceMean")!.Category);
        Assert.Equal(OpCategory.Elementwise, OperatorRegistry.FindAny("", "Sigmoid")!.Category);
    }

    private static OperatorSchema Find(string qualified)
    {
        var dot = qualified.LastIndexOf('.');
        return dot < 0 ? OperatorRegistry.FindAny("", qualified)! : OperatorRegistry.FindAny(qualified[..dot], qualified[(dot + 1)..])!;
    }
}
