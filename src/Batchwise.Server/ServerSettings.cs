using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Extensions.Logging;

namespace Batchwise.Server;

/// <summary>
/// Trace settings as Triton's trace extension names them, global and per model: trace_level (OFF or TIMESTAMPS),
/// trace_rate (one request in N is traced) and trace_count (traces left, -1: no limit). Traces are OpenTelemetry
/// spans exported over OTLP, so trace_mode is "opentelemetry" and Triton's file settings (trace_file, log_frequency)
/// do not apply.
/// </summary>
public sealed class TraceSettings
{
    /// <summary>The settings a client may change.</summary>
    public static readonly IReadOnlyList<string> Updatable = ["trace_level", "trace_rate", "trace_count"];

    private readonly object _gate = new();
    private readonly Values _global;
    private readonly ConcurrentDictionary<string, Values> _models = new(StringComparer.Ordinal);
    private long _seen;

    /// <summary>Creates settings: off by default, as Triton.</summary>
    public TraceSettings(string level = "OFF", int rate = 1000, int count = -1)
    {
        _global = new Values { Level = CheckLevel(level), Rate = CheckRate(rate.ToString(CultureInfo.InvariantCulture)), Count = CheckCount(count.ToString(CultureInfo.InvariantCulture)) };
    }

    /// <summary>True when no request can be traced (global level OFF and no model overrides it).</summary>
    public bool IsOff => _global.Level == "OFF" && _models.Values.All(v => v.Level is null or "OFF");

    /// <summary>The settings in force for <paramref name="model"/> (null: the global ones), as Triton reports them.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> Describe(string? model)
    {
        lock (_gate)
        {
            var (level, rate, count) = Effective(model);
            return new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal)
            {
                ["trace_level"] = [level],
                ["trace_rate"] = [rate.ToString(CultureInfo.InvariantCulture)],
                ["trace_count"] = [count.ToString(CultureInfo.InvariantCulture)],
                ["log_frequency"] = ["0"],
                ["trace_file"] = [string.Empty],
                ["trace_mode"] = ["opentelemetry"],
            };
        }
    }

    /// <summary>
    /// Updates the settings named in <paramref name="settings"/> (a null or empty value clears a model's own value, so
    /// the global one applies) and returns the settings then in force; a bad name or value is a 400 naming it.
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> Update(string? model, IReadOnlyDictionary<string, IReadOnlyList<string>?> settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        lock (_gate)
        {
            var target = string.IsNullOrEmpty(model) ? _global : _models.GetOrAdd(model, _ => new Values());
            var updated = target.Clone();
            foreach (var (key, value) in settings)
            {
                var text = value is { Count: > 0 } ? value[0] : null;
                if (text is null && ReferenceEquals(target, _global))
                {
                    throw InferenceError.BadRequest($"Trace setting '{key}' cannot be cleared globally; give it a value");
                }

                switch (key)
                {
                    case "trace_level":
                        updated.Level = text is null ? null : CheckLevel(value!.Count == 1 ? text : string.Join(',', value));
                        break;
                    case "trace_rate":
                        updated.Rate = text is null ? null : CheckRate(text);
                        break;
                    case "trace_count":
                        updated.Count = text is null ? null : CheckCount(text);
                        break;
                    case "trace_file" or "log_frequency":
                        throw InferenceError.BadRequest($"Trace setting '{key}' does not apply: traces are OpenTelemetry spans exported over OTLP (trace_mode opentelemetry); set the endpoint with serve --trace-config opentelemetry,url=URL");
                    case "trace_mode":
                        if (text is not null and not "opentelemetry")
                        {
                            throw InferenceError.BadRequest($"trace_mode '{text}' is not supported; this server traces with OpenTelemetry only");
                        }

                        break;
                    default:
                        throw InferenceError.BadRequest($"Unknown trace setting '{key}'; use {string.Join(", ", Updatable)}");
                }
            }

            target.CopyFrom(updated);
            return Describe(model);
        }
    }

    /// <summary>Decides whether a request to <paramref name="model"/> is traced (every trace_rate-th, while trace_count lasts).</summary>
    public bool ShouldTrace(string model)
    {
        if (IsOff)
        {
            return false;
        }

        lock (_gate)
        {
            var (level, rate, count) = Effective(model);
            if (level == "OFF" || count == 0)
            {
                return false;
            }

            if (++_seen % rate != 0)
            {
                return false;
            }

            if (count > 0)
            {
                var owner = _models.TryGetValue(model, out var own) && own.Count is not null ? own : _global;
                owner.Count = count - 1;
            }

            return true;
        }
    }

    private (string Level, int Rate, int Count) Effective(string? model)
    {
        var own = model is not null && _models.TryGetValue(model, out var v) ? v : null;
        return (own?.Level ?? _global.Level!, own?.Rate ?? _global.Rate!.Value, own?.Count ?? _global.Count!.Value);
    }

    private static string CheckLevel(string level)
    {
        var parts = level.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => p.ToUpperInvariant()).ToList();
        if (parts.Count == 1 && parts[0] is "OFF" or "TIMESTAMPS")
        {
            return parts[0];
        }

        if (parts.Contains("TENSORS"))
        {
            throw InferenceError.BadRequest("trace_level TENSORS is not supported; spans carry timestamps, not tensor data (use TIMESTAMPS)");
        }

        throw InferenceError.BadRequest($"trace_level '{level}' is not OFF or TIMESTAMPS");
    }

    private static int CheckRate(string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var rate) && rate >= 1
            ? rate
            : throw InferenceError.BadRequest($"trace_rate '{text}' is not a positive integer (one request in trace_rate is traced)");

    private static int CheckCount(string text) =>
        int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var count) && count >= -1
            ? count
            : throw InferenceError.BadRequest($"trace_count '{text}' is not an integer of -1 (no limit) or more");

    private sealed class Values
    {
        public string? Level { get; set; }

        public int? Rate { get; set; }

        public int? Count { get; set; }

        public Values Clone() => new() { Level = Level, Rate = Rate, Count = Count };

        public void CopyFrom(Values other)
        {
            Level = other.Level;
            Rate = other.Rate;
            Count = other.Count;
        }
    }
}

/// <summary>
/// Log settings as Triton's logging extension names them (log_info, log_warning, log_error, log_verbose_level,
/// log_format), applied live to the server's log: verbose level 1 adds ASP.NET Core's and gRPC's information lines,
/// 2 and more their debug lines. The log goes to the console, so log_file is empty and cannot be set.
/// </summary>
public sealed class LogSettings
{
    private volatile Snapshot _current = new(true, true, true, 0, "default");

    /// <summary>The settings now.</summary>
    public Snapshot Current => _current;

    /// <summary>True when a line of <paramref name="level"/> from <paramref name="category"/> is written.</summary>
    public bool Allows(string? category, LogLevel level)
    {
        var s = _current;
        var framework = category is not null && (category.StartsWith("Microsoft.", StringComparison.Ordinal) || category.StartsWith("Grpc.", StringComparison.Ordinal));
        return level switch
        {
            LogLevel.Trace or LogLevel.Debug => s.VerboseLevel >= 2,
            LogLevel.Information => framework ? s.VerboseLevel >= 1 : s.Info,
            LogLevel.Warning => s.Warning,
            LogLevel.Error or LogLevel.Critical => s.Error,
            _ => false,
        };
    }

    /// <summary>Applies the named settings (booleans, a non-negative verbose level, default or ISO8601) or throws a 400 naming the bad one.</summary>
    public Snapshot Update(IReadOnlyDictionary<string, object> settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var s = _current;
        foreach (var (key, value) in settings)
        {
            s = key switch
            {
                "log_info" => s with { Info = Bool(key, value) },
                "log_warning" => s with { Warning = Bool(key, value) },
                "log_error" => s with { Error = Bool(key, value) },
                "log_verbose_level" => s with { VerboseLevel = value is long l and >= 0 and <= int.MaxValue ? (int)l : throw InferenceError.BadRequest($"log_verbose_level must be an integer of 0 or more, not {value}") },
                "log_format" => s with { Format = value is string f && f is "default" or "ISO8601" ? f : throw InferenceError.BadRequest($"log_format must be \"default\" or \"ISO8601\", not {value}") },
                "log_file" => throw InferenceError.BadRequest("log_file cannot be changed: the server logs to the console (redirect its output to keep a file)"),
                _ => throw InferenceError.BadRequest($"Unknown log setting '{key}'; use log_info, log_warning, log_error, log_verbose_level or log_format"),
            };
        }

        _current = s;
        return s;
    }

    private static bool Bool(string key, object value) =>
        value is bool b ? b : throw InferenceError.BadRequest($"{key} must be true or false, not {value}");

    /// <summary>One set of log settings.</summary>
    public sealed record Snapshot(bool Info, bool Warning, bool Error, int VerboseLevel, string Format)
    {
        /// <summary>The timestamp format of log lines.</summary>
        public string TimestampFormat => Format == "ISO8601" ? "yyyy-MM-dd'T'HH:mm:ss'Z' " : "MMdd HH:mm:ss.ffffff ";
    }
}

/// <summary>The server's log on standard error, filtered and formatted by <see cref="LogSettings"/> as they are now.</summary>
internal sealed class ServerLogProvider(LogSettings settings) : ILoggerProvider
{
    private static readonly object WriteLock = new();

    public ILogger CreateLogger(string categoryName) => new Logger(settings, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(LogSettings settings, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => settings.Allows(category, logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            var s = settings.Current;
            var letter = logLevel switch
            {
                LogLevel.Error or LogLevel.Critical => 'E',
                LogLevel.Warning => 'W',
                LogLevel.Information => 'I',
                _ => 'V',
            };
            var now = DateTime.UtcNow;
            var line = s.Format == "ISO8601"
                ? $"{now.ToString(s.TimestampFormat, CultureInfo.InvariantCulture)}{letter} {category}] {formatter(state, exception)}"
                : $"{letter}{now.ToString(s.TimestampFormat, CultureInfo.InvariantCulture)}{category}] {formatter(state, exception)}";
            if (exception is not null && s.VerboseLevel >= 1)
            {
                line += Environment.NewLine + exception;
            }

            lock (WriteLock)
            {
                Console.Error.WriteLine(line);
            }
        }
    }
}
