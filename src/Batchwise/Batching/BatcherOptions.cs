namespace Batchwise.Batching;

/// <summary>How a <see cref="DynamicBatcher"/> gathers requests into batches (Triton's dynamic_batching settings).</summary>
public sealed record BatcherOptions
{
    /// <summary>Largest merged batch; 0 means the model has no batch axis and every request runs alone.</summary>
    public int MaxBatchSize { get; init; } = 8;

    /// <summary>How long the oldest queued request may wait for others before its batch is sent anyway.</summary>
    public TimeSpan MaxQueueDelay { get; init; }

    /// <summary>Batch sizes worth sending at once, without waiting for the delay (empty: only a full batch is).</summary>
    public IReadOnlyList<int> PreferredBatchSizes { get; init; } = [];

    /// <summary>Number of priority levels; level 1 is served first.</summary>
    public int PriorityLevels { get; init; } = 1;

    /// <summary>The level of a request that names none (1..<see cref="PriorityLevels"/>); 0 picks the middle level.</summary>
    public int DefaultPriorityLevel { get; init; }

    /// <summary>How long a request may stay queued when it names no timeout; null waits for ever.</summary>
    public TimeSpan? DefaultTimeout { get; init; }

    /// <summary>Most requests queued (not yet executing); beyond it new requests are rejected.</summary>
    public int MaxQueueSize { get; init; } = 1024;

    /// <summary>Model instances; each runs <see cref="PipelineDepth"/> executions at most at once.</summary>
    public int InstanceCount { get; init; } = 1;

    /// <summary>
    /// Batches one instance may have in flight at once (1: one at a time). Above 1 an engine that queues work on a
    /// stream stages and enqueues the next batch while the last one still runs, so the device never waits for the host
    /// between batches; an idle instance still gets a batch before a busy one gets a second.
    /// </summary>
    public int PipelineDepth { get; init; } = 1;

    /// <summary>
    /// Run a request on the submitting thread when it would be sent alone at once: nothing else is queued, an instance is
    /// idle and the batch is due without waiting (no queue delay, or no batching). It skips the loop's wake-up and the
    /// thread-pool hop of the execution (the c=1 latency); <see cref="DynamicBatcher.SubmitAsync(IReadOnlyList{Engines.Tensor}, int, TimeSpan?, CancellationToken)"/> then returns once the
    /// execution has run or yielded. Off by default: a caller must accept that the engine may run on its thread.
    /// </summary>
    public bool RunAloneInline { get; init; }

    /// <summary>The default level resolved: <see cref="DefaultPriorityLevel"/>, or the middle level.</summary>
    public int ResolvedDefaultPriority => DefaultPriorityLevel > 0 ? DefaultPriorityLevel : (Math.Max(1, PriorityLevels) + 1) / 2;

    /// <summary>Throws a <see cref="BatchwiseException"/> naming the first inconsistent setting.</summary>
    public void Validate()
    {
        if (MaxBatchSize < 0)
        {
            throw new BatchwiseException($"max_batch_size is {MaxBatchSize}", "Use 0 (no batching) or a positive size.");
        }

        if (MaxQueueDelay < TimeSpan.Zero)
        {
            throw new BatchwiseException("max_queue_delay_microseconds is negative", "Use 0 or more microseconds.");
        }

        foreach (var p in PreferredBatchSizes)
        {
            if (p < 1 || (MaxBatchSize > 0 && p > MaxBatchSize))
            {
                throw new BatchwiseException($"preferred_batch_size {p} is outside 1..max_batch_size ({MaxBatchSize})", "List sizes no larger than max_batch_size.");
            }
        }

        if (PriorityLevels < 1)
        {
            throw new BatchwiseException($"priority_levels is {PriorityLevels}", "Use 1 or more levels.");
        }

        if (DefaultPriorityLevel < 0 || DefaultPriorityLevel > PriorityLevels)
        {
            throw new BatchwiseException($"default_priority_level {DefaultPriorityLevel} is outside 1..priority_levels ({PriorityLevels})", "Pick a level between 1 (highest) and priority_levels.");
        }

        if (MaxQueueSize < 1)
        {
            throw new BatchwiseException($"max_queue_size is {MaxQueueSize}", "Use a positive bound; the queue is always bounded.");
        }

        if (InstanceCount < 1)
        {
            throw new BatchwiseException($"instance_count is {InstanceCount}", "Use 1 or more instances.");
        }

        if (PipelineDepth < 1)
        {
            throw new BatchwiseException($"pipeline_depth is {PipelineDepth}", "Use 1 (one batch per instance at a time) or more.");
        }
    }
}
