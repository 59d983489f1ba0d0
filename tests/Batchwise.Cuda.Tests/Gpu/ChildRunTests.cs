namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// <see cref="ChildRun"/> on the CPU: the test executable runs one of its own test methods in a child process with the
/// environment given, and the parent reads what it printed (the int8 GPU tests isolate their routes this way).
/// </summary>
public sealed class ChildRunTests
{
    private const string Probe = "BATCHWISE_CHILD_RUN_PROBE";

    [Fact]
    public void The_test_executable_runs_one_of_its_methods_in_a_child_with_the_environment_given()
    {
        var token = Guid.NewGuid().ToString("N");
        var r = ChildRun.Run(typeof(ChildRunTests).FullName + "." + nameof(Child_echoes_the_probe), new Dictionary<string, string?> { [Probe] = token }, TimeSpan.FromMinutes(2));
        Assert.True(r.Passed, $"exit {r.ExitCode}, timed out {r.TimedOut}: {string.Join(" | ", r.Tail(20))}");
        var echoed = Assert.Single(r.Tagged("ECHO"));
        Assert.Equal(token, echoed[0]);
    }

    /// <summary>The child's side: prints the probe variable, tagged; skipped when not run as a child.</summary>
    [Fact]
    public void Child_echoes_the_probe()
    {
        var value = Environment.GetEnvironmentVariable(Probe);
        if (string.IsNullOrEmpty(value))
        {
            Assert.Skip($"runs only as the child of {nameof(The_test_executable_runs_one_of_its_methods_in_a_child_with_the_environment_given)} ({Probe} set)");
        }

        Console.WriteLine("ECHO\t" + value);
        Assert.Equal(32, value.Length);
    }
}
