using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>The plan's workspace query threads (their GPU side: PlanThreadsGpuTests).</summary>
public sealed class ConvQueryPoolTests
{
    private static ConvShapeKey Key() => new("fp16-nhwc+bias-relu", [1, 64, 40, 40], [64, 64, 3, 3], [1, 64, 40, 40], [1, 1], [1, 1], [1, 1], 1, 256L << 20);

    [Fact]
    public void Fewer_than_two_threads_is_no_pool()
    {
        Assert.Null(ConvQueryPool.Start(IntPtr.Zero, 0));
        Assert.Null(ConvQueryPool.Start(IntPtr.Zero, 1));
    }

    [Fact]
    public async Task A_thread_without_a_context_fails_its_queries_instead_of_hanging_and_a_disposed_pool_refuses()
    {
        // No CUDA context (and here no driver): each thread's set-up fails, so each query faults and the plan asks in
        // sequence itself.
        var pool = ConvQueryPool.Start(IntPtr.Zero, 2)!;
        Assert.Equal(2, pool.Threads);
        var queries = Enumerable.Range(0, 5).Select(_ => pool.WorkspaceSize(Key(), 1, 1)).ToList();
        await Task.WhenAll(queries.Select(q => q.ContinueWith(_ => { }, TaskScheduler.Default))).WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
        Assert.All(queries, q => Assert.True(q.IsFaulted));
        pool.Dispose();
        var late = pool.WorkspaceSize(Key(), 1, 1);
        Assert.True(late.IsFaulted);
        Assert.IsType<ObjectDisposedException>(late.Exception!.InnerException);
    }
}
