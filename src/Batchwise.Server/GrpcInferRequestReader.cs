using System.Buffers;
using Batchwise.Server.Protocol;
using Google.Protobuf;
using Grpc.Core;

namespace Batchwise.Server.Protocol
{
    /// <summary>The pooled buffers that hold a request's raw_input_contents, when it was read by <see cref="Server.GrpcInferRequestReader"/>.</summary>
    public sealed partial class ModelInferRequest
    {
        /// <summary>Owner of the arrays behind <see cref="RawInputContents"/> (null: they belong to the message); whoever answers the request returns them once the response is written.</summary>
        internal RequestBuffers? PooledInputs { get; set; }
    }
}

namespace Batchwise.Server
{
    /// <summary>
    /// Reads a ModelInferRequest off the wire with each raw_input_contents entry copied once, straight from the HTTP/2
    /// stream's buffers into a pooled, pinned array of its exact size. Protobuf's own parser gives every bytes field a new
    /// array: for a 602 KB image that is a large-object-heap allocation per request, whose pages fault in anew after every
    /// background GC it causes (more than half of the server's CPU per gRPC request, measured). The other fields, a few
    /// hundred bytes, are parsed by protobuf as usual; a message this reader cannot walk goes to protobuf's parser whole,
    /// which then reports the error.
    /// </summary>
    internal static class GrpcInferRequestReader
    {
        /// <summary>raw_input_contents = 7, length-delimited.</summary>
        private const int RawInputContentsField = 7;

        /// <summary>The request marshaller of ModelInfer and ModelStreamInfer (the response is written as generated).</summary>
        public static Marshaller<ModelInferRequest> Marshaller { get; } = Marshallers.Create<ModelInferRequest>(
            (message, context) =>
            {
                context.SetPayloadLength(message.CalculateSize());
                message.WriteTo(context.GetBufferWriter());
                context.Complete();
            },
            context => Read(context.PayloadAsReadOnlySequence(), TensorBufferPool.Shared));

        /// <summary>The message in <paramref name="payload"/>, its raw input contents in arrays from <paramref name="pool"/> (owned by its <see cref="ModelInferRequest.PooledInputs"/>).</summary>
        public static ModelInferRequest Read(ReadOnlySequence<byte> payload, TensorBufferPool pool)
        {
            // First pass: where each top-level field lies. Only raw_input_contents is taken apart; anything unexpected
            // (a group, a wrong wire type, a truncated field) leaves the whole message to protobuf.
            var fields = new List<(long Start, long Length, bool Raw)>();
            var reader = new SequenceReader<byte>(payload);
            long headerBytes = 0;
            while (!reader.End)
            {
                var start = reader.Consumed;
                if (!TryReadVarint(ref reader, out var tag))
                {
                    return ModelInferRequest.Parser.ParseFrom(payload);
                }

                var field = tag >> 3;
                var wire = (int)(tag & 7);
                long skip;
                switch (wire)
                {
                    case 0:
                        if (!TryReadVarint(ref reader, out _))
                        {
                            return ModelInferRequest.Parser.ParseFrom(payload);
                        }

                        skip = 0;
                        break;
                    case 1:
                        skip = 8;
                        break;
                    case 2:
                        if (!TryReadVarint(ref reader, out var length) || length > int.MaxValue)
                        {
                            return ModelInferRequest.Parser.ParseFrom(payload);
                        }

                        skip = (long)length;
                        break;
                    case 5:
                        skip = 4;
                        break;
                    default:
                        return ModelInferRequest.Parser.ParseFrom(payload);
                }

                if (reader.Remaining < skip)
                {
                    return ModelInferRequest.Parser.ParseFrom(payload);
                }

                if (field == RawInputContentsField && wire == 2)
                {
                    fields.Add((reader.Consumed, skip, true));
                }
                else
                {
                    if (field == RawInputContentsField || field == 0)
                    {
                        return ModelInferRequest.Parser.ParseFrom(payload);
                    }

                    fields.Add((start, reader.Consumed + skip - start, false));
                    headerBytes += reader.Consumed + skip - start;
                }

                reader.Advance(skip);
            }

            // Second pass: the other fields, gathered, through protobuf; each raw entry into its pooled array.
            var header = ArrayPool<byte>.Shared.Rent((int)Math.Max(1, headerBytes));
            ModelInferRequest message;
            try
            {
                var at = 0;
                foreach (var (start, length, raw) in fields)
                {
                    if (!raw)
                    {
                        payload.Slice(start, length).CopyTo(header.AsSpan(at));
                        at += (int)length;
                    }
                }

                message = ModelInferRequest.Parser.ParseFrom(header.AsSpan(0, at));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(header);
            }

            RequestBuffers? buffers = null;
            foreach (var (start, length, raw) in fields)
            {
                if (raw)
                {
                    buffers ??= new RequestBuffers(pool);
                    var array = buffers.Rent((int)length);
                    payload.Slice(start, length).CopyTo(array);
                    message.RawInputContents.Add(UnsafeByteOperations.UnsafeWrap(array));
                }
            }

            message.PooledInputs = buffers;
            return message;
        }

        private static bool TryReadVarint(ref SequenceReader<byte> reader, out ulong value)
        {
            value = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (!reader.TryRead(out var b))
                {
                    return false;
                }

                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return true;
                }
            }

            return false;
        }
    }
}
