using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Benchmarking;

/// <summary>
/// Runs a benchmark sweep on any engine: for each batch size x concurrency, warm-up, then measurement windows
/// until three agree (perf_analyzer's rule), from dedicated threads that each own a prepared run. When to stop warming
/// up, close a window or end a point is <see cref="MeasurementSchedule"/>'s to say; this class runs the threads and
/// the clock.
/// </summary>
public sealed class BenchmarkRunner
{
    /// <summary>How often the coordinator checks progress and samples memory and device telemetry.</summary>
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(25);

    private readonly IEngine _engine;
    private readonly EngineOptions _engineOptions;

    /// <summary>Creates a runner for an engine and its options.</summary>
    /// <summary>Told of every plan the engine builds during the run (engines that build plans per shape), e.g. for a line per build with --verbose.</summary>
    public Action<PlanBuild>? PlanBuilt { get; init; }

    public BenchmarkRunner(IEngine engine, EngineOptions engineOptions)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(engineOptions);
        _engine = engine;
        _engineOptions = engineOptions;
    }

    /// <summary>The version recorded with results.</summary>
    public static string BatchwiseVersion =>
        typeof(BenchmarkRunner).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(BenchmarkRunner).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>
    /// Measures <paramref name="model"/> (<paramref name="source"/> is how the user named it). Cancelling stops
    /// cleanly: the result holds the points finished so far.
    /// </summary>
    public BenchmarkResult Run(OnnxModel model, string source, BenchmarkOptions options, Action<BenchmarkProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var total = Stopwatch.StartNew();
        var date = DateTimeOffset.UtcNow;
        var axis = model.FindBatchAxis();
        var notes = new List<string>();
        var batchSizes = PlanBatchSizes(model, axis, options, notes);
        if (options.Queue > 1)
        {
            notes.Add(string.Create(CultureInfo.InvariantCulture, $"each worker enqueued {options.Queue} runs back to back before waiting (--queue {options.Queue}): the device did not idle for the host between them, as a CUDA-graph replay loop is timed; a latency sample is a queue's mean run"));
        }

        // Resolve shapes and check data before loading: a missing --shape fails fast.
        options.Shapes.Resolve(model.Inputs, axis, batchSizes[0]);
        var generator = new InputGenerator(model, options.Seed, options.Data);

        // A saved engine runs with the precision and profiles it was built with: that is what the report records. The
        // engine's description (a GPU engine initialises its driver, asks NVML and opens its libraries there) is asked on
        // another thread while the session loads, as a serving process would: it is part of the cold start only where
        // loading waits for it (the same libraries), and its own time is reported as the span "environment".
        var engineOptions = _engine.Effective(model, _engineOptions);
        var environmentSeconds = 0.0;
        var describing = Task.Run(() =>
        {
            var started = Stopwatch.GetTimestamp();
            var described = _engine.Describe(engineOptions);
            environmentSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            return described;
        });

        var loading = Stopwatch.GetTimestamp();
        using var session = LoadBesides(describing, model, engineOptions);
        if (PlanBuilt is { } told && session is IPlanBuilds builds)
        {
            builds.PlanBuilt += told;
        }

        var loadSeconds = Stopwatch.GetElapsedTime(loading).TotalSeconds;
        var firstInference = FirstInference(session, generator, options.Shapes.Resolve(model.Inputs, axis, batchSizes[0]), loading, loadSeconds, model.ReadSeconds) with { ReadSeconds = model.ReadSeconds };
        var description = describing.GetAwaiter().GetResult();

        // The file's hash for the report is read after the first inference: it is bench's bookkeeping, not the start's.
        var context = new BenchmarkContext(
            date, BatchwiseVersion, HostInfo.MachineName, HostInfo.CpuName, HostInfo.LogicalCores, HostInfo.OperatingSystem, HostInfo.Runtime,
            description, engineOptions,
            new ModelInfo(model.Name, source ?? model.Path ?? model.Name, Sha256(model), model.Inputs, axis, generator.Describe()),
            options);
        var points = new List<BenchmarkPoint>();
        var planned = batchSizes.Count * options.Concurrency.Count;
        return Snapshot(Sweep());

        BenchmarkResult Snapshot(StopReason stop)
        {
            var knees = options.Concurrency
                .Select(c => Knee.Find(points.Where(p => p.Concurrency == c).Select(p => (p.BatchSize, p.Throughput)), c))
                .OfType<KneeResult>()
                .ToList();
            return new BenchmarkResult(context, points.ToList(), knees, notes.ToList(), stop, total.Elapsed.TotalSeconds) { ColdStart = ColdStartNow() };
        }

        // The spans are read at each snapshot: those after the first inference (the second run's graph capture) join later.
        ColdStart ColdStartNow()
        {
            var spans = new Dictionary<string, double>(model.ReadSpans, StringComparer.Ordinal) { ["environment"] = environmentSeconds };
            foreach (var (name, seconds) in (session as IPlanBuilds)?.Startup.Snapshot() ?? new Dictionary<string, double>())
            {
                spans[name] = seconds;
            }

            return firstInference with { Spans = spans };
        }

        StopReason Sweep()
        {
            foreach (var batch in batchSizes)
            {
                var forecast = MemoryForecast.Predict(points.Select(p => (p.BatchSize, p.PeakWorkingSetBytes)).ToList(), batch);
                if (forecast is { } predicted && predicted > MemoryForecast.Headroom * MemoryForecast.AvailableBytes)
                {
                    notes.Add(string.Create(CultureInfo.InvariantCulture, $"the sweep stopped before b={batch}: its peak memory is predicted at {predicted / 1e9:0.0} GB (linear in the batch from the last two sizes), beyond {MemoryForecast.Headroom * 100:0}% of the {MemoryForecast.AvailableBytes / 1e9:0.0} GB available"));
                    return StopReason.BatchFailed;
                }

                IReadOnlyList<long[]> shapes;
                IReadOnlyList<Tensor> inputs;
                try
                {
                    shapes = options.Shapes.Resolve(model.Inputs, axis, batch);
                    inputs = generator.Generate(shapes);
                }
                catch (Exception e) when (points.Count > 0 && IsCapacityFailure(e))
                {
                    notes.Add(StoppedAt(batch, e));
                    return StopReason.BatchFailed;
                }

                foreach (var concurrency in options.Concurrency)
                {
                    if (cancellationToken.IsCancellationRequested)
                    {
                        notes.Add($"stopped by Ctrl+C after {points.Count} of {planned} points; what was measured is kept");
                        return StopReason.Cancelled;
                    }

                    if (!MeasurementSchedule.MayStartPoint(points.Count, total.Elapsed, options.MaxTime))
                    {
                        notes.Add(string.Create(CultureInfo.InvariantCulture, $"the time budget (--max-time {options.MaxTime!.Value.TotalSeconds:0.#} s) ran out after {points.Count} of {planned} points; b={batch} and beyond were not measured"));
                        return StopReason.TimeBudget;
                    }

                    var index = points.Count;
                    void Report(string phase, BenchmarkResult? sweep) => progress?.Invoke(new BenchmarkProgress(index, planned, batch, concurrency, phase, sweep));
                    BenchmarkPoint? measured;
                    var buildsBefore = (session as IPlanBuilds)?.Builds.Count ?? 0;
                    try
                    {
                        measured = MeasurePoint(session, inputs, shapes, batch, concurrency, options, Report, () => MeasurementSchedule.IsOverBudget(total.Elapsed, options.MaxTime), cancellationToken);
                        if (measured is not null && session is IPlanBuilds plans)
                        {
                            var profile = plans.BatchProfiles.FirstOrDefault(p => p >= batch);
                            var built = plans.Builds.Skip(buildsBefore).ToList();
                            var padded = profile > batch && !plans.BatchProfiles.Contains(batch);
                            // --exact-plans: the batch's own plan, built in the background during the point, took over from the padded one.
                            var ownPlan = padded && built.Any(b => b.Shapes.Contains($"[{batch},", StringComparison.Ordinal));
                            if (ownPlan)
                            {
                                notes.Add($"b={batch}, c={concurrency}: ran padded to {profile} until its own plan, built in the background (--exact-plans), was ready during the point");
                            }

                            measured = measured with { PlanBuilds = built, PaddedTo = padded && !ownPlan ? profile : null };
                        }
                    }
                    catch (Exception e) when (points.Count > 0 && IsCapacityFailure(e))
                    {
                        notes.Add(StoppedAt(batch, e));
                        return StopReason.BatchFailed;
                    }

                    if (measured is null)
                    {
                        notes.Add($"stopped by Ctrl+C after {points.Count} of {planned} points; the point in progress (b={batch}, c={concurrency}) was dropped");
                        return StopReason.Cancelled;
                    }

                    points.Add(measured);
                    Report("done", Snapshot(StopReason.Completed));
                }
            }

            return StopReason.Completed;
        }
    }

    /// <summary>
    /// Loads the session while <paramref name="describing"/> runs; when both fail, the description's error is the one
    /// reported (it names the device or library that is missing, which is why loading failed too).
    /// </summary>
    private IEngineSession LoadBesides(Task<EngineDescription> describing, OnnxModel model, EngineOptions engineOptions)
    {
        try
        {
            return _engine.Load(model, engineOptions);
        }
        catch
        {
            try
            {
                describing.Wait();
            }
            catch (AggregateException e) when (e.InnerException is { } cause)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(cause).Throw();
            }

            throw;
        }
    }

    /// <summary>Time to first inference: one run of the first batch size right after loading (its plan is then reused by the sweep).</summary>
    /// <param name="beforeLoading">Seconds before loading that count: the file read.</param>
    private static ColdStart FirstInference(IEngineSession session, InputGenerator generator, IReadOnlyList<long[]> shapes, long loading, double loadSeconds, double beforeLoading)
    {
        var builds = (session as IPlanBuilds)?.Builds.Count ?? 0;
        var preparing = Stopwatch.GetTimestamp();
        double prepareSeconds;
        using (var run = session.Prepare(generator.Generate(shapes)))
        {
            prepareSeconds = Stopwatch.GetElapsedTime(preparing).TotalSeconds;
            run.Run();
            _ = run.ReadOutputs();
        }

        var firstRun = Stopwatch.GetElapsedTime(preparing).TotalSeconds - prepareSeconds;
        var firstPlan = session is IPlanBuilds plans && plans.Builds.Count > builds ? plans.Builds[builds] : null;
        return new ColdStart(loadSeconds, beforeLoading + Stopwatch.GetElapsedTime(loading).TotalSeconds) { PrepareSeconds = prepareSeconds, FirstRunSeconds = firstRun, FirstPlan = firstPlan };
    }

    private static List<int> PlanBatchSizes(OnnxModel model, BatchAxis axis, BenchmarkOptions options, List<string> notes)
    {
        if (axis.IsBatchable)
        {
            return options.PlannedBatchSizes().ToList();
        }

        var d0 = model.Inputs.FirstOrDefault()?.Shape.FirstOrDefault();
        var fixedBatch = d0 is { IsDynamic: false } d ? (int)d.Value!.Value : 1;
        const string HowTo = "re-export it with a dynamic batch axis (e.g. torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}}))";
        if (options.BatchSizes is { } given && given.Any(b => b != fixedBatch))
        {
            throw new BatchwiseException($"Batching is impossible for '{model.Name}': {axis.Reason}", $"To measure other batch sizes, {HowTo}; or drop --batch-sizes to measure b={fixedBatch} only.");
        }

        notes.Add($"batching is impossible for this file: {axis.Reason}; only b={fixedBatch} was measured. To measure larger batches, {HowTo}");
        return [fixedBatch];
    }

    private static bool IsCapacityFailure(Exception e) => e is OutOfMemoryException or OverflowException or InsufficientMemoryException or BatchwiseException;

    private static string StoppedAt(int batch, Exception e) =>
        $"the sweep stopped at b={batch}: {(e is BatchwiseException b ? b.Message : e.GetType().Name + ": " + e.Message)} (out of memory, or the engine refused this size); larger batches were not tried";

    private static string Sha256(OnnxModel model)
    {
        var bytes = model.Path is { } path && File.Exists(path) ? File.ReadAllBytes(path) : model.ToBytes();
        return Convert.ToHexStringLower(SHA256.HashData(bytes));
    }

    private static BenchmarkPoint? MeasurePoint(
        IEngineSession session, IReadOnlyList<Tensor> inputs, IReadOnlyList<long[]> shapes, int batch, int concurrency,
        BenchmarkOptions options, Action<string, BenchmarkResult?> report, Func<bool> overBudget, CancellationToken cancellationToken)
    {
        var state = new PointState();
        var workers = new List<Worker>(concurrency);
        var threads = new List<Thread>(concurrency);
        try
        {
            for (var i = 0; i < concurrency; i++)
            {
                var run = session.Prepare(inputs);
                var worker = new Worker(run, state, options.Queue);
                workers.Add(worker);
                if (options.Queue > 1 && run is not IQueuedRuns)
                {
                    throw new BatchwiseException($"--queue {options.Queue}: this engine runs each inference to its end before the next (it has no device queue to fill)", "Drop --queue (each run waited for), or use --engine cuda.");
                }
            }

            foreach (var (worker, i) in workers.Select((w, i) => (w, i)))
            {
                var thread = new Thread(worker.Loop) { IsBackground = true, Name = $"bench b={batch} #{i}" };
                threads.Add(thread);
                thread.Start();
            }

            // The schedule decides (warm-up, windows, stability, budget); this thread only feeds it what it sees.
            var monitor = new PointMonitor(session, state, workers, cancellationToken);
            var schedule = new MeasurementSchedule(options);
            var windows = new List<Window>();
            report("warm-up", null);
            // Each stage and window ends at the end of the last run it saw (not at the instant it was observed), so a
            // window is whole runs end to end: see ScheduleObservation.ToLastRun.
            var (start, cpuStart, before) = (Stopwatch.GetTimestamp(), ProcessCpuSeconds(), 0L);
            while (schedule.Stage != MeasurementStage.Finished)
            {
                var (lastEnd, completed) = (start, before);
                if (!monitor.WaitUntil(() =>
                {
                    var now = Stopwatch.GetTimestamp();
                    (completed, lastEnd) = state.Progress();
                    var toLastRun = completed > before ? Stopwatch.GetElapsedTime(start, lastEnd) : TimeSpan.Zero;
                    var seen = new ScheduleObservation(Stopwatch.GetElapsedTime(start, now), completed - before, workers.All(w => w.Completed > 0), overBudget(), toLastRun);
                    return schedule.Observe(seen) != ScheduleStep.Continue;
                }))
                {
                    return null;
                }

                var cpuNow = ProcessCpuSeconds();
                if (schedule.Windows.Count > windows.Count)
                {
                    var closed = schedule.Windows[^1];
                    windows.Add(new Window(start, lastEnd, closed.Runs, closed.Runs * batch / closed.Seconds, cpuNow - cpuStart));
                    report($"window {windows.Count}", null);
                }
                else
                {
                    monitor.ResetPeaks(); // the warm-up ended: peaks are the measurement's own
                }

                (start, cpuStart, before) = (lastEnd, cpuNow, completed);
            }

            state.Stop = true;
            foreach (var thread in threads)
            {
                thread.Join();
            }

            monitor.ThrowIfFailed();
            return Summarize(batch, concurrency, shapes, schedule, windows, workers, monitor);
        }
        finally
        {
            state.Stop = true;
            foreach (var thread in threads)
            {
                thread.Join();
            }

            foreach (var worker in workers)
            {
                worker.Run.Dispose();
            }
        }
    }

    private static BenchmarkPoint Summarize(
        int batch, int concurrency, IReadOnlyList<long[]> shapes, MeasurementSchedule schedule, List<Window> windows, List<Worker> workers, PointMonitor monitor)
    {
        // Report the last three windows (the ones the stability rule judged), as perf_analyzer does.
        var span = windows.Skip(Math.Max(0, windows.Count - MeasurementSchedule.JudgedWindows)).ToList();
        var (from, to) = (span[0].Start, span[^1].End);
        var seconds = span.Sum(w => Stopwatch.GetElapsedTime(w.Start, w.End).TotalSeconds);
        var runs = span.Sum(w => w.Runs);
        var throughput = runs * batch / seconds;
        var samples = new List<double>();
        var phases = new List<TransferTimes>();
        foreach (var w in workers)
        {
            for (var i = 0; i < w.Ends.Count; i++)
            {
                if (w.Ends[i] > from && w.Ends[i] <= to)
                {
                    samples.Add(w.Latencies[i] * 1000);
                    if (i < w.Phases.Count && w.Phases[i] is { } phase)
                    {
                        phases.Add(phase);
                    }
                }
            }
        }

        var spans = span.Select(w => w.Throughput).ToList();
        var stable = schedule.IsStable();
        var cpu = span.Sum(w => w.CpuSeconds) / (seconds * Environment.ProcessorCount);
        return new BenchmarkPoint(
            batch, concurrency, shapes, stable, Statistics.Spread(spans), windows.Select(w => w.Throughput).ToList(),
            throughput, runs / seconds, 1000 / throughput, Statistics.Summarize(samples), cpu, monitor.PeakWorkingSet,
            monitor.DeviceUtilization, monitor.DeviceMemoryPeak, (int)schedule.WarmupRuns, seconds, samples)
        {
            // Only when every sample has its phases: a breakdown of some runs would not add up to the latency reported.
            Transfers = phases.Count > 0 && phases.Count == samples.Count
                ? new TransferBreakdown(
                    Statistics.Summarize(phases.Select(p => p.HostToDeviceSeconds * 1000).ToList()),
                    Statistics.Summarize(phases.Select(p => p.ComputeSeconds * 1000).ToList()),
                    Statistics.Summarize(phases.Select(p => p.DeviceToHostSeconds * 1000).ToList()))
                : null,
            DeviceClocks = monitor.Clocks,
        };
    }

    private static double ProcessCpuSeconds()
    {
        using var process = Process.GetCurrentProcess();
        return process.TotalProcessorTime.TotalSeconds;
    }

    private sealed record Window(long Start, long End, long Runs, double Throughput, double CpuSeconds);

    /// <summary>Shared between the coordinator and the workers of one point.</summary>
    private sealed class PointState
    {
        private volatile bool _stop;

        public bool Stop
        {
            get => _stop;
            set => _stop = value;
        }

        public ManualResetEventSlim Failed { get; } = new();

        /// <summary>
        /// Notes a run's end: its timestamp is taken under the same lock that counts it, for every thread, so a count read
        /// with <see cref="Progress"/> covers exactly the runs that ended by the end read with it (a run counted later ends
        /// later), and a window from one such end to another holds whole runs whatever the threads' interleaving.
        /// </summary>
        public long NoteRunEnd(int runs = 1)
        {
            lock (_progressLock)
            {
                var end = Stopwatch.GetTimestamp();
                (_completed, _lastEnd) = (_completed + runs, end);
                return end;
            }
        }

        /// <summary>Runs ended (every thread) and the last one's end, read together.</summary>
        public (long Completed, long LastEnd) Progress()
        {
            lock (_progressLock)
            {
                return (_completed, _lastEnd);
            }
        }

        private readonly Lock _progressLock = new();
        private long _completed;
        private long _lastEnd;
    }

    /// <summary>One dedicated thread's loop over its own prepared run; it alone writes its sample lists.</summary>
    private sealed class Worker(IPreparedRun run, PointState state, int queue)
    {
        private long _completed;

        public IPreparedRun Run { get; } = run;

        public List<double> Latencies { get; } = new(4096);

        public List<long> Ends { get; } = new(4096);

        /// <summary>Each run's H2D / compute / D2H split where the run reports one (<see cref="ITransferTiming"/>), else null.</summary>
        public List<TransferTimes?> Phases { get; } = new(4096);

        public Exception? Error { get; private set; }

        public long Completed => Interlocked.Read(ref _completed);

        public void Loop()
        {
            try
            {
                var timing = Run as ITransferTiming;
                var queued = queue > 1 ? (IQueuedRuns)Run : null;
                while (!state.Stop)
                {
                    // A queue of runs is one sample, its mean run; its runs all count (they end together, as far as the host sees).
                    var seconds = queued is null ? Run.Run() : queued.RunQueued(queue) / queue;
                    Ends.Add(state.NoteRunEnd(queue));
                    Latencies.Add(seconds);
                    Phases.Add(queued is null ? timing?.LastTransferTimes : null);
                    Interlocked.Add(ref _completed, queue);
                }
            }
            catch (Exception e)
            {
                Error = e;
                state.Failed.Set();
            }
        }
    }

    /// <summary>The coordinator's view: waits for conditions while sampling memory and device telemetry.</summary>
    private sealed class PointMonitor(IEngineSession session, PointState state, List<Worker> workers, CancellationToken cancellationToken)
    {
        private double _deviceUtilizationSum;
        private int _deviceSamples;
        private double _clockSum;
        private int _clockSamples;
        private double _powerSum;
        private int _powerSamples;
        private int _limitSamples;
        private readonly Dictionary<string, int> _limitCounts = new(StringComparer.Ordinal);

        public long PeakWorkingSet { get; private set; }

        public long? DeviceMemoryPeak { get; private set; }

        public double? DeviceUtilization => _deviceSamples == 0 ? null : _deviceUtilizationSum / _deviceSamples;

        /// <summary>The device's clock, power and clock limits over the samples since the warm-up, or null where none reported a clock.</summary>
        public DeviceClocks? Clocks => _clockSamples == 0 ? null : new DeviceClocks(
            _clockSum / _clockSamples,
            _powerSamples == 0 ? null : _powerSum / _powerSamples,
            _limitCounts.ToDictionary(l => l.Key, l => (double)l.Value / Math.Max(1, _limitSamples), StringComparer.Ordinal),
            _clockSamples);

        public void ResetPeaks()
        {
            PeakWorkingSet = 0;
            DeviceMemoryPeak = null;
            (_deviceUtilizationSum, _deviceSamples) = (0, 0);
            (_clockSum, _clockSamples, _powerSum, _powerSamples, _limitSamples) = (0, 0, 0, 0, 0);
            _limitCounts.Clear();
        }

        /// <summary>Polls until the condition holds (true), or Ctrl+C (false); rethrows a worker's failure.</summary>
        public bool WaitUntil(Func<bool> condition)
        {
            var handles = new[] { cancellationToken.WaitHandle, state.Failed.WaitHandle };
            while (true)
            {
                Sample();
                ThrowIfFailed();
                if (cancellationToken.IsCancellationRequested)
                {
                    return false;
                }

                if (condition())
                {
                    return true;
                }

                WaitHandle.WaitAny(handles, Tick);
            }
        }

        public void ThrowIfFailed()
        {
            var error = workers.Select(w => w.Error).FirstOrDefault(e => e is not null);
            if (error is not null)
            {
                throw error is BatchwiseException ? error : new BatchwiseException($"A run failed: {error.GetType().Name}: {error.Message}", "Run with --verbose for details.", error);
            }
        }

        private void Sample()
        {
            PeakWorkingSet = Math.Max(PeakWorkingSet, Environment.WorkingSet);
            if (session.SampleDevice() is { } device)
            {
                _deviceUtilizationSum += device.UtilizationPercent;
                _deviceSamples++;
                DeviceMemoryPeak = Math.Max(DeviceMemoryPeak ?? 0, device.MemoryUsedBytes);
                if (device.SmClockMhz is { } clock)
                {
                    (_clockSum, _clockSamples) = (_clockSum + clock, _clockSamples + 1);
                }

                if (device.PowerWatts is { } power)
                {
                    (_powerSum, _powerSamples) = (_powerSum + power, _powerSamples + 1);
                }

                if (device.ClockLimits is { } limits)
                {
                    _limitSamples++;
                    foreach (var limit in limits)
                    {
                        _limitCounts[limit] = _limitCounts.GetValueOrDefault(limit) + 1;
                    }
                }
            }
        }
    }
}
