using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// One test method of this test executable run again in a process of its own, with environment variables of its own:
/// what a GPU fault cannot spread from. A kernel that faults (a misaligned or illegal address) loses the CUDA context for
/// the rest of its process, so every test after it in one run would fail too; run in a child, it costs that child only,
/// and the parent still reports the rows the other children measured.
/// </summary>
internal static partial class ChildRun
{
    /// <summary>What one child printed, how it ended and how long it took.</summary>
    public sealed record Result(int ExitCode, bool TimedOut, IReadOnlyList<string> Lines, double Seconds)
    {
        /// <summary>Lines that start with <paramref name="tag"/> and a tab, split at tabs, the tag left off.</summary>
        public IEnumerable<string[]> Tagged(string tag) =>
            Lines.Where(l => l.StartsWith(tag + "\t", StringComparison.Ordinal)).Select(l => l.Split('\t')[1..]);

        /// <summary>The last <paramref name="count"/> lines, each cut to 400 characters (what a failure report shows).</summary>
        public IEnumerable<string> Tail(int count) => Lines.TakeLast(count).Select(l => l.Length > 400 ? l[..400] + "..." : l);

        /// <summary>The child ran its test and the test passed (the runner's exit code is 0).</summary>
        public bool Passed => !TimedOut && ExitCode == 0;
    }

    /// <summary>
    /// Runs test method <paramref name="method"/> (Namespace.Class.Method) of this executable in a child process with
    /// <paramref name="environment"/> added to this process's environment (a null value removes a variable), waiting at
    /// most <paramref name="timeout"/>; a child still running then is killed with its process tree.
    /// </summary>
    public static Result Run(string method, IReadOnlyDictionary<string, string?> environment, TimeSpan timeout)
    {
        var (file, prefix) = Executable();
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in prefix.Concat(["-method", method]))
        {
            start.ArgumentList.Add(a);
        }

        foreach (var (name, value) in environment)
        {
            if (value is null)
            {
                start.Environment.Remove(name);
            }
            else
            {
                start.Environment[name] = value;
            }
        }

        var lines = new List<string>();
        var clock = Stopwatch.StartNew();
        using var process = new Process { StartInfo = start };
        void Add(object sender, DataReceivedEventArgs e)
        {
            if (e.Data is { } line)
            {
                lock (lines)
                {
                    lines.Add(AnsiColor().Replace(line, string.Empty)); // the runner colours its lines
                }
            }
        }

        process.OutputDataReceived += Add;
        process.ErrorDataReceived += Add;
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var exited = process.WaitForExit(timeout);
        if (!exited)
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(TimeSpan.FromSeconds(30));
        }
        else
        {
            process.WaitForExit(); // the output's last lines
        }

        lock (lines)
        {
            return new Result(exited ? process.ExitCode : -1, !exited, [.. lines], clock.Elapsed.TotalSeconds);
        }
    }

    [GeneratedRegex("\u001b\\[[0-9;]*m")]
    private static partial Regex AnsiColor();

    /// <summary>This test executable: the apphost itself, or `dotnet` with the test assembly when started through it.</summary>
    private static (string File, string[] Prefix) Executable()
    {
        var path = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        return Path.GetFileNameWithoutExtension(path).Equals("dotnet", StringComparison.OrdinalIgnoreCase)
            ? (path, ["exec", typeof(ChildRun).Assembly.Location])
            : (path, []);
    }
}
