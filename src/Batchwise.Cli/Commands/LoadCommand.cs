using System.CommandLine;
using System.Globalization;
using Batchwise.Cli.Options;
using Batchwise.Reports;
using Batchwise.Server;
using Batchwise.Server.Load;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise load URL --model NAME`: load any Open Inference Protocol server and report throughput and latency.</summary>
public static class LoadCommand
{
    /// <summary>Creates the load command.</summary>
    public static Command Create()
    {
        var url = new Argument<string>("url") { Description = "Server base URL, e.g. http://127.0.0.1:8000 (for --protocol grpc, the gRPC port: http://127.0.0.1:8001)" };
        var model = new Option<string>("--model", "-m") { Description = "Model name on the server", Required = true, HelpName = "NAME" };
        var protocol = CliOption.Choice("--protocol", "http (binary tensor data extension) or grpc (raw_input_contents)", "http", ["http", "grpc"]);
        var concurrency = SharedOptions.Concurrency(null);
        var rate = CliOption.NumberList("--request-rate", "Open-loop sweep: Poisson arrivals in requests per second", "50,100,200", "-r");
        var duration = SharedOptions.Duration(TimeSpan.FromSeconds(6));
        var warmup = SharedOptions.Warmup(TimeSpan.FromSeconds(1));
        var stability = SharedOptions.StabilityTolerance();
        var batch = SharedOptions.BatchSize();
        var shape = SharedOptions.Shape();
        var timeout = CliOption.Duration("--timeout", "Per-request timeout", TimeSpan.FromSeconds(30), allowZero: false);
        var dataFormat = CliOption.Choice("--data-format", "HTTP tensor encoding: binary (Triton's binary tensor data extension) or json (for servers without it)", "binary", ["binary", "json"]);
        var sharedMemory = CliOption.Choice("--shared-memory", "Where inputs travel, as perf_analyzer's flag: none (in each request), system (written once into POSIX shared memory registered with the server, which must run on this host) or cuda (written once into device memory on GPU 0 of this host, registered through its CUDA IPC handle; needs a GPU here)", "none", ["none", "system", "cuda"]);
        var grpcClient = CliOption.Choice("--grpc-client", "How gRPC inference calls are sent: frames (HTTP/2 connections of the load generator's own, a connection per call in flight, frames as large as the server allows, as grpcio clients send them) or grpc-dotnet (Grpc.Net.Client: 16 KB frames, each sent on its own)", "frames", ["frames", "grpc-dotnet"]);
        var command = new Command("load", "Load an Open Inference Protocol server (ours, Triton, KServe) and report throughput and latency percentiles; --concurrency sweeps a closed loop, --request-rate an open one")
        {
            url, model, protocol, grpcClient, dataFormat, sharedMemory, concurrency, rate, duration, warmup, stability, batch, shape, timeout,
        };
        var reports = ReportOptions.AddTo(command);
        command.SetGuardedAction(async (parse, ct) =>
        {
            // The load generator's sockets complete on their event threads, not through a thread-pool hop per receive and
            // send: less latency added to what it measures and a third of the client CPU per lone request (measured on 2
            // cores: 0.13 -> 0.04 ms). DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0 in the environment keeps the hop.
            InlineSocketCompletions.TryPreferInline();
            var targets = reports.Read(parse);
            var options = new LoadOptions
            {
                Url = ParseUrl(parse.GetValue(url)!),
                JsonData = parse.GetValue(dataFormat) == "json",
                SharedMemory = parse.GetValue(sharedMemory)!,
                Model = parse.GetValue(model)!,
                Protocol = parse.GetValue(protocol)!,
                GrpcClient = parse.GetValue(grpcClient)!,
                Concurrency = parse.GetValue(concurrency) ?? [],
                RequestRates = parse.GetValue(rate) ?? [],
                BatchSize = parse.GetValue(batch),
                Shapes = Benchmarking.ShapeBindings.Parse(parse.GetValue(shape) ?? []),
                Warmup = parse.GetValue(warmup),
                Window = parse.GetValue(duration) / 3,
                StableWindows = 3,
                MaxWindows = 6,
                StabilityThreshold = parse.GetValue(stability),
                RequestTimeout = parse.GetValue(timeout),
            };
            var report = await new LoadGenerator(options).RunAsync(line => Console.Error.WriteLine(line), ct).ConfigureAwait(false);
            Print(targets.HumanConsole, report);
            targets.WriteJson(() => ReportJson.Serialize(report));
            targets.WriteCsv(report.ToCsv);
            targets.SayWritten();
            return report.Points.Any(p => p.Requests == 0) ? CommonOptions.InternalError : 0;
        });
        return command;
    }

    private static Uri ParseUrl(string text)
    {
        var full = text.Contains("://", StringComparison.Ordinal) ? text : "http://" + text;
        return Uri.TryCreate(full, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
            ? uri
            : throw new BatchwiseException($"'{text}' is not an http(s) URL", "Write e.g. http://127.0.0.1:8000.");
    }

    private static void Print(IAnsiConsole console, LoadReport report)
    {
        console.MarkupLine(Markup.Escape($"{report.Model} at {report.Url} over {report.Protocol}, batch {report.BatchSize} ({report.Inputs}); client on {report.Cpu}, {report.Cores} cores"));
        var table = new Table().AddColumns("concurrency / rate", "infer/s", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "stable");
        foreach (var p in report.Points)
        {
            table.AddRow(
                p.Concurrency is { } c ? c.ToString(CultureInfo.InvariantCulture) : $"{p.RequestRate:F1}/s",
                p.InferencesPerSecond.ToString("F1", CultureInfo.InvariantCulture),
                p.RequestsPerSecond.ToString("F1", CultureInfo.InvariantCulture),
                p.Latency.P50.ToString("F2", CultureInfo.InvariantCulture),
                p.Latency.P90.ToString("F2", CultureInfo.InvariantCulture),
                p.Latency.P99.ToString("F2", CultureInfo.InvariantCulture),
                p.Errors == 0 ? "0" : Markup.Escape($"{p.Errors} ({string.Join(", ", p.ErrorKinds.Select(e => $"{e.Key}: {e.Value}"))})"),
                p.Stable ? "yes" : $"no ({p.ThroughputSpreadPercent:F0}%)");
        }

        console.Write(table);
        foreach (var p in report.Points)
        {
            console.MarkupLine(Markup.Escape($"{(p.Concurrency is { } c ? $"concurrency {c}" : $"rate {p.RequestRate:F1}/s")}: {LoadGenerator.DescribeClient(p)}"));
        }
    }
}
