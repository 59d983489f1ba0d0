using Batchwise.Cuda.Analysis;
using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Analysis;

/// <summary>What the probe's grouped table times at each width: the routine the engine's lowering picks for it.</summary>
public sealed class GpuCeilingsProbeTests
{
    [Theory]
    [InlineData("fp16", 24, "Auto", "own")] // RegNet's width: the own tensor-core kernel
    [InlineData("fp16", 48, "Auto", "own")]
    [InlineData("fp16", 32, "Auto", "cudnn")] // ResNeXt's powers of two stay with cuDNN
    [InlineData("fp16", 4, "Own", "cudnn")] // below 8 channels the own kernel cannot run
    [InlineData("fp16", 32, "Own", "own")]
    [InlineData("fp16", 24, "Cudnn", "cudnn")]
    [InlineData("fp32", 24, "Auto", "cudnn")] // fp32 is always cuDNN's
    public void Grouped_table_times_the_routine_the_engine_picks(string precision, int width, string choice, string expected) =>
        Assert.Equal(expected, GpuCeilingsProbe.GroupedRoutine(precision, width, Enum.Parse<GroupedConvChoice>(choice)));
}
