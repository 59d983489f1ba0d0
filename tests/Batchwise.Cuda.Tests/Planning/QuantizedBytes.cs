namespace Batchwise.Cuda.Tests.Planning;

/// <summary>Checks of quantized outputs against ONNX Runtime's: a step off at most, rarely, and not a dead output.</summary>
internal static class QuantizedBytes
{
    /// <summary>
    /// Every byte of <paramref name="got"/> within <paramref name="steps"/> (one by default) of <paramref name="want"/>'s,
    /// at most one in <paramref name="oneIn"/> off at all (ties, float32 against float16 rounding, a step carried through
    /// a later layer), and more than <paramref name="distinct"/> distinct reference values (a nearly constant output
    /// checks nothing).
    /// </summary>
    public static void AgreeWithinAStep(double[] want, double[] got, int oneIn, int distinct, int steps = 1)
    {
        Assert.Equal(want.Length, got.Length);
        Assert.All(Enumerable.Range(0, want.Length), i => Assert.True(Math.Abs(want[i] - got[i]) <= steps, $"byte {i}: {got[i]} where ONNX Runtime gives {want[i]}"));
        var differ = Enumerable.Range(0, want.Length).Count(i => want[i] != got[i]);
        Assert.True(differ <= want.Length / oneIn, $"{differ} of {want.Length} bytes off");
        Assert.True(want.Distinct().Count() > distinct, "the reference bytes are nearly constant: the case checks nothing");
    }
}
