using Batchwise.Batching;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Tests.Batching;

/// <summary>BatcherOptions.RunAloneInline: a request alone at an idle instance runs on its own thread (issue 12's c=1 path).</summary>
public sealed class RunAloneInlineTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_request_alone_at_an_idle_instance_runs_on_the_submitting_thread_and_returns_completed()
    {
        var ranOn = -1;
        await using var batcher = new DynamicBatcher(new BatcherOptions { MaxBatchSize = 8, RunAloneInline = true }, (instance, inputs, ct) =>
        {
            ranOn = Environment.CurrentManagedThreadId;
            return Task.FromResult(Negate(inputs));
        });

        var submitter = Environment.CurrentManagedThreadId;
        var pending = batcher.SubmitAsync([Rows(2, 5f)]);

        Assert.True(pending.IsCompletedSuccessfully);
        Assert.Equal(submitter, ranOn);
        var result = await pending;
        Assert.Equal(Negated(Rows(2, 5f)), result.Outputs[0].AsSpan<float>().ToArray());
        Assert.Equal(1, batcher.BatchesLaunched);
        Assert.Equal(0, batcher.QueueLength);
    }

    [Fact]
    public async Task Without_the_option_the_submit_returns_before_the_engine_runs()
    {
        using var submitted = new ManualResetEventSlim();
        var sawSubmitted = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var batcher = new DynamicBatcher(new BatcherOptions { MaxBatchSize = 8 }, (instance, inputs, ct) =>
        {
            // Run on the submitting thread, this would wait out its bound (SubmitAsync had not returned) and see false.
            sawSubmitted.TrySetResult(submitted.Wait(Patience, ct));
            return Task.FromResult(Negate(inputs));
        });

        var pending = batcher.SubmitAsync([Rows(1, 1f)]);
        submitted.Set();
        Assert.True(await sawSubmitted.Task.WaitAsync(Patience * 2, Ct));
        var result = await pending.WaitAsync(Patience, Ct);
        Assert.Equal(Negated(Rows(1, 1f)), result.Outputs[0].AsSpan<float>().ToArray());
    }

    [Fact]
    public async Task A_request_waiting_for_a_delay_is_not_run_inline()
    {
        var calls = 0;
        await using var batcher = new DynamicBatcher(new BatcherOptions { MaxBatchSize = 8, MaxQueueDelay = TimeSpan.FromMilliseconds(20), RunAloneInline = true }, (instance, inputs, ct) =>
        {
            Interlocked.Increment(ref calls);
            return Task.FromResult(Negate(inputs));
        });

        var pending = batcher.SubmitAsync([Rows(1, 3f)]);
        Assert.False(pending.IsCompleted); // it waits up to the delay for others, as without the option
        var result = await pending.WaitAsync(Patience, Ct);
        Assert.Equal(Negated(Rows(1, 3f)), result.Outputs[0].AsSpan<float>().ToArray());
        Assert.Equal(1, calls);
    }

    [Fact]
    public async Task A_request_arriving_while_the_only_instance_is_busy_queues_and_gets_its_own_answer()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var calls = 0;
        await using var batcher = new DynamicBatcher(new BatcherOptions { MaxBatchSize = 8, RunAloneInline = true }, async (instance, inputs, ct) =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                await gate.Task.WaitAsync(Patience, ct);
            }

            return Negate(inputs);
        });

        var first = batcher.SubmitAsync([Rows(1, 10f)]);
        Assert.False(first.IsCompleted);
        var second = batcher.SubmitAsync([Rows(2, 20f)]);
        var third = batcher.SubmitAsync([Rows(1, 30f)]);
        Assert.False(second.IsCompleted);
        gate.SetResult();

        Assert.Equal(Negated(Rows(1, 10f)), (await first.WaitAsync(Patience, Ct)).Outputs[0].AsSpan<float>().ToArray());
        var b = await second.WaitAsync(Patience, Ct);
        var c = await third.WaitAsync(Patience, Ct);
        Assert.Equal(Negated(Rows(2, 20f)), b.Outputs[0].AsSpan<float>().ToArray());
        Assert.Equal(Negated(Rows(1, 30f)), c.Outputs[0].AsSpan<float>().ToArray());
        Assert.Equal(b.BatchId, c.BatchId); // the two that queued behind the busy instance went together
        Assert.Equal(3, b.BatchSize);
    }

    [Fact]
    public async Task Under_concurrency_every_answer_is_its_own_and_no_instance_runs_two_batches_at_once()
    {
        const int Instances = 3;
        var busy = new int[Instances];
        var overlapped = 0;
        await using var batcher = new DynamicBatcher(new BatcherOptions { MaxBatchSize = 4, InstanceCount = Instances, RunAloneInline = true, MaxQueueSize = 10_000 }, async (instance, inputs, ct) =>
        {
            if (Interlocked.Increment(ref busy[instance]) != 1)
            {
                Interlocked.Increment(ref overlapped);
            }

            await Task.Yield();
            var outputs = Negate(inputs);
            Interlocked.Decrement(ref busy[instance]);
            return outputs;
        });

        var clients = Enumerable.Range(0, 8).Select(client => Task.Run(async () =>
        {
            for (var i = 0; i < 200; i++)
            {
                var start = client * 10_000f + i * 10;
                var rows = 1 + (i % 2);
                var result = await batcher.SubmitAsync([Rows(rows, start)]).WaitAsync(Patience, Ct);
                Assert.Equal(Negated(Rows(rows, start)), result.Outputs[0].AsSpan<float>().ToArray());
            }
        }, Ct)).ToList();

        await Task.WhenAll(clients).WaitAsync(Patience, Ct);
        Assert.Equal(0, overlapped);
        Assert.Equal(0, batcher.QueueLength);
    }

    [Fact]
    public async Task A_request_cancelled_before_it_is_submitted_never_runs()
    {
        var calls = 0;
        await using var batcher = new DynamicBatcher(new BatcherOptions { MaxBatchSize = 8, RunAloneInline = true }, (instance, inputs, ct) =>
        {
            Interlocked.Increment(ref calls);
            return Task.FromResult(Negate(inputs));
        });

        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        var pending = batcher.SubmitAsync([Rows(1, 1f)], cancellationToken: cancelled.Token);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending.WaitAsync(Patience, Ct));
        Assert.Equal(0, calls);
    }

    [Fact]
    public async Task Stopping_waits_for_a_request_running_inline()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var batcher = new DynamicBatcher(new BatcherOptions { MaxBatchSize = 8, RunAloneInline = true }, async (instance, inputs, ct) =>
        {
            await gate.Task.WaitAsync(Patience, ct);
            return Negate(inputs);
        });

        var pending = batcher.SubmitAsync([Rows(1, 7f)]);
        var stopped = batcher.StopAsync(Ct);
        Assert.False(stopped.IsCompleted);
        await Assert.ThrowsAsync<BatchRejectedException>(() => batcher.SubmitAsync([Rows(1, 8f)]));
        gate.SetResult();
        await stopped.WaitAsync(Patience, Ct);
        Assert.True(pending.IsCompletedSuccessfully);
        Assert.Equal(Negated(Rows(1, 7f)), (await pending).Outputs[0].AsSpan<float>().ToArray());
        await batcher.DisposeAsync();
    }

    private static Tensor Rows(int rows, float start, int width = 2) =>
        Tensor.From<float>(ElementType.Float, [rows, width], Enumerable.Range(0, rows * width).Select(i => start + i).ToArray());

    private static float[] Negated(Tensor t) => t.AsSpan<float>().ToArray().Select(v => -v).ToArray();

    private static IReadOnlyList<Tensor> Negate(IReadOnlyList<Tensor> inputs) =>
        inputs.Select(t => Tensor.From<float>(ElementType.Float, (long[])t.Shape.Clone(), Negated(t))).ToList();
}
