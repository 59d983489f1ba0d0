namespace Batchwise.Cuda.Tests.Engine;

/// <summary>How the fp16 engine stores a float32 model's constants.</summary>
public sealed class HalfStorageTests
{
    [Fact]
    public void Finite_values_beyond_the_float16_range_saturate_instead_of_becoming_infinite()
    {
        // float32's lowest value is what Hugging Face exports use to mask attention scores.
        Assert.Equal(-65504.0, (double)CudaSession.ToHalfStorage(float.MinValue));
        Assert.Equal(65504.0, (double)CudaSession.ToHalfStorage(1e10));
        Assert.Equal(1.5, (double)CudaSession.ToHalfStorage(1.5));
        Assert.Equal(0.0, (double)CudaSession.ToHalfStorage(1e-9));
    }

    [Fact]
    public void Infinities_and_nan_stay_what_they_are()
    {
        Assert.True(Half.IsNegativeInfinity(CudaSession.ToHalfStorage(double.NegativeInfinity)));
        Assert.True(Half.IsPositiveInfinity(CudaSession.ToHalfStorage(double.PositiveInfinity)));
        Assert.True(Half.IsNaN(CudaSession.ToHalfStorage(double.NaN)));
    }
}
