using Batchwise.Engines;
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

        // Triton's families, with its names, labels and units (cumulative microseconds), for the dashboards built on them.
        _success = f.CreateCounter("nv_inference_request_success", "Number of successful inference requests, all batch sizes", ModelLabels);
        _failure = f.CreateCounter("nv_inference_request_failure", "Number of failed inference requests, all batch sizes", [.. ModelLabels, "reason"]);
        _count = f.CreateCounter("nv_inference_count", "Number of inferences performed (does not include cached requests)", ModelLabels);
        _execCount = f.CreateCounter("nv_inference_exec_count", "Number of model executions performed (does not include cached requests)", ModelLabels);
        _requestUs = f.CreateCounter("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds (includes cached requests)", ModelLabels);
        _queueUs = f.CreateCounter("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds (includes cached requests)", ModelLabels);
        _inputUs = f.CreateCounter("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds (does not include cached requests)", ModelLabels);
        _inferUs = f.CreateCounter("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds (does not include cached requests)", ModelLabels);
        _outputUs = f.CreateCounter("nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in microseconds (does not include cached requests)", ModelLabels);
        Pending = f.CreateGauge("nv_inference_pending_request_count", "Instantaneous number of pending requests awaiting execution per-model.", ModelLabels);
        PlanBuilds = f.CreateCounter("batchwise_plan_builds_total", "Plans the engine built (one per input shape; engines that build plans, such as cuda).", ModelLabels);
        PlanBuildSeconds = f.CreateHistogram("batchwise_plan_build_seconds", "Time each plan build took.", new HistogramConfiguration { LabelNames = ModelLabels, Buckets = Histogram.ExponentialBuckets(0.001, 2, 14) });
    }

    /// <summary>Plans built, warm-up included.</summary>
    public Counter PlanBuilds { get; }

    /// <summary>Time per plan build.</summary>
    public Histogram PlanBuildSeconds { get; }

    private readonly Counter _success;
    private readonly Counter _failure;
    private readonly Counter _count;
    private readonly Counter _execCount;
    private readonly Counter _requestUs;
    private readonly Counter _queueUs;
    private readonly Counter _inputUs;
    private readonly Counter _inferUs;
    private readonly Counter _outputUs;

    private IGpuTelemetry? _gpus;
    private Gauge? _gpuUtilization;
    private Gauge? _gpuMemoryUsed;
    private Gauge? _gpuMemoryTotal;
    private Gauge? _gpuPower;
    private Gauge? _gpuPowerLimit;

    /// <summary>
    /// Adds Triton's GPU families (nv_gpu_utilization, nv_gpu_memory_used_bytes, nv_gpu_memory_total_bytes,
    /// nv_gpu_power_usage, nv_gpu_power_limit), sampled at each scrape; null (no GPU answers) adds none.
    /// </summary>
    public void AttachGpus(IGpuTelemetry? gpus)
    {
        if (gpus is null || Interlocked.CompareExchange(ref _gpus, gpus, null) is not null)
        {
            return;
        }

        var f = Metrics.WithCustomRegistry(Registry);
        string[] labels = ["gpu_uuid"];
        _gpuUtilization = f.CreateGauge("nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)", labels);
        _gpuMemoryUsed = f.CreateGauge("nv_gpu_memory_used_bytes", "GPU used memory, in bytes", labels);
        _gpuMemoryTotal = f.CreateGauge("nv_gpu_memory_total_bytes", "GPU total memory, in bytes", labels);
        _gpuPower = f.CreateGauge("nv_gpu_power_usage", "GPU power usage in watts", labels);
        _gpuPowerLimit = f.CreateGauge("nv_gpu_power_limit", "GPU power management limit in watts", labels);
        Registry.AddBeforeCollectCallback(SampleGpus);
    }

    private void SampleGpus()
    {
        IReadOnlyList<GpuSample> samples;
        try
        {
            samples = _gpus!.Sample();
        }
        catch (BatchwiseException)
        {
            // A GPU that stops answering (driver reset, device lost) leaves its last values rather than failing the scrape.
            return;
        }

        foreach (var s in samples)
        {
            _gpuUtilization!.WithLabels(s.Uuid).Set(s.Utilization);
            _gpuMemoryUsed!.WithLabels(s.Uuid).Set(s.MemoryUsedBytes);
            _gpuMemoryTotal!.WithLabels(s.Uuid).Set(s.MemoryTotalBytes);
            if (s.PowerWatts is { } w)
            {
                _gpuPower!.WithLabels(s.Uuid).Set(w);
            }

            if (s.PowerLimitWatts is { } limit)
            {
                _gpuPowerLimit!.WithLabels(s.Uuid).Set(limit);
            }
        }
    }

    /// <summary>Requests queued and not yet executing (Triton's pending request count).</summary>
    public Gauge Pending { get; }

    /// <summary>Records a successful request in Triton's families (durations in nanoseconds).</summary>
    public void RecordSuccess(string model, string version, long totalNs, long queueNs, long inputNs, long inferNs, long outputNs, long inferences)
    {
        _success.WithLabels(model, version).Inc();
        _count.WithLabels(model, version).Inc(inferences);
        _requestUs.WithLabels(model, version).Inc(totalNs / 1000.0);
        _queueUs.WithLabels(model, version).Inc(queueNs / 1000.0);
        _inputUs.WithLabels(model, version).Inc(inputNs / 1000.0);
        _inferUs.WithLabels(model, version).Inc(inferNs / 1000.0);
        _outputUs.WithLabels(model, version).Inc(outputNs / 1000.0);
    }

    /// <summary>Records a failed request in Triton's families; our reasons map to Triton's REJECTED, CANCELED, BACKEND, OTHER.</summary>
    public void RecordFailure(string model, string version, long totalNs, string reason)
    {
        var triton = reason switch
        {
            "queue_full" or "timeout" or "shutting_down" or "unavailable" => "REJECTED",
            "cancelled" => "CANCELED",
            "internal" => "BACKEND",
            _ => "OTHER",
        };
        _failure.WithLabels(model, version, triton).Inc();
        _requestUs.WithLabels(model, version).Inc(totalNs / 1000.0);
    }

    /// <summary>Records one model execution.</summary>
    public void RecordExecution(string model, string version) => _execCount.WithLabels(model, version).Inc();

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
