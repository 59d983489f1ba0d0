namespace Batchwise.Cli.Tests;

public sealed class ServeLoadCommandTests
{
    [Theory]
    [InlineData(new[] { "serve" }, "Nothing to serve")]
    [InlineData(new[] { "serve", "zoo:mlp", "--models", "/tmp" }, "not both")]
    [InlineData(new[] { "serve", "/tmp" }, "'/tmp' is a directory, not a model file")]
    [InlineData(new[] { "serve", "--models", "/no/such/folder" }, "Model repository '/no/such/folder' not found")]
    [InlineData(new[] { "serve", "--models", "/tmp", "--instances", "2" }, "--instances applies to a single model")]
    [InlineData(new[] { "serve", "--models", "/tmp", "--pipeline-depth", "2" }, "--pipeline-depth applies to a single model")]
    [InlineData(new[] { "serve", "zoo:mlp", "--pipeline-depth", "0" }, "pipeline_depth is 0, outside 1..4")]
    [InlineData(new[] { "serve", "zoo:mlp", "--pipeline-depth", "5" }, "pipeline_depth is 5, outside 1..4")]
    [InlineData(new[] { "serve", "zoo:nope" }, "No zoo model named 'nope'")]
    [InlineData(new[] { "serve", "zoo:mlp", "--preferred-batch-size", "4,x" }, "--preferred-batch-size '4,x'")]
    [InlineData(new[] { "serve", "zoo:mlp", "--host", "example", "--http-port", "0", "--grpc-port", "0" }, "--host 'example' is not an IP address")]
    [InlineData(new[] { "serve", "zoo:mlp", "--max-batch-size", "-5" }, "max_batch_size is -5, outside 0..65536")]
    [InlineData(new[] { "serve", "zoo:mlp", "--max-batch-size", "2000000000" }, "max_batch_size is 2000000000, outside 0..65536")]
    [InlineData(new[] { "serve", "zoo:mlp", "--drain-timeout", "-1" }, "--drain-timeout -1 is outside 0..86400 seconds")]
    [InlineData(new[] { "serve", "zoo:mlp", "--http-port", "0", "--grpc-port", "0", "--max-request-bytes", "0" }, "--max-request-bytes 0 is outside")]
    [InlineData(new[] { "serve", "zoo:mlp", "--http-port", "0", "--grpc-port", "0", "--tls-cert", "/no/such.pem" }, "--tls-cert was given without --tls-key")]
    [InlineData(new[] { "serve", "zoo:mlp", "--http-port", "0", "--grpc-port", "0", "--auth-token-file", "/no/such/token" }, "Cannot read the token file '/no/such/token'")]
    [InlineData(new[] { "serve", "zoo:mlp", "--http-port", "0", "--grpc-port", "0", "--receive-block-kb", "4" }, "--receive-block-kb 4 is outside 16..16384 KB")]
    [InlineData(new[] { "serve", "zoo:mlp", "--http-port", "0", "--grpc-port", "0", "--http2-max-frame-kb", "0" }, "--http2-max-frame-kb 0 is not a positive number of KB")]
    [InlineData(new[] { "load", "ftp://x", "--model", "m", "-c", "1" }, "is not an http(s) URL")]
    [InlineData(new[] { "load", "http://127.0.0.1:1", "--model", "m" }, "Give either --concurrency or --request-rate")]
    [InlineData(new[] { "load", "http://127.0.0.1:1", "--model", "m", "-c", "1,a" }, "--concurrency '1,a'")]
    [InlineData(new[] { "load", "http://127.0.0.1:1", "--model", "m", "-c", "1", "--protocol", "smtp" }, "--protocol 'smtp' is not one of http, grpc")]
    [InlineData(new[] { "load", "http://127.0.0.1:1", "--model", "m", "-c", "1", "--duration", "1" }, "Cannot reach the inference server")]
    public async Task Bad_input_is_one_line_and_exit_code_2(string[] args, string message)
    {
        var (code, _, err) = await CliRunner.RunAsync(args);
        Assert.Equal(2, code);
        Assert.Contains(message, err.ReplaceLineEndings(" "), StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal);
    }
}
