using Batchwise.Server.Load;
using Batchwise.Server.Protocol;
using Google.Protobuf;

namespace Batchwise.Server.Tests;

/// <summary>The load generator's own HTTP/2 connection for gRPC calls: answers, errors and the header decoding it relies on.</summary>
public sealed class Http2UnaryConnectionTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private string Authority => $"{fixture.Server.GrpcAddress.Host}:{fixture.Server.GrpcAddress.Port}";

    private const string ModelInfer = "/inference.GRPCInferenceService/ModelInfer";

    private static byte[] Request(string model, float[] rows)
    {
        var request = new ModelInferRequest { ModelName = model, Id = "r" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32" };
        input.Shape.AddRange([rows.Length / 64, 64]);
        request.Inputs.Add(input);
        request.RawInputContents.Add(ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(rows.AsSpan())));
        return request.ToByteArray();
    }

    [Fact]
    public async Task Calls_on_one_connection_each_get_their_own_answer_and_a_prepared_message_is_sent_again()
    {
        using var connection = await Http2UnaryConnection.OpenAsync(fixture.Server.GrpcAddress.Host, fixture.Server.GrpcAddress.Port, Ct);
        for (var seed = 1; seed <= 6; seed++)
        {
            var rows = ServerFixture.Input(2, seed);
            var message = Request("mlp", rows);

            // Twice with the same message object: the second call reuses its prepared frames with the next stream id.
            for (var again = 0; again < 2; again++)
            {
                using var response = new MemoryStream();
                var outcome = await connection.CallAsync(Authority, ModelInfer, message, Ct, response);
                Assert.True(outcome.Ok, outcome.Error);
                var parsed = ModelInferResponse.Parser.ParseFrom(response.ToArray());
                var got = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(parsed.RawOutputContents[0].Span).ToArray();
                var want = ServerFixture.Expected(rows, 2);
                Assert.Equal(want.Length, got.Length);
                Assert.All(want.Zip(got), p => Assert.Equal(p.First, p.Second, 1e-4f));
            }
        }

        Assert.True(connection.Healthy);
    }

    [Fact]
    public async Task An_error_status_from_the_server_is_the_calls_outcome_and_the_connection_goes_on()
    {
        using var connection = await Http2UnaryConnection.OpenAsync(fixture.Server.GrpcAddress.Host, fixture.Server.GrpcAddress.Port, Ct);
        var missing = await connection.CallAsync(Authority, ModelInfer, Request("no-such-model", ServerFixture.Input(1)), Ct);
        Assert.False(missing.Ok);
        Assert.Equal("grpc_NotFound", missing.Error);

        var wrongShape = await connection.CallAsync(Authority, ModelInfer, Request("mlp", new float[63 + 64]), Ct);
        Assert.False(wrongShape.Ok);
        Assert.Equal("grpc_InvalidArgument", wrongShape.Error);

        Assert.True((await connection.CallAsync(Authority, ModelInfer, Request("mlp", ServerFixture.Input(1)), Ct)).Ok);
    }

    [Fact]
    public async Task An_idle_connection_the_server_sent_GOAWAY_on_is_not_used_again_and_one_with_a_PING_answers_it()
    {
        // A bare HTTP/2 peer: reads the client's preface, sends its SETTINGS, then (while the client sits idle) a PING, and later a GOAWAY.
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        var opening = Http2UnaryConnection.OpenAsync("127.0.0.1", port, Ct);
        using var peer = await listener.AcceptSocketAsync(Ct);
        await peer.SendAsync(new byte[] { 0, 0, 0, 0x4, 0, 0, 0, 0, 0 }, Ct); // SETTINGS, empty
        using var connection = await opening;
        Assert.True(await connection.IsUsableAsync(Ct));

        await peer.SendAsync(new byte[] { 0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8 }, Ct); // PING
        var received = new List<byte>();
        var buffer = new byte[256];
        var until = DateTime.UtcNow.AddSeconds(5);
        while (!ContainsPingAck(received) && DateTime.UtcNow < until)
        {
            // The client's preface and SETTINGS come first; the PING's ACK (the same 8 bytes back) once IsUsableAsync read it.
            Assert.True(await connection.IsUsableAsync(Ct));
            if (peer.Available > 0)
            {
                var n = await peer.ReceiveAsync(buffer, Ct);
                received.AddRange(buffer.AsSpan(0, n).ToArray());
            }
            else
            {
                await Task.Delay(10, Ct);
            }
        }

        Assert.True(ContainsPingAck(received), "the client did not answer the PING");
        await peer.SendAsync(new byte[] { 0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, Ct); // GOAWAY, no error
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (await connection.IsUsableAsync(Ct) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10, Ct);
        }

        Assert.False(connection.Healthy);
    }

    private static bool ContainsPingAck(List<byte> bytes)
    {
        byte[] ack = [0, 0, 8, 0x6, 0x1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        for (var i = 0; i + ack.Length <= bytes.Count; i++)
        {
            if (bytes.Skip(i).Take(ack.Length).SequenceEqual(ack))
            {
                return true;
            }
        }

        return false;
    }

    [Fact]
    public void Header_blocks_decode_static_and_literal_fields_and_leave_Huffman_strings_unread()
    {
        byte[] block =
        [
            0x20, // table size update to 0
            0x88, // :status 200 (static 8)
            0x00, 11, .. "grpc-status"u8, 1, (byte)'5', // literal without indexing, new name
            0x5F, 0x10, .. "application/grpc"u8, // literal with incremental indexing, name content-type (static 31, 6-bit prefix)
            0x10, 4, .. "x-id"u8, 0x81, 0xFF, // never indexed, Huffman-coded value (not decoded)
        ];
        var fields = HeaderBlock.Decode(block);
        Assert.Equal([(":status", "200"), ("grpc-status", "5"), ("content-type", "application/grpc"), ("x-id", null)], fields);
    }

    [Theory]
    [InlineData("200", "0", 0, true, null)]
    [InlineData("200", "5", 0, false, "grpc_NotFound")]
    [InlineData("503", null, 0, false, "http_503")]
    [InlineData("200", null, 0, false, "grpc_no_status")]
    [InlineData("200", null, 17, true, null)]
    public void The_outcome_comes_from_the_statuses_or_without_a_readable_one_from_the_message(string status, string? grpcStatus, long messageBytes, bool ok, string? error)
    {
        var outcome = Http2UnaryConnection.Outcome(status, grpcStatus, messageBytes);
        Assert.Equal(ok, outcome.Ok);
        Assert.Equal(error, outcome.Error);
    }
}
