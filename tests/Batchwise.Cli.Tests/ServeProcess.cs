using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Batchwise.Cli.Tests;

/// <summary>`batchwise serve` as a child process, so a test can send it a real SIGTERM and read its exit code and output.</summary>
internal sealed partial class ServeProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _out = [];
    private readonly List<string> _err = [];
    private readonly TaskCompletionSource<Uri> _serving = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ServeProcess(Process process) => _process = process;

    public string Out
    {
        get
        {
            lock (_out)
            {
                return string.Join('\n', _out);
            }
        }
    }

    public string Err
    {
        get
        {
            lock (_err)
            {
                return string.Join('\n', _err);
            }
        }
    }

    public int Id => _process.Id;

    /// <summary>Starts `batchwise ARGS` with the built CLI assembly beside the tests.</summary>
    public static ServeProcess Start(params string[] args) => StartWith(new Dictionary<string, string?>(), args);

    /// <summary>Starts `batchwise ARGS` with <paramref name="environment"/> added to (or, null, removed from) the child's environment.</summary>
    public static ServeProcess StartWith(IReadOnlyDictionary<string, string?> environment, params string[] args)
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "Batchwise.Cli.dll");
        var info = new ProcessStartInfo(DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (name, value) in environment)
        {
            info.Environment[name] = value;
        }

        info.ArgumentList.Add(cli);
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        var p = new ServeProcess(Process.Start(info)!);
        p._process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                p._serving.TrySetException(new InvalidOperationException("serve ended before it was serving: " + p.Err));
                return;
            }

            lock (p._out)
            {
                p._out.Add(e.Data);
            }

            var m = ServingLine().Match(e.Data);
            if (m.Success)
            {
                p._serving.TrySetResult(new Uri(m.Groups[1].Value));
            }
        };
        p._process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (p._err)
                {
                    p._err.Add(e.Data);
                }
            }
        };
        p._process.BeginOutputReadLine();
        p._process.BeginErrorReadLine();
        return p;
    }

    /// <summary>The HTTP address once the server says it is serving.</summary>
    public Task<Uri> ServingAsync(TimeSpan timeout) => _serving.Task.WaitAsync(timeout);

    /// <summary>Sends SIGTERM (as Kubernetes and systemd stop a service).</summary>
    public void Terminate()
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        kill.WaitForExit();
        if (kill.ExitCode != 0)
        {
            throw new InvalidOperationException($"kill -TERM {_process.Id} exited {kill.ExitCode}");
        }
    }

    /// <summary>Waits for the process to end and returns its exit code.</summary>
    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        await _process.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(timeout);
        _process.WaitForExit(); // flushes the redirected output
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.Dispose();
    }

    /// <summary>The dotnet host running these tests (its runtime is the one the CLI was built for).</summary>
    private static string DotnetHost()
    {
        var fromEnv = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(fromEnv) && File.Exists(fromEnv))
        {
            return fromEnv;
        }

        // RuntimeDirectory is DOTNET_ROOT/shared/Microsoft.NETCore.App/VERSION/.
        var root = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        var host = Path.Combine(root, OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet");
        return File.Exists(host) ? host : "dotnet";
    }

    [GeneratedRegex(@"serving HTTP on (\S+) ")]
    private static partial Regex ServingLine();
}
