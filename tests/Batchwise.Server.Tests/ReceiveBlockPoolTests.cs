namespace Batchwise.Server.Tests;

public sealed class ReceiveBlockPoolTests
{
    [Fact]
    public void Blocks_are_64_KB_and_reused_once_returned()
    {
        using var pool = new ReceiveBlockPool();
        var first = pool.Rent(4096);
        Assert.Equal(ReceiveBlockPool.BlockSize, first.Memory.Length);
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
        var big = pool.Rent(ReceiveBlockPool.BlockSize + 1);
        Assert.Equal(ReceiveBlockPool.BlockSize + 1, big.Memory.Length);
        big.Dispose();
        Assert.Equal(0, pool.Retained);
    }
}
