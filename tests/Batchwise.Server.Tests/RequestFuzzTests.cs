using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Batchwise.Server.Protocol;
using CsCheck;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests;

/// <summary>
/// Property-based fuzzing (CsCheck) of the inference request paths with malformed JSON, binary and gRPC requests,
/// built from pieces that are valid, nearly valid and hostile (sizes that overflow or lie, values out of range,
/// invalid UTF-8, wrong types, mutated bytes), plus a seed corpus of every case issue 14 lists. Invariants: the
/// status is one the protocol allows for bad input (never a 500 or UNKNOWN / INTERNAL), an HTTP error is
/// {"error": "..."}, the decoder allocates no more than the request's budget, every byte charged is returned, and
/// the server still answers correctly afterwards.
/// </summary>
[Collection(nameof(MeasuredMemory))]
public sealed class RequestFuzzTests : IClassFixture<HardeningFixture>
{
    private static readonly HashSet<int> AllowedHttp = [200, 400, 404, 413, 503, 504];

    private static readonly HashSet<StatusCode> AllowedGrpc =
        [StatusCode.OK, StatusCode.InvalidArgument, StatusCode.NotFound, StatusCode.ResourceExhausted, StatusCode.Unavailable, StatusCode.DeadlineExceeded];

    private static readonly long[] Sizes = [0, 1, 2, 3, 4, 7, 8, 9, 64, -1, -2, int.MaxValue, 1L + int.MaxValue, uint.MaxValue, (1L << 32) + 1, 1L << 53, 1L << 61, 1L << 62, long.MaxValue, long.MinValue, 500_000_000, 1_000_000_000_000_000_000];

    private static readonly string[] Values =
    [
        "0", "1", "-1", "2", "1.5", "-0", "1e400", "-1e400", "1e39", "1e-400", "40000", "-32769", "65504", "65520", "3.4028236e38",
        "9223372036854775807", "9223372036854775808", "18446744073709551615", "18446744073709551616", "1000000000000000000",
        "86400000001", "\"NaN\"", "\"Infinity\"", "\"-inf\"", "\"1\"", "\"x\"", "true", "false", "null", "[]", "{}", "[[1],[2]]", "[1,[2]]",
    ];

    private static readonly string[] Names = ["x", "k", "input", "y", "nope", "", "X", "x\\u0000", "\\ud800"];

    private static readonly string[] Datatypes = ["FP32", "INT16", "FP16", "BF16", "FP64", "INT64", "INT8", "UINT8", "UINT64", "BOOL", "BYTES", "fp32", "", "STRING", "TYPE_FP32"];

    private static readonly string[] Models = ["dyn", "i16", "mlp", "nope", "DYN"];

    /// <summary>Every request issue 14 lists (D1-D4 and +Infinity), and valid ones to mutate from.</summary>
    private static readonly string[] SeedCorpus =
    [
        """{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 500000000], "data": [1.0]}]}""",
        """{"inputs":[1]}""",
        """{"inputs":["x"]}""",
        """{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}],"outputs":[1]}""",
        """{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}],"parameters":{"timeout":1000000000000000000}}""",
        """{"inputs":[{"name":"x","datatype":"FP32","shape":[32,4611686018427387904],"data":[1]}]}""",
        """{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4611686018427387904],"parameters":{"binary_data_size":0}}]}""",
        """{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1e400]}]}""",
        """{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}],"parameters":{"priority":9223372036854775808}}""",
        """{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}],"parameters":{"priority":4294967297}}""",
        """{"inputs":[{"name":"k","datatype":"INT16","shape":[1,4],"data":[1,2,40000,4]}]}""",
        """{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4]]}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}""",
        """{"id":"a","inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[""" + string.Join(",", Enumerable.Repeat("0.5", 64)) + "]}]}",
    ];

    private readonly HardeningFixture _fixture;

    public RequestFuzzTests(HardeningFixture fixture) => _fixture = fixture;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Seconds the live fuzzer runs: BATCHWISE_FUZZ_SECONDS, default 60 (the CI run).</summary>
    private static int FuzzSeconds =>
        int.TryParse(Environment.GetEnvironmentVariable("BATCHWISE_FUZZ_SECONDS"), NumberStyles.None, CultureInfo.InvariantCulture, out var s) && s > 0 ? s : 60;

    [Fact]
    public void The_decoder_refuses_malformed_json_with_a_400_class_error_and_allocates_within_the_budget()
    {
        var models = _fixture.Server.Models;
        Check.Sample(HttpCases(), c =>
        {
            if (!models.Models.Any(m => m.Name == c.Model))
            {
                return;
            }

            var model = models.Find(c.Model);
            var before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                using var lease = _fixture.Server.Admission.Admit();
                var header = c.HeaderLength is { } h && h >= 0 && h <= c.Body.Length ? h : c.Body.Length;
                using var doc = HttpEndpoints.ParseJson(c.Body.AsMemory(0, header), lease);
                HttpEndpoints.ParseRequest(doc.RootElement, c.Body.AsMemory(header), model, lease);
            }
            catch (InferenceError e)
            {
                Assert.True(e.HttpStatus is 400 or 413, $"{e.HttpStatus}: {e.Message}");
            }

            // Whatever the request claims, decoding it costs at most its body, the parsed index and its tensor budget.
            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated < (64L * c.Body.Length) + HardeningFixture.MaxRequestBytes + (1 << 20), $"{allocated} bytes allocated for {c}");
        }, iter: 3000, threads: 1);
        Assert.Equal(0, _fixture.Server.Admission.HeldBytes);
    }

    [Fact]
    public async Task The_live_server_answers_every_malformed_request_with_an_allowed_status_and_stays_healthy()
    {
        using var channel = GrpcChannel.ForAddress(_fixture.Server.GrpcAddress);
        var grpc = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var invoker = channel.CreateCallInvoker();
        var rawInfer = new Method<byte[], byte[]>(MethodType.Unary, "inference.GRPCInferenceService", "ModelInfer", Marshallers.Create(b => b, b => b), Marshallers.Create(b => b, b => b));
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        long requests = 0;
        var rssBefore = Environment.WorkingSet;
        var rssPeak = rssBefore;
        var statuses = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();

        var cases = Gen.Frequency(
            (4, HttpCases().Select(c => (FuzzCase)c)),
            (3, GrpcCases().Select(c => (FuzzCase)c)),
            (1, GrpcBytesCases().Select(c => (FuzzCase)c)));
        await Check.SampleAsync(cases, async c =>
        {
            if (Interlocked.Increment(ref requests) % 64 == 0)
            {
                var rss = Environment.WorkingSet;
                if (rss > Interlocked.Read(ref rssPeak))
                {
                    Interlocked.Exchange(ref rssPeak, rss);
                }
            }

            var status = c switch
            {
                HttpCase h => await SendHttpAsync(h),
                GrpcCase g => await SendGrpcAsync(() => grpc.ModelInferAsync(g.Request, cancellationToken: Ct).ResponseAsync),
                GrpcBytesCase b => await SendGrpcAsync(() => invoker.AsyncUnaryCall(rawInfer, null, new CallOptions(cancellationToken: Ct), b.Message).ResponseAsync),
                _ => throw new InvalidOperationException(),
            };
            statuses.AddOrUpdate(status, 1, (_, n) => n + 1);
            Assert.True(_fixture.Server.Admission.HeldBytes <= HardeningFixture.MaxQueueBytes);
        }, time: FuzzSeconds, threads: 4, iter: long.MaxValue);

        TestContext.Current.SendDiagnosticMessage($"fuzzed {requests} requests in {FuzzSeconds} s, RSS {rssBefore >> 20} MB before, peak {rssPeak >> 20} MB: {string.Join(", ", statuses.OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => $"{s.Key} x{s.Value}"))}");
        Assert.True(requests > 100, $"only {requests} requests in {FuzzSeconds} s");

        // Memory stayed bounded while hostile requests claimed gigabytes (the server's budget is 64 MB; RSS is sampled every 64 requests).
        Assert.True(rssPeak - rssBefore < 512L << 20, $"RSS grew from {rssBefore:N0} to {rssPeak:N0} bytes during the fuzz run");

        // Every byte charged came back, nothing is left in flight, and the heap holds no leftovers of the claims.
        Assert.Equal(0, _fixture.Server.Admission.HeldBytes);
        Assert.Equal(0, _fixture.Server.Admission.InFlight);
        var heapGrowth = GC.GetTotalMemory(forceFullCollection: true) - heapBefore;
        Assert.True(heapGrowth < 128L << 20, $"the heap grew {heapGrowth:N0} bytes over the fuzz run");

        // Still healthy: ready, and right answers on both protocols.
        using (var ready = await _fixture.Http.GetAsync(new Uri("/v2/health/ready", UriKind.Relative), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        }

        using var content = new StringContent("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[-1,0.5,2]}]}""", Encoding.UTF8, "application/json");
        using var response = await _fixture.Http.PostAsync(new Uri("/v2/models/dyn/infer", UriKind.Relative), content, Ct);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
        Assert.Equal([0, 0.5, 2], doc.RootElement.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(v => v.GetDouble()));
        var request = new ModelInferRequest { ModelName = "i16" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "k", Datatype = "INT16", Contents = new InferTensorContents() };
        input.Shape.AddRange([1, 4]);
        input.Contents.IntContents.AddRange([-5, 6, 32767, -32768]);
        request.Inputs.Add(input);
        var answer = await grpc.ModelInferAsync(request, cancellationToken: Ct);
        Assert.Equal(new short[] { -5, 6, 32767, -32768 }, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, short>(answer.RawOutputContents[0].Span).ToArray());
    }

    private async Task<string> SendHttpAsync(HttpCase c)
    {
        using var message = new HttpRequestMessage(HttpMethod.Post, new Uri($"/v2/models/{c.Model}/infer", UriKind.Relative));
        message.Content = new ByteArrayContent(c.Body);
        message.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(c.HeaderLength is null ? "application/json" : "application/octet-stream");
        if (c.HeaderLengthText is { } text)
        {
            message.Content.Headers.TryAddWithoutValidation(HttpEndpoints.HeaderLength, text);
        }

        using var response = await _fixture.Http.SendAsync(message, Ct);
        var status = (int)response.StatusCode;
        var body = await response.Content.ReadAsByteArrayAsync(Ct);
        Assert.True(AllowedHttp.Contains(status), $"HTTP {status} for {c}: {Encoding.UTF8.GetString(body)}");
        if (status != 200)
        {
            using var error = JsonDocument.Parse(body);
            Assert.False(string.IsNullOrWhiteSpace(error.RootElement.GetProperty("error").GetString()), $"empty error for {c}");
        }

        return "http " + status.ToString(CultureInfo.InvariantCulture);
    }

    private static async Task<string> SendGrpcAsync<T>(Func<Task<T>> call)
    {
        try
        {
            await call();
            return "grpc OK";
        }
        catch (RpcException e)
        {
            Assert.True(AllowedGrpc.Contains(e.StatusCode), $"gRPC {e.StatusCode}: {e.Status.Detail}");
            Assert.False(string.IsNullOrWhiteSpace(e.Status.Detail));
            return "grpc " + e.StatusCode;
        }
    }

    /// <summary>HTTP bodies: structured requests built from hostile parts, and byte mutations of the seed corpus.</summary>
    private static Gen<HttpCase> HttpCases()
    {
        var value = Gen.Frequency(
            (6, Gen.OneOf(Values)),
            (2, Gen.Long.Select(v => v.ToString(CultureInfo.InvariantCulture))),
            (2, Gen.OneOf(Sizes).Select(v => v.ToString(CultureInfo.InvariantCulture))),
            (1, Gen.Double.Select(v => double.IsFinite(v) ? v.ToString("R", CultureInfo.InvariantCulture) : "1")));
        var str = Gen.OneOf(Names).Select(n => "\"" + n + "\"");
        var shape = Gen.Frequency(
            (6, Gen.OneOf(Sizes).Array[0, 4].Select(a => "[" + string.Join(",", a) + "]")),
            (4, Gen.Int[1, 4].Select(n => $"[1,{n}]")),
            (1, value));
        var data = Gen.Frequency(
            (5, value.Array[0, 10].Select(a => "[" + string.Join(",", a) + "]")),
            (3, Gen.Int[0, 6].Select(n => "[" + string.Join(",", Enumerable.Range(0, n).Select(i => i - 2)) + "]")),
            (1, value.Array[0, 4].Array[0, 3].Select(a => "[" + string.Join(",", a.Select(r => "[" + string.Join(",", r) + "]")) + "]")),
            (1, value));
        var input = Gen.Select(str, Gen.OneOf(Datatypes).Select(d => "\"" + d + "\""), shape, data, value, Gen.Int[0, 63])
            .Select((n, t, s, d, size, mask) => "{" + string.Join(",", new[]
            {
                (mask & 1) == 0 ? "\"name\":" + n : null,
                (mask & 2) == 0 ? "\"datatype\":" + t : null,
                (mask & 4) == 0 ? "\"shape\":" + s : null,
                (mask & 8) == 0 ? "\"data\":" + d : null,
                (mask & 16) != 0 ? "\"parameters\":{\"binary_data_size\":" + size + "}" : null,
                (mask & 32) != 0 ? "\"extra\":" + d : null,
            }.Where(p => p is not null)) + "}");
        var inputs = Gen.Frequency((8, input), (1, value)).Array[0, 3].Select(a => "[" + string.Join(",", a) + "]");
        var parameters = Gen.Select(value, value, Gen.Int[0, 7]).Select((p, t, mask) => "{" + string.Join(",", new[]
        {
            (mask & 1) != 0 ? "\"priority\":" + p : null,
            (mask & 2) != 0 ? "\"timeout\":" + t : null,
            (mask & 4) != 0 ? "\"binary_data_output\":true" : null,
        }.Where(x => x is not null)) + "}");
        var outputs = Gen.Frequency(
            (3, Gen.OneOf("y", "k_out", "probabilities", "nope").Select(n => $"[{{\"name\":\"{n}\",\"parameters\":{{\"binary_data\":true}}}}]")),
            (1, value.Select(v => "[" + v + "]")),
            (1, Gen.Const("[{\"name\":\"y\",\"parameters\":{\"classification\":2}}]")));
        var structured = Gen.Select(inputs, parameters, outputs, Gen.Int[0, 7], Gen.OneOf(Models), Gen.Byte.Array[0, 48], Gen.Int[0, 4])
            .Select((i, p, o, mask, model, tail, headerMode) =>
            {
                var json = "{" + string.Join(",", new[]
                {
                    (mask & 1) == 0 ? "\"inputs\":" + i : null,
                    (mask & 2) != 0 ? "\"parameters\":" + p : null,
                    (mask & 4) != 0 ? "\"outputs\":" + o : null,
                }.Where(x => x is not null)) + "}";
                return WithHeader(model, Encoding.UTF8.GetBytes(json), tail, headerMode);
            });
        var mutated = Gen.Select(Gen.Int[0, SeedCorpus.Length - 1], Gen.Int[0, 5], Gen.Int[0, 4096], Gen.Byte.Array[1, 8], Gen.OneOf(Models))
            .Select((seed, kind, at, bytes, model) =>
            {
                var body = Encoding.UTF8.GetBytes(SeedCorpus[seed]).ToList();
                var i = at % (body.Count + 1);
                switch (kind)
                {
                    case 0: body.InsertRange(i, bytes); break;
                    case 1: body.RemoveRange(i, Math.Min(bytes.Length, body.Count - i)); break;
                    case 2: if (i < body.Count) { body[i] = bytes[0]; } break;
                    case 3: body = body.Take(i).ToList(); break;
                    case 4: body.InsertRange(i, body.Skip(i).Take(bytes[0] % 32).ToList()); break;
                    default: break; // the seed as it is
                }

                return new HttpCase(seed < 3 || seed > 9 ? model : "dyn", body.ToArray(), null, null);
            });
        return Gen.Frequency((3, structured), (2, mutated));
    }

    private static HttpCase WithHeader(string model, byte[] json, byte[] tail, int mode) => mode switch
    {
        0 => new HttpCase(model, json, null, null),
        1 => new HttpCase(model, [.. json, .. tail], json.Length, json.Length.ToString(CultureInfo.InvariantCulture)),
        2 => new HttpCase(model, [.. json, .. tail], json.Length + tail.Length + 1, (json.Length + tail.Length + 1).ToString(CultureInfo.InvariantCulture)),
        3 => new HttpCase(model, [.. json, .. tail], -1, "-1"),
        _ => new HttpCase(model, [.. json, .. tail], json.Length, "0x" + json.Length.ToString("x", CultureInfo.InvariantCulture)),
    };

    /// <summary>gRPC requests: hostile shapes, datatypes, typed and raw contents, parameters of every type and range.</summary>
    private static Gen<GrpcCase> GrpcCases()
    {
        var parameter = Gen.Select(Gen.Int[0, 4], Gen.OneOf(Sizes), Gen.ULong).Select((kind, signed, unsigned) => kind switch
        {
            0 => new InferParameter { Int64Param = signed },
            1 => new InferParameter { Uint64Param = unsigned },
            2 => new InferParameter { Uint64Param = unchecked((ulong)signed) },
            3 => new InferParameter { StringParam = "5" },
            _ => new InferParameter { DoubleParam = 1e30 },
        });
        var input = Gen.Select(Gen.OneOf(Names), Gen.OneOf(Datatypes), Gen.Frequency((3, Gen.OneOf(Sizes).Array[0, 4]), (3, Gen.Int[1, 4].Select(n => new long[] { 1, n }))), Gen.Int[0, 8], Gen.Long.Array[0, 8], Gen.Float.Array[0, 8])
            .Select((name, type, shape, field, longs, floats) =>
            {
                var t = new ModelInferRequest.Types.InferInputTensor { Name = name.Replace("\\u0000", "\0", StringComparison.Ordinal), Datatype = type };
                t.Shape.AddRange(shape);
                if (field < 8)
                {
                    t.Contents = new InferTensorContents();
                }

                switch (field)
                {
                    case 0: t.Contents.Fp32Contents.AddRange(floats); break;
                    case 1: t.Contents.IntContents.AddRange(longs.Select(v => unchecked((int)v))); break;
                    case 2: t.Contents.IntContents.AddRange(longs.Select(v => (int)(v % 70000))); break;
                    case 3: t.Contents.Int64Contents.AddRange(longs); break;
                    case 4: t.Contents.UintContents.AddRange(longs.Select(v => unchecked((uint)v))); break;
                    case 5: t.Contents.Uint64Contents.AddRange(longs.Select(v => unchecked((ulong)v))); break;
                    case 6: t.Contents.BoolContents.AddRange(longs.Select(v => v % 2 == 0)); break;
                    case 7: t.Contents.Fp64Contents.AddRange(floats.Select(v => (double)v)); break;
                    default: break;
                }

                return t;
            });
        var valid = Gen.Single[-10, 10].Array[1, 8].Select(values =>
        {
            var r = new ModelInferRequest { ModelName = "dyn" };
            var t = new ModelInferRequest.Types.InferInputTensor { Name = "x", Datatype = "FP32", Contents = new InferTensorContents() };
            t.Shape.AddRange([1, values.Length]);
            t.Contents.Fp32Contents.AddRange(values);
            r.Inputs.Add(t);
            return new GrpcCase(r);
        });
        return Gen.Frequency((6, Hostile()), (1, valid));

        Gen<GrpcCase> Hostile() => Gen.Select(Gen.OneOf(Models), input.Array[0, 3], Gen.Int[0, 3], Gen.Byte.Array[0, 32], parameter, parameter, Gen.Int[0, 15], Gen.OneOf("y", "k_out", "nope"))
            .Select((model, inputs, rawMode, raw, priority, timeout, mask, output) =>
            {
                var r = new ModelInferRequest { ModelName = model };
                if ((mask & 8) != 0)
                {
                    r.ModelVersion = "1";
                }

                r.Inputs.AddRange(inputs);
                for (var i = 0; i < inputs.Length && rawMode > 0; i++)
                {
                    // Raw contents: exactly the claimed bytes (when small), or whatever was generated.
                    var claimed = inputs[i].Shape.Aggregate(4L, (a, d) => d is >= 0 and < 64 && a <= 4096 ? a * d : 4097);
                    inputs[i].Contents = null;
                    r.RawInputContents.Add(rawMode == 1 && claimed <= 4096 ? ByteString.CopyFrom(new byte[claimed]) : ByteString.CopyFrom(raw));
                }

                if ((mask & 1) != 0)
                {
                    r.Parameters["priority"] = priority;
                }

                if ((mask & 2) != 0)
                {
                    r.Parameters["timeout"] = timeout;
                }

                if ((mask & 4) != 0)
                {
                    r.Outputs.Add(new ModelInferRequest.Types.InferRequestedOutputTensor { Name = output });
                }

                return new GrpcCase(r);
            });
    }

    /// <summary>Serialized gRPC requests with bytes changed: the server must not answer UNKNOWN or INTERNAL to a message it cannot parse.</summary>
    private static Gen<GrpcBytesCase> GrpcBytesCases() =>
        Gen.Select(GrpcCases(), Gen.Int[0, 4096], Gen.Byte.Array[1, 6], Gen.Int[0, 2]).Select((c, at, bytes, kind) =>
        {
            var message = c.Request.ToByteArray().ToList();
            var i = at % (message.Count + 1);
            switch (kind)
            {
                case 0: message.InsertRange(i, bytes); break;
                case 1: message.RemoveRange(i, Math.Min(bytes.Length, message.Count - i)); break;
                default: if (i < message.Count) { message[i] = bytes[0]; } break;
            }

            return new GrpcBytesCase(message.ToArray());
        });

    private abstract record FuzzCase;

    private sealed record HttpCase(string Model, byte[] Body, int? HeaderLength, string? HeaderLengthText) : FuzzCase
    {
        public override string ToString() => $"POST /v2/models/{Model}/infer ({HttpEndpoints.HeaderLength}: {HeaderLengthText ?? "none"}) {Encoding.UTF8.GetString(Body)}";
    }

    private sealed record GrpcCase(ModelInferRequest Request) : FuzzCase
    {
        public override string ToString() => "ModelInfer " + Request;
    }

    private sealed record GrpcBytesCase(byte[] Message) : FuzzCase
    {
        public override string ToString() => "ModelInfer bytes " + Convert.ToHexString(Message);
    }
}
