namespace Batchwise.Cuda.Tests.Engine;

/// <summary>BATCHWISE_* numeric settings: blank is the default, a value in range is taken, anything else is one line naming the variable and its range.</summary>
public sealed class EnvironmentSettingTests
{
    [Fact]
    public void A_whole_number_in_range_is_taken_and_blank_is_the_default()
    {
        Assert.Equal(8, EnvironmentSetting.ParseInt("BATCHWISE_X", null, 8, 2, 16));
        Assert.Equal(8, EnvironmentSetting.ParseInt("BATCHWISE_X", "  ", 8, 2, 16));
        Assert.Equal(16, EnvironmentSetting.ParseInt("BATCHWISE_X", " 16 ", 8, 2, 16));
        Assert.Equal(2, EnvironmentSetting.ParseInt("BATCHWISE_X", "2", 8, 2, 16));
    }

    [Theory]
    [InlineData("1")]
    [InlineData("17")]
    [InlineData("eight")]
    [InlineData("8.5")]
    public void Anything_else_is_refused_with_the_variable_and_its_range(string bad)
    {
        var e = Assert.Throws<BatchwiseException>(() => EnvironmentSetting.ParseInt("BATCHWISE_X", bad, 8, 2, 16));
        Assert.Contains($"BATCHWISE_X '{bad}' is not a whole number from 2 to 16", e.Message, StringComparison.Ordinal);
        Assert.Contains("default 8", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Seconds_take_fractions_and_refuse_what_is_out_of_range()
    {
        Assert.Equal(2.0, EnvironmentSetting.ParseSeconds("BATCHWISE_S", "", 2.0, 0.1, 600, "fix"));
        Assert.Equal(0.5, EnvironmentSetting.ParseSeconds("BATCHWISE_S", "0.5", 2.0, 0.1, 600, "fix"));
        var e = Assert.Throws<BatchwiseException>(() => EnvironmentSetting.ParseSeconds("BATCHWISE_S", "0.05", 2.0, 0.1, 600, "fix"));
        Assert.Contains("BATCHWISE_S '0.05' is not a number of seconds from 0.1 to 600", e.Message, StringComparison.Ordinal);
        Assert.Equal("fix", e.Hint);
    }
}
