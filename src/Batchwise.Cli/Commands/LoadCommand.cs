using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Batchwise.Server.Load;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise load URL --model NAME`: load any Open Inference Protocol server and report throughput and latency.</summary>
public static class LoadCommand
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>Creates the load command.</summary>
    public static Command Create()
    {
        var url = new Argument<string>("url") { Description = "Server base URL, e.g. http://127.0.0.1:8000 (for --protocol grpc, the gRPC port: http://127.0.0.1:8001)" };
        var model = new Option<string>("--model", "-m") { Description = "Model name on the server", Required = true };
        var protocol = new Option<string>("--protocol") { Description = "http (binary tensor data extension) or grpc (raw_input_contents)", DefaultValueFactory = _ => "http" };
        var concurrency = new Option<string?>("--concurrency", "-c") { Description = "Closed-loop sweep: clients with one request each outstanding, e.g. 1,8,32" };
        var rate = new Option<string?>("--request-rate", "-r") { Description = "Open-loop sweep: Poisson arrivals in requests per second, e.g. 50,100,200" };
        var duration = new Option<double>("--duration", "-d") { Description = "Seconds measured per point (three windows; up to twice as long if they disagree)", DefaultValueFactory = _ => 6 };
        var warmup = new Option<double>("--warmup") { Description = "Seconds of load discarded before each point", DefaultValueFactory = _ => 1 };
        var stability = new Option<double>("--stability") { Description = "Largest spread of throughput and p50 across the windows, in percent, for a point to count as stable", DefaultValueFactory = _ => 10 };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Batch size of each request (fills a dynamic first dimension)", DefaultValueFactory = _ => 1 };
        var shape = new Option<string[]>("--shape") { Description = "Shape of an input with dynamic dimensions: INPUT:DIMS with `batch` for the batch axis (x:batch,3,224,224), as bench takes it; repeatable", AllowMultipleArgumentsPerToken = true };
        var timeout = new Option<double>("--timeout") { Description = "Per-request timeout in seconds", DefaultValueFactory = _ => 30 };
        var dataFormat = new Option<string>("--data-format") { Description = "HTTP tensor encoding: binary (Triton's binary tensor data extension) or json (for servers without it)", DefaultValueFactory = _ => "binary" };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON (schema: LoadReport, snake_case)" };
        var csv = new Option<bool>("--csv") { Description = "Print one CSV row per point" };
        var command = new Command("load", "Load an Open Inference Protocol server (ours, Triton, KServe) and report throughput and latency percentiles")
        {
            url, model, protocol, dataFormat, concurrency, rate, duration, warmup, stability, batch, shape, timeout, json, csv,
        };
        command.SetGuardedAction(async (parse, ct) =>
        {
            var text = parse.GetValue(url)!;
            if (!text.Contains("://", StringComparison.Ordinal))
            {
                text = "http://" + text;
            }

            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            {
                throw new BatchwiseException($"'{parse.GetValue(url)}' is not an http(s) URL", "Write e.g. http://127.0.0.1:8000.");
            }

            var seconds = parse.GetValue(duration);
            if (seconds <= 0 || parse.GetValue(warmup) < 0 || parse.GetValue(batch) < 1)
            {
                throw new BatchwiseException("--duration and --batch-size must be positive and --warmup not negative", "e.g. --duration 6 --batch-size 1.");
            }

            var format = parse.GetValue(dataFormat)!.ToLowerInvariant();
            if (format is not ("binary" or "json"))
            {
                throw new BatchwiseException($"--data-format '{format}' is not binary or json", "Use --data-format binary (default) or json.");
            }

            var options = new LoadOptions
            {
                Url = uri,
                JsonData = format == "json",
                Model = parse.GetValue(model)!,
                Protocol = parse.GetValue(protocol)!,
                Concurrency = ParseList(parse.GetValue(concurrency), "--concurrency", s => int.Parse(s, NumberStyles.None, CultureInfo.InvariantCulture)),
                RequestRates = ParseList(parse.GetValue(rate), "--request-rate", s => double.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture)),
                BatchSize = parse.GetValue(batch),
                Shapes = Benchmarking.ShapeBindings.Parse(parse.GetValue(shape) ?? []),
                Warmup = TimeSpan.FromSeconds(parse.GetValue(warmup)),
                Window = TimeSpan.FromSeconds(seconds / 3),
                StableWindows = 3,
                MaxWindows = 6,
                StabilityThreshold = parse.GetValue(stability) / 100,
                RequestTimeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
            };
            var generator = new LoadGenerator(options);
            var report = await generator.RunAsync(line => Console.Error.WriteLine(line), ct).ConfigureAwait(false);
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(report, Json));
            }
            else if (parse.GetValue(csv))
            {
                Console.Write(ToCsv(report));
            }
            else
            {
                Print(report);
            }

            return report.Points.Any(p => p.Requests == 0) ? CommonOptions.InternalError : 0;
        });
        return command;
    }

    /// <summary>The report as CSV, one row per point.</summary>
    public static string ToCsv(LoadReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var sb = new StringBuilder("model,protocol,batch_size,concurrency,request_rate,requests_per_second,inferences_per_second,p50_ms,p90_ms,p95_ms,p99_ms,mean_ms,max_ms,requests,errors,stable,throughput_spread_percent\n");
        foreach (var p in report.Points)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"{report.Model},{report.Protocol},{report.BatchSize},{p.Concurrency},{p.RequestRate},{p.RequestsPerSecond:F2},{p.InferencesPerSecond:F2},{p.Latency.P50:F3},{p.Latency.P90:F3},{p.Latency.P95:F3},{p.Latency.P99:F3},{p.Latency.Mean:F3},{p.Latency.Max:F3},{p.Requests},{p.Errors},{(p.Stable ? "true" : "false")},{p.ThroughputSpreadPercent:F1}");
        }

        return sb.ToString();
    }

    private static void Print(LoadReport report)
    {
        AnsiConsole.MarkupLine(Markup.Escape($"{report.Model} at {report.Url} over {report.Protocol}, batch {report.BatchSize} ({report.Inputs}); client on {report.Cpu}, {report.Cores} cores"));
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

        AnsiConsole.Write(table);
    }

    private static IReadOnlyList<T> ParseList<T>(string? text, string option, Func<string, T> parse)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return [];
        }

        try
        {
            return text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(parse).ToList();
        }
        catch (FormatException)
        {
            throw new BatchwiseException($"{option} '{text}' is not a comma-separated list of numbers", $"Write e.g. {option} 1,8,32.");
        }
        catch (OverflowException)
        {
            throw new BatchwiseException($"{option} '{text}' has a number out of range", $"Write e.g. {option} 1,8,32.");
        }
    }
}
