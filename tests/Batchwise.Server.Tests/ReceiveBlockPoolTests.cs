namespace Batchwise.Server.Tests;

public sealed class ReceiveBlockPoolTests
{
    [Fact]
    public void Blocks_are_64_KB_and_reused_once_returned()
    {
        using var pool = new ReceiveBlockPool();
        var first = pool.Rent(4096);
        Assert.Equal(64 * 1024, first.Memory.Length);
        var memory = first.Memory;
        first.Dispose();
        Assert.Equal(1, pool.Retained);

        using var second = pool.Rent();
        Assert.True(second.Memory.Span.Overlaps(memory.Span));
        Assert.Equal(0, pool.Retained);
    }

    [Fact]
    public void A_request_above_the_block_size_gets_its_own_array_that_is_not_kept()
    {
        using var pool = new ReceiveBlockPool();
        var big = pool.Rent(pool.BlockSize + 1);
        Assert.Equal(pool.BlockSize + 1, big.Memory.Length);
        big.Dispose();
        Assert.Equal(0, pool.Retained);
    }

    [Fact]
    public void A_configured_block_size_is_what_every_block_has()
    {
        using var pool = new ReceiveBlockPool(1 << 20);
        using var block = pool.Rent(16);
        Assert.Equal(1 << 20, block.Memory.Length);
        Assert.Equal(1 << 20, pool.MaxBufferSize);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ReceiveBlockPool(4096));
    }

    [Theory]
    [InlineData(4096, 256 << 10, "--receive-block-kb 4")]
    [InlineData(64 << 10, 8 << 10, "--http2-max-frame-kb 8")]
    [InlineData(64 << 10, 16 << 20, "--http2-max-frame-kb 16384")]
    public async Task Sizes_outside_their_range_are_refused_naming_the_option(int block, int frame, string named)
    {
        var e = await Assert.ThrowsAsync<BatchwiseException>(() => InferenceServer.StartAsync(new ModelRepository(), new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = -1, ReceiveBlockBytes = block, Http2MaxFrameBytes = frame }, TestContext.Current.CancellationToken));
        Assert.Contains(named, e.Message, StringComparison.Ordinal);
    }
}
