namespace Batchwise.Batching;

/// <summary>Why a request never reached an execution.</summary>
public enum RejectionReason
{
    /// <summary>The queue held <see cref="BatcherOptions.MaxQueueSize"/> requests already.</summary>
    QueueFull,

    /// <summary>The request waited longer than its timeout.</summary>
    Timeout,

    /// <summary>The batcher is stopping and takes no new work.</summary>
    ShuttingDown,
}

/// <summary>A request the batcher turned away: the queue was full, it timed out, or the batcher is stopping.</summary>
public sealed class BatchRejectedException : BatchwiseException
{
    /// <summary>Creates a rejection.</summary>
    public BatchRejectedException(RejectionReason reason, string message, string? hint = null)
        : base(message, hint)
    {
        Reason = reason;
    }

    /// <summary>Why.</summary>
    public RejectionReason Reason { get; }
}
