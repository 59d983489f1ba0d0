using Prometheus;

namespace Batchwise.Server;

/// <summary>The server's Prometheus metrics, per model and version, in a registry of their own (one per server).</summary>
public sealed class ServerMetrics
{
    private static readonly string[] ModelLabels = ["model", "version"];

    /// <summary>Creates the metrics in a fresh registry.</summary>
    public ServerMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        var f = Metrics.WithCustomRegistry(Registry);
        Requests = f.CreateCounter("batchwise_inference_requests_total", "Inference requests received.", ModelLabels);
        Failures = f.CreateCounter("batchwise_inference_failures_total", "Inference requests that failed, by reason (invalid, queue_full, timeout, cancelled, shutting_down, internal).", [.. ModelLabels, "reason"]);
        var seconds = Histogram.ExponentialBuckets(0.0001, 2, 18);
        QueueSeconds = f.CreateHistogram("batchwise_inference_queue_seconds", "Time a request waited in the batcher's queue.", new HistogramConfiguration { LabelNames = ModelLabels, Buckets = seconds });
        ComputeSeconds = f.CreateHistogram("batchwise_inference_compute_seconds", "Time one batch execution took on the engine.", new HistogramConfiguration { LabelNames = ModelLabels, Buckets = seconds });
        RequestSeconds = f.CreateHistogram("batchwise_inference_request_seconds", "Time from a valid request's arrival at the model to its outputs.", new HistogramConfiguration { LabelNames = ModelLabels, Buckets = seconds });
        BatchSize = f.CreateHistogram("batchwise_inference_batch_size", "Rows in each executed batch.", new HistogramConfiguration { LabelNames = ModelLabels, Buckets = [1, 2, 4, 8, 16, 32, 64, 128, 256] });
        InFlight = f.CreateGauge("batchwise_inference_executions_in_flight", "Batch executions running now.", ModelLabels);
        QueueLength = f.CreateGauge("batchwise_inference_queue_length", "Requests waiting in the batcher's queue.", ModelLabels);
        PlanBuilds = f.CreateCounter("batchwise_plan_builds_total", "Plans the engine built (one per input shape; engines that build plans, such as cuda).", ModelLabels);
        PlanBuildSeconds = f.CreateHistogram("batchwise_plan_build_seconds", "Time each plan build took.", new HistogramConfiguration { LabelNames = ModelLabels, Buckets = Histogram.ExponentialBuckets(0.001, 2, 14) });
    }

    /// <summary>Plans built, warm-up included.</summary>
    public Counter PlanBuilds { get; }

    /// <summary>Time per plan build.</summary>
    public Histogram PlanBuildSeconds { get; }

    /// <summary>The registry served at /metrics.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>Requests received.</summary>
    public Counter Requests { get; }

    /// <summary>Failed requests by reason.</summary>
    public Counter Failures { get; }

    /// <summary>Queue time per request.</summary>
    public Histogram QueueSeconds { get; }

    /// <summary>Compute time per batch.</summary>
    public Histogram ComputeSeconds { get; }

    /// <summary>End-to-end time per request at the model.</summary>
    public Histogram RequestSeconds { get; }

    /// <summary>Executed batch sizes.</summary>
    public Histogram BatchSize { get; }

    /// <summary>Executions in flight.</summary>
    public Gauge InFlight { get; }

    /// <summary>Queue length.</summary>
    public Gauge QueueLength { get; }
}
