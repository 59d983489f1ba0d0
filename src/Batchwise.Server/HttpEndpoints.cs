using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Batchwise.Engines;
using Batchwise.Onnx;
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

    public static void Map(IEndpointRouteBuilder app, ModelRepository models, RequestAdmission admission)
    {
        app.MapGet("/v2", ctx => WriteJsonAsync(ctx, 200, w =>
        {
            w.WriteString("name", InferenceServer.Name);
            w.WriteString("version", InferenceServer.Version);
            w.WriteStartArray("extensions");
            foreach (var e in InferenceServer.Extensions)
            {
                w.WriteStringValue(e);
            }

            w.WriteEndArray();
        }));
        app.MapGet("/v2/health/live", ctx => Status(ctx, 200));
        app.MapGet("/v2/health/ready", ctx => Status(ctx, models.IsReady ? 200 : 400));
        app.MapGet("/v2/models/{name}", ctx => Guard(ctx, () => MetadataAsync(ctx, models.Find(Route(ctx, "name")))));
        app.MapGet("/v2/models/{name}/versions/{version}", ctx => Guard(ctx, () => MetadataAsync(ctx, models.Find(Route(ctx, "name"), Route(ctx, "version")))));
        app.MapGet("/v2/models/{name}/ready", ctx => Guard(ctx, () => Status(ctx, models.Find(Route(ctx, "name")).IsReady ? 200 : 400)));
        app.MapGet("/v2/models/{name}/versions/{version}/ready", ctx => Guard(ctx, () => Status(ctx, models.Find(Route(ctx, "name"), Route(ctx, "version")).IsReady ? 200 : 400)));
        app.MapGet("/v2/models/{name}/config", ctx => Guard(ctx, () => ConfigAsync(ctx, models.Find(Route(ctx, "name")))));
        app.MapGet("/v2/models/{name}/versions/{version}/config", ctx => Guard(ctx, () => ConfigAsync(ctx, models.Find(Route(ctx, "name"), Route(ctx, "version")))));
        app.MapPost("/v2/models/{name}/infer", ctx => Guard(ctx, () => InferAsync(ctx, models.Find(Route(ctx, "name")), admission)));
        app.MapPost("/v2/models/{name}/versions/{version}/infer", ctx => Guard(ctx, () => InferAsync(ctx, models.Find(Route(ctx, "name"), Route(ctx, "version")), admission)));
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
    private static Task ConfigAsync(HttpContext ctx, ServedModel model) => WriteJsonAsync(ctx, 200, w =>
    {
        w.WriteString("name", model.Name);
        w.WriteString("platform", model.Platform);
        w.WriteString("backend", model.Engine);
        w.WriteNumber("max_batch_size", model.MaxBatchSize);
        foreach (var (key, specs) in new[] { ("input", model.Inputs), ("output", model.Outputs) })
        {
            w.WriteStartArray(key);
            foreach (var s in specs)
            {
                w.WriteStartObject();
                w.WriteString("name", s.Name);
                w.WriteString("data_type", "TYPE_" + s.ElementType.ProtocolName());
                w.WriteStartArray("dims");
                foreach (var dim in ServedModel.ProtocolShape(s).Skip(model.MaxBatchSize > 0 ? 1 : 0))
                {
                    w.WriteNumberValue(dim);
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        if (model.Config.DynamicBatching is { } d)
        {
            w.WriteStartObject("dynamic_batching");
            w.WriteNumber("max_queue_delay_microseconds", d.MaxQueueDelayMicroseconds);
            w.WriteStartArray("preferred_batch_size");
            foreach (var p in model.Batcher.PreferredBatchSizes)
            {
                w.WriteNumberValue(p);
            }

            w.WriteEndArray();
            w.WriteNumber("priority_levels", model.Batcher.PriorityLevels);
            w.WriteNumber("default_priority_level", model.Batcher.ResolvedDefaultPriority);
            w.WriteNumber("default_timeout_microseconds", d.DefaultTimeoutMicroseconds);
            w.WriteNumber("max_queue_size", model.Batcher.MaxQueueSize);
            w.WriteEndObject();
        }

        w.WriteStartArray("instance_group");
        w.WriteStartObject();
        w.WriteNumber("count", model.Batcher.InstanceCount);
        w.WriteString("kind", model.Engine == "ort" ? "KIND_CPU" : "KIND_GPU");
        w.WriteEndObject();
        w.WriteEndArray();
    });

    private static async Task InferAsync(HttpContext ctx, ServedModel model, RequestAdmission admission)
    {
        var encoding = ctx.Request.Headers.ContentEncoding.ToString();
        if (encoding.Length > 0 && !string.Equals(encoding, "identity", StringComparison.OrdinalIgnoreCase))
        {
            throw InferenceError.BadRequest($"Content-Encoding '{encoding}' is not supported yet; send the request uncompressed");
        }

        using var lease = admission.Admit();
        var body = await ReadBodyAsync(ctx, lease).ConfigureAwait(false);
        var headerLength = body.Length;
        if (ctx.Request.Headers.TryGetValue(HeaderLength, out var lengthText))
        {
            if (!int.TryParse(lengthText, NumberStyles.None, CultureInfo.InvariantCulture, out headerLength) || headerLength > body.Length)
            {
                throw InferenceError.BadRequest($"{HeaderLength} is '{lengthText}', but the body has {body.Length} bytes");
            }
        }

        ParsedRequest request;
        using (var doc = ParseJson(body.AsMemory(0, headerLength), lease))
        {
            request = ParseRequest(doc.RootElement, body.AsMemory(headerLength), model, lease);
        }

        var outputs = await model.InferAsync(request.Inputs, request.Priority, request.Timeout, ctx.RequestAborted).ConfigureAwait(false);
        await WriteResponseAsync(ctx, model, request, outputs).ConfigureAwait(false);
    }

    /// <summary>Reads the body, charging its bytes to the request before they are allocated.</summary>
    private static async Task<byte[]> ReadBodyAsync(HttpContext ctx, RequestAdmission.Lease lease)
    {
        if (ctx.Request.ContentLength is { } length)
        {
            var limit = ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize;
            if (limit is { } l && length > l)
            {
                throw new BadHttpRequestException("too large", StatusCodes.Status413PayloadTooLarge);
            }

            lease.Charge(length);
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
                lease.Charge(2L * read);
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

    internal sealed record ParsedRequest(string? Id, List<NamedTensor> Inputs, List<(int Index, bool Binary)> Outputs, int Priority, TimeSpan? Timeout);

    /// <summary>
    /// Reads an inference request: every input's name, datatype and shape checked against the model, its size
    /// computed with overflow checks and its data (JSON values or binary bytes) counted against that size, the total
    /// checked against --max-request-bytes and charged to the lease, and only then the tensors allocated.
    /// </summary>
    internal static ParsedRequest ParseRequest(JsonElement root, ReadOnlyMemory<byte> binary, ServedModel model, RequestAdmission.Lease lease)
    {
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

        var outputs = new List<(int, bool)>();
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
                if (o.TryGetProperty("parameters", out var op) && op.ValueKind == JsonValueKind.Object)
                {
                    if (op.TryGetProperty("classification", out _))
                    {
                        throw InferenceError.BadRequest($"Output '{name}': the classification extension is not supported yet; request the raw output");
                    }

                    if (op.TryGetProperty("binary_data", out var bd))
                    {
                        binaryData = bd.ValueKind == JsonValueKind.True;
                    }
                }

                outputs.Add((model.OutputIndex(name), binaryData));
            }
        }
        else
        {
            outputs.AddRange(Enumerable.Range(0, model.Outputs.Count).Select(i => (i, binaryOutput)));
        }

        if (!root.TryGetProperty("inputs", out var inputs) || inputs.ValueKind != JsonValueKind.Array)
        {
            throw InferenceError.BadRequest("The request has no \"inputs\" array");
        }

        // First pass: sizes only, nothing allocated.
        var planned = new List<(string Name, ElementType Type, long[] Shape, long Offset, JsonElement Data)>();
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
            var bytes = RequestValidator.ByteCount(name, type, shape);
            long? binarySize = null;
            if (input.TryGetProperty("parameters", out var ip) && ip.ValueKind == JsonValueKind.Object && ip.TryGetProperty("binary_data_size", out var bs))
            {
                binarySize = bs.ValueKind == JsonValueKind.Number && bs.TryGetInt64(out var v) && v >= 0 ? v : throw InferenceError.BadRequest($"Input '{name}': binary_data_size must be a non-negative integer");
            }

            if (binarySize is { } size)
            {
                RequestValidator.CheckDataBytes(name, type, shape, bytes, size);
                if (size > binary.Length - offset)
                {
                    throw InferenceError.BadRequest($"Input '{name}' claims {size} bytes of binary data at offset {offset}, but only {binary.Length - offset} follow the JSON header");
                }

                planned.Add((name, type, shape, offset, default));
                offset += size;
            }
            else if (input.TryGetProperty("data", out var data))
            {
                var count = RequestValidator.ElementCount(name, shape);
                var given = TensorCodec.CountJsonValues(data, count);
                RequestValidator.CheckValueCount(name, shape, count, given, more: given > count);
                planned.Add((name, type, shape, -1, data));
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

        // Second pass: every size is known and paid for; decode.
        var parsed = new List<NamedTensor>(planned.Count);
        foreach (var (name, type, shape, at, data) in planned)
        {
            var tensor = at >= 0
                ? TensorCodec.FromBytes(name, type, shape, binary.Span.Slice((int)at, (int)RequestValidator.ByteCount(name, type, shape)))
                : TensorCodec.FromJson(name, type, shape, data);
            parsed.Add(new NamedTensor(name, tensor));
        }

        return new ParsedRequest(id, parsed, outputs, priority, timeout);
    }

    private static async Task WriteResponseAsync(HttpContext ctx, ServedModel model, ParsedRequest request, IReadOnlyList<Tensor> outputs)
    {
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
            foreach (var (index, binary) in request.Outputs)
            {
                var t = outputs[index];
                w.WriteStartObject();
                TensorCodec.WriteHeader(w, model.Outputs[index].Name, t);
                if (binary)
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

        var binaries = request.Outputs.Where(o => o.Binary).Select(o => outputs[o.Index].Data).ToList();
        ctx.Response.StatusCode = 200;
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

    private static async Task WriteJsonAsync(HttpContext ctx, int status, Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }

        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = buffer.WrittenCount;
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted).ConfigureAwait(false);
    }
}
