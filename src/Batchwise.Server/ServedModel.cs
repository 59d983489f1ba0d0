using System.Diagnostics;
using Batchwise.Batching;
using Batchwise.Engines;
using Batchwise.Onnx;
using Grpc.Core;

namespace Batchwise.Server;

/// <summary>A named input tensor of a request, as a protocol front end decoded it.</summary>
public sealed record NamedTensor(string Name, Tensor Tensor);

/// <summary>One model being served: its engine sessions (one per instance) behind a dynamic batcher.</summary>
public sealed class ServedModel : IAsyncDisposable
{
    private readonly IEngineSession[] _sessions;
    private readonly DynamicBatcher _batcher;
    private readonly ServerMetrics _metrics;
    private readonly Dictionary<string, int> _inputIndex;
    private readonly Dictionary<string, int> _outputIndex;
    private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _gaugeLock = new();

    // Per instance: when its latest staged run completed (Stopwatch ticks); a batch queued behind another on the same
    // stream (pipeline_depth) counts its compute from then, not from when it was staged.
    private readonly long[] _stagedRunDone;

    // Merged batches of this model (their own pool: their many sizes must not crowd the requests' buffers out of the shared one).
    private readonly TensorBufferPool _mergedBuffers = new(MergedBuffersRetained);
    private const int Retired = 1 << 30;
    private int _leases;

    private ServedModel(string name, ModelConfig config, int maxBatchSize, string engine, IEngineSession[] sessions, ServerMetrics metrics, TimeProvider time)
    {
        Name = name;
        Config = config;
        MaxBatchSize = maxBatchSize;
        Engine = engine;
        _sessions = sessions;
        _stagedRunDone = new long[sessions.Length];
        _metrics = metrics;
        Inputs = sessions[0].Inputs;
        Outputs = sessions[0].Outputs;
        _inputIndex = Inputs.Select((s, i) => (s.Name, i)).ToDictionary(p => p.Name, p => p.i, StringComparer.Ordinal);
        _outputIndex = Outputs.Select((s, i) => (s.Name, i)).ToDictionary(p => p.Name, p => p.i, StringComparer.Ordinal);
        Batcher = config.ToBatcherOptions(maxBatchSize);
        if (Inputs.Concat(Outputs).Any(s => s.ElementType == ElementType.String))
        {
            // BYTES elements have no fixed size, so requests cannot be merged row for row: each runs alone.
            Batcher = Batcher with { MaxBatchSize = 0, PreferredBatchSizes = [] };
        }

        Statistics = new ModelStatistics(name, config.Version, metrics);
        // A request alone at an idle instance runs on its own thread (no wake-up of the loop, no hop to the pool).
        _batcher = new DynamicBatcher(Batcher with { RunAloneInline = true }, (BatchPartsExecution)ExecuteAsync, time);
    }

    /// <summary>
    /// True when the engine stages its own inputs (cuda): a request's inputs in shared memory are then handed to it in
    /// place (<see cref="TensorSource"/>) and copied once, by the engine, from the region to its input; elsewhere they
    /// are read out into the request's buffer when the request is decoded.
    /// </summary>
    internal bool TakesInputSources => _sessions[0] is IStagedExecution;

    /// <summary>The engine's way to page-lock a client's host memory (cuda), or null.</summary>
    internal IHostMemoryRegistration? HostRegistration => _sessions[0] as IHostMemoryRegistration;

    /// <summary>The server log (null: none).</summary>
    internal Action<string>? Log { get; private init; }

    /// <summary>Cumulative statistics of this loaded version (Triton's statistics extension).</summary>
    public ModelStatistics Statistics { get; }

    /// <summary>Most bytes of merged-batch arrays a model keeps idle for reuse.</summary>
    internal const long MergedBuffersRetained = 128L << 20;

    /// <summary>The labels file looked for in a model folder when the config names none (Triton's usual name).</summary>
    public const string DefaultLabelFile = "labels.txt";

    /// <summary>The repository folder the model was loaded from (null for a single model).</summary>
    public string? Folder { get; private init; }

    /// <summary>The name clients use.</summary>
    public string Name { get; }

    /// <summary>The served version.</summary>
    public string Version => Config.Version;

    /// <summary>The serving settings.</summary>
    public ModelConfig Config { get; }

    /// <summary>The batcher settings in force.</summary>
    public BatcherOptions Batcher { get; }

    /// <summary>Largest batch a request may carry (0: the model has no batch axis).</summary>
    public int MaxBatchSize { get; }

    /// <summary>The engine that runs the model.</summary>
    public string Engine { get; }

    /// <summary>Platform string reported in metadata: Triton's name for ONNX models whatever engine runs them (the engine is in the config's parameters).</summary>
    public string Platform => TritonModelConfig.Platform;

    /// <summary>Model inputs.</summary>
    public IReadOnlyList<TensorSpec> Inputs { get; }

    /// <summary>Model outputs.</summary>
    public IReadOnlyList<TensorSpec> Outputs { get; }

    /// <summary>True once loaded and until the server starts to stop.</summary>
    public bool IsReady { get; private set; } = true;

    /// <summary>Requests queued now.</summary>
    public int QueueLength => _batcher.QueueLength;

    /// <summary>
    /// Loads the model on its engine, one session per instance, and warms each up: on an engine that builds plans, the
    /// plan of every batch profile is built (and run once) before this returns, so no request waits on a build; plan
    /// builds are counted in the metrics and logged through <paramref name="log"/>. <paramref name="folder"/> is its
    /// repository folder, if any.
    /// </summary>
    public static ServedModel Load(string name, OnnxModel model, ModelConfig config, ServerMetrics metrics, TimeProvider? time = null, string? folder = null, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        config.Validate($"Model '{name}'");
        var axis = model.FindBatchAxis();
        var maxBatch = config.MaxBatchSize ?? (axis.IsBatchable ? 32 : 0);
        if (maxBatch > 0 && !axis.IsBatchable)
        {
            throw new BatchwiseException($"Model '{name}' cannot be batched: {axis.Reason}", "Set max_batch_size 0 in its config.json, or re-export it with a dynamic first dimension.");
        }

        var engine = EngineRegistry.Create(config.Engine);
        var options = Transforms.CalibratedInt8.OptionsFor(config.ToEngineOptions(maxBatch, folder), model);
        if (config.Calibration is not null && !config.Calibration.StartsWith("random:", StringComparison.OrdinalIgnoreCase) && !Directory.Exists(options.Calibration.Data))
        {
            throw new BatchwiseException($"Model '{name}': calibration folder '{options.Calibration.Data}' not found", "Put the .npy calibration samples in that folder (relative to the model folder), or set \"calibration\": \"random:N\".");
        }

        var instances = Math.Max(1, config.InstanceCount);
        options = options with { IntraOpThreads = ModelConfig.ServedIntraOpThreads(engine.Name, options.IntraOpThreads, instances, Environment.ProcessorCount) };
        if (engine.Name == "ort")
        {
            log?.Invoke(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{name}: {instances} instance(s) x {options.IntraOpThreads} intra-op thread(s) on {Environment.ProcessorCount} cores{(config.IntraOpThreads > 0 ? " (intra_op_threads)" : " (cores / instances; set intra_op_threads to choose)")}, spinning {(options.IntraOpSpinning ? "on (intra_op_spinning)" : "off")}"));
        }

        config.ToBatcherOptions(maxBatch);
        var sessions = new IEngineSession[instances];
        var version = config.Version;
        try
        {
            for (var i = 0; i < sessions.Length; i++)
            {
                sessions[i] = engine.Load(model, options);
                if (sessions[i] is IPlanBuilds plans)
                {
                    var instance = i;
                    plans.PlanBuilt += b =>
                    {
                        metrics.PlanBuilds.WithLabels(name, version).Inc();
                        metrics.PlanBuildSeconds.WithLabels(name, version).Observe(b.Seconds);
                        log?.Invoke(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{name} instance {instance}: plan built for {b.Shapes} in {b.Seconds * 1000:F1} ms ({b.KernelsCompiled} kernels compiled, {b.Steps} steps)"));
                    };
                    plans.BackgroundBuildFailed += (shapes, e) =>
                        log?.Invoke($"{name} instance {instance}: the exact plan for {shapes} failed to build in the background ({e.Message}); those batches go on running padded");
                }

                WarmUp(sessions[i], maxBatch, line => log?.Invoke($"{name} instance {i}: {line}"));
            }
        }
        catch
        {
            foreach (var s in sessions)
            {
                s?.Dispose();
            }

            throw;
        }

        var labelFile = config.LabelFilename ?? (folder is not null && File.Exists(Path.Combine(folder, DefaultLabelFile)) ? DefaultLabelFile : null);
        IReadOnlyList<string>? labels = null;
        if (labelFile is not null)
        {
            var path = folder is null ? labelFile : Path.Combine(folder, labelFile);
            if (!File.Exists(path))
            {
                foreach (var s in sessions)
                {
                    s.Dispose();
                }

                throw new BatchwiseException($"Model '{name}': label_filename '{labelFile}' not found{(folder is null ? string.Empty : $" in '{folder}'")}", "Put the labels file (one label per line) in the model folder, or drop label_filename.");
            }

            labels = Classification.ReadLabels(path);
        }

        return new ServedModel(name, config, maxBatch, engine.Name, sessions, metrics, time ?? TimeProvider.System) { Folder = folder, Labels = labels, LabelFile = labelFile, Log = log };
    }

    /// <summary>Shape as the protocol reports it: dynamic dimensions are -1.</summary>
    public static long[] ProtocolShape(TensorSpec spec) => spec.Shape.Select(d => d.Value ?? -1).ToArray();

    /// <summary>Checks a version string: empty means the served one.</summary>
    public void CheckVersion(string? version)
    {
        if (!string.IsNullOrEmpty(version) && version != Version)
        {
            throw InferenceError.NotFound($"Model '{Name}' has no version '{version}'; it serves version {Version}");
        }
    }

    /// <summary>Class labels from the model folder's labels file (line i names class i), or null.</summary>
    public IReadOnlyList<string>? Labels { get; private init; }

    /// <summary>The labels file's name in the model folder, or null.</summary>
    public string? LabelFile { get; private init; }

    /// <summary>An output as the client asked for it: the tensor itself, or its top <paramref name="classCount"/> classes (classification extension).</summary>
    public Tensor Present(IReadOnlyList<Tensor> outputs, int index, int classCount) =>
        classCount > 0 ? Classification.TopK(Outputs[index].Name, outputs[index], classCount, MaxBatchSize > 0, Labels) : outputs[index];

    /// <summary>The position of a named output, or a 400 naming the outputs there are.</summary>
    public int OutputIndex(string name) =>
        _outputIndex.TryGetValue(name, out var i) ? i : throw InferenceError.BadRequest($"Model '{Name}' has no output '{name}'; its outputs are {string.Join(", ", Outputs.Select(o => o.Name))}");

    /// <summary>
    /// Validates the inputs against the model, queues them and returns the outputs in model order. An output with a
    /// target in <paramref name="outputTargets"/> (model order; shared memory the caller holds until it answers) is
    /// written there by the engine where it can, from its own output memory: that output's tensor then reads its bytes
    /// back from the target (its <see cref="TensorSource.DeliveredTo"/> is the target); otherwise the caller copies it.
    /// </summary>
    public async Task<IReadOnlyList<Tensor>> InferAsync(IReadOnlyList<NamedTensor> inputs, int priority, TimeSpan? timeout, CancellationToken cancellationToken, RequestTimer? timer = null, IReadOnlyList<TensorTarget?>? outputTargets = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        timer?.InputsDecoded();
        _metrics.Requests.WithLabels(Name, Version).Inc();
        var start = Stopwatch.GetTimestamp();
        try
        {
            var ordered = Order(inputs);
            if (priority < 0 || priority > Batcher.PriorityLevels)
            {
                throw InferenceError.BadRequest($"Priority {priority} is outside 1..{Batcher.PriorityLevels} for model '{Name}'");
            }

            Task<BatchedResult> pending;
            try
            {
                pending = _batcher.SubmitAsync(ordered, outputTargets is not null && outputTargets.Any(t => t is not null) ? outputTargets : null, priority, timeout, cancellationToken);
            }
            catch (BatchwiseException e) when (e is not BatchRejectedException)
            {
                // The batcher's own checks (inputs that disagree on the batch size, a scalar input) are the request's fault.
                throw InferenceError.BadRequest(e.OneLine);
            }
            finally
            {
                SetQueueGauges();
            }

            var result = await pending.ConfigureAwait(false);
            var rows = MaxBatchSize > 0 ? ordered[0].Shape[0] : 1;
            timer?.Computed(result, rows, Batcher.MaxBatchSize > 0 ? result.BatchSize : (int)rows);
            _metrics.QueueSeconds.WithLabels(Name, Version).Observe(result.QueueTime.TotalSeconds);
            _metrics.RequestSeconds.WithLabels(Name, Version).Observe(Stopwatch.GetElapsedTime(start).TotalSeconds);
            return result.Outputs;
        }
        catch (Exception e)
        {
            var (error, reason) = Classify(e, cancellationToken);
            _metrics.Failures.WithLabels(Name, Version, reason).Inc();
            timer?.Failed(reason);
            if (error is null)
            {
                throw;
            }

            throw error;
        }
    }

    /// <summary>Marks the model not ready (the server is stopping).</summary>
    internal void MarkStopping() => IsReady = false;

    /// <summary>Takes a lease for one request; false once the model is retired (unloaded or replaced).</summary>
    internal bool TryAcquire()
    {
        while (true)
        {
            var leases = Volatile.Read(ref _leases);
            if ((leases & Retired) != 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _leases, leases + 1, leases) == leases)
            {
                return true;
            }
        }
    }

    /// <summary>Returns a lease taken with <see cref="TryAcquire"/>.</summary>
    internal void Release()
    {
        if (Interlocked.Decrement(ref _leases) == Retired)
        {
            _released.TrySetResult();
        }
    }

    /// <summary>Takes no new requests, lets every request holding a lease finish on this version, then releases the sessions.</summary>
    internal async Task RetireAsync()
    {
        if ((Interlocked.Add(ref _leases, Retired) & ~Retired) == 0)
        {
            _released.TrySetResult();
        }

        IsReady = false;
        await _released.Task.ConfigureAwait(false);
        await DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Sends what is queued, waits for executions, and releases the sessions.</summary>
    public async ValueTask DisposeAsync()
    {
        IsReady = false;
        await _batcher.DisposeAsync().ConfigureAwait(false);
        foreach (var s in _sessions)
        {
            s.Dispose();
        }
    }

    private static (InferenceError? Error, string Reason) Classify(Exception e, CancellationToken cancellationToken) => e switch
    {
        InferenceError ie => (null, ie.HttpStatus == 400 ? "invalid" : "rejected"),
        BatchRejectedException { Reason: RejectionReason.QueueFull } r => (new InferenceError(503, StatusCode.Unavailable, r.OneLine, r) { RetryAfterSeconds = 1 }, "queue_full"),
        BatchRejectedException { Reason: RejectionReason.ShuttingDown } r => (new InferenceError(503, StatusCode.Unavailable, r.OneLine, r) { RetryAfterSeconds = 1 }, "shutting_down"),
        BatchRejectedException { Reason: RejectionReason.Timeout } r => (new InferenceError(504, StatusCode.DeadlineExceeded, r.OneLine, r), "timeout"),
        OperationCanceledException when cancellationToken.IsCancellationRequested => (null, "cancelled"),
        BatchwiseException b => (new InferenceError(500, StatusCode.Internal, b.OneLine, b), "internal"),
        _ => (new InferenceError(500, StatusCode.Internal, $"{e.GetType().Name}: {e.Message}", e), "internal"),
    };

    private static void WarmUp(IEngineSession session, int maxBatch, Action<string> log)
    {
        if (session is IPlanBuilds plans && session.Inputs.All(i => i.ElementType is not (ElementType.String or ElementType.Undefined)))
        {
            try
            {
                _ = plans.WarmUpShapes;
            }
            catch (BatchwiseException e)
            {
                // A dimension with no profile: no plan can be built ahead; the first request of each shape will build its own.
                log($"no plans built ahead: {e.OneLine}");
                return;
            }

            plans.WarmUp(shapes => [.. session.Inputs.Select((spec, k) => Tensor.Zeros(spec.ElementType, shapes[k]))], new LogProgress(log));
            return;
        }

        // One run at batch 1 so the first request does not pay for lazy initialisation; skipped when a
        // non-batch dimension is dynamic (no shape to warm up with).
        if (WarmUpInputs(session, maxBatch > 0 ? 1 : -1) is { } tensors)
        {
            session.Run(tensors);
        }
    }

    /// <summary>Zero inputs with <paramref name="batch"/> rows (-1: the model has no batch axis), or null when a non-batch dimension is dynamic.</summary>
    private static Tensor[]? WarmUpInputs(IEngineSession session, int batch)
    {
        var tensors = new List<Tensor>();
        foreach (var spec in session.Inputs)
        {
            var dims = spec.Shape.Select((d, i) => d.Value ?? (i == 0 && batch > 0 ? batch : -1)).ToArray();
            if (dims.Any(d => d < 0) || spec.ElementType is ElementType.String or ElementType.Undefined)
            {
                return null;
            }

            tensors.Add(Tensor.Zeros(spec.ElementType, dims));
        }

        return [.. tensors];
    }

    /// <summary>Warm-up progress lines to the server's log.</summary>
    private sealed class LogProgress(Action<string> log) : IProgress<string>
    {
        public void Report(string value) => log(value);
    }

    private Tensor[] Order(IReadOnlyList<NamedTensor> inputs)
    {
        var ordered = new Tensor[Inputs.Count];
        foreach (var input in inputs)
        {
            if (!_inputIndex.TryGetValue(input.Name, out var i))
            {
                throw InferenceError.BadRequest($"Model '{Name}' has no input '{input.Name}'; its inputs are {string.Join(", ", Inputs)}");
            }

            if (ordered[i] is not null)
            {
                throw InferenceError.BadRequest($"Input '{input.Name}' is given twice");
            }

            Check(Inputs[i], input.Tensor.ElementType, input.Tensor.Shape);
            ordered[i] = input.Tensor;
        }

        for (var i = 0; i < ordered.Length; i++)
        {
            if (ordered[i] is null)
            {
                throw InferenceError.BadRequest($"Input '{Inputs[i].Name}' is missing; model '{Name}' takes {string.Join(", ", Inputs)}");
            }
        }

        return ordered;
    }

    /// <summary>Checks an input's name, datatype and shape before its data is decoded; throws a 400 naming the problem.</summary>
    public void CheckInput(string name, ElementType type, long[] shape)
    {
        if (!_inputIndex.TryGetValue(name, out var i))
        {
            throw InferenceError.BadRequest($"Model '{Name}' has no input '{name}'; its inputs are {string.Join(", ", Inputs)}");
        }

        Check(Inputs[i], type, shape);
    }

    private void Check(TensorSpec spec, ElementType type, long[] shape)
    {
        if (type != spec.ElementType)
        {
            throw InferenceError.BadRequest($"Input '{spec.Name}' has datatype {type.ProtocolName()}; model '{Name}' expects {spec.ElementType.ProtocolName()}");
        }

        var expected = "[" + string.Join(", ", ProtocolShape(spec)) + "]";
        if (shape.Length != spec.Shape.Count)
        {
            throw InferenceError.BadRequest($"Input '{spec.Name}' has shape {Tensor.ShapeText(shape)}; model '{Name}' expects {expected} (-1: any size)");
        }

        for (var d = 0; d < shape.Length; d++)
        {
            var want = spec.Shape[d].Value;
            if (shape[d] < 0 || (want is { } w && shape[d] != w))
            {
                throw InferenceError.BadRequest($"Input '{spec.Name}' has shape {Tensor.ShapeText(shape)}; model '{Name}' expects {expected} (-1: any size)");
            }
        }

        if (MaxBatchSize > 0 && (shape[0] < 1 || shape[0] > MaxBatchSize))
        {
            throw InferenceError.BadRequest($"Input '{spec.Name}' has batch size {shape[0]}; model '{Name}' takes 1 to {MaxBatchSize} (max_batch_size)");
        }
    }

    private void SetQueueGauges()
    {
        // Read and set as one step: a request thread that read the length before its request was taken must not
        // overwrite the batch's later (smaller) reading, or the gauge would stay at 1 with nothing queued.
        lock (_gaugeLock)
        {
            var queued = _batcher.QueueLength;
            _metrics.QueueLength.WithLabels(Name, Version).Set(queued);
            _metrics.Pending.WithLabels(Name, Version).Set(queued);
        }
    }

    /// <summary>
    /// Runs a batch on an engine that stages its own buffers (page-locked on a GPU engine): each input's bytes are copied
    /// once into the staged run (a request that ran alone: straight from the buffer its bytes were read into), the run
    /// goes asynchronously (copies to and from the device on the instance's stream), and the outputs are copied out of
    /// the staging buffers before the run is given back.
    /// </summary>
    /// <remarks>
    /// The time returned is the batch's own: from when it was staged, or, when it was queued behind an earlier batch of
    /// the same instance that was still running (pipeline_depth above 1), from when that batch completed.
    /// </remarks>
    private async Task<(IReadOnlyList<Tensor> Outputs, TimeSpan EngineTime)> RunStagedAsync(int instance, IStagedExecution staged, BatchParts batch, CancellationToken cancellationToken)
    {
        var start = Stopwatch.GetTimestamp();
        using var run = staged.Stage([.. Enumerable.Range(0, batch.InputCount).Select(batch.Shape)]);
        var direct = new bool[batch.Requests.Count];
        for (var i = 0; i < batch.InputCount; i++)
        {
            // Each request's bytes go straight into the staging buffer, at their rows' offset (no merged copy first), or,
            // for rows in shared memory the engine can read itself, from the region to the device with no host copy.
            var target = run.Input(i);
            if (target.Length != batch.ByteCount(i))
            {
                throw new BatchwiseException($"The engine staged {target.Length} bytes for input '{Inputs[i].Name}' of {Tensor.ShapeText(batch.Shape(i))}, which holds {batch.ByteCount(i)}", "This is an engine defect; run the model with --engine ort meanwhile.");
            }

            var offsets = batch.Offsets(i);
            for (var r = 0; r < direct.Length; r++)
            {
                direct[r] = batch.Requests[r][i].Source is { } source && run.TryCopyInput(i, offsets[r], source);
            }

            batch.CopyInput(i, target, direct);
        }

        // Rows a request wants in shared memory go there from the device (page-locked host or device memory), not through
        // the staging buffer and a managed copy; rows the engine leaves in staging (small rows, pageable memory) are
        // copied from there to their target once the run is done, still without a managed copy of the batch's output.
        var delivered = new List<OutputRows>[Outputs.Count];
        List<(int Request, OutputRows Rows, long Offset, long Bytes)>? fromStaging = null;
        foreach (var (r, rows) in batch.DirectOutputs(MaxBatchSize > 0))
        {
            if (run.OutputShapes is not { } known)
            {
                break; // shapes known only once run: the rows go to their targets from the outputs, as on ort
            }

            var shape = known[rows.Output];
            var bytes = Tensor.ElementCountOf(shape) * Outputs[rows.Output].ElementType.SizeOf();
            if (Outputs[rows.Output].ElementType == ElementType.String || rows.Span(shape, bytes) is not { } span)
            {
                continue;
            }

            if (run.TryCopyOutput(rows.Output, span.Offset, span.Bytes, rows.Target))
            {
                batch.MarkDelivered(r, rows.Output);
                (delivered[rows.Output] ??= []).Add(rows);
            }
            else if (span.Bytes <= rows.Target.ByteCount)
            {
                (fromStaging ??= []).Add((r, rows, span.Offset, span.Bytes));
            }
        }

        await run.RunAsync(cancellationToken).ConfigureAwait(false);
        var ownStart = OwnStart(ref _stagedRunDone[instance], start, Stopwatch.GetTimestamp());
        var shapes = run.OutputShapes ?? throw new BatchwiseException("The engine's staged run gave no output shapes", "This is an engine defect; run the model with --engine ort meanwhile.");
        foreach (var (r, rows, offset, bytes) in fromStaging ?? [])
        {
            rows.Target.CopyFrom(run.Output(rows.Output).Span.Slice(checked((int)offset), checked((int)bytes)));
            batch.MarkDelivered(r, rows.Output);
            (delivered[rows.Output] ??= []).Add(rows);
        }

        var outputs = new Tensor[Outputs.Count];
        for (var o = 0; o < outputs.Length; o++)
        {
            if (delivered[o] is { } rows && DeliveredRowsSource.Delivered(Outputs[o].ElementType, (long[])shapes[o].Clone(), rows) is { } all)
            {
                outputs[o] = all;
                continue;
            }

            var bytes = run.Output(o);
            var t = Tensor.Zeros(Outputs[o].ElementType, (long[])shapes[o].Clone());
            if (bytes.Length != t.Data.Length)
            {
                throw new BatchwiseException($"The engine gave {bytes.Length} bytes for output '{Outputs[o].Name}' of {t}, which holds {t.Data.Length}", "This is an engine defect; run the model with --engine ort meanwhile.");
            }

            bytes.Span.CopyTo(t.Data);
            outputs[o] = t;
        }

        return (outputs, Stopwatch.GetElapsedTime(ownStart));
    }

    /// <summary>
    /// Where a staged batch's own time starts: at <paramref name="staged"/>, or at the completion of the instance's
    /// previous batch (<paramref name="latestDone"/>) if that came later: this batch was queued behind it on the stream.
    /// Notes <paramref name="done"/> in <paramref name="latestDone"/> as the latest. Batches on one stream complete in
    /// order; should the previous batch's thread note its completion only after this read, this batch counts from when it
    /// was staged (too long, never too short).
    /// </summary>
    internal static long OwnStart(ref long latestDone, long staged, long done)
    {
        var previous = Interlocked.Read(ref latestDone);
        var expected = previous;
        while (expected < done)
        {
            var seen = Interlocked.CompareExchange(ref latestDone, done, expected);
            if (seen == expected)
            {
                break;
            }

            expected = seen;
        }

        // A completion later than this one is not this batch's predecessor (a run on another slot): count from staging.
        return previous > staged && previous <= done ? previous : staged;
    }

    private async Task<IReadOnlyList<Tensor>> ExecuteAsync(int instance, BatchParts batch, CancellationToken cancellationToken)
    {
        var labels = (Name, Version);
        _metrics.InFlight.WithLabels(labels.Name, labels.Version).Inc();
        SetQueueGauges();
        try
        {
            // Engine runs are synchronous and run right here: a batch the loop sent is already on a pool thread of its own,
            // and a request that runs alone at an idle instance is on its own request thread (no hop either way).
            var session = _sessions[instance];
            var (outputs, engineTime) = session is IStagedExecution staged && batch.Requests[0].All(t => t.ElementType != ElementType.String)
                ? await RunStagedAsync(instance, staged, batch, cancellationToken).ConfigureAwait(false)
                : RunMerged(session, batch, cancellationToken);
            // The executed rows from the shape (without dynamic batching the batcher counts each request as 1 row).
            var rows = batch.Requests[0][0].Shape.Length > 0 && MaxBatchSize > 0 ? (int)batch.Shape(0)[0] : 1;
            _metrics.ComputeSeconds.WithLabels(labels.Name, labels.Version).Observe(engineTime.TotalSeconds);
            _metrics.BatchSize.WithLabels(labels.Name, labels.Version).Observe(rows);
            Statistics.RecordExecution(rows, engineTime);
            return outputs;
        }
        finally
        {
            _metrics.InFlight.WithLabels(labels.Name, labels.Version).Dec();
        }
    }

    /// <summary>
    /// Runs a batch on an engine that takes managed tensors: a request that runs alone is passed as it is; the requests of
    /// a larger batch are concatenated into pinned arrays pooled per model (not a fresh, zeroed array per batch), given
    /// back once the engine's outputs are known not to be them.
    /// </summary>
    private (IReadOnlyList<Tensor> Outputs, TimeSpan EngineTime) RunMerged(IEngineSession session, BatchParts batch, CancellationToken cancellationToken)
    {
        var start = Stopwatch.GetTimestamp();
        var direct = session is IOutputTargets ? batch.DirectOutputs(MaxBatchSize > 0).ToList() : [];
        if (batch.Single is { } single)
        {
            return (Run(session, single, batch, direct, cancellationToken), Stopwatch.GetElapsedTime(start));
        }

        var merged = new Tensor[batch.InputCount];
        for (var i = 0; i < merged.Length; i++)
        {
            var data = _mergedBuffers.Rent(checked((int)batch.ByteCount(i)));
            batch.CopyInput(i, data);
            merged[i] = new Tensor(batch.TypeOf(i), batch.Shape(i), data);
        }

        var outputs = Run(session, merged, batch, direct, cancellationToken);
        foreach (var input in merged)
        {
            if (!outputs.Any(o => o.Source is null && ReferenceEquals(o.Data, input.Data)))
            {
                _mergedBuffers.Return(input.Data);
            }
        }

        return (outputs, Stopwatch.GetElapsedTime(start));
    }

    /// <summary>One engine run; the requests' output targets written by the engine itself where it can (ort: from its own output memory).</summary>
    private static IReadOnlyList<Tensor> Run(IEngineSession session, IReadOnlyList<Tensor> inputs, BatchParts batch, List<(int Request, OutputRows Rows)> direct, CancellationToken cancellationToken)
    {
        if (direct.Count == 0 || session is not IOutputTargets targets)
        {
            return session.Run(inputs, cancellationToken);
        }

        var delivered = new bool[direct.Count];
        var outputs = targets.Run(inputs, [.. direct.Select(d => d.Rows)], delivered, cancellationToken);
        for (var i = 0; i < direct.Count; i++)
        {
            if (delivered[i])
            {
                batch.MarkDelivered(direct[i].Request, direct[i].Rows.Output);
            }
        }

        return outputs;
    }
}
