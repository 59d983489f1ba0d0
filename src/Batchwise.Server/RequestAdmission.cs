using System.Globalization;
using Grpc.Core;

namespace Batchwise.Server;

/// <summary>
/// The door every inference request passes, over HTTP and gRPC alike: it counts the requests accepted and not yet
/// answered (so a stop can drain them), refuses new ones while the server stops, and charges each request's memory
/// (body or message, parsed index, decoded tensors) against the server-wide budget <c>--max-queue-bytes</c> before
/// anything of that size is allocated.
/// </summary>
public sealed class RequestAdmission
{
    private readonly object _gate = new();
    private long _heldBytes;
    private int _inFlight;
    private long _accepted;
    private bool _draining;
    private long _lastRefusal;
    private TaskCompletionSource? _idle;

    /// <summary>Creates the admission with the server's limits.</summary>
    public RequestAdmission(long maxRequestBytes, long maxQueueBytes)
    {
        // One request's tensor is one .NET array; the server-wide budget may be far larger.
        CheckLimit("--max-request-bytes", maxRequestBytes, Array.MaxLength, "below 2 GiB");
        CheckLimit("--max-queue-bytes", maxQueueBytes, 1L << 50, "up to 2^50");
        MaxRequestBytes = maxRequestBytes;
        MaxQueueBytes = maxQueueBytes;
    }

    /// <summary>The most bytes one request's decoded input tensors may take.</summary>
    public long MaxRequestBytes { get; }

    /// <summary>The most bytes all accepted, unanswered requests may hold together.</summary>
    public long MaxQueueBytes { get; }

    /// <summary>Bytes charged to requests in progress now.</summary>
    public long HeldBytes => Interlocked.Read(ref _heldBytes);

    /// <summary>Requests accepted and not yet answered.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Requests accepted since the server started.</summary>
    public long Accepted => Interlocked.Read(ref _accepted);

    /// <summary>True once a stop has begun: new requests are refused.</summary>
    public bool IsDraining => Volatile.Read(ref _draining);

    /// <summary>Accepts a request, or refuses it with 503 / UNAVAILABLE while the server stops.</summary>
    public Lease Admit()
    {
        lock (_gate)
        {
            if (_draining)
            {
                _lastRefusal = System.Diagnostics.Stopwatch.GetTimestamp();
                throw new InferenceError(503, StatusCode.Unavailable, "The server is stopping and accepts no new requests; retry against another replica") { RetryAfterSeconds = 1 };
            }

            _inFlight++;
            _accepted++;
        }

        return new Lease(this);
    }

    /// <summary>Refuses every request from now on (the requests already accepted still finish).</summary>
    public void BeginDrain()
    {
        lock (_gate)
        {
            _draining = true;
        }
    }

    /// <summary>How long since a request was last refused for the stop (<see cref="TimeSpan.MaxValue"/> if none was).</summary>
    public TimeSpan SinceLastRefusal
    {
        get
        {
            lock (_gate)
            {
                return _lastRefusal == 0 ? TimeSpan.MaxValue : System.Diagnostics.Stopwatch.GetElapsedTime(_lastRefusal);
            }
        }
    }

    /// <summary>Completes when no accepted request is left unanswered.</summary>
    public Task WhenIdleAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (_inFlight == 0)
            {
                return Task.CompletedTask;
            }

            _idle ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _idle.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Checks a request's decoded input tensors against <see cref="MaxRequestBytes"/>: 413 / RESOURCE_EXHAUSTED when over.</summary>
    public void CheckRequestBytes(long bytes)
    {
        if (bytes > MaxRequestBytes)
        {
            throw new InferenceError(413, StatusCode.ResourceExhausted, $"The request's input tensors take {Bytes(bytes)}; this server takes at most {Bytes(MaxRequestBytes)} per request (--max-request-bytes); send smaller batches or raise --max-request-bytes");
        }
    }

    private void Release(long bytes)
    {
        Interlocked.Add(ref _heldBytes, -bytes);
        TaskCompletionSource? idle = null;
        lock (_gate)
        {
            if (--_inFlight == 0)
            {
                idle = _idle;
                _idle = null;
            }
        }

        idle?.TrySetResult();
    }

    private void Charge(long bytes)
    {
        if (bytes > MaxQueueBytes)
        {
            throw new InferenceError(413, StatusCode.ResourceExhausted, $"The request needs {Bytes(bytes)} of server memory; this server holds at most {Bytes(MaxQueueBytes)} for all requests together (--max-queue-bytes); send smaller batches or raise --max-queue-bytes");
        }

        while (true)
        {
            var held = Interlocked.Read(ref _heldBytes);
            if (held + bytes > MaxQueueBytes)
            {
                throw new InferenceError(503, StatusCode.ResourceExhausted, $"The server holds {Bytes(held)} for requests in progress and this one needs {Bytes(bytes)} more, over its limit of {Bytes(MaxQueueBytes)} (--max-queue-bytes); retry later or raise --max-queue-bytes") { RetryAfterSeconds = 1 };
            }

            if (Interlocked.CompareExchange(ref _heldBytes, held + bytes, held) == held)
            {
                return;
            }
        }
    }

    internal static string Bytes(long bytes) => bytes < 10_000
        ? bytes.ToString(CultureInfo.InvariantCulture) + " bytes"
        : bytes.ToString("N0", CultureInfo.InvariantCulture) + " bytes";

    private static void CheckLimit(string flag, long value, long max, string range)
    {
        if (value < 1 || value > max)
        {
            throw new BatchwiseException($"{flag} {value} is outside 1..{max}", $"Give {flag} a positive number of bytes {range}.");
        }
    }

    /// <summary>One accepted request: the memory charged to it, returned (and the request counted as answered) on dispose.</summary>
    public sealed class Lease : IDisposable
    {
        private readonly RequestAdmission _owner;
        private long _bytes;
        private int _disposed;

        internal Lease(RequestAdmission owner) => _owner = owner;

        /// <summary>The admission that granted it.</summary>
        public RequestAdmission Admission => _owner;

        /// <summary>Bytes charged so far.</summary>
        public long Bytes => Interlocked.Read(ref _bytes);

        /// <summary>Charges <paramref name="bytes"/> more against the server's budget, before they are allocated; refuses with 413 / 503 / RESOURCE_EXHAUSTED.</summary>
        public void Charge(long bytes)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(bytes);
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            _owner.Charge(bytes);
            Interlocked.Add(ref _bytes, bytes);
        }

        /// <inheritdoc/>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                _owner.Release(Interlocked.Read(ref _bytes));
            }
        }
    }
}
