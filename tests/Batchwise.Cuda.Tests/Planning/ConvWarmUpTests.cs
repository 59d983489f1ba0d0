using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>Which of a saved engine's convolutions the early warm-up calls (its GPU side: ShapeGpuTests).</summary>
public sealed class ConvWarmUpTests
{
    private static ConvShapeKey Key(long batch, long size = 56, string precision = "fp16-nhwc+bias-relu", long channels = 64) =>
        new(precision, [batch, channels, size, size], [64, channels, 3, 3], [batch, 64, size, size], [1, 1], [1, 1], [1, 1], 1, 256L << 20);

    private static byte[] Choice(int algo, int math = 1, long workspace = 4096) => [.. BitConverter.GetBytes(algo), .. BitConverter.GetBytes(math), .. BitConverter.GetBytes(workspace)];

    [Fact]
    public void A_key_parses_back_from_its_text_and_other_text_does_not()
    {
        var key = new ConvShapeKey("fp32+tf32", [8, 3, 1, 224], [64, 3, 1, 7], [8, 64, 1, 112], [0, 3], [1, 2], [1, 1], 1, 1 << 20);
        var parsed = ConvShapeKey.Parse(key.Text);
        Assert.NotNull(parsed);
        Assert.Equal(key.Text, parsed.Text);
        Assert.Null(ConvShapeKey.Parse("fp32|x=8x3|w=oops|y=1|pad=0|stride=1|dil=1|g=1|ws=0"));
        Assert.Null(ConvShapeKey.Parse("matmul|m=1|n=2"));
        Assert.Null(ConvShapeKey.Parse(key.Text.Replace("|g=1|", "|groups=1|", StringComparison.Ordinal)));
    }

    [Fact]
    public void Each_kind_of_convolution_is_called_once_at_its_smallest_input_and_only_exact_choices_count()
    {
        var choices = new Dictionary<string, byte[]>(StringComparer.Ordinal)
        {
            [GraphCompiler.ExactHeuristicChoice + Key(4).Text] = Choice(1),
            [GraphCompiler.ExactHeuristicChoice + Key(1).Text] = Choice(1),
            [GraphCompiler.ExactHeuristicChoice + Key(1, size: 28).Text] = Choice(1), // same kind, smaller image: this one
            [GraphCompiler.ExactHeuristicChoice + Key(2).Text] = Choice(6), // another algorithm: another kind
            [GraphCompiler.ExactTimedChoice + Key(8, precision: "fp32", channels: 32).Text] = Choice(0, math: 0, workspace: 0),
            ["conv-heuristic|" + Key(16).Text] = Choice(1), // an octave's choice, not an exact problem
            [GraphCompiler.ExactHeuristicChoice + Key(1, precision: "int8").Text] = Choice(1), // a precision it does not call
            [GraphCompiler.ExactHeuristicChoice + Key(1, size: 14).Text] = [1, 2, 3], // not a choice
        };

        var problems = ConvWarmUp.Select(choices);
        Assert.Equal(3, problems.Count);
        var fused = Assert.Single(problems, p => p.Choice.Algo == 1);
        Assert.Equal(GraphCompiler.ExactHeuristicChoice + Key(1, size: 28).Text, fused.Key);
        Assert.True(fused.Half && fused.Nhwc && fused.Fused);
        Assert.Equal(4096, fused.Choice.WorkspaceBytes);
        Assert.Equal(2, Assert.Single(problems, p => p.Choice.Algo == 6).Shape.X[0]);
        var plain = Assert.Single(problems, p => p.Choice.Algo == 0);
        Assert.False(plain.Half || plain.Nhwc || plain.Fused);

        // Scratch holds input, filter, output, a float bias per output channel and the workspace, each 256-byte aligned.
        Assert.Equal((8 * 32 * 56 * 56 * 4) + (64 * 32 * 9 * 4) + (8 * 64 * 56 * 56 * 4) + 256, plain.ScratchBytes);
    }
}
