using System.Buffers;
using System.Reflection;
using Batchwise.Server.Protocol;
using Google.Protobuf;

namespace Batchwise.Server.Tests;

public sealed class GrpcInferRequestReaderTests
{
    private static ModelInferRequest Sample(params int[] rawSizes)
    {
        var request = new ModelInferRequest { ModelName = "m", ModelVersion = "2", Id = "req-7" };
        request.Parameters["priority"] = new InferParameter { Int64Param = 3 };
        for (var i = 0; i < rawSizes.Length; i++)
        {
            var input = new ModelInferRequest.Types.InferInputTensor { Name = $"x{i}", Datatype = "UINT8" };
            input.Shape.Add(rawSizes[i]);
            request.Inputs.Add(input);
            var bytes = new byte[rawSizes[i]];
            new Random(i + 1).NextBytes(bytes);
            request.RawInputContents.Add(ByteString.CopyFrom(bytes));
        }

        request.Outputs.Add(new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "y" });
        return request;
    }

    /// <summary>The message's bytes cut into segments of <paramref name="segment"/> bytes, as an HTTP/2 stream delivers them.</summary>
    private static ReadOnlySequence<byte> Segmented(byte[] bytes, int segment)
    {
        Segment? first = null, last = null;
        for (var at = 0; at < bytes.Length; at += segment)
        {
            var piece = bytes.AsMemory(at, Math.Min(segment, bytes.Length - at));
            last = last is null ? first = new Segment(piece, 0) : last.Append(piece);
        }

        return first is null ? ReadOnlySequence<byte>.Empty : new ReadOnlySequence<byte>(first, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long index)
        {
            Memory = memory;
            RunningIndex = index;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(16384)]
    [InlineData(1 << 20)]
    public void Reads_the_same_message_as_protobuf_from_any_segmentation(int segment)
    {
        var sent = Sample(602_112, 100, 0, 20_000);
        var read = GrpcInferRequestReader.Read(Segmented(sent.ToByteArray(), segment), new TensorBufferPool(1L << 30));
        Assert.Equal(sent, read);
    }

    [Fact]
    public void Raw_contents_land_in_pooled_arrays_of_their_exact_size_that_go_back_to_the_pool()
    {
        var pool = new TensorBufferPool(1L << 30);
        var read = GrpcInferRequestReader.Read(Segmented(Sample(602_112, 20_000).ToByteArray(), 16384), pool);
        var buffers = Assert.IsType<RequestBuffers>(read.PooledInputs);
        var arrays = read.RawInputContents.Select(r => System.Runtime.InteropServices.MemoryMarshal.TryGetArray(r.Memory, out var s) ? s.Array! : null).ToList();
        Assert.Equal([602_112, 20_000], arrays.Select(a => a!.Length));
        Assert.Equal(0, pool.RetainedBytes);

        buffers.Dispose();
        Assert.Equal(602_112 + 20_000, pool.RetainedBytes);

        // The next request of the same shape reads into the same arrays: no allocation of its size.
        var again = GrpcInferRequestReader.Read(Segmented(Sample(602_112, 20_000).ToByteArray(), 16384), pool);
        Assert.Same(arrays[0], System.Runtime.InteropServices.MemoryMarshal.TryGetArray(again.RawInputContents[0].Memory, out var s0) ? s0.Array : null);
        Assert.Equal(0, pool.RetainedBytes);
    }

    [Fact]
    public void A_message_without_raw_contents_holds_no_buffers()
    {
        var sent = Sample();
        var read = GrpcInferRequestReader.Read(new ReadOnlySequence<byte>(sent.ToByteArray()), new TensorBufferPool(1L << 30));
        Assert.Equal(sent, read);
        Assert.Null(read.PooledInputs);
    }

    [Theory]
    [InlineData(3)] // cut inside a raw entry's bytes
    [InlineData(602_000)]
    public void A_truncated_message_fails_as_protobuf_reports_it(int cut)
    {
        var bytes = Sample(602_112).ToByteArray();
        var truncated = bytes.AsSpan(0, bytes.Length - cut).ToArray();
        var expected = Assert.Throws<InvalidProtocolBufferException>(() => ModelInferRequest.Parser.ParseFrom(truncated));
        var e = Assert.Throws<InvalidProtocolBufferException>(() => GrpcInferRequestReader.Read(Segmented(truncated, 4096), new TensorBufferPool(1L << 30)));
        Assert.Equal(expected.Message, e.Message);
    }

    [Fact]
    public void Raw_contents_sent_with_another_wire_type_fail_as_protobuf_reports_it()
    {
        // Field 7 as a varint: protobuf keeps it as an unknown field, or fails; the reader must do what protobuf does.
        byte[] bytes = [(7 << 3) | 0, 5, (1 << 3) | 2, 1, (byte)'m'];
        var read = GrpcInferRequestReader.Read(new ReadOnlySequence<byte>(bytes), new TensorBufferPool(1L << 30));
        Assert.Equal(ModelInferRequest.Parser.ParseFrom(bytes), read);
        Assert.Null(read.PooledInputs);
    }

    [Fact]
    public void Every_method_of_the_service_is_bound_to_the_endpoint()
    {
        // GrpcInferenceMethods binds by name: a method the endpoint lacks (or spells differently) would answer UNIMPLEMENTED.
        var missing = GRPCInferenceService.Descriptor.Methods
            .Where(m => typeof(GrpcInferenceEndpoint).GetMethod(m.Name, BindingFlags.Public | BindingFlags.Instance) is null)
            .Select(m => m.Name)
            .ToList();
        Assert.Empty(missing);
    }
}
