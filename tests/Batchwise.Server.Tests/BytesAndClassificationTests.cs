using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Server.Protocol;
using Batchwise.Zoo;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests;

/// <summary>BYTES tensors both ways on both protocols (a string Identity model), and the classification extension.</summary>
public sealed class BytesAndClassificationTests : IAsyncLifetime
{
    private static readonly string[] Words = ["alpha", "bé", "", "δ-delta"];
    private static readonly string[] Labels = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
    private readonly string _dir = Directory.CreateTempSubdirectory("batchwise-bytes-").FullName;
    private InferenceServer _server = null!;
    private HttpClient _http = null!;
    private GrpcChannel _channel = null!;
    private GRPCInferenceService.GRPCInferenceServiceClient _grpc = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        var g = new GraphBuilder("text");
        var x = g.Input("text", ElementType.String, "batch", 2L);
        g.Output(g.Rename(g.Node("Identity", [x]), "echo"), ElementType.String, "batch", 2L);
        var textModel = Path.Combine(_dir, "text.onnx");
        g.Build("text").Save(textModel);
        var labels = Path.Combine(_dir, "labels.txt");
        File.WriteAllLines(labels, Labels);
        var models = new ModelRepository();
        models.Add("text", textModel, new ModelConfig { MaxBatchSize = 4, DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 100 } });
        models.Add("mlp", "zoo:mlp", new ModelConfig { MaxBatchSize = 4, LabelFilename = labels });
        _server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0 });
        _http = new HttpClient { BaseAddress = _server.HttpAddress };
        _channel = GrpcChannel.ForAddress(_server.GrpcAddress);
        _grpc = new GRPCInferenceService.GRPCInferenceServiceClient(_channel);
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        _http.Dispose();
        await _server.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Bytes_over_json_come_back_as_strings()
    {
        var body = JsonSerializer.Serialize(new { inputs = new[] { new { name = "text", datatype = "BYTES", shape = new[] { 2, 2 }, data = new[] { new[] { Words[0], Words[1] }, new[] { Words[2], Words[3] } } } } });
        using var doc = await PostJsonAsync("/v2/models/text/infer", body, HttpStatusCode.OK);
        var output = doc.RootElement.GetProperty("outputs")[0];
        Assert.Equal("BYTES", output.GetProperty("datatype").GetString());
        Assert.Equal([2L, 2L], output.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal(Words, output.GetProperty("data").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task Bytes_over_the_binary_extension_are_length_prefixed_both_ways()
    {
        var elements = Words.Select(Encoding.UTF8.GetBytes).Append([0, 255, 1]).Append([]).Append([7]).Append([8, 9]).ToArray();
        var data = Serialize(elements);
        var header = JsonSerializer.Serialize(new
        {
            inputs = new[] { new { name = "text", datatype = "BYTES", shape = new[] { 4, 2 }, parameters = new { binary_data_size = data.Length } } },
            outputs = new[] { new { name = "echo", parameters = new { binary_data = true } } },
        });
        var (json, binary) = await PostBinaryAsync("/v2/models/text/infer", header, data, HttpStatusCode.OK);
        using (json)
        {
            var output = json.RootElement.GetProperty("outputs")[0];
            Assert.Equal(data.Length, output.GetProperty("parameters").GetProperty("binary_data_size").GetInt32());
        }

        Assert.Equal(data, binary);
    }

    [Fact]
    public async Task Malformed_binary_bytes_are_400_naming_the_input()
    {
        var data = new byte[] { 200, 0, 0, 0, 1, 2 };
        var header = JsonSerializer.Serialize(new { inputs = new[] { new { name = "text", datatype = "BYTES", shape = new[] { 1, 2 }, parameters = new { binary_data_size = data.Length } } } });
        var (json, _) = await PostBinaryAsync("/v2/models/text/infer", header, data, HttpStatusCode.BadRequest);
        using (json)
        {
            Assert.Contains("Input 'text': BYTES data is malformed", json.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Grpc_bytes_in_bytes_contents_or_raw_come_back_raw(bool raw)
    {
        var request = new ModelInferRequest { ModelName = "text" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "text", Datatype = "BYTES" };
        input.Shape.AddRange([2, 2]);
        var elements = Words.Select(Encoding.UTF8.GetBytes).ToArray();
        if (raw)
        {
            request.RawInputContents.Add(ByteString.CopyFrom(Serialize(elements)));
        }
        else
        {
            input.Contents = new InferTensorContents();
            input.Contents.BytesContents.AddRange(elements.Select(ByteString.CopyFrom));
        }

        request.Inputs.Add(input);
        var response = await _grpc.ModelInferAsync(request, cancellationToken: Ct);
        Assert.Equal("BYTES", response.Outputs[0].Datatype);
        Assert.Equal(Serialize(elements), response.RawOutputContents[0].ToByteArray());
    }

    [Fact]
    public async Task Http_classification_returns_the_top_classes_with_their_labels()
    {
        var input = ServerFixture.Input(2, seed: 11);
        var expected = ServerFixture.Expected(input, 2);
        var body = JsonSerializer.Serialize(new
        {
            inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 2, 64 }, data = input } },
            outputs = new[] { new { name = "probabilities", parameters = new { classification = 3 } } },
        });
        using var doc = await PostJsonAsync("/v2/models/mlp/infer", body, HttpStatusCode.OK);
        var output = doc.RootElement.GetProperty("outputs")[0];
        Assert.Equal("BYTES", output.GetProperty("datatype").GetString());
        Assert.Equal([2L, 3L], output.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        var classes = output.GetProperty("data").EnumerateArray().Select(e => e.GetString()!).ToArray();
        Assert.Equal(TopClasses(expected, 2, 3), classes);
    }

    [Fact]
    public async Task Grpc_classification_returns_the_top_classes_and_refuses_a_bad_count()
    {
        var input = ServerFixture.Input(1, seed: 12);
        var request = new ModelInferRequest { ModelName = "mlp" };
        var tensor = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32" };
        tensor.Shape.AddRange([1, 64]);
        request.Inputs.Add(tensor);
        request.RawInputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(input.AsSpan())));
        var output = new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "probabilities" };
        output.Parameters.Add("classification", new InferParameter { Int64Param = 2 });
        request.Outputs.Add(output);
        var response = await _grpc.ModelInferAsync(request, cancellationToken: Ct);
        Assert.Equal("BYTES", response.Outputs[0].Datatype);
        Assert.Equal([1L, 2L], response.Outputs[0].Shape);
        var classes = Deserialize(response.RawOutputContents[0].ToByteArray()).Select(Encoding.UTF8.GetString).ToArray();
        Assert.Equal(TopClasses(ServerFixture.Expected(input, 1), 1, 2), classes);

        output.Parameters["classification"] = new InferParameter { Int64Param = 0 };
        var e = await Assert.ThrowsAsync<RpcException>(async () => await _grpc.ModelInferAsync(request, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("'classification' must be a positive integer", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Classification_of_a_bytes_output_is_refused_as_triton_does()
    {
        var body = JsonSerializer.Serialize(new
        {
            inputs = new[] { new { name = "text", datatype = "BYTES", shape = new[] { 1, 2 }, data = new[] { "a", "b" } } },
            outputs = new[] { new { name = "echo", parameters = new { classification = 1 } } },
        });
        using var doc = await PostJsonAsync("/v2/models/text/infer", body, HttpStatusCode.BadRequest);
        Assert.Contains("unsupported type 'BYTES'", doc.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_config_names_the_labels_file_and_bytes_as_type_string()
    {
        var mlp = (await _grpc.ModelConfigAsync(new ModelConfigRequest { Name = "mlp" }, cancellationToken: Ct)).Config;
        Assert.EndsWith("labels.txt", mlp.Output[0].LabelFilename, StringComparison.Ordinal);
        var text = (await _grpc.ModelConfigAsync(new ModelConfigRequest { Name = "text" }, cancellationToken: Ct)).Config;
        Assert.Equal(DataType.TypeString, text.Input[0].DataType);
    }

    private static string[] TopClasses(float[] probabilities, int rows, int k)
    {
        var classes = new List<string>();
        for (var r = 0; r < rows; r++)
        {
            var row = probabilities.AsSpan(r * 10, 10).ToArray();
            classes.AddRange(Enumerable.Range(0, 10).OrderByDescending(i => row[i]).ThenBy(i => i).Take(k)
                .Select(i => $"{((double)row[i]).ToString("F6", System.Globalization.CultureInfo.InvariantCulture)}:{i}:{Labels[i]}"));
        }

        return [.. classes];
    }

    private static byte[] Serialize(IEnumerable<byte[]> elements)
    {
        var data = new List<byte>();
        foreach (var e in elements)
        {
            var length = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(length, e.Length);
            data.AddRange(length);
            data.AddRange(e);
        }

        return [.. data];
    }

    private static IReadOnlyList<byte[]> Deserialize(byte[] data) => new Tensor(ElementType.String, [Tensor.CountStrings(data)], data).ReadStrings();

    private async Task<JsonDocument> PostJsonAsync(string path, string body, HttpStatusCode status)
    {
        using var response = await _http.PostAsync(new Uri(path, UriKind.Relative), new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(status == response.StatusCode, text);
        return JsonDocument.Parse(text);
    }

    private async Task<(JsonDocument Json, byte[] Binary)> PostBinaryAsync(string path, string header, byte[] data, HttpStatusCode status)
    {
        var headerBytes = Encoding.UTF8.GetBytes(header);
        using var content = new ByteArrayContent([.. headerBytes, .. data]);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add(HttpEndpoints.HeaderLength, headerBytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var response = await _http.PostAsync(new Uri(path, UriKind.Relative), content, Ct);
        var bytes = await response.Content.ReadAsByteArrayAsync(Ct);
        Assert.True(status == response.StatusCode, Encoding.UTF8.GetString(bytes));
        var jsonLength = response.Headers.TryGetValues(HttpEndpoints.HeaderLength, out var values) ? int.Parse(values.Single(), System.Globalization.CultureInfo.InvariantCulture) : bytes.Length;
        return (JsonDocument.Parse(bytes.AsMemory(0, jsonLength)), bytes[jsonLength..]);
    }
}
