using System.Collections.Concurrent;
using System.Threading.Channels;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Batching;

/// <summary>Runs one merged batch on a model instance: inputs in model order, outputs in model order.</summary>
/// <param name="instance">Which instance (0..InstanceCount-1) runs it; up to PipelineDepth batches per instance at a time (1 by default).</param>
/// <param name="inputs">The merged inputs.</param>
/// <param name="cancellationToken">Cancelled when the batcher is disposed without draining.</param>
public delegate Task<IReadOnlyList<Tensor>> BatchExecution(int instance, IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken);

/// <summary>What a request got back: its own slice of the batch outputs and where its time went.</summary>
/// <param name="Outputs">This request's outputs (its rows of the merged outputs).</param>
/// <param name="QueueTime">From submission to the start of its batch.</param>
/// <param name="ComputeTime">The batch execution, merge and split included.</param>
/// <param name="BatchSize">Rows of the merged batch it ran in.</param>
public sealed record BatchedResult(IReadOnlyList<Tensor> Outputs, TimeSpan QueueTime, TimeSpan ComputeTime, int BatchSize)
{
    /// <summary>The batch's sequence number (1, 2, ...): requests with the same id ran together.</summary>
    public long BatchId { get; init; }

    /// <summary>How many requests the batch merged.</summary>
    public int Requests { get; init; } = 1;
}

/// <summary>
/// Gathers requests into batches along axis 0 (Triton's dynamic batch scheduler): a batch is sent when it is
/// full, reaches a preferred size, or its oldest request has waited the max queue delay, and only while a model
/// instance is free. One loop owns the state (pending requests per priority and per shape key with running row
/// totals, a deadline heap, free instances); executions run concurrently and hand their instance back. With a
/// <see cref="BatcherOptions.PipelineDepth"/> above 1 an instance takes up to that many batches at once (an idle
/// instance's first, <see cref="InstanceLanes"/>), so an engine can stage the next batch while the last one runs. Taking a
/// request in, sending it and expiring it cost O(log n) in the queue's length n: a wake looks at the head's shape key
/// only, and no further than one batch into it, never the whole queue.
/// </summary>
public sealed class DynamicBatcher : IAsyncDisposable
{
    private readonly BatcherOptions _options;
    private readonly BatchPartsExecution _execute;
    private readonly TimeProvider _time;
    private readonly Channel<QueuedRequest> _intake;
    private readonly PendingRequests _pending;
    private readonly ConcurrentQueue<QueuedRequest> _cancelled = new();
    private readonly InstanceLanes _lanes; // guarded by itself: the loop and a request run alone take from it
    private readonly CancellationTokenSource _abort = new();
    private readonly Task _loop;
    private TaskCompletionSource _wake = NewSignal();
    private TaskCompletionSource? _idleWaiter;
    private int _queued;
    private long _batchesLaunched;
    private int _executing;
    private volatile bool _stopping;
    private bool _closed; // the loop has ended (guarded by _lanes)

    /// <summary>Starts the batching loop; each batch is merged into new tensors before <paramref name="execute"/> runs it.</summary>
    public DynamicBatcher(BatcherOptions options, BatchExecution execute, TimeProvider? timeProvider = null)
        : this(options, Merged(execute), timeProvider)
    {
    }

    /// <summary>Starts the batching loop; <paramref name="execute"/> gets each batch's requests unmerged and concatenates them itself.</summary>
    public DynamicBatcher(BatcherOptions options, BatchPartsExecution execute, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(execute);
        options.Validate();
        _options = options;
        _execute = execute;
        _time = timeProvider ?? TimeProvider.System;
        _intake = Channel.CreateBounded<QueuedRequest>(new BoundedChannelOptions(options.MaxQueueSize)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = true,
        });
        _pending = new PendingRequests(options.PriorityLevels);
        _lanes = new InstanceLanes(options.InstanceCount, options.PipelineDepth);

        _loop = Task.Run(RunLoopAsync);
    }

    /// <summary>The settings.</summary>
    public BatcherOptions Options => _options;

    /// <summary>Requests accepted and not yet executing.</summary>
    public int QueueLength => Volatile.Read(ref _queued);

    /// <summary>Batches executing now.</summary>
    public int ExecutionsInFlight => Volatile.Read(ref _executing);

    /// <summary>Batches sent to an instance so far.</summary>
    public long BatchesLaunched => Interlocked.Read(ref _batchesLaunched);

    /// <summary>
    /// Queues a request (inputs in model order, each with the same size on axis 0 when batching). Throws
    /// <see cref="BatchRejectedException"/> at once when the queue is full or the batcher is stopping; the task
    /// fails with it on timeout, and is cancelled if <paramref name="cancellationToken"/> fires while queued.
    /// </summary>
    public Task<BatchedResult> SubmitAsync(IReadOnlyList<Tensor> inputs, int priority = 0, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        SubmitAsync(inputs, null, priority, timeout, cancellationToken);

    /// <summary>
    /// <see cref="SubmitAsync(IReadOnlyList{Tensor}, int, TimeSpan?, CancellationToken)"/> with, per output (model order),
    /// where this request's rows of it go instead of a managed array (null: nowhere special); the execution writes them
    /// there when its engine can (<see cref="BatchParts.OutputTargets"/>), and the result's output then reads them back
    /// from there (its <see cref="TensorSource.DeliveredTo"/> is the target).
    /// </summary>
    public Task<BatchedResult> SubmitAsync(IReadOnlyList<Tensor> inputs, IReadOnlyList<TensorTarget?>? outputTargets, int priority = 0, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var rows = RowsOf(inputs);
        if (priority < 0 || priority > _options.PriorityLevels)
        {
            throw new BatchwiseException($"Priority {priority} is outside 1..{_options.PriorityLevels}", "Use 1 (highest) to priority_levels, or 0 for the default level.");
        }

        if (_stopping)
        {
            throw new BatchRejectedException(RejectionReason.ShuttingDown, "The server is shutting down", "Retry against another replica.");
        }

        // A token cancelled already: the request is never queued (queued first, the loop could dispatch it before the
        // cancellation's registration below ran, and it would run).
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<BatchedResult>(cancellationToken);
        }

        if (Interlocked.Increment(ref _queued) > _options.MaxQueueSize)
        {
            Interlocked.Decrement(ref _queued);
            throw new BatchRejectedException(RejectionReason.QueueFull, $"The queue is full ({_options.MaxQueueSize} requests waiting)", "Retry later, or raise max_queue_size / instance_count.");
        }

        var now = _time.GetTimestamp();
        var limit = timeout ?? _options.DefaultTimeout;
        var request = new QueuedRequest(inputs, rows, ShapeKey(inputs), priority == 0 ? _options.ResolvedDefaultPriority : priority, now,
            limit is { } t ? now + (long)(t.TotalSeconds * _time.TimestampFrequency) : long.MaxValue)
        {
            OutputTargets = outputTargets,
        };
        if (TryRunAlone(request))
        {
            return request.Completion.Task;
        }

        if (!_intake.Writer.TryWrite(request))
        {
            Interlocked.Decrement(ref _queued);
            throw _stopping
                ? new BatchRejectedException(RejectionReason.ShuttingDown, "The server is shutting down", "Retry against another replica.")
                : new BatchRejectedException(RejectionReason.QueueFull, $"The queue is full ({_options.MaxQueueSize} requests waiting)", "Retry later, or raise max_queue_size / instance_count.");
        }

        if (cancellationToken.CanBeCanceled)
        {
            request.Registration = cancellationToken.Register(() =>
            {
                if (request.TryDrop())
                {
                    Interlocked.Decrement(ref _queued);
                    request.Completion.TrySetCanceled(cancellationToken);
                    _cancelled.Enqueue(request); // the loop takes it out of its queues
                    Wake();
                }
            });
        }

        Wake();
        return request.Completion.Task;
    }

    /// <summary>Stops taking requests, sends everything queued without waiting for the delay, and waits for every execution.</summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        _stopping = true;
        _intake.Writer.TryComplete();
        Wake();
        await _loop.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _abort.Dispose();
    }

    /// <summary>Completes once the loop has taken in everything submitted so far and is waiting (for tests).</summary>
    internal Task WhenIdleAsync()
    {
        var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _idleWaiter, waiter);
        Wake();
        return waiter.Task;
    }

    private static BatchPartsExecution Merged(BatchExecution execute)
    {
        ArgumentNullException.ThrowIfNull(execute);
        return (instance, batch, cancellationToken) => execute(instance, batch.Merge(), cancellationToken);
    }

    private long _loopTurns;

    /// <summary>How many times the scheduling loop has looked at the queue (tests: a wait must not spin it).</summary>
    internal long LoopTurns => Interlocked.Read(ref _loopTurns);

    /// <summary>The shortest wait a timer honours; shorter ones are spun out by <see cref="SpinUntil"/>.</summary>
    private static readonly TimeSpan TimerResolution = TimeSpan.FromMilliseconds(1);

    /// <summary>Yields the thread until <paramref name="signal"/> completes or the clock reaches <paramref name="until"/>.</summary>
    private void SpinUntil(Task signal, long until)
    {
        var spinner = default(SpinWait);
        while (!signal.IsCompleted && _time.GetTimestamp() < until)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private void Wake() => Volatile.Read(ref _wake).TrySetResult();

    private int RowsOf(IReadOnlyList<Tensor> inputs)
    {
        if (inputs.Count == 0)
        {
            throw new BatchwiseException("A request has no inputs", "Send one tensor per model input.");
        }

        if (_options.MaxBatchSize == 0)
        {
            return 1;
        }

        long rows = -1;
        foreach (var t in inputs)
        {
            if (t.Shape.Length == 0)
            {
                throw new BatchwiseException("A scalar input cannot be batched", "Give every input a leading batch dimension, or set max_batch_size 0.");
            }

            if (rows >= 0 && t.Shape[0] != rows)
            {
                throw new BatchwiseException($"Inputs disagree on the batch size (axis 0: {rows} and {t.Shape[0]})", "Give every input the same leading batch dimension.");
            }

            rows = t.Shape[0];
        }

        if (rows < 1 || rows > _options.MaxBatchSize)
        {
            throw new BatchwiseException($"Batch size {rows} is outside 1..{_options.MaxBatchSize} (max_batch_size)", "Split the request, or raise max_batch_size in the model's config.");
        }

        return (int)rows;
    }

    private static string ShapeKey(IReadOnlyList<Tensor> inputs) =>
        string.Join(';', inputs.Select(t => $"{(int)t.ElementType}:{string.Join(',', t.Shape.Skip(1))}"));

    private async Task RunLoopAsync()
    {
        try
        {
            var intakeOpen = true;
            while (true)
            {
                Interlocked.Increment(ref _loopTurns);
                var wake = NewSignal();
                Volatile.Write(ref _wake, wake);
                while (_intake.Reader.TryRead(out var r))
                {
                    _pending.Add(r);
                }

                while (_cancelled.TryDequeue(out var c))
                {
                    _pending.Remove(c);
                }

                intakeOpen &= !_intake.Reader.Completion.IsCompleted;
                var now = _time.GetTimestamp();
                var nextDeadline = Expire(now);
                TimeSpan? dueIn = null;
                while (TryTakeInstance(out var instance))
                {
                    if (!TryFormBatch(now, drain: !intakeOpen, out var batch, out dueIn) || batch.Count == 0)
                    {
                        ReturnInstance(instance);
                        if (batch.Count == 0 && dueIn is null && _pending.Head() is not null)
                        {
                            continue; // every request selected had been dropped meanwhile: look again
                        }

                        break;
                    }

                    Launch(instance, batch);
                }

                if (!intakeOpen && _pending.Count == 0 && TryClose())
                {
                    break;
                }

                var wait = dueIn;
                if (nextDeadline != long.MaxValue)
                {
                    var untilDeadline = nextDeadline > now ? TimeSpan.FromSeconds((nextDeadline - now) / (double)_time.TimestampFrequency) : TimeSpan.Zero;
                    wait = wait is { } w && w < untilDeadline ? w : untilDeadline;
                }

                // "Idle" is announced only once the timer for the next due batch exists: a caller that waits for idle
                // and then moves the clock (a test's fake time) must find the timer already counting, or it would
                // never fire and the batch never go (the hang CI saw on a loaded 2-core machine).
                var idle = Interlocked.Exchange(ref _idleWaiter, null);
                if (wait is { } shortDelay && shortDelay < TimerResolution && ReferenceEquals(_time, TimeProvider.System))
                {
                    // A timer shorter than a millisecond fires at once (timers count whole milliseconds), so awaiting
                    // one here made this loop spin through the last fraction of a millisecond of every batch's
                    // max_queue_delay, allocating a timer, a signal and a list per turn (hundreds of MB/s at one request
                    // at a time). Yield the core until then instead, allocating nothing.
                    idle?.TrySetResult();
                    SpinUntil(wake.Task, now + (long)(shortDelay.TotalSeconds * _time.TimestampFrequency));
                }
                else if (wait is { } delay)
                {
                    using var cts = new CancellationTokenSource();
                    var timer = Task.Delay(delay < TimeSpan.Zero ? TimeSpan.Zero : delay, _time, cts.Token);
                    idle?.TrySetResult();

                    // The wait was measured from this turn's `now`; a clock that has moved past it since (a test's fake
                    // time, moved after an earlier turn said idle and before this timer existed) left the timer
                    // counting from the moved clock, so it would never fire: turn again at once instead.
                    if (_time.GetElapsedTime(now) < delay)
                    {
                        await Task.WhenAny(wake.Task, timer).ConfigureAwait(false);
                    }

                    await cts.CancelAsync().ConfigureAwait(false);
                }
                else
                {
                    idle?.TrySetResult();
                    await wake.Task.ConfigureAwait(false);
                }
            }
        }
        catch (Exception e)
        {
            // A bug here must not leave callers waiting for ever.
            _stopping = true;
            _intake.Writer.TryComplete();
            foreach (var r in _pending.All())
            {
                r.Completion.TrySetException(e);
            }

            throw;
        }
    }

    /// <summary>Fails the requests whose deadline has passed (earliest first, from the heap); returns the next deadline.</summary>
    private long Expire(long now)
    {
        while (_pending.NextDeadline(out var r) is var deadline && deadline <= now)
        {
            _pending.PopDeadline();
            if (r!.TryDrop())
            {
                _pending.Remove(r);
                Interlocked.Decrement(ref _queued);
                r.Registration.Dispose();
                r.Completion.TrySetException(new BatchRejectedException(RejectionReason.Timeout, $"The request waited {_time.GetElapsedTime(r.Enqueued, now).TotalMilliseconds:F1} ms in the queue, past its timeout", "Raise the request's timeout, or add instances."));
            }
        }

        return _pending.NextDeadline(out _);
    }

    private bool TryFormBatch(long now, bool drain, out List<QueuedRequest> batch, out TimeSpan? dueIn)
    {
        batch = [];
        dueIn = null;
        var head = _pending.Head();
        if (head is null)
        {
            return false;
        }

        List<QueuedRequest> selected;
        if (_options.MaxBatchSize == 0)
        {
            selected = [head];
        }
        else
        {
            // The running totals answer "not yet" without walking the requests: fewer rows than a batch, none
            // waited long enough, no preferred size reached. (Below the max every request of the key would be taken,
            // so this is the walk's own answer.)
            var total = _pending.RowsOf(head.Key);
            var waitedByOldest = _time.GetElapsedTime(_pending.OldestOf(head.Key), now);
            if (!drain && total < _options.MaxBatchSize && waitedByOldest < _options.MaxQueueDelay && !_options.PreferredBatchSizes.Any(p => p <= total))
            {
                dueIn = _options.MaxQueueDelay - waitedByOldest;
                return false;
            }

            selected = _pending.Select(head.Key, _options.MaxBatchSize, out var rows, out var oldest);
            var waited = _time.GetElapsedTime(oldest, now);
            var due = drain || rows >= _options.MaxBatchSize || waited >= _options.MaxQueueDelay;
            if (!due)
            {
                var preferred = _options.PreferredBatchSizes.Where(p => p <= rows).DefaultIfEmpty(0).Max();
                if (preferred > 0)
                {
                    var exact = _pending.Select(head.Key, preferred, out var exactRows, out _);
                    if (exactRows == preferred)
                    {
                        selected = exact;
                        due = true;
                    }
                }
            }

            if (!due)
            {
                dueIn = _options.MaxQueueDelay - waited;
                return false;
            }
        }

        foreach (var r in selected)
        {
            _pending.Remove(r);
            if (r.TryTake())
            {
                Interlocked.Decrement(ref _queued);
                batch.Add(r);
            }
        }

        return true;
    }

    private bool TryTakeInstance(out int instance)
    {
        lock (_lanes)
        {
            return _lanes.TryTake(out instance);
        }
    }

    private void ReturnInstance(int instance)
    {
        lock (_lanes)
        {
            _lanes.Return(instance);
        }
    }

    /// <summary>Ends the loop if nothing executes any more; afterwards no request runs alone.</summary>
    private bool TryClose()
    {
        lock (_lanes)
        {
            if (Volatile.Read(ref _executing) == 0)
            {
                _closed = true;
            }

            return _closed;
        }
    }

    /// <summary>
    /// Runs <paramref name="request"/> on this thread when it would be sent alone at once anyway (see
    /// <see cref="BatcherOptions.RunAloneInline"/>): the only request queued, an instance idle, due without a delay.
    /// </summary>
    private bool TryRunAlone(QueuedRequest request)
    {
        if (!_options.RunAloneInline || (_options.MaxBatchSize > 0 && _options.MaxQueueDelay > TimeSpan.Zero && request.Rows < _options.MaxBatchSize && !_options.PreferredBatchSizes.Contains(request.Rows)))
        {
            return false;
        }

        int instance;
        lock (_lanes)
        {
            // _queued counts this request: 1 means nothing else waits, in the intake or the loop's queues, so running it
            // now overtakes no one (priorities and arrival order hold).
            if (_closed || _stopping || Volatile.Read(ref _queued) != 1 || !_lanes.TryTake(out instance))
            {
                return false;
            }

            Interlocked.Increment(ref _executing);
        }

        request.TryTake();
        Interlocked.Decrement(ref _queued);
        var id = Interlocked.Increment(ref _batchesLaunched);
        _ = ExecuteAsync(instance, [request], id, inline: true);
        return true;
    }

    private void Launch(int instance, List<QueuedRequest> batch)
    {
        Interlocked.Increment(ref _executing);
        var id = Interlocked.Increment(ref _batchesLaunched);
        _ = Task.Run(() => ExecuteAsync(instance, batch, id, inline: false));
    }

    private async Task ExecuteAsync(int instance, List<QueuedRequest> batch, long id, bool inline)
    {
        var start = _time.GetTimestamp();
        foreach (var r in batch)
        {
            r.Registration.Dispose();
        }

        try
        {
            var rows = batch.Sum(r => r.Rows);
            var parts = new BatchParts([.. batch.Select(r => r.Inputs)], rows, batch.Any(r => r.OutputTargets is not null) ? [.. batch.Select(r => r.OutputTargets)] : null);
            var outputs = await _execute(instance, parts, _abort.Token).ConfigureAwait(false);
            var compute = _time.GetElapsedTime(start);
            if (batch.Count == 1)
            {
                var r = batch[0];
                r.Completion.TrySetResult(new BatchedResult(outputs, _time.GetElapsedTime(r.Enqueued, start), compute, rows) { BatchId = id, Requests = 1 });
            }
            else
            {
                var split = Split(outputs, batch, rows, parts);
                for (var i = 0; i < batch.Count; i++)
                {
                    batch[i].Completion.TrySetResult(new BatchedResult(split[i], _time.GetElapsedTime(batch[i].Enqueued, start), compute, rows) { BatchId = id, Requests = batch.Count });
                }
            }
        }
        catch (Exception e)
        {
            foreach (var r in batch)
            {
                r.Completion.TrySetException(e);
            }
        }
        finally
        {
            ReturnInstance(instance);
            Interlocked.Decrement(ref _executing);

            // A request run alone left the loop asleep: wake it only when someone waits for this instance, or to stop.
            if (!inline || Volatile.Read(ref _queued) > 0 || _stopping)
            {
                Wake();
            }
        }
    }

    /// <summary>
    /// Cuts every output along axis 0 back into each request's rows; rows the execution delivered to the request's target
    /// (<see cref="BatchParts.IsDelivered"/>) are not copied: that request's output reads them back from there.
    /// </summary>
    internal static IReadOnlyList<Tensor>[] Split(IReadOnlyList<Tensor> outputs, IReadOnlyList<QueuedRequest> batch, int rows, BatchParts? parts = null)
    {
        var result = batch.Select(_ => new Tensor[outputs.Count]).ToArray();
        for (var o = 0; o < outputs.Count; o++)
        {
            var output = outputs[o];
            if (output.Shape.Length == 0 || output.Shape[0] != rows)
            {
                throw new BatchwiseException($"Output {o} has shape {Tensor.ShapeText(output.Shape)}, not {rows} rows along axis 0, so it cannot be split back to the requests of a batch", "Set max_batch_size 0 for this model: its outputs are not batched along the first axis.");
            }

            var offset = 0;
            for (var i = 0; i < batch.Count; i++)
            {
                var shape = (long[])output.Shape.Clone();
                shape[0] = batch[i].Rows;
                if (parts is not null && parts.IsDelivered(i, o) && output.ElementType != ElementType.String)
                {
                    var bytes = Tensor.ElementCountOf(shape) * output.ElementType.SizeOf();
                    var target = parts.OutputTargets![i]![o]!;
                    result[i][o] = new Tensor(output.ElementType, shape, target.Readback(bytes));
                    offset += (int)bytes;
                    continue;
                }

                var part = Tensor.Zeros(output.ElementType, shape);
                Buffer.BlockCopy(output.Data, offset, part.Data, 0, part.Data.Length);
                offset += part.Data.Length;
                result[i][o] = part;
            }

        }

        return result;
    }

    /// <summary>A request waiting in the queue. State: 0 queued, 1 taken into a batch, 2 dropped (cancelled or timed out).</summary>
    internal sealed class QueuedRequest(IReadOnlyList<Tensor> inputs, int rows, string key, int priority, long enqueued, long deadline)
    {
        private int _state;

        public IReadOnlyList<Tensor> Inputs { get; } = inputs;

        public int Rows { get; } = rows;

        public string Key { get; } = key;

        public int Priority { get; } = priority;

        public long Enqueued { get; } = enqueued;

        public long Deadline { get; } = deadline;

        public TaskCompletionSource<BatchedResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public CancellationTokenRegistration Registration { get; set; }

        /// <summary>Where its rows of each output go instead of a managed array (null: nowhere special).</summary>
        public IReadOnlyList<TensorTarget?>? OutputTargets { get; init; }

        /// <summary>Its place in its priority level's arrival order (the loop's; null once out of the queue).</summary>
        public LinkedListNode<QueuedRequest>? InArrivalOrder { get; set; }

        /// <summary>Its place among the requests of its shape key at its priority level (the loop's).</summary>
        public LinkedListNode<QueuedRequest>? InShapeQueue { get; set; }

        public bool IsQueued => Volatile.Read(ref _state) == 0;

        public bool IsDropped => Volatile.Read(ref _state) == 2;

        public bool TryTake() => Interlocked.CompareExchange(ref _state, 1, 0) == 0;

        public bool TryDrop() => Interlocked.CompareExchange(ref _state, 2, 0) == 0;
    }
}
