using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Server.SharedMemory;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Batchwise.Server;

/// <summary>The Open Inference Protocol over HTTP/REST, with Triton's binary tensor data extension.</summary>
internal static class HttpEndpoints
{
    /// <summary>The header that gives the JSON part's length when binary tensor data follows it.</summary>
    public const string HeaderLength = "Inference-Header-Content-Length";

    // Error messages quote names with ' and must read as written, not as \u0027.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Unknown routes (404) and known routes called with the wrong method (405) answer with the protocol's error object, as Triton does.</summary>
    public static void UseProtocolErrors(IApplicationBuilder app) => app.Use(async (ctx, next) =>
    {
        await next(ctx).ConfigureAwait(false);
        if (!ctx.Response.HasStarted && ctx.Response.ContentLength is null && ctx.Response.StatusCode is 404 or 405)
        {
            var message = ctx.Response.StatusCode == 404
                ? $"Not Found: {ctx.Request.Method} {ctx.Request.Path} is not an endpoint of this server"
                : $"Method Not Allowed: {ctx.Request.Path} does not take {ctx.Request.Method}";
            await WriteErrorAsync(ctx, ctx.Response.StatusCode, message).ConfigureAwait(false);
        }
    });

    public static void Map(IEndpointRouteBuilder app, ModelRepository models, ServerOptions options, RequestTracing tracing, RequestAdmission admission, SystemSharedMemoryRegistry sharedMemory)
    {
        app.MapGet("/v2", ctx => WriteJsonAsync(ctx, 200, w =>
        {
            w.WriteString("name", InferenceServer.Name);
            w.WriteString("version", InferenceServer.Version);
            w.WriteStartArray("extensions");
            foreach (var e in InferenceServer.ExtensionsWith(sharedMemory))
            {
                w.WriteStringValue(e);
            }

            w.WriteEndArray();
        }));
        app.MapGet("/v2/health/live", ctx => Status(ctx, 200));
        app.MapGet("/v2/health/ready", ctx => Status(ctx, models.IsReady ? 200 : 400));

        // Literal segments win over {name}: /v2/models/stats is every model's statistics, not a model named "stats" (as Triton).
        app.MapGet("/v2/models/stats", ctx => Guard(ctx, () => StatsAsync(ctx, models, null, null)));
        app.MapGet("/v2/models/{name}/stats", ctx => Guard(ctx, () => StatsAsync(ctx, models, Route(ctx, "name"), null)));
        app.MapGet("/v2/models/{name}/versions/{version}/stats", ctx => Guard(ctx, () => StatsAsync(ctx, models, Route(ctx, "name"), Route(ctx, "version"))));
        app.MapGet("/v2/models/{name}", ctx => Guard(ctx, () => MetadataAsync(ctx, models.Find(Route(ctx, "name")))));
        app.MapGet("/v2/models/{name}/versions/{version}", ctx => Guard(ctx, () => MetadataAsync(ctx, models.Find(Route(ctx, "name"), Route(ctx, "version")))));
        app.MapGet("/v2/models/{name}/ready", ctx => Guard(ctx, () => ReadyAsync(ctx, models, Route(ctx, "name"), null)));
        app.MapGet("/v2/models/{name}/versions/{version}/ready", ctx => Guard(ctx, () => ReadyAsync(ctx, models, Route(ctx, "name"), Route(ctx, "version"))));
        app.MapGet("/v2/models/{name}/config", ctx => Guard(ctx, () => ConfigAsync(ctx, models.Find(Route(ctx, "name")))));
        app.MapGet("/v2/models/{name}/versions/{version}/config", ctx => Guard(ctx, () => ConfigAsync(ctx, models.Find(Route(ctx, "name"), Route(ctx, "version")))));
        app.MapPost("/v2/models/{name}/infer", ctx => Guard(ctx, () => InferAsync(ctx, models, tracing, admission, sharedMemory, Route(ctx, "name"), null)));
        app.MapPost("/v2/models/{name}/versions/{version}/infer", ctx => Guard(ctx, () => InferAsync(ctx, models, tracing, admission, sharedMemory, Route(ctx, "name"), Route(ctx, "version"))));

        // The trace and logging extensions.
        app.MapGet("/v2/trace/setting", ctx => Guard(ctx, () => TraceAsync(ctx, options.Traces, null, update: false)));
        app.MapPost("/v2/trace/setting", ctx => Guard(ctx, () => TraceAsync(ctx, options.Traces, null, update: true)));
        app.MapGet("/v2/models/{name}/trace/setting", ctx => Guard(ctx, () => TraceAsync(ctx, options.Traces, models.Find(Route(ctx, "name")).Name, update: false)));
        app.MapPost("/v2/models/{name}/trace/setting", ctx => Guard(ctx, () => TraceAsync(ctx, options.Traces, models.Find(Route(ctx, "name")).Name, update: true)));
        app.MapGet("/v2/logging", ctx => Guard(ctx, () => WriteAsync(ctx, 200, LogSettingsJson.Of(options.Logs.Current), ProtocolJson.Relaxed.LogSettingsJson)));
        app.MapPost("/v2/logging", ctx => Guard(ctx, () => LoggingAsync(ctx, options.Logs)));

        // The system shared memory extension.
        app.MapGet("/v2/systemsharedmemory/status", ctx => Guard(ctx, () => SharedMemoryStatusAsync(ctx, sharedMemory, null)));
        app.MapGet("/v2/systemsharedmemory/region/{name}/status", ctx => Guard(ctx, () => SharedMemoryStatusAsync(ctx, sharedMemory, Route(ctx, "name"))));
        app.MapPost("/v2/systemsharedmemory/region/{name}/register", ctx => Guard(ctx, () => SharedMemoryRegisterAsync(ctx, sharedMemory, Route(ctx, "name"))));
        app.MapPost("/v2/systemsharedmemory/region/{name}/unregister", ctx => Guard(ctx, () =>
        {
            sharedMemory.Unregister(Route(ctx, "name"));
            return Status(ctx, 200);
        }));
        app.MapPost("/v2/systemsharedmemory/unregister", ctx => Guard(ctx, () =>
        {
            sharedMemory.Unregister(null);
            return Status(ctx, 200);
        }));

        // The CUDA shared memory extension (registering is refused, in Triton's words, where this server has no GPU).
        app.MapGet("/v2/cudasharedmemory/status", ctx => Guard(ctx, () => CudaSharedMemoryStatusAsync(ctx, sharedMemory.Cuda, null)));
        app.MapGet("/v2/cudasharedmemory/region/{name}/status", ctx => Guard(ctx, () => CudaSharedMemoryStatusAsync(ctx, sharedMemory.Cuda, Route(ctx, "name"))));
        app.MapPost("/v2/cudasharedmemory/region/{name}/register", ctx => Guard(ctx, () => CudaSharedMemoryRegisterAsync(ctx, sharedMemory.Cuda, Route(ctx, "name"))));
        app.MapPost("/v2/cudasharedmemory/region/{name}/unregister", ctx => Guard(ctx, () =>
        {
            sharedMemory.Cuda.Unregister(Route(ctx, "name"));
            return Status(ctx, 200);
        }));
        app.MapPost("/v2/cudasharedmemory/unregister", ctx => Guard(ctx, () =>
        {
            sharedMemory.Cuda.Unregister(null);
            return Status(ctx, 200);
        }));

        // The model repository extension.
        app.MapPost("/v2/repository/index", ctx => Guard(ctx, () => IndexAsync(ctx, models)));
        app.MapPost("/v2/repository/models/{name}/load", ctx => Guard(ctx, () => LoadAsync(ctx, models, Route(ctx, "name"))));
        app.MapPost("/v2/repository/models/{name}/unload", ctx => Guard(ctx, async () =>
        {
            await models.UnloadAsync(Route(ctx, "name")).ConfigureAwait(false);
            await Status(ctx, 200).ConfigureAwait(false);
        }));
    }

    /// <summary>Writes the protocol's error object.</summary>
    public static Task WriteErrorAsync(HttpContext ctx, int status, string message, int? retryAfter = null)
    {
        if (ctx.Response.HasStarted)
        {
            return Task.CompletedTask;
        }

        if (retryAfter is { } s)
        {
            ctx.Response.Headers.RetryAfter = s.ToString(CultureInfo.InvariantCulture);
        }

        return WriteJsonAsync(ctx, status, w => w.WriteString("error", message));
    }

    private static string Route(HttpContext ctx, string key) => (string)ctx.Request.RouteValues[key]!;

    private static Task Status(HttpContext ctx, int status)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentLength = 0;
        return Task.CompletedTask;
    }

    private static async Task Guard(HttpContext ctx, Func<Task> handler)
    {
        try
        {
            await handler().ConfigureAwait(false);
        }
        catch (InferenceError e)
        {
            await WriteErrorAsync(ctx, e.HttpStatus, e.Message, e.RetryAfterSeconds).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e)
        {
            // The rest of the body is never read, so the connection cannot carry another request.
            ctx.Response.Headers.Connection = "close";
            var message = e.StatusCode == StatusCodes.Status413PayloadTooLarge
                ? $"The request body is larger than the server's limit ({ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize} bytes); raise --max-body-size or send smaller batches"
                : e.Message;
            await WriteErrorAsync(ctx, e.StatusCode, message).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; its queued work was dropped and nobody reads the answer.
        }
        catch (Exception e)
        {
            // Not the client's fault: still the protocol's error object, never an empty 500.
            await WriteErrorAsync(ctx, 500, $"Internal error ({e.GetType().Name}): {e.Message}").ConfigureAwait(false);
        }
    }

    private static Task MetadataAsync(HttpContext ctx, ServedModel model) => WriteJsonAsync(ctx, 200, w =>
    {
        w.WriteString("name", model.Name);
        w.WriteStartArray("versions");
        w.WriteStringValue(model.Version);
        w.WriteEndArray();
        w.WriteString("platform", model.Platform);
        WriteSpecs(w, "inputs", model.Inputs);
        WriteSpecs(w, "outputs", model.Outputs);
    });

    private static void WriteSpecs(Utf8JsonWriter w, string key, IReadOnlyList<TensorSpec> specs)
    {
        w.WriteStartArray(key);
        foreach (var s in specs)
        {
            w.WriteStartObject();
            w.WriteString("name", s.Name);
            w.WriteString("datatype", s.ElementType.ProtocolName());
            w.WriteStartArray("shape");
            foreach (var d in ServedModel.ProtocolShape(s))
            {
                w.WriteNumberValue(d);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    /// <summary>Triton's model configuration endpoint (perf_analyzer reads max_batch_size from it).</summary>
    private static async Task ConfigAsync(HttpContext ctx, ServedModel model)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            TritonModelConfig.ToJson(TritonModelConfig.Describe(model)).WriteTo(w);
        }

        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = buffer.WrittenCount;
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted).ConfigureAwait(false);
    }

    private static Task ReadyAsync(HttpContext ctx, ModelRepository models, string name, string? version)
    {
        if (models.IsModelReady(name, version))
        {
            return Status(ctx, 200);
        }

        // An unknown name or version is a 404 with the protocol's error; a known model that is not ready (unloaded,
        // loading, stopping) is a plain 400, as Triton answers.
        try
        {
            models.Find(name, version);
        }
        catch (InferenceError e) when (e.HttpStatus == 503)
        {
        }

        return Status(ctx, 400);
    }

    private static async Task StatsAsync(HttpContext ctx, ModelRepository models, string? name, string? version)
    {
        IEnumerable<ServedModel> selected = name is null ? models.Models : [models.Find(name, version)];
        var response = new StatsResponseJson(selected.Select(m => ModelStatJson.Of(m.Statistics.Snapshot())).ToList());
        await WriteAsync(ctx, 200, response, ProtocolJson.Relaxed.StatsResponseJson).ConfigureAwait(false);
    }

    private static async Task TraceAsync(HttpContext ctx, TraceSettings traces, string? model, bool update)
    {
        var settings = traces.Describe(model);
        if (update)
        {
            var requested = new Dictionary<string, IReadOnlyList<string>?>(StringComparer.Ordinal);
            using var doc = await ReadJsonObjectAsync(ctx, "trace setting").ConfigureAwait(false);
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                requested[p.Name] = p.Value.ValueKind switch
                {
                    JsonValueKind.Null => null,
                    JsonValueKind.String => [p.Value.GetString()!],
                    JsonValueKind.Number => [p.Value.GetRawText()],
                    JsonValueKind.Array when p.Value.EnumerateArray().All(v => v.ValueKind == JsonValueKind.String) => p.Value.EnumerateArray().Select(v => v.GetString()!).ToList(),
                    _ => throw InferenceError.BadRequest($"Trace setting '{p.Name}' must be a string, a list of strings or null"),
                };
            }

            settings = traces.Update(model, requested);
        }

        var json = new System.Text.Json.Nodes.JsonObject();
        foreach (var (key, values) in settings)
        {
            json[key] = key == "trace_level" ? new System.Text.Json.Nodes.JsonArray(values.Select(v => (System.Text.Json.Nodes.JsonNode?)v).ToArray()) : values[0];
        }

        await WriteJsonAsync(ctx, 200, w =>
        {
            foreach (var (key, value) in json)
            {
                w.WritePropertyName(key);
                value!.WriteTo(w);
            }
        }).ConfigureAwait(false);
    }

    private static async Task LoggingAsync(HttpContext ctx, LogSettings logs)
    {
        var requested = new Dictionary<string, object>(StringComparer.Ordinal);
        using (var doc = await ReadJsonObjectAsync(ctx, "log setting").ConfigureAwait(false))
        {
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                requested[p.Name] = p.Value.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    JsonValueKind.Number when p.Value.TryGetInt64(out var n) => n,
                    JsonValueKind.String => p.Value.GetString()!,
                    _ => throw InferenceError.BadRequest($"Log setting '{p.Name}' must be a boolean, an integer or a string"),
                };
            }
        }

        await WriteAsync(ctx, 200, LogSettingsJson.Of(logs.Update(requested)), ProtocolJson.Relaxed.LogSettingsJson).ConfigureAwait(false);
    }

    private static async Task<JsonDocument> ReadJsonObjectAsync(HttpContext ctx, string what)
    {
        var body = await ReadBodyAsync(ctx).ConfigureAwait(false);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body.Length == 0 ? "{}"u8.ToArray() : body);
        }
        catch (JsonException e)
        {
            throw InferenceError.BadRequest($"The {what} request is not valid JSON: {e.Message}");
        }

        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            throw InferenceError.BadRequest($"The {what} request must be a JSON object of settings");
        }

        return doc;
    }

    private static Task SharedMemoryStatusAsync(HttpContext ctx, SystemSharedMemoryRegistry registry, string? name) =>
        RegionStatusAsync(ctx, registry.Status(name), (w, r) =>
        {
            w.WriteString("name", r.Name);
            w.WriteString("key", r.Key);
            w.WriteNumber("offset", r.Offset);
            w.WriteNumber("byte_size", r.ByteSize);
        });

    /// <summary>A shared-memory status answer: a JSON array with one object per region, its fields written by <paramref name="fields"/>.</summary>
    private static Task RegionStatusAsync<TStatus>(HttpContext ctx, IReadOnlyList<TStatus> regions, Action<Utf8JsonWriter, TStatus> fields) =>
        WriteJsonAsync(ctx, 200, w =>
        {
            w.WriteStartArray();
            foreach (var r in regions)
            {
                w.WriteStartObject();
                fields(w, r);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }, array: true);

    private static async Task SharedMemoryRegisterAsync(HttpContext ctx, SystemSharedMemoryRegistry registry, string name)
    {
        var body = await ReadBodyAsync(ctx).ConfigureAwait(false);
        var what = $"register system shared memory region '{name}'";
        using var doc = ParseControlJson(body, what);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("key", out var key))
        {
            throw InferenceError.BadRequest($"{what}: the body must be a JSON object with \"key\", \"byte_size\" and optionally \"offset\"");
        }

        registry.Register(name, RequestValidator.JsonString(key, $"{what}: \"key\""), RegisterInteger(root, "offset", what, required: false), RegisterInteger(root, "byte_size", what, required: true));
        await Status(ctx, 200).ConfigureAwait(false);
    }

    private static Task CudaSharedMemoryStatusAsync(HttpContext ctx, CudaSharedMemoryRegistry registry, string? name) =>
        RegionStatusAsync(ctx, registry.Status(name), (w, r) =>
        {
            w.WriteString("name", r.Name);
            w.WriteNumber("device_id", r.DeviceId);
            w.WriteNumber("byte_size", r.ByteSize);
        });

    /// <summary>Registers a CUDA region from {"raw_handle": {"b64": BASE64 cudaIpcMemHandle_t}, "device_id": N, "byte_size": N}.</summary>
    private static async Task CudaSharedMemoryRegisterAsync(HttpContext ctx, CudaSharedMemoryRegistry registry, string name)
    {
        var body = await ReadBodyAsync(ctx).ConfigureAwait(false);
        if (!registry.IsAvailable)
        {
            // As Triton without GPUs: refused whatever the body says.
            registry.Register(name, [], 0, 0);
        }

        var what = $"register cuda shared memory region '{name}'";
        using var doc = ParseControlJson(body, what);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("raw_handle", out var raw))
        {
            throw InferenceError.BadRequest($"{what}: Shared memory register request has no 'raw_handle' field; send {{\"raw_handle\": {{\"b64\": BASE64}}, \"device_id\": N, \"byte_size\": N}}");
        }

        if (raw.ValueKind != JsonValueKind.Object || !raw.TryGetProperty("b64", out var b64) || b64.ValueKind != JsonValueKind.String)
        {
            throw InferenceError.BadRequest($"{what}: 'raw_handle' must be an object {{\"b64\": \"...\"}} holding the base64 of a cudaIpcMemHandle_t");
        }

        byte[] handle;
        try
        {
            handle = Convert.FromBase64String(b64.GetString()!);
        }
        catch (FormatException)
        {
            throw InferenceError.BadRequest($"{what}: 'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t");
        }

        registry.Register(name, handle, RegisterInteger(root, "device_id", what, required: true), RegisterInteger(root, "byte_size", what, required: true));
        await Status(ctx, 200).ConfigureAwait(false);
    }

    /// <summary>A register body's integer field (>= 0), 0 when it is optional and absent; a 400 naming the field otherwise.</summary>
    private static long RegisterInteger(JsonElement root, string field, string what, bool required)
    {
        if (!root.TryGetProperty(field, out var e))
        {
            return required ? throw InferenceError.BadRequest($"{what}: \"{field}\" is missing") : 0;
        }

        return e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out var v) && v >= 0
            ? v
            : throw InferenceError.BadRequest($"{what}: \"{field}\" must be an integer >= 0");
    }

    private static JsonDocument ParseControlJson(byte[] body, string what)
    {
        try
        {
            return JsonDocument.Parse(body);
        }
        catch (JsonException e)
        {
            throw InferenceError.BadRequest($"{what}: the body is not valid JSON: {e.Message}");
        }
    }

    private static async Task IndexAsync(HttpContext ctx, ModelRepository models)
    {
        var body = await ReadBodyAsync(ctx).ConfigureAwait(false);
        var readyOnly = false;
        if (body.Length > 0)
        {
            try
            {
                readyOnly = JsonSerializer.Deserialize(body, ProtocolJson.Relaxed.RepositoryIndexRequestJson)?.Ready ?? false;
            }
            catch (JsonException e)
            {
                throw InferenceError.BadRequest($"The index request is not valid JSON ({{\"ready\": true|false}}): {e.Message}");
            }
        }

        await WriteAsync(ctx, 200, models.Index(readyOnly), ProtocolJson.Relaxed.IReadOnlyListModelIndexEntry).ConfigureAwait(false);
    }

    private static async Task LoadAsync(HttpContext ctx, ModelRepository models, string name)
    {
        var body = await ReadBodyAsync(ctx).ConfigureAwait(false);
        ModelConfig? config = null;
        if (body.Length > 0)
        {
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(body);
            }
            catch (JsonException e)
            {
                throw InferenceError.BadRequest($"The load request is not valid JSON: {e.Message}");
            }

            using (doc)
            {
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("parameters", out var parameters) && parameters.ValueKind == JsonValueKind.Object)
                {
                    foreach (var p in parameters.EnumerateObject())
                    {
                        if (p.Name == "config")
                        {
                            config = p.Value.ValueKind == JsonValueKind.String
                                ? ParseConfig(name, p.Value.GetString()!)
                                : throw InferenceError.BadRequest($"load '{name}': parameter 'config' must be a string holding the model's config.json");
                        }
                        else if (p.Name.StartsWith("file:", StringComparison.Ordinal))
                        {
                            throw InferenceError.BadRequest($"load '{name}': model files in the request ('{p.Name}') are not supported; put the model in the repository folder and load it by name");
                        }
                    }
                }
            }
        }

        await models.LoadAsync(name, config).ConfigureAwait(false);
        await Status(ctx, 200).ConfigureAwait(false);
    }

    /// <summary>A load request's "config" parameter: the model's config.json as text (Batchwise's keys).</summary>
    internal static ModelConfig ParseConfig(string name, string json)
    {
        try
        {
            return ModelConfig.Parse(json, $"load '{name}': parameter 'config'");
        }
        catch (BatchwiseException e)
        {
            throw InferenceError.BadRequest(e.OneLine);
        }
    }

    private static async Task WriteAsync<T>(HttpContext ctx, int status, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(value, type);
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = bytes.Length;
        await ctx.Response.Body.WriteAsync(bytes, ctx.RequestAborted).ConfigureAwait(false);
    }

    private static async Task InferAsync(HttpContext ctx, ModelRepository models, RequestTracing tracing, RequestAdmission admission, SystemSharedMemoryRegistry sharedMemory, string name, string? version)
    {
        var received = Stopwatch.GetTimestamp();
        using var lease = models.Acquire(name, version);
        var model = lease.Model;
        var timer = model.Statistics.Start(received);
        timer.TraceWith(tracing, "http", ctx.Request.Headers.TryGetValue("traceparent", out var parent) ? parent.ToString() : null);
        try
        {
            await InferAsync(ctx, model, timer, admission, sharedMemory).ConfigureAwait(false);
            timer.Succeeded();
        }
        catch
        {
            timer.Failed(ctx.RequestAborted.IsCancellationRequested ? "cancelled" : "invalid");
            throw;
        }
    }

    private static async Task InferAsync(HttpContext ctx, ServedModel model, RequestTimer timer, RequestAdmission admission, SystemSharedMemoryRegistry sharedMemory)
    {
        using var lease = admission.Admit();
        using var shm = new SharedMemoryUse(sharedMemory);

        // The request's pooled input buffers go back to the pool only here, after the response is written: until then
        // the engine (or a batch being merged) and the response may still read them.
        using var buffers = new RequestBuffers(TensorBufferPool.Shared);
        var request = await ReadBinaryRequestAsync(ctx, model, lease, shm, buffers).ConfigureAwait(false)
            ?? await ReadWholeRequestAsync(ctx, model, lease, shm, buffers).ConfigureAwait(false);
        timer.Identify(request.Id);
        var targets = OutputTargets(model, request.Outputs.Select(o => (o.Index, o.ClassCount, o.Shm)));
        var outputs = await model.InferAsync(request.Inputs, request.Priority, request.Timeout, ctx.RequestAborted, timer, targets).ConfigureAwait(false);
        await WriteResponseAsync(ctx, model, request, outputs, targets).ConfigureAwait(false);
    }

    /// <summary>Any request: the whole body read (and inflated) into memory, then parsed, its inputs copied out of it.</summary>
    private static async Task<ParsedRequest> ReadWholeRequestAsync(HttpContext ctx, ServedModel model, RequestAdmission.Lease lease, SharedMemoryUse shm, RequestBuffers buffers)
    {
        var body = await ReadBodyAsync(ctx, lease).ConfigureAwait(false);
        body = Decompress(ctx, body, lease);
        var headerLength = body.Length;
        if (ctx.Request.Headers.TryGetValue(HeaderLength, out var lengthText))
        {
            if (!int.TryParse(lengthText, NumberStyles.None, CultureInfo.InvariantCulture, out headerLength) || headerLength > body.Length)
            {
                throw InferenceError.BadRequest($"{HeaderLength} is '{lengthText}', but the body has {body.Length} bytes");
            }
        }

        using var doc = ParseJson(body.AsMemory(0, headerLength), lease);
        return ParseRequest(doc.RootElement, body.AsMemory(headerLength), model, lease, shm, buffers);
    }

    /// <summary>
    /// The lean path for binary tensor data (an uncompressed body of known length with Inference-Header-Content-Length):
    /// the JSON header is read into a pooled buffer and parsed, then each input's bytes are read from the connection
    /// straight into its tensor's pooled, pinned buffer, with no copy of the body in between. Null when the request is
    /// not of that form (nothing has been read then).
    /// </summary>
    private static async Task<ParsedRequest?> ReadBinaryRequestAsync(HttpContext ctx, ServedModel model, RequestAdmission.Lease lease, SharedMemoryUse shm, RequestBuffers buffers)
    {
        var encoding = ctx.Request.Headers.ContentEncoding.ToString().Trim();
        if (ctx.Request.ContentLength is not { } length
            || !ctx.Request.Headers.TryGetValue(HeaderLength, out var lengthText)
            || (encoding.Length > 0 && !string.Equals(encoding, "identity", StringComparison.OrdinalIgnoreCase)))
        {
            return null;
        }

        CheckBodyLimit(ctx, length);
        if (!int.TryParse(lengthText, NumberStyles.None, CultureInfo.InvariantCulture, out var headerLength) || headerLength > length)
        {
            throw InferenceError.BadRequest($"{HeaderLength} is '{lengthText}', but the body has {length} bytes");
        }

        lease.Charge(headerLength);
        var header = ArrayPool<byte>.Shared.Rent(Math.Max(headerLength, 1));
        ParsedRequest request;
        try
        {
            await ctx.Request.Body.ReadExactlyAsync(header.AsMemory(0, headerLength), ctx.RequestAborted).ConfigureAwait(false);
            using var doc = ParseJson(header.AsMemory(0, headerLength), lease);
            request = ParseRequest(doc.RootElement, new BinarySection(length - headerLength), model, lease, shm, buffers);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(header);
        }

        // The binary inputs follow the header in input order; their sizes were checked to add up to the rest of the body.
        foreach (var target in request.BinaryReads)
        {
            await ctx.Request.Body.ReadExactlyAsync(target, ctx.RequestAborted).ConfigureAwait(false);
        }

        return request.WithBinaryRead();
    }

    /// <summary>A request body sent with Content-Encoding gzip or deflate (zlib, as HTTP means it), inflated up to the body limit.</summary>
    private static byte[] Decompress(HttpContext ctx, byte[] body, RequestAdmission.Lease? lease)
    {
        var encoding = ctx.Request.Headers.ContentEncoding.ToString().Trim();
        if (encoding.Length == 0 || string.Equals(encoding, "identity", StringComparison.OrdinalIgnoreCase))
        {
            return body;
        }

        var limit = ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize ?? long.MaxValue;
        using var compressed = new MemoryStream(body);
        using Stream inflate = encoding.ToLowerInvariant() switch
        {
            "gzip" => new GZipStream(compressed, CompressionMode.Decompress),
            "deflate" => new ZLibStream(compressed, CompressionMode.Decompress),
            _ => throw InferenceError.BadRequest($"Content-Encoding '{encoding}' is not supported; send gzip, deflate or an uncompressed body"),
        };
        using var inflated = new MemoryStream();
        var buffer = new byte[81920];
        try
        {
            int n;
            while ((n = inflate.Read(buffer)) > 0)
            {
                if (inflated.Length + n > limit)
                {
                    throw new InferenceError(413, Grpc.Core.StatusCode.ResourceExhausted, $"The request body inflates past the server's limit ({limit} bytes); raise --max-body-size or send smaller batches");
                }

                // Charged twice: the stream's buffer, and the copy made at the end.
                lease?.Charge(2L * n);
                inflated.Write(buffer, 0, n);
            }
        }
        catch (InvalidDataException e)
        {
            throw InferenceError.BadRequest($"The request body is not valid {encoding} data: {e.Message}");
        }

        return inflated.ToArray();
    }

    /// <summary>The response encoding the client accepts that the server offers (gzip or deflate), or null.</summary>
    private static string? ResponseEncoding(HttpContext ctx)
    {
        foreach (var value in ctx.Request.Headers.AcceptEncoding)
        {
            foreach (var part in (value ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var name = part.Split(';')[0].Trim().ToLowerInvariant();
                if (name is "gzip" or "deflate" && !part.Contains("q=0", StringComparison.Ordinal))
                {
                    return name;
                }
            }
        }

        return null;
    }

    /// <summary>A 413 for a declared body length above the server's body limit, before anything is read or charged.</summary>
    private static void CheckBodyLimit(HttpContext ctx, long length)
    {
        var limit = ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize;
        if (limit is { } l && length > l)
        {
            throw new BadHttpRequestException("too large", StatusCodes.Status413PayloadTooLarge);
        }
    }

    /// <summary>Reads the body, charging its bytes to the request (when it has a lease) before they are allocated.</summary>
    private static async Task<byte[]> ReadBodyAsync(HttpContext ctx, RequestAdmission.Lease? lease = null)
    {
        if (ctx.Request.ContentLength is { } length)
        {
            CheckBodyLimit(ctx, length);
            lease?.Charge(length);
            var buffer = new byte[length];
            await ctx.Request.Body.ReadExactlyAsync(buffer, ctx.RequestAborted).ConfigureAwait(false);
            return buffer;
        }

        // Chunked: the body limit stops the read; each chunk is charged before the buffer grows for it (twice: a copy is made at the end).
        using var ms = new MemoryStream();
        var chunk = ArrayPool<byte>.Shared.Rent(81920);
        try
        {
            int read;
            while ((read = await ctx.Request.Body.ReadAsync(chunk, ctx.RequestAborted).ConfigureAwait(false)) > 0)
            {
                lease?.Charge(2L * read);
                ms.Write(chunk, 0, read);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }

        return ms.ToArray();
    }

    /// <summary>
    /// Parses the JSON header after charging the memory its parsed form takes: the header is scanned once without
    /// allocating, and each of its tokens costs one 12-byte row of the document's index, rounded up to the array pool's
    /// power of two (an estimate: while the index grows it briefly holds its old and new arrays).
    /// </summary>
    internal static JsonDocument ParseJson(ReadOnlyMemory<byte> json, RequestAdmission.Lease lease)
    {
        try
        {
            long tokens = 0;
            var reader = new Utf8JsonReader(json.Span, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
            while (reader.Read())
            {
                tokens++;
            }

            lease.Charge(JsonIndexBytes(tokens));
            return JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw InferenceError.BadRequest($"The request is not valid JSON: {e.Message}");
        }
    }

    /// <summary>Bytes a parsed JSON document's index takes for <paramref name="tokens"/> tokens.</summary>
    internal static long JsonIndexBytes(long tokens)
    {
        var bytes = Math.Max(1024, tokens * 12);
        return bytes >= 1L << 62 ? bytes : (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)bytes);
    }

    internal sealed record ParsedRequest(string? Id, List<NamedTensor> Inputs, List<(int Index, bool Binary, int ClassCount, SharedMemoryRef? Shm)> Outputs, int Priority, TimeSpan? Timeout)
    {
        /// <summary>Where the body's binary section goes, in order, when it is read after parsing (empty when it was in memory).</summary>
        public List<byte[]> BinaryReads { get; init; } = [];

        /// <summary>BYTES inputs whose data is in <see cref="BinaryReads"/>, decoded once it has been read.</summary>
        public List<(int Input, ElementType Type, long[] Shape, byte[] Data)> Deferred { get; init; } = [];

        /// <summary>The request once its binary section has been read into <see cref="BinaryReads"/>: BYTES inputs decoded (counted and checked).</summary>
        public ParsedRequest WithBinaryRead()
        {
            foreach (var (input, type, shape, data) in Deferred)
            {
                Inputs[input] = new NamedTensor(Inputs[input].Name, TensorCodec.FromBytes(Inputs[input].Name, type, shape, data));
            }

            return this;
        }
    }

    /// <summary>The binary section after the JSON header: in memory, or still to be read (its length only).</summary>
    internal readonly struct BinarySection
    {
        /// <summary>A section in memory.</summary>
        public BinarySection(ReadOnlyMemory<byte> bytes)
        {
            Bytes = bytes;
            Length = bytes.Length;
            InMemory = true;
        }

        /// <summary>A section of <paramref name="length"/> bytes not read yet.</summary>
        public BinarySection(long length) => Length = length;

        public ReadOnlyMemory<byte> Bytes { get; }

        public long Length { get; }

        public bool InMemory { get; }

        public static implicit operator BinarySection(ReadOnlyMemory<byte> bytes) => new(bytes);

        public static implicit operator BinarySection(Memory<byte> bytes) => new(bytes);
    }

    /// <summary>
    /// Reads an inference request: every input's name, datatype and shape checked against the model, its size
    /// computed with overflow checks and its data (JSON values or binary bytes) counted against that size, the total
    /// checked against --max-request-bytes and charged to the lease, and only then the tensors allocated.
    /// </summary>
    internal static ParsedRequest ParseRequest(JsonElement root, BinarySection binary, ServedModel model, RequestAdmission.Lease lease, SharedMemoryUse? shm = null, RequestBuffers? buffers = null)
    {
        shm ??= SharedMemoryUse.None;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw InferenceError.BadRequest("The request must be a JSON object with an \"inputs\" array");
        }

        string? id = root.TryGetProperty("id", out var idElement) && idElement.ValueKind == JsonValueKind.String ? RequestValidator.JsonString(idElement, "The request's \"id\"") : null;
        var binaryOutput = false;
        var priority = 0;
        TimeSpan? timeout = null;
        if (root.TryGetProperty("parameters", out var parameters))
        {
            if (parameters.ValueKind != JsonValueKind.Object)
            {
                throw InferenceError.BadRequest("The request's \"parameters\" must be an object");
            }

            binaryOutput = parameters.TryGetProperty("binary_data_output", out var b) && b.ValueKind == JsonValueKind.True;
            if (parameters.TryGetProperty("priority", out var p))
            {
                priority = RequestValidator.Priority(RequestValidator.Parameter(p));
            }

            if (parameters.TryGetProperty("timeout", out var t))
            {
                timeout = RequestValidator.Timeout(RequestValidator.Parameter(t));
            }
        }

        var outputs = new List<(int, bool, int, SharedMemoryRef?)>();
        if (root.TryGetProperty("outputs", out var requested) && requested.ValueKind == JsonValueKind.Array)
        {
            foreach (var o in requested.EnumerateArray())
            {
                if (o.ValueKind != JsonValueKind.Object || !o.TryGetProperty("name", out var n))
                {
                    throw InferenceError.BadRequest("Each requested output must be an object with a \"name\"");
                }

                var name = RequestValidator.JsonString(n, "A requested output's \"name\"");
                var binaryData = binaryOutput;
                var classCount = 0;
                SharedMemoryRef? target = null;
                if (o.TryGetProperty("parameters", out var op) && op.ValueKind == JsonValueKind.Object)
                {
                    target = SharedMemoryParameters(shm, $"Output '{name}'", op);
                    if (op.TryGetProperty("classification", out var cls))
                    {
                        classCount = cls.ValueKind == JsonValueKind.Number && cls.TryGetInt32(out var k) && k >= 1
                            ? k
                            : throw InferenceError.BadRequest($"Output '{name}': parameter 'classification' must be a positive integer (the number of classes to return)");
                    }

                    if (op.TryGetProperty("binary_data", out var bd))
                    {
                        binaryData = bd.ValueKind == JsonValueKind.True;
                    }
                }

                outputs.Add((model.OutputIndex(name), binaryData && target is null, classCount, target));
            }
        }
        else
        {
            outputs.AddRange(Enumerable.Range(0, model.Outputs.Count).Select(i => (i, binaryOutput, 0, (SharedMemoryRef?)null)));
        }

        if (!root.TryGetProperty("inputs", out var inputs) || inputs.ValueKind != JsonValueKind.Array)
        {
            throw InferenceError.BadRequest("The request has no \"inputs\" array");
        }

        // First pass: sizes only, nothing allocated.
        var planned = new List<(string Name, ElementType Type, long[] Shape, long Offset, long Size, JsonElement Data, SharedMemoryRef? Shm)>();
        long offset = 0, total = 0;
        foreach (var input in inputs.EnumerateArray())
        {
            if (input.ValueKind != JsonValueKind.Object || !input.TryGetProperty("name", out var n))
            {
                throw InferenceError.BadRequest("Each input must be an object with a \"name\", \"datatype\", \"shape\" and \"data\" (or a binary_data_size parameter)");
            }

            var name = RequestValidator.JsonString(n, "An input's \"name\"");
            var type = TensorCodec.ParseDatatype(name, input.TryGetProperty("datatype", out var dt) ? RequestValidator.JsonString(dt, $"Input '{name}': \"datatype\"") : null);
            if (!input.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            {
                throw InferenceError.BadRequest($"Input '{name}' has no \"shape\" array");
            }

            var shape = shapeElement.EnumerateArray().Select(d => d.ValueKind == JsonValueKind.Number && d.TryGetInt64(out var v) ? v : throw InferenceError.BadRequest($"Input '{name}' has a shape that is not a list of 64-bit integers")).ToArray();
            model.CheckInput(name, type, shape);
            // BYTES elements have no fixed size: what was sent is what they take (their count is checked when decoded).
            var bytes = type == ElementType.String ? 0 : RequestValidator.ByteCount(name, type, shape);
            long? binarySize = null;
            var source = input.TryGetProperty("parameters", out var ip) && ip.ValueKind == JsonValueKind.Object ? SharedMemoryParameters(shm, $"Input '{name}'", ip) : null;
            if (source is not null)
            {
                if (input.TryGetProperty("data", out _) || ip.TryGetProperty("binary_data_size", out _))
                {
                    throw InferenceError.BadRequest($"Input '{name}' names a shared memory region and also sends data; send one or the other");
                }

                if (type == ElementType.String)
                {
                    bytes = source.ByteSize;
                }
                else if (source.ByteSize != bytes)
                {
                    throw InferenceError.BadRequest($"Input '{name}': shared_memory_byte_size is {source.ByteSize}; {type.ProtocolName()} {Tensor.ShapeText(shape)} needs {bytes}");
                }

                planned.Add((name, type, shape, -1, source.ByteSize, default, source));
            }
            else if (ip.ValueKind == JsonValueKind.Object && ip.TryGetProperty("binary_data_size", out var bs))
            {
                binarySize = bs.ValueKind == JsonValueKind.Number && bs.TryGetInt64(out var v) && v >= 0 ? v : throw InferenceError.BadRequest($"Input '{name}': binary_data_size must be a non-negative integer");
            }

            if (source is not null)
            {
                // Read from its region in the second pass.
            }
            else if (binarySize is { } size)
            {
                if (type == ElementType.String)
                {
                    bytes = size;
                }
                else
                {
                    RequestValidator.CheckDataBytes(name, type, shape, bytes, size);
                }

                if (size > binary.Length - offset)
                {
                    throw InferenceError.BadRequest($"Input '{name}' claims {size} bytes of binary data at offset {offset}, but only {binary.Length - offset} follow the JSON header");
                }

                planned.Add((name, type, shape, offset, size, default, null));
                offset += size;
            }
            else if (input.TryGetProperty("data", out var data))
            {
                var count = RequestValidator.ElementCount(name, shape);
                var given = TensorCodec.CountJsonValues(data, count);
                RequestValidator.CheckValueCount(name, shape, count, given, more: given > count);
                if (type == ElementType.String)
                {
                    // Each string's bytes plus its 4-byte length, bounded by the JSON text that holds them.
                    bytes = System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(data).Length + (4 * count);
                }

                planned.Add((name, type, shape, -1, 0, data, null));
            }
            else
            {
                throw InferenceError.BadRequest($"Input '{name}' has neither \"data\" nor a binary_data_size parameter");
            }

            total = total > long.MaxValue - bytes ? long.MaxValue : total + bytes;
        }

        if (offset != binary.Length)
        {
            throw InferenceError.BadRequest($"The body has {binary.Length} bytes of binary data after the JSON header, but the inputs' binary_data_size add up to {offset}");
        }

        lease.Admission.CheckRequestBytes(total);
        lease.Charge(total);

        // Second pass: every size is known and paid for; decode (or, for binary data still to be read, give each input
        // the buffer its bytes will be read into).
        var parsed = new List<NamedTensor>(planned.Count);
        var reads = new List<byte[]>();
        var deferred = new List<(int, ElementType, long[], byte[])>();
        foreach (var (name, type, shape, at, size, data, source) in planned)
        {
            Tensor tensor;
            if (source is not null)
            {
                tensor = SharedMemoryTensor(name, type, shape, source, buffers, model);
            }
            else if (at >= 0 && binary.InMemory)
            {
                tensor = TensorCodec.FromBytes(name, type, shape, binary.Bytes.Span.Slice((int)at, (int)size), buffers);
            }
            else if (at >= 0)
            {
                var target = type == ElementType.String || buffers is null ? new byte[size] : buffers.Rent((int)size);
                reads.Add(target);
                if (type == ElementType.String)
                {
                    // Decoded (its elements counted against the shape) once read: see ParsedRequest.WithBinaryRead.
                    deferred.Add((parsed.Count, type, shape, target));
                    tensor = null!;
                }
                else
                {
                    tensor = new Tensor(type, shape, target);
                }
            }
            else
            {
                tensor = TensorCodec.FromJson(name, type, shape, data);
            }

            parsed.Add(new NamedTensor(name, tensor));
        }

        return new ParsedRequest(id, parsed, outputs, priority, timeout) { BinaryReads = reads, Deferred = deferred };
    }

    /// <summary>An input read from its shared memory region (the range was checked against the region and the tensor's size).</summary>
    internal static Tensor SharedMemoryTensor(string name, ElementType type, long[] shape, SharedMemoryRef source, RequestBuffers? buffers = null, ServedModel? model = null)
    {
        if (type == ElementType.String)
        {
            var bytes = new byte[source.ByteSize];
            source.Region.Read(source.Offset, bytes);
            return TensorCodec.FromBytes(name, type, shape, bytes);
        }

        // An engine that stages its inputs (cuda) reads the region itself, when the batch runs: no copy here.
        if (model is { TakesInputSources: true } && source.Region.Source(source.Offset, source.ByteSize, model) is { } inPlace)
        {
            return new Tensor(type, shape, inPlace);
        }

        // The whole array is overwritten by the read, so a pooled one (with an earlier request's bytes) is safe to use.
        var t = buffers is null ? Tensor.Zeros(type, shape) : new Tensor(type, shape, buffers.Rent(checked((int)source.ByteSize)));
        source.Region.Read(source.Offset, t.Data);
        return t;
    }

    /// <summary>
    /// Per model output, where the engine may write it in place: the shared memory the request names for it (raw outputs
    /// only: a classification is computed from the output first), or null everywhere when the request names none.
    /// </summary>
    internal static TensorTarget?[]? OutputTargets(ServedModel model, IEnumerable<(int Index, int ClassCount, SharedMemoryRef? Shm)> outputs)
    {
        TensorTarget?[]? targets = null;
        foreach (var (index, classCount, shm) in outputs)
        {
            if (shm is not null && classCount == 0 && (targets ??= new TensorTarget?[model.Outputs.Count])[index] is null)
            {
                targets[index] = shm.Region.Target(shm.Offset, shm.ByteSize, model);
            }
        }

        return targets;
    }

    /// <summary>
    /// Writes an output into its shared memory region, or a 400 when the bytes given there are too few; nothing to do when
    /// the engine already wrote it there (<paramref name="delivered"/>, the target it was given for this output).
    /// </summary>
    internal static void WriteSharedMemory(string name, Tensor t, SharedMemoryRef target, TensorTarget? delivered = null)
    {
        if (t.ByteCount > target.ByteSize)
        {
            throw InferenceError.BadRequest($"Output '{name}' needs {t.ByteCount} bytes ({t.ElementType.ProtocolName()} {Tensor.ShapeText(t.Shape)}), but shared_memory_byte_size gives {target.ByteSize} in region '{target.Region.Name}'");
        }

        if (delivered is not null && ReferenceEquals(t.Source?.DeliveredTo, delivered))
        {
            return;
        }

        target.Region.Write(target.Offset, t.Data);
    }

    /// <summary>The shared_memory_region / _byte_size / _offset parameters of an input or output, resolved (or null when absent).</summary>
    private static SharedMemoryRef? SharedMemoryParameters(SharedMemoryUse shm, string what, JsonElement parameters)
    {
        string? region = parameters.TryGetProperty("shared_memory_region", out var r) ? RequestValidator.JsonString(r, $"{what}: shared_memory_region") : null;
        IntegerParameter? size = parameters.TryGetProperty("shared_memory_byte_size", out var b) ? RequestValidator.Parameter(b) : null;
        IntegerParameter? offset = parameters.TryGetProperty("shared_memory_offset", out var o) ? RequestValidator.Parameter(o) : null;
        return shm.Resolve(what, region, size, offset);
    }

    private static async Task WriteResponseAsync(HttpContext ctx, ServedModel model, ParsedRequest request, IReadOnlyList<Tensor> modelOutputs, TensorTarget?[]? targets)
    {
        var outputs = request.Outputs.Select(o => model.Present(modelOutputs, o.Index, o.ClassCount)).ToList();
        for (var i = 0; i < outputs.Count; i++)
        {
            if (request.Outputs[i].Shm is { } target)
            {
                var index = request.Outputs[i].Index;
                WriteSharedMemory(model.Outputs[index].Name, outputs[i], target, targets?[index]);
            }
        }

        var buffer = new ArrayBufferWriter<byte>(4096);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            w.WriteString("model_name", model.Name);
            w.WriteString("model_version", model.Version);
            if (request.Id is not null)
            {
                w.WriteString("id", request.Id);
            }

            w.WriteStartArray("outputs");
            for (var i = 0; i < outputs.Count; i++)
            {
                var (index, binary, _, target) = request.Outputs[i];
                var t = outputs[i];
                w.WriteStartObject();
                TensorCodec.WriteHeader(w, model.Outputs[index].Name, t);
                if (target is not null)
                {
                    // The data is in the region; the response says where, as Triton's.
                    w.WriteStartObject("parameters");
                    w.WriteString("shared_memory_region", target.Region.Name);
                    w.WriteNumber("shared_memory_byte_size", t.ByteCount);
                    if (target.Offset != 0)
                    {
                        w.WriteNumber("shared_memory_offset", target.Offset);
                    }

                    w.WriteEndObject();
                }
                else if (binary)
                {
                    w.WriteStartObject("parameters");
                    w.WriteNumber("binary_data_size", t.Data.Length);
                    w.WriteEndObject();
                }
                else
                {
                    w.WritePropertyName("data");
                    TensorCodec.WriteJson(w, t);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        var binaries = request.Outputs.Select((o, i) => (o.Binary, outputs[i].Data)).Where(o => o.Binary).Select(o => o.Data).ToList();
        ctx.Response.StatusCode = 200;
        if (ResponseEncoding(ctx) is { } encoding)
        {
            // The whole body is compressed; Inference-Header-Content-Length stays the JSON's length before compression, as Triton.
            using var packed = new MemoryStream();
            using (Stream deflate = encoding == "gzip" ? new GZipStream(packed, CompressionLevel.Fastest, leaveOpen: true) : new ZLibStream(packed, CompressionLevel.Fastest, leaveOpen: true))
            {
                deflate.Write(buffer.WrittenSpan);
                foreach (var b in binaries)
                {
                    deflate.Write(b);
                }
            }

            ctx.Response.ContentType = binaries.Count == 0 ? "application/json" : "application/octet-stream";
            if (binaries.Count > 0)
            {
                ctx.Response.Headers[HeaderLength] = buffer.WrittenCount.ToString(CultureInfo.InvariantCulture);
            }

            ctx.Response.Headers.ContentEncoding = encoding;
            ctx.Response.ContentLength = packed.Length;
            await ctx.Response.Body.WriteAsync(packed.GetBuffer().AsMemory(0, (int)packed.Length), ctx.RequestAborted).ConfigureAwait(false);
            return;
        }

        if (binaries.Count == 0)
        {
            ctx.Response.ContentType = "application/json";
            ctx.Response.ContentLength = buffer.WrittenCount;
            await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted).ConfigureAwait(false);
            return;
        }

        ctx.Response.ContentType = "application/octet-stream";
        ctx.Response.Headers[HeaderLength] = buffer.WrittenCount.ToString(CultureInfo.InvariantCulture);
        ctx.Response.ContentLength = buffer.WrittenCount + binaries.Sum(b => (long)b.Length);
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted).ConfigureAwait(false);
        foreach (var b in binaries)
        {
            await ctx.Response.Body.WriteAsync(b, ctx.RequestAborted).ConfigureAwait(false);
        }
    }

    private static async Task WriteJsonAsync(HttpContext ctx, int status, Action<Utf8JsonWriter> body, bool array = false)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            if (array)
            {
                body(w);
            }
            else
            {
                w.WriteStartObject();
                body(w);
                w.WriteEndObject();
            }
        }

        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = buffer.WrittenCount;
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted).ConfigureAwait(false);
    }
}
