// Compiled into every test project (Directory.Build.props links it). A hung test must become a failure that names it,
// never a CI run that says nothing until it is killed: `dotnet test` shows no output of a test host that hangs, but it
// does print the message of a host that ends through Environment.FailFast.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using Xunit.v3;

[assembly: Batchwise.Testing.TestWatchdog]

namespace Batchwise.Testing;

/// <summary>
/// Ends the test host with a message naming every running test when one test body has run longer than
/// BATCHWISE_TEST_LIMIT_MINUTES (default 10), or when no test has started or ended for that long while the host is still
/// alive (a hang in a fixture, a constructor, or a foreground thread that keeps the host from exiting after its last test).
/// </summary>
[AttributeUsage(AttributeTargets.Assembly)]
internal sealed class TestWatchdogAttribute : BeforeAfterTestAttribute
{
    private static readonly ConcurrentDictionary<string, (string Name, long Started)> Running = new();
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(
        double.TryParse(Environment.GetEnvironmentVariable("BATCHWISE_TEST_LIMIT_MINUTES"), CultureInfo.InvariantCulture, out var m) && m > 0 ? m : 10);

    private static long _lastActivity = Stopwatch.GetTimestamp();
    private static int _started;

    public override void Before(MethodInfo methodUnderTest, IXunitTest test)
    {
        StartOnce();
        Running[test.UniqueID] = (test.TestDisplayName, Stopwatch.GetTimestamp());
        Volatile.Write(ref _lastActivity, Stopwatch.GetTimestamp());
    }

    public override void After(MethodInfo methodUnderTest, IXunitTest test)
    {
        Running.TryRemove(test.UniqueID, out _);
        Volatile.Write(ref _lastActivity, Stopwatch.GetTimestamp());
    }

    private static void StartOnce()
    {
        if (Interlocked.Exchange(ref _started, 1) == 1)
        {
            return;
        }

        new Thread(Watch) { IsBackground = true, Name = "test watchdog" }.Start();
    }

    private static void Watch()
    {
        while (true)
        {
            Thread.Sleep(TimeSpan.FromSeconds(10));
            var now = Stopwatch.GetTimestamp();
            var running = Running.Values.Select(r => (r.Name, Elapsed: Stopwatch.GetElapsedTime(r.Started, now))).OrderByDescending(r => r.Elapsed).ToList();
            var idle = Stopwatch.GetElapsedTime(Volatile.Read(ref _lastActivity), now);
            if ((running.Count > 0 && running[0].Elapsed > Limit) || idle > Limit)
            {
                var list = running.Count == 0
                    ? "no test body is running (the hang is in a fixture, a constructor or a thread that outlives the last test)"
                    : string.Join("; ", running.Select(r => $"{r.Name} ({r.Elapsed.TotalMinutes:F1} min)"));
                Environment.FailFast(
                    $"test watchdog ({Assembly.GetEntryAssembly()?.GetName().Name}): limit {Limit.TotalMinutes:F1} min passed "
                    + $"(no test started or ended for {idle.TotalMinutes:F1} min); running: {list}");
            }
        }
    }
}
