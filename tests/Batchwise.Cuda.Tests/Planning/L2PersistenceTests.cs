using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// L2 persistence for a plan's constants (BATCHWISE_L2_PERSIST), without a GPU: the switch reads off, on and MiB and
/// refuses the rest in one line; the window covers every constant where their span fits, otherwise the densest range
/// that does, and its hit ratio is the set-aside's share of it (L2PersistenceGpuTests runs it).
/// </summary>
public sealed class L2PersistenceTests
{
    private const long MiB = 1 << 20;

    [Theory]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData("off", null)]
    [InlineData("0", null)]
    [InlineData("on", long.MaxValue)]
    [InlineData(" MAX ", long.MaxValue)]
    [InlineData("30", 30 * MiB)]
    public void The_switch_reads_off_on_and_mebibytes(string? value, long? expected) => Assert.Equal(expected, L2Persistence.Parse(value));

    [Theory]
    [InlineData("yes")]
    [InlineData("-5")]
    [InlineData("1.5")]
    [InlineData("2000000")]
    public void Anything_else_is_refused_saying_what_to_write(string value)
    {
        var e = Assert.Throws<BatchwiseException>(() => L2Persistence.Parse(value));
        Assert.Contains(L2Persistence.Switch, e.Message, StringComparison.Ordinal);
        Assert.Contains("MiB", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void A_window_covers_every_constant_where_their_span_fits()
    {
        // Three weights with a gap between the second and third (another allocation): the window spans all of them.
        var w = L2Persistence.Window([(0x1000_0000, 10 * MiB), (0x1000_0000 + (10 * MiB), 20 * MiB), (0x1000_0000 + (40 * MiB), 10 * MiB)], 25 * MiB, 128 * MiB);
        Assert.NotNull(w);
        Assert.Equal(0x1000_0000UL, w.Base);
        Assert.Equal(50 * MiB, w.Bytes);
        Assert.Equal(40 * MiB, w.ConstantBytes);
        Assert.Equal(40 * MiB, w.TotalConstantBytes);
        Assert.Equal(0.5f, w.HitRatio, 1e-6f);
    }

    [Fact]
    public void A_span_larger_than_a_window_keeps_the_densest_range_that_fits()
    {
        // 8 MiB at the bottom, then far away 30 MiB in three pieces: the window (40 MiB) takes the three pieces.
        var far = 0x2000_0000UL;
        var w = L2Persistence.Window([(0x1000_0000, 8 * MiB), (far, 10 * MiB), (far + (10 * MiB), 10 * MiB), (far + (25 * MiB), 10 * MiB)], 64 * MiB, 40 * MiB);
        Assert.NotNull(w);
        Assert.Equal(far, w.Base);
        Assert.Equal(35 * MiB, w.Bytes);
        Assert.Equal(30 * MiB, w.ConstantBytes);
        Assert.Equal(38 * MiB, w.TotalConstantBytes);
        Assert.Equal(1f, w.HitRatio); // more set aside than the window: every line persists
    }

    [Fact]
    public void One_constant_larger_than_a_window_is_cut_to_the_window()
    {
        var w = L2Persistence.Window([(0x1000_0000, 300 * MiB)], 32 * MiB, 128 * MiB);
        Assert.NotNull(w);
        Assert.Equal(128 * MiB, w.Bytes);
        Assert.Equal(128 * MiB, w.ConstantBytes);
        Assert.Equal(0.25f, w.HitRatio, 1e-6f);
    }

    [Fact]
    public void Nothing_to_keep_or_no_set_aside_gives_no_window()
    {
        Assert.Null(L2Persistence.Window([], 32 * MiB, 128 * MiB));
        Assert.Null(L2Persistence.Window([(0x1000_0000, 0)], 32 * MiB, 128 * MiB));
        Assert.Null(L2Persistence.Window([(0x1000_0000, MiB)], 0, 128 * MiB));
    }

    [Fact]
    public void The_description_says_the_setting_and_how_to_change_it()
    {
        Assert.Contains("BATCHWISE_L2_PERSIST=on|MiB", L2Persistence.Describe(null), StringComparison.Ordinal);
        Assert.StartsWith("on (", L2Persistence.Describe(long.MaxValue), StringComparison.Ordinal);
        Assert.StartsWith("30 MiB", L2Persistence.Describe(30 * MiB), StringComparison.Ordinal);
    }
}
