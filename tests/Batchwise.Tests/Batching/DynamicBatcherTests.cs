using System.Threading.Channels;
using Batchwise.Batching;
using Batchwise.Engines;
using Batchwise.Onnx;
using Microsoft.Extensions.Time.Testing;

namespace Batchwise.Tests.Batching;

public sealed class DynamicBatcherTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private readonly FakeTimeProvider _time = new();
    private readonly ScriptedEngine _engine = new();

    [Fact]
    public async Task Requests_of_any_batch_size_are_merged_and_outputs_split_back_to_each()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 8, MaxQueueDelay = TimeSpan.FromMilliseconds(1) });
        var a = batcher.SubmitAsync([Rows(1, 10f)]);
        var b = batcher.SubmitAsync([Rows(2, 20f)]);
        var c = batcher.SubmitAsync([Rows(3, 30f)]);
        await batcher.WhenIdleAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(0, batcher.BatchesLaunched);

        _time.Advance(TimeSpan.FromMilliseconds(1));
        var call = await _engine.NextAsync();
        Assert.Equal([6L, 2L], call.Inputs[0].Shape);
        call.Complete(Negate(call.Inputs));

        Assert.Equal(Negated(Rows(1, 10f)), (await a).Outputs[0].AsSpan<float>().ToArray());
        Assert.Equal(Negated(Rows(2, 20f)), (await b).Outputs[0].AsSpan<float>().ToArray());
        var rc = await c;
        Assert.Equal(Negated(Rows(3, 30f)), rc.Outputs[0].AsSpan<float>().ToArray());
        Assert.Equal([3L, 2L], rc.Outputs[0].Shape);
        Assert.Equal(6, rc.BatchSize);
        Assert.Equal(TimeSpan.FromMilliseconds(1), rc.QueueTime);
    }

    [Fact]
    public async Task A_preferred_batch_size_is_sent_without_waiting_for_the_delay()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 8, MaxQueueDelay = TimeSpan.FromSeconds(1), PreferredBatchSizes = [4] });
        var a = batcher.SubmitAsync([Rows(2, 1f)]);
        var b = batcher.SubmitAsync([Rows(2, 2f)]);
        var call = await _engine.NextAsync();
        Assert.Equal(4, call.Inputs[0].Shape[0]);
        call.Complete(Negate(call.Inputs));
        await Task.WhenAll(a, b);
    }

    [Fact]
    public async Task A_full_batch_is_sent_at_once_and_the_rest_waits()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 4, MaxQueueDelay = TimeSpan.FromSeconds(1) });
        var tasks = Enumerable.Range(0, 5).Select(i => batcher.SubmitAsync([Rows(1, i)])).ToList();
        var call = await _engine.NextAsync();
        Assert.Equal(4, call.Inputs[0].Shape[0]);
        call.Complete(Negate(call.Inputs));
        await Task.WhenAll(tasks.Take(4));
        await batcher.WhenIdleAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(1, batcher.BatchesLaunched);
        Assert.Equal(1, batcher.QueueLength);

        _time.Advance(TimeSpan.FromSeconds(1));
        var last = await _engine.NextAsync();
        Assert.Equal(1, last.Inputs[0].Shape[0]);
        last.Complete(Negate(last.Inputs));
        await tasks[4];
    }

    [Fact]
    public async Task Requests_with_different_non_batch_shapes_are_never_merged()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 8, MaxQueueDelay = TimeSpan.FromMilliseconds(1), InstanceCount = 2 });
        var a = batcher.SubmitAsync([Rows(1, 1f, width: 2)]);
        var b = batcher.SubmitAsync([Rows(1, 1f, width: 3)]);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var first = await _engine.NextAsync();
        var second = await _engine.NextAsync();
        Assert.Equal(1, first.Inputs[0].Shape[0]);
        Assert.Equal(1, second.Inputs[0].Shape[0]);
        Assert.NotEqual(first.Inputs[0].Shape[1], second.Inputs[0].Shape[1]);
        first.Complete(Negate(first.Inputs));
        second.Complete(Negate(second.Inputs));
        Assert.Equal(new long[] { 1, 2 }, (await a).Outputs[0].Shape);
        Assert.Equal(new long[] { 1, 3 }, (await b).Outputs[0].Shape);
    }

    [Fact]
    public async Task Higher_priority_requests_are_served_first()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 1, PriorityLevels = 2, DefaultPriorityLevel = 2 });
        var busy = batcher.SubmitAsync([Rows(1, 0f)]);
        var running = await _engine.NextAsync();
        var low = batcher.SubmitAsync([Rows(1, 1f)], priority: 2);
        var high = batcher.SubmitAsync([Rows(1, 2f)], priority: 1);
        await batcher.WhenIdleAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        running.Complete(Negate(running.Inputs));

        var next = await _engine.NextAsync();
        Assert.Equal(2f, next.Inputs[0].AsSpan<float>()[0]);
        next.Complete(Negate(next.Inputs));
        var after = await _engine.NextAsync();
        Assert.Equal(1f, after.Inputs[0].AsSpan<float>()[0]);
        after.Complete(Negate(after.Inputs));
        await Task.WhenAll(busy, low, high);
    }

    [Fact]
    public async Task A_full_queue_rejects_new_requests()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 1, MaxQueueSize = 2 });
        var busy = batcher.SubmitAsync([Rows(1, 0f)]);
        var running = await _engine.NextAsync();
        var a = batcher.SubmitAsync([Rows(1, 1f)]);
        var b = batcher.SubmitAsync([Rows(1, 2f)]);
        var e = Assert.Throws<BatchRejectedException>(() => { _ = batcher.SubmitAsync([Rows(1, 3f)]); });
        Assert.Equal(RejectionReason.QueueFull, e.Reason);

        running.Complete(Negate(running.Inputs));
        for (var i = 0; i < 2; i++)
        {
            var call = await _engine.NextAsync();
            call.Complete(Negate(call.Inputs));
        }

        await Task.WhenAll(busy, a, b);
        Assert.Equal(0, batcher.QueueLength);
    }

    [Fact]
    public async Task A_request_past_its_timeout_fails_and_leaves_the_queue()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 1, DefaultTimeout = TimeSpan.FromMilliseconds(5) });
        var busy = batcher.SubmitAsync([Rows(1, 0f)], timeout: TimeSpan.FromHours(1));
        var running = await _engine.NextAsync();
        var waiting = batcher.SubmitAsync([Rows(1, 1f)]);
        await batcher.WhenIdleAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        _time.Advance(TimeSpan.FromMilliseconds(4));
        await batcher.WhenIdleAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.False(waiting.IsCompleted);

        _time.Advance(TimeSpan.FromMilliseconds(1));
        var e = await Assert.ThrowsAsync<BatchRejectedException>(() => waiting.WaitAsync(Patience));
        Assert.Equal(RejectionReason.Timeout, e.Reason);
        Assert.Equal(0, batcher.QueueLength);
        running.Complete(Negate(running.Inputs));
        await busy;
        await batcher.WhenIdleAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(1, batcher.BatchesLaunched);
    }

    [Fact]
    public async Task A_cancelled_request_leaves_the_queue_and_never_runs()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 1 });
        var busy = batcher.SubmitAsync([Rows(1, 0f)]);
        var running = await _engine.NextAsync();
        using var cts = new CancellationTokenSource();
        var waiting = batcher.SubmitAsync([Rows(1, 1f)], cancellationToken: cts.Token);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        Assert.Equal(0, batcher.QueueLength);
        running.Complete(Negate(running.Inputs));
        await busy;
        await batcher.WhenIdleAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(1, batcher.BatchesLaunched);
    }

    [Fact]
    public async Task Each_instance_runs_one_batch_at_a_time()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 1, InstanceCount = 2 });
        var tasks = Enumerable.Range(0, 3).Select(i => batcher.SubmitAsync([Rows(1, i)])).ToList();
        var first = await _engine.NextAsync();
        var second = await _engine.NextAsync();
        Assert.Equal([0, 1], new[] { first.Instance, second.Instance }.Order());
        await batcher.WhenIdleAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(2, batcher.BatchesLaunched);
        Assert.Equal(2, batcher.ExecutionsInFlight);

        second.Complete(Negate(second.Inputs));
        var third = await _engine.NextAsync();
        Assert.Equal(second.Instance, third.Instance);
        first.Complete(Negate(first.Inputs));
        third.Complete(Negate(third.Inputs));
        await Task.WhenAll(tasks);
    }

    [Fact]
    public async Task With_pipeline_depth_2_an_instance_runs_two_batches_at_once_and_never_three()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 1, InstanceCount = 1, PipelineDepth = 2 });
        var tasks = Enumerable.Range(0, 4).Select(i => batcher.SubmitAsync([Rows(1, i)])).ToList();
        var first = await _engine.NextAsync();
        var second = await _engine.NextAsync();
        Assert.Equal([0, 0], new[] { first.Instance, second.Instance });
        await batcher.WhenIdleAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(2, batcher.ExecutionsInFlight);
        Assert.Equal(2, batcher.BatchesLaunched);
        Assert.False(_engine.HasWaitingCall);

        first.Complete(Negate(first.Inputs));
        var third = await _engine.NextAsync();
        Assert.Equal(0, third.Instance);
        await batcher.WhenIdleAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(2, batcher.ExecutionsInFlight);
        Assert.False(_engine.HasWaitingCall);

        second.Complete(Negate(second.Inputs));
        var fourth = await _engine.NextAsync();
        third.Complete(Negate(third.Inputs));
        fourth.Complete(Negate(fourth.Inputs));
        await Task.WhenAll(tasks);
        for (var i = 0; i < tasks.Count; i++)
        {
            Assert.Equal(Negated(Rows(1, i)), (await tasks[i]).Outputs[0].AsSpan<float>().ToArray());
        }
    }

    [Fact]
    public async Task With_pipeline_depth_an_idle_instance_gets_a_batch_before_a_busy_one_gets_a_second()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 1, InstanceCount = 2, PipelineDepth = 2 });
        var tasks = Enumerable.Range(0, 2).Select(i => batcher.SubmitAsync([Rows(1, i)])).ToList();
        var first = await _engine.NextAsync();
        var second = await _engine.NextAsync();
        Assert.Equal([0, 1], new[] { first.Instance, second.Instance }.Order());

        // Both busy: the next two go one to each instance (their second lanes), none to a third lane.
        tasks.AddRange(Enumerable.Range(2, 3).Select(i => batcher.SubmitAsync([Rows(1, i)])));
        var third = await _engine.NextAsync();
        var fourth = await _engine.NextAsync();
        Assert.Equal([0, 1], new[] { third.Instance, fourth.Instance }.Order());
        await batcher.WhenIdleAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(4, batcher.ExecutionsInFlight);
        Assert.False(_engine.HasWaitingCall);

        // Instance 1 goes idle while instance 0 still runs two: the queued batch goes to instance 1.
        var onOne = new[] { first, second, third, fourth }.Where(c => c.Instance == 1).ToList();
        onOne[0].Complete(Negate(onOne[0].Inputs));
        onOne[1].Complete(Negate(onOne[1].Inputs));
        var fifth = await _engine.NextAsync();
        Assert.Equal(1, fifth.Instance);
        foreach (var c in new[] { first, second, third, fourth, fifth }.Where(c => !c.Result.Task.IsCompleted))
        {
            c.Complete(Negate(c.Inputs));
        }

        await Task.WhenAll(tasks);
    }

    [Fact]
    public async Task Stopping_sends_queued_requests_without_waiting_for_the_delay()
    {
        var batcher = Create(new BatcherOptions { MaxBatchSize = 8, MaxQueueDelay = TimeSpan.FromHours(1) });
        var a = batcher.SubmitAsync([Rows(1, 1f)]);
        var stopping = batcher.StopAsync();
        var call = await _engine.NextAsync();
        Assert.Throws<BatchRejectedException>(() => { _ = batcher.SubmitAsync([Rows(1, 2f)]); });
        Assert.False(stopping.IsCompleted, "stop waits for executions in flight");
        call.Complete(Negate(call.Inputs));
        await a;
        await stopping.WaitAsync(Patience, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_batch_larger_than_the_max_is_refused()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 4 });
        var e = Assert.Throws<BatchwiseException>(() => { _ = batcher.SubmitAsync([Rows(5, 1f)]); });
        Assert.Contains("max_batch_size", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_output_without_the_batch_axis_fails_the_batch_with_a_clear_error()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 4, MaxQueueDelay = TimeSpan.FromMilliseconds(1) });
        var a = batcher.SubmitAsync([Rows(1, 1f)]);
        var b = batcher.SubmitAsync([Rows(1, 2f)]);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var call = await _engine.NextAsync();
        call.Complete([Tensor.From<float>(ElementType.Float, [1], [0f])]);
        var e = await Assert.ThrowsAsync<BatchwiseException>(() => a);
        Assert.Contains("axis 0", e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<BatchwiseException>(() => b);
    }

    [Fact]
    public async Task Without_batching_every_request_runs_alone()
    {
        await using var batcher = Create(new BatcherOptions { MaxBatchSize = 0, MaxQueueDelay = TimeSpan.FromSeconds(1) });
        var a = batcher.SubmitAsync([Rows(3, 1f)]);
        var call = await _engine.NextAsync();
        Assert.Equal(3, call.Inputs[0].Shape[0]);
        call.Complete(Negate(call.Inputs));
        Assert.Equal(new long[] { 3, 2 }, (await a).Outputs[0].Shape);
    }

    /// <summary>
    /// A lone request waits out the max queue delay (here under a millisecond, shorter than any timer) without the
    /// scheduling loop turning over and over: it once awaited a timer that fired at once, turning hundreds of times per
    /// request and allocating a timer, a signal and a list each time (a served model's process allocated hundreds of MB/s).
    /// </summary>
    [Fact]
    public async Task A_sub_millisecond_queue_delay_is_waited_out_without_spinning_the_scheduling_loop()
    {
        const int requests = 20;
        await using var batcher = new DynamicBatcher(
            new BatcherOptions { MaxBatchSize = 8, MaxQueueDelay = TimeSpan.FromMicroseconds(900) },
            (_, inputs, _) => Task.FromResult(inputs));
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        for (var i = 0; i < requests; i++)
        {
            var result = await batcher.SubmitAsync([Rows(1, i)]).WaitAsync(Patience, TestContext.Current.CancellationToken);
            Assert.Equal(1, result.BatchSize);
            Assert.True(result.QueueTime >= TimeSpan.FromMicroseconds(900), $"request {i} left the queue after {result.QueueTime.TotalMicroseconds:F0} us, before the 900 us delay");
        }

        var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(started);
        Assert.True(batcher.LoopTurns < requests * 20, $"the scheduling loop turned {batcher.LoopTurns} times for {requests} lone requests in {elapsed.TotalMilliseconds:F1} ms (a few per request expected)");
    }

    private DynamicBatcher Create(BatcherOptions options) => new(options, _engine.ExecuteAsync, _time);

    private static Tensor Rows(int rows, float start, int width = 2) =>
        Tensor.From<float>(ElementType.Float, [rows, width], Enumerable.Range(0, rows * width).Select(i => start + i).ToArray());

    private static float[] Negated(Tensor t) => t.AsSpan<float>().ToArray().Select(v => -v).ToArray();

    private static IReadOnlyList<Tensor> Negate(IReadOnlyList<Tensor> inputs) =>
        inputs.Select(t => Tensor.From<float>(ElementType.Float, (long[])t.Shape.Clone(), Negated(t))).ToList();

    /// <summary>An engine whose executions complete when the test says so.</summary>
    private sealed class ScriptedEngine
    {
        private readonly Channel<Call> _calls = Channel.CreateUnbounded<Call>();

        public Task<IReadOnlyList<Tensor>> ExecuteAsync(int instance, IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken)
        {
            var call = new Call(instance, inputs);
            _calls.Writer.TryWrite(call);

            // Bounded: a test that fails before completing a call must not leave the batcher's dispose waiting for ever.
            return call.Result.Task.WaitAsync(Patience * 3);
        }

        public async Task<Call> NextAsync() => await _calls.Reader.ReadAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(Patience);

        /// <summary>An execution has started that the test has not taken with <see cref="NextAsync"/>.</summary>
        public bool HasWaitingCall => _calls.Reader.Count > 0;
    }

    private sealed class Call(int instance, IReadOnlyList<Tensor> inputs)
    {
        public int Instance { get; } = instance;

        public IReadOnlyList<Tensor> Inputs { get; } = inputs;

        public TaskCompletionSource<IReadOnlyList<Tensor>> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Complete(IReadOnlyList<Tensor> outputs) => Result.SetResult(outputs);
    }
}
