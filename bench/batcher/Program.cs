using System.Diagnostics;
using System.Globalization;
using Batchwise.Batching;
using Batchwise.Bench.Batcher;
using Batchwise.Engines;
using Batchwise.Onnx;
using Microsoft.Extensions.Time.Testing;

// The dynamic batcher's loop with a deep queue (issue 18): N one-row requests queued behind one busy instance, then
//   intake  - submitting all N and the loop taking them in (no batch can start: the only instance is busy),
//   take    - the instance freed: every request sent in batches of 8 and answered (12,500 batches at N = 100,000),
//   expiry  - N requests with a 1 s timeout, the clock moved past it: every one failed with a timeout.
// Time is a fake clock (only the loop's own work is timed, never a delay); the engine returns its inputs at once.
// Each scenario runs for the current batcher and for the rescanning one it replaced (smaller N: it is quadratic).
//
//   dotnet run --project bench/batcher -c Release [-- --sizes 10000,100000 --baseline-sizes 2500,5000,10000]
//   dotnet run --project bench/batcher -c Release -- --c1
// With --c1: one request at a time (c=1, no queue delay, 2 instances), submit to answer, for an engine that answers at
// once: what the batcher's hops cost a lone request, with RunAloneInline off (loop wake-up + pool hop) and on (the
// request's own thread), in alternating rounds.
if (args.Contains("--c1"))
{
    Console.WriteLine($"# dynamic batcher, c=1 submit-to-answer ({Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription})");
    Console.WriteLine();
    Console.WriteLine("| round | RunAloneInline | requests | p50 µs | p90 µs | p99 µs |");
    Console.WriteLine("|---|---|---|---|---|---|");
    await LoneLatency(false, 2_000);
    await LoneLatency(true, 2_000); // warm-up
    for (var round = 1; round <= 3; round++)
    {
        foreach (var inline in new[] { false, true })
        {
            var us = await LoneLatency(inline, 20_000);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {round} | {(inline ? "on" : "off")} | {us.Length:N0} | {us[us.Length / 2]:F1} | {us[us.Length * 9 / 10]:F1} | {us[us.Length * 99 / 100]:F1} |"));
        }
    }

    return;
}

var sizes = Sizes("--sizes", [10_000, 30_000, 100_000]);
var baselineSizes = Sizes("--baseline-sizes", [2_500, 5_000, 10_000]);
await Measure(1_000, Rescanning); // warm-up (JIT), not reported
await Measure(1_000, Incremental);
Console.WriteLine($"# dynamic batcher, deep queue ({Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription})");
Console.WriteLine();
Console.WriteLine("| batcher | queued requests | intake ms | take ms | expiry ms | intake µs/request | take µs/request | expiry µs/request |");
Console.WriteLine("|---|---|---|---|---|---|---|---|");
foreach (var n in baselineSizes)
{
    Report("rescanning (before)", n, await Measure(n, Rescanning));
}

foreach (var n in sizes)
{
    Report("incremental (now)", n, await Measure(n, Incremental));
}

static async Task<double[]> LoneLatency(bool inline, int n)
{
    var options = new BatcherOptions { MaxBatchSize = 8, InstanceCount = 2, RunAloneInline = inline };
    var input = new[] { Tensor.Zeros(ElementType.Float, [1, 4]) };
    await using var batcher = new DynamicBatcher(options, (_, inputs, _) => Task.FromResult(inputs));
    var us = new double[n];
    for (var i = 0; i < n; i++)
    {
        var start = Stopwatch.GetTimestamp();
        await batcher.SubmitAsync(input).ConfigureAwait(false);
        us[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
    }

    Array.Sort(us);
    return us;
}

static void Report(string name, int n, (double Intake, double Take, double Expiry) ms) =>
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {name} | {n:N0} | {ms.Intake:F0} | {ms.Take:F0} | {ms.Expiry:F0} | {ms.Intake * 1e3 / n:F2} | {ms.Take * 1e3 / n:F2} | {ms.Expiry * 1e3 / n:F2} |"));

int[] Sizes(string flag, int[] fallback)
{
    var i = Array.IndexOf(args, flag);
    return i >= 0 && i + 1 < args.Length ? args[i + 1].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray() : fallback;
}

static async Task<(double Intake, double Take, double Expiry)> Measure(int n, Func<BatcherOptions, BatchExecution, TimeProvider, Subject> create)
{
    var options = new BatcherOptions { MaxBatchSize = 8, MaxQueueDelay = TimeSpan.FromSeconds(1), MaxQueueSize = n + 16, InstanceCount = 1 };
    var input = new[] { Tensor.Zeros(ElementType.Float, [1, 4]) };

    // Intake and take.
    var time = new FakeTimeProvider();
    var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    var subject = create(options, async (_, inputs, _) =>
    {
        await gate.Task.ConfigureAwait(false);
        return inputs;
    }, time);
    var watch = Stopwatch.StartNew();
    var tasks = new Task<BatchedResult>[n];
    for (var i = 0; i < n; i++)
    {
        tasks[i] = subject.Submit(input, null);
    }

    await subject.Idle();
    var intake = watch.Elapsed.TotalMilliseconds;
    watch.Restart();
    gate.SetResult();
    time.Advance(options.MaxQueueDelay); // a last batch short of 8 rows is then due too
    await Task.WhenAll(tasks);
    var take = watch.Elapsed.TotalMilliseconds;
    await subject.Dispose();

    // Expiry.
    time = new FakeTimeProvider();
    var blocked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    subject = create(options, async (_, inputs, _) =>
    {
        await blocked.Task.ConfigureAwait(false);
        return inputs;
    }, time);
    for (var i = 0; i < n; i++)
    {
        tasks[i] = subject.Submit(input, TimeSpan.FromSeconds(1));
    }

    await subject.Idle();
    watch.Restart();
    time.Advance(TimeSpan.FromSeconds(2));
    var expired = 0;
    foreach (var t in tasks.Skip(options.MaxBatchSize))
    {
        try
        {
            await t;
        }
        catch (BatchRejectedException e) when (e.Reason == RejectionReason.Timeout)
        {
            expired++;
        }
    }

    var expiry = watch.Elapsed.TotalMilliseconds;
    if (expired != n - options.MaxBatchSize)
    {
        throw new InvalidOperationException($"{expired} of {n - options.MaxBatchSize} requests expired");
    }

    blocked.SetResult();
    await subject.Dispose();
    return (intake, take, expiry);
}

static Subject Incremental(BatcherOptions options, BatchExecution execute, TimeProvider time)
{
    var b = new DynamicBatcher(options, execute, time);
    return new Subject((inputs, timeout) => b.SubmitAsync(inputs, timeout: timeout), b.WhenIdleAsync, () => b.DisposeAsync().AsTask());
}

static Subject Rescanning(BatcherOptions options, BatchExecution execute, TimeProvider time)
{
    var b = new RescanningBatcher(options, execute, time);
    return new Subject((inputs, timeout) => b.SubmitAsync(inputs, timeout: timeout), b.WhenIdleAsync, () => b.DisposeAsync().AsTask());
}

/// <summary>A batcher as the benchmark drives it.</summary>
internal sealed record Subject(Func<IReadOnlyList<Tensor>, TimeSpan?, Task<BatchedResult>> Submit, Func<Task> Idle, Func<Task> Dispose);
