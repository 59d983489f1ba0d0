using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Batchwise.Cli.Tests;

/// <summary>D5 and D7, against `batchwise serve` as its own process.</summary>
public sealed partial class ServeShutdownTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// D5: 16 clients send batch-8 requests in a loop; SIGTERM arrives while requests are in flight and queued. Every
    /// request the server accepted is answered (200), the rest are refused cleanly (503 or connection refused), the
    /// drain outlasts the 2 s that used to cut it off, and the process exits 0 saying nothing was dropped.
    /// </summary>
    [Fact]
    public async Task Sigterm_under_load_answers_every_accepted_request_and_exits_0()
    {
        using var serve = ServeProcess.Start("serve", "zoo:resnet18?size=96", "--http-port", "0", "--grpc-port", "0", "--max-batch-size", "8", "--max-queue-delay-us", "0");
        var address = await serve.ServingAsync(TimeSpan.FromMinutes(3));
        var body = BinaryRequest(8, 3 * 96 * 96, out var headerLength);
        var ok = 0;
        var refused503 = 0;
        var refusedConnection = 0;
        var okAfterSignal = 0;
        var signalled = 0;
        var failures = new ConcurrentBag<string>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var firstAnswers = new CountdownEvent(16);

        async Task ClientAsync()
        {
            using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(2) };
            var counted = false;
            while (!stop.IsCancellationRequested)
            {
                using var content = new ByteArrayContent(body);
                content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                content.Headers.Add("Inference-Header-Content-Length", headerLength.ToString(System.Globalization.CultureInfo.InvariantCulture));
                try
                {
                    using var response = await http.PostAsync(new Uri("/v2/models/resnet18/infer", UriKind.Relative), content, stop.Token);
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        Interlocked.Increment(ref ok);
                        if (Volatile.Read(ref signalled) == 1)
                        {
                            Interlocked.Increment(ref okAfterSignal);
                        }
                    }
                    else if (response.StatusCode == HttpStatusCode.ServiceUnavailable)
                    {
                        Interlocked.Increment(ref refused503);
                        return;
                    }
                    else
                    {
                        failures.Add($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(Ct)}");
                        return;
                    }
                }
                catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.ConnectionError && e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
                {
                    Interlocked.Increment(ref refusedConnection);
                    return;
                }
                catch (HttpRequestException e)
                {
                    // A request sent and then cut off: what a drain must never do to an accepted request.
                    failures.Add($"{e.HttpRequestError}: {e.Message} {e.InnerException?.Message}");
                    return;
                }

                if (!counted)
                {
                    counted = true;
                    firstAnswers.Signal();
                }
            }
        }

        var clients = Enumerable.Range(0, 16).Select(_ => Task.Run(ClientAsync, Ct)).ToArray();
        Assert.True(firstAnswers.Wait(TimeSpan.FromMinutes(3), Ct), "every client got a first answer");
        Volatile.Write(ref signalled, 1);
        serve.Terminate();
        var exitCode = await serve.WaitAsync(TimeSpan.FromMinutes(2));
        await Task.WhenAll(clients).WaitAsync(TimeSpan.FromMinutes(1), Ct);

        var output = serve.Out;
        TestContext.Current.SendDiagnosticMessage($"exit {exitCode}; clients: {ok} answered ({okAfterSignal} after SIGTERM), {refused503} refused 503, {refusedConnection} refused connection; server: {string.Join(" | ", output.Split('\n').Where(l => l.StartsWith("stop", StringComparison.Ordinal)))}");
        Assert.True(exitCode == 0, $"exit code {exitCode}\n{output}\n{serve.Err}");
        Assert.True(failures.IsEmpty, "requests cut off: " + string.Join(" | ", failures));
        var inFlight = int.Parse(InFlightLine().Match(output).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(inFlight > 0, "SIGTERM arrived with requests in flight: " + output);
        Assert.True(okAfterSignal > 0, "requests in flight at SIGTERM were answered");
        Assert.Contains("stopped: every accepted request answered", output, StringComparison.Ordinal);
        Assert.Equal(16, refused503 + refusedConnection);
        Assert.DoesNotContain("   at ", serve.Err, StringComparison.Ordinal);
    }

    /// <summary>D7: a port in use is one line on stderr and exit code 2, with no stack trace anywhere.</summary>
    [Fact]
    public async Task A_port_in_use_is_one_line_without_a_stack_trace()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var serve = ServeProcess.Start("serve", "zoo:mlp", "--http-port", port, "--grpc-port", "0");
        var exitCode = await serve.WaitAsync(TimeSpan.FromMinutes(2));
        Assert.Equal(2, exitCode);
        var err = serve.Err.Trim();
        Assert.Single(err.Split('\n'));
        Assert.Contains($"Cannot listen on 127.0.0.1 ports {port}/0", err, StringComparison.Ordinal);
        Assert.Contains("address already in use", err, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("   at ", serve.Out + serve.Err, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", serve.Out, StringComparison.Ordinal);
    }

    /// <summary>A Triton binary request: the JSON header, then rows x features FP32 values.</summary>
    private static byte[] BinaryRequest(int rows, int features, out int headerLength)
    {
        var header = System.Text.Encoding.UTF8.GetBytes(
            "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[" + rows + ",3,96,96],\"parameters\":{\"binary_data_size\":" + (rows * features * 4)
            + "}}],\"outputs\":[{\"name\":\"logits\",\"parameters\":{\"binary_data\":true}}]}");
        headerLength = header.Length;
        var body = new byte[header.Length + (rows * features * 4)];
        header.CopyTo(body, 0);
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(body.AsSpan(header.Length));
        var rng = new Random(3);
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (float)rng.NextDouble();
        }

        return body;
    }

    [GeneratedRegex(@"stopping: (\d+) accepted requests in flight")]
    private static partial Regex InFlightLine();
}
