using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Batchwise.Server.Load;

/// <summary>
/// One HTTP/2 connection (cleartext, prior knowledge) that makes gRPC unary calls one at a time, for the load generator.
/// .NET's SocketsHttpHandler sends a request body in 16 KB DATA frames, each handed to its connection's writer task and
/// sent by a system call of its own (measured: 36 sends per 602 KB request, against 2 over HTTP/1.1), which costs the
/// client CPU and adds latency to every call and makes the server wake its reader once per frame. This connection
/// writes each call's frames as the server allows them (its SETTINGS_MAX_FRAME_SIZE, 256 KB at ours; grpcio clients as
/// perf_analyzer and tritonclient do the same) in one send, all prepared once per message. The response is read frame by
/// frame; its headers are decoded with a header table of size 0 (we announce it, so the server indexes nothing), which
/// gives :status and grpc-status without keeping a dynamic table.
/// </summary>
internal sealed class Http2UnaryConnection : IDisposable
{
    private const byte Data = 0x0, Headers = 0x1, RstStream = 0x3, Settings = 0x4, Ping = 0x6, GoAway = 0x7, WindowUpdate = 0x8, Continuation = 0x9;
    private const byte EndStream = 0x1, Ack = 0x1, EndHeaders = 0x4, Padded = 0x8, Priority = 0x20;

    /// <summary>Our receive window per stream and for the connection: responses arrive without waiting for WINDOW_UPDATEs.</summary>
    private const int ReceiveWindow = 16 << 20;

    private static readonly byte[] Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();

    private readonly Socket _socket;
    private readonly byte[] _frame = new byte[16384 + 9];
    private readonly byte[] _control = new byte[64];
    private byte[] _input = new byte[64 << 10];
    private int _inputStart, _inputEnd;
    private int _nextStream = 1;
    private long _connectionWindow = 65535;
    private long _streamInitialWindow = 65535;
    private int _maxFrameSize = 16384;
    private long _unacknowledged;
    private PreparedCall? _prepared;

    private Http2UnaryConnection(Socket socket) => _socket = socket;

    /// <summary>The largest DATA frame this connection sends: the server's SETTINGS_MAX_FRAME_SIZE (16 KB..1 MB).</summary>
    public int MaxFrameSize => _maxFrameSize;

    /// <summary>False once the connection failed or the server said GOAWAY: it is disposed, not reused.</summary>
    public bool Healthy { get; private set; } = true;

    /// <summary>Connects to <paramref name="host"/>:<paramref name="port"/> and exchanges SETTINGS.</summary>
    public static async Task<Http2UnaryConnection> OpenAsync(string host, int port, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var connection = new Http2UnaryConnection(socket);
        try
        {
            await socket.ConnectAsync(host, port, cancellationToken).ConfigureAwait(false);

            // Preface; SETTINGS: no header table (HEADER_TABLE_SIZE 0), no push, our stream window; a connection window to match.
            var hello = new byte[Preface.Length + 9 + 18 + 9 + 4];
            Preface.CopyTo(hello, 0);
            var at = Preface.Length;
            at = WriteFrameHeader(hello, at, 18, Settings, 0, 0);
            at = WriteSetting(hello, at, 0x1, 0);
            at = WriteSetting(hello, at, 0x2, 0);
            at = WriteSetting(hello, at, 0x4, ReceiveWindow);
            at = WriteFrameHeader(hello, at, 4, WindowUpdate, 0, 0);
            BinaryPrimitives.WriteInt32BigEndian(hello.AsSpan(at), ReceiveWindow - 65535);
            await socket.SendAsync(hello, cancellationToken).ConfigureAwait(false);

            // The server's SETTINGS come first on its side; they say how large our frames and windows may be.
            while (!await connection.ControlAsync(await connection.ReadFrameAsync(cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false))
            {
            }

            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Takes in what arrived while the connection sat idle (a late SETTINGS ACK, a PING, a WINDOW_UPDATE); false when the
    /// server closed it or said GOAWAY meanwhile (Kestrel does after its keep-alive timeout), so a call goes elsewhere.
    /// </summary>
    public async Task<bool> IsUsableAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (Healthy && (_inputEnd > _inputStart || _socket.Poll(0, SelectMode.SelectRead)))
            {
                await ControlAsync(await ReadFrameAsync(cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            Healthy = false;
        }

        return Healthy;
    }

    /// <summary>
    /// Makes one unary call of <paramref name="path"/> with <paramref name="message"/> (a serialized protobuf message) and
    /// reads the answer. <paramref name="response"/>, when given, receives the response message's bytes (without the
    /// 5-byte gRPC prefix).
    /// </summary>
    public async Task<CallOutcome> CallAsync(string authority, string path, byte[] message, CancellationToken cancellationToken, MemoryStream? response = null)
    {
        if (!Healthy)
        {
            throw new InvalidOperationException("The HTTP/2 connection is closed");
        }

        try
        {
            var stream = _nextStream;
            _nextStream += 2;
            if (_nextStream < 0)
            {
                Healthy = false;
            }

            var call = _prepared is { } p && ReferenceEquals(p.Message, message) && p.Path == path && p.Authority == authority && p.FrameSize == _maxFrameSize
                ? p
                : _prepared = PreparedCall.Build(authority, path, message, _maxFrameSize);
            call.SetStream(stream);
            await SendAsync(call, stream, cancellationToken).ConfigureAwait(false);
            return await ReceiveAsync(stream, cancellationToken, response).ConfigureAwait(false);
        }
        catch
        {
            Healthy = false;
            throw;
        }
    }

    /// <summary>Sends the call's frames, as many at once as the flow-control windows allow (all of them, normally).</summary>
    private async Task SendAsync(PreparedCall call, int stream, CancellationToken cancellationToken)
    {
        long streamWindow = _streamInitialWindow;
        var sent = 0;
        var frame = 1;
        while (sent < call.Bytes.Length)
        {
            // Frames [frame, end) fit in both windows; the HEADERS frame (frame 0) never needs credit.
            var end = frame;
            long take = 0;
            while (end < call.Frames.Count && take + call.Frames[end].Payload <= Math.Min(_connectionWindow, streamWindow))
            {
                take += call.Frames[end].Payload;
                end++;
            }

            var upTo = end < call.Frames.Count ? call.Frames[end].Offset : call.Bytes.Length;
            if (upTo > sent)
            {
                await _socket.SendAsync(call.Bytes.AsMemory(sent, upTo - sent), cancellationToken).ConfigureAwait(false);
                sent = upTo;
                frame = end;
                _connectionWindow -= take;
                streamWindow -= take;
                continue;
            }

            // Out of credit: read frames until the server grants more (WINDOW_UPDATE), or answers early (an error).
            var (type, flags, id, length) = await ReadFrameAsync(cancellationToken).ConfigureAwait(false);
            if (type == WindowUpdate && id == stream)
            {
                streamWindow += BinaryPrimitives.ReadInt32BigEndian(_frame.AsSpan(0, 4)) & 0x7FFFFFFF;
            }
            else if (id == stream)
            {
                throw new IOException($"The server answered stream {stream} (frame type {type}) before the request was sent; the load generator cannot go on with this connection");
            }
            else
            {
                await ControlAsync((type, flags, id, length), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private async Task<CallOutcome> ReceiveAsync(int stream, CancellationToken cancellationToken, MemoryStream? response)
    {
        string? status = null, grpcStatus = null;
        long messageBytes = 0;
        var block = new MemoryStream();
        var inHeaders = false;
        while (true)
        {
            var (type, flags, id, length) = await ReadFrameAsync(cancellationToken).ConfigureAwait(false);
            if (id != stream || type is not (Data or Headers or Continuation or RstStream))
            {
                if (id != 0 && id != stream && type is Data or Headers)
                {
                    throw new IOException($"The server sent stream {id} while stream {stream} was the only one open");
                }

                await ControlAsync((type, flags, id, length), cancellationToken).ConfigureAwait(false);
                continue;
            }

            switch (type)
            {
                case Data:
                    {
                        var payload = Unpad(flags, length);
                        messageBytes += payload.Length;
                        response?.Write(payload);
                        _unacknowledged += length;
                        if (_unacknowledged >= ReceiveWindow / 2)
                        {
                            // Both windows, the stream's too (a response larger than half of it would stall otherwise).
                            var at = WriteFrameHeader(_control, 0, 4, WindowUpdate, 0, 0);
                            BinaryPrimitives.WriteInt32BigEndian(_control.AsSpan(at), (int)_unacknowledged);
                            at = WriteFrameHeader(_control, at + 4, 4, WindowUpdate, 0, stream);
                            BinaryPrimitives.WriteInt32BigEndian(_control.AsSpan(at), (int)_unacknowledged);
                            await _socket.SendAsync(_control.AsMemory(0, at + 4), cancellationToken).ConfigureAwait(false);
                            _unacknowledged = 0;
                        }

                        break;
                    }

                case Headers:
                case Continuation:
                    {
                        var payload = type == Headers ? Unpad(flags, length) : _frame.AsSpan(0, length);
                        if (type == Headers && (flags & Priority) != 0)
                        {
                            payload = payload[5..];
                        }

                        block.Write(payload);
                        inHeaders = (flags & EndHeaders) == 0;
                        if (!inHeaders)
                        {
                            foreach (var (name, value) in HeaderBlock.Decode(block.GetBuffer().AsSpan(0, (int)block.Length)))
                            {
                                if (name == ":status")
                                {
                                    status = value;
                                }
                                else if (name == "grpc-status")
                                {
                                    grpcStatus = value;
                                }
                            }

                            block.SetLength(0);
                        }

                        break;
                    }

                case RstStream:
                    return new CallOutcome(false, "grpc_stream_reset");
            }

            if ((flags & EndStream) != 0 && type is Data or Headers && !inHeaders)
            {
                if (response is not null && response.Length >= 5)
                {
                    // Strip the gRPC message prefix (compressed flag, length).
                    var bytes = response.ToArray();
                    response.SetLength(0);
                    response.Write(bytes, 5, bytes.Length - 5);
                }

                return Outcome(status, grpcStatus, messageBytes);
            }
        }
    }

    /// <summary>The call's outcome from :status and grpc-status; a status we could not read (Huffman-coded by the server) is judged by whether a message came.</summary>
    internal static CallOutcome Outcome(string? status, string? grpcStatus, long messageBytes)
    {
        if (status is not null and not "200")
        {
            return new CallOutcome(false, $"http_{status}");
        }

        if (grpcStatus is null)
        {
            return messageBytes >= 5 ? new CallOutcome(true, null) : new CallOutcome(false, "grpc_no_status");
        }

        return grpcStatus == "0" ? new CallOutcome(true, null)
            : new CallOutcome(false, int.TryParse(grpcStatus, out var code) ? $"grpc_{(Grpc.Core.StatusCode)code}" : $"grpc_{grpcStatus}");
    }

    /// <summary>Answers the connection's own frames (SETTINGS, PING, WINDOW_UPDATE, GOAWAY); true for a SETTINGS that is not an ACK.</summary>
    private async Task<bool> ControlAsync((byte Type, byte Flags, int Stream, int Length) frame, CancellationToken cancellationToken)
    {
        var (type, flags, stream, length) = frame;
        switch (type)
        {
            case Settings when (flags & Ack) == 0:
                for (var i = 0; i + 6 <= length; i += 6)
                {
                    var id = BinaryPrimitives.ReadUInt16BigEndian(_frame.AsSpan(i));
                    var value = BinaryPrimitives.ReadUInt32BigEndian(_frame.AsSpan(i + 2));
                    if (id == 0x4)
                    {
                        _streamInitialWindow = value;
                    }
                    else if (id == 0x5)
                    {
                        _maxFrameSize = (int)Math.Clamp(value, 16384u, 1u << 20);
                    }
                }

                WriteFrameHeader(_control, 0, 0, Settings, Ack, 0);
                await _socket.SendAsync(_control.AsMemory(0, 9), cancellationToken).ConfigureAwait(false);
                return true;
            case Ping when (flags & Ack) == 0:
                var at = WriteFrameHeader(_control, 0, 8, Ping, Ack, 0);
                _frame.AsSpan(0, 8).CopyTo(_control.AsSpan(at));
                await _socket.SendAsync(_control.AsMemory(0, at + 8), cancellationToken).ConfigureAwait(false);
                break;
            case WindowUpdate when stream == 0:
                // A stream's update outside a send (its request is out) needs nothing; the connection's adds credit.
                _connectionWindow += BinaryPrimitives.ReadInt32BigEndian(_frame.AsSpan(0, 4)) & 0x7FFFFFFF;
                break;
            case GoAway:
                Healthy = false;
                throw new IOException("The server closed the HTTP/2 connection (GOAWAY)");
        }

        return false;
    }

    private Span<byte> Unpad(byte flags, int length)
    {
        if ((flags & Padded) == 0)
        {
            return _frame.AsSpan(0, length);
        }

        var pad = _frame[0];
        return _frame.AsSpan(1, Math.Max(0, length - 1 - pad));
    }

    /// <summary>Reads one frame: its header's fields, the payload in <see cref="_frame"/> (the stream id's WINDOW_UPDATE read by the caller).</summary>
    private async Task<(byte Type, byte Flags, int Stream, int Length)> ReadFrameAsync(CancellationToken cancellationToken)
    {
        await FillAsync(9, cancellationToken).ConfigureAwait(false);
        var header = _input.AsSpan(_inputStart, 9);
        var length = (header[0] << 16) | (header[1] << 8) | header[2];
        var type = header[3];
        var flags = header[4];
        var stream = BinaryPrimitives.ReadInt32BigEndian(header[5..]) & 0x7FFFFFFF;
        if (length > _frame.Length)
        {
            throw new IOException($"The server sent a {length}-byte frame, larger than the 16 KB this client allows");
        }

        _inputStart += 9;
        await FillAsync(length, cancellationToken).ConfigureAwait(false);
        _input.AsSpan(_inputStart, length).CopyTo(_frame);
        _inputStart += length;
        return (type, flags, stream, length);
    }

    /// <summary>Receives until <paramref name="count"/> unread bytes are buffered.</summary>
    private async Task FillAsync(int count, CancellationToken cancellationToken)
    {
        if (_inputEnd - _inputStart >= count)
        {
            return;
        }

        if (_inputStart > 0)
        {
            _input.AsSpan(_inputStart, _inputEnd - _inputStart).CopyTo(_input);
            _inputEnd -= _inputStart;
            _inputStart = 0;
        }

        if (count > _input.Length)
        {
            Array.Resize(ref _input, count);
        }

        while (_inputEnd < count)
        {
            var n = await _socket.ReceiveAsync(_input.AsMemory(_inputEnd), cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                Healthy = false;
                throw new IOException("The server closed the connection");
            }

            _inputEnd += n;
        }
    }

    private static int WriteFrameHeader(byte[] buffer, int at, int length, byte type, byte flags, int stream)
    {
        buffer[at] = (byte)(length >> 16);
        buffer[at + 1] = (byte)(length >> 8);
        buffer[at + 2] = (byte)length;
        buffer[at + 3] = type;
        buffer[at + 4] = flags;
        BinaryPrimitives.WriteInt32BigEndian(buffer.AsSpan(at + 5), stream);
        return at + 9;
    }

    private static int WriteSetting(byte[] buffer, int at, ushort id, uint value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(at), id);
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(at + 2), value);
        return at + 6;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Healthy = false;
        _socket.Dispose();
    }

    /// <summary>A call's frames, built once per message and frame size: HEADERS, then DATA frames of the gRPC-prefixed message; only the stream id changes per call.</summary>
    private sealed class PreparedCall
    {
        private PreparedCall(byte[] message, string path, string authority, int frameSize, byte[] bytes, List<(int Offset, int Payload)> frames)
        {
            Message = message;
            Path = path;
            Authority = authority;
            FrameSize = frameSize;
            Bytes = bytes;
            Frames = frames;
        }

        public byte[] Message { get; }

        public string Path { get; }

        public string Authority { get; }

        public int FrameSize { get; }

        /// <summary>Every frame, one after another.</summary>
        public byte[] Bytes { get; }

        /// <summary>Where each frame starts and its payload length (frame 0: HEADERS).</summary>
        public List<(int Offset, int Payload)> Frames { get; }

        public static PreparedCall Build(string authority, string path, byte[] message, int frameSize)
        {
            // HPACK without indexing or Huffman: :method POST and :scheme http from the static table, the rest literal.
            var block = new MemoryStream();
            block.WriteByte(0x83);
            block.WriteByte(0x86);
            Literal(block, 4, path);
            Literal(block, 1, authority);
            Literal(block, 31, "application/grpc");
            LiteralName(block, "te", "trailers");
            var headerBlock = block.ToArray();
            if (headerBlock.Length > 16384)
            {
                throw new BatchwiseException("The gRPC request's headers exceed one HTTP/2 frame", "Use a shorter model name or host name.");
            }

            var body = 5L + message.Length;
            var dataFrames = Math.Max(1, (int)((body + frameSize - 1) / frameSize));
            var bytes = new byte[9 + headerBlock.Length + (9L * dataFrames) + body];
            var frames = new List<(int, int)>(dataFrames + 1) { (0, headerBlock.Length) };
            var at = WriteFrameHeader(bytes, 0, headerBlock.Length, Headers, EndHeaders, 0);
            headerBlock.CopyTo(bytes, at);
            at += headerBlock.Length;
            long written = 0;
            for (var i = 0; i < dataFrames; i++)
            {
                var payload = (int)Math.Min(frameSize, body - written);
                frames.Add((at, payload));
                at = WriteFrameHeader(bytes, at, payload, Data, i == dataFrames - 1 ? EndStream : (byte)0, 0);
                at += payload;
                written += payload;
            }

            // The gRPC message (uncompressed flag, big-endian length, bytes) cut into the DATA frames' payloads.
            var grpcMessage = new byte[body];
            BinaryPrimitives.WriteInt32BigEndian(grpcMessage.AsSpan(1), message.Length);
            message.CopyTo(grpcMessage, 5);
            var offset = 0;
            foreach (var (frameAt, payload) in frames.Skip(1))
            {
                grpcMessage.AsSpan(offset, payload).CopyTo(bytes.AsSpan(frameAt + 9));
                offset += payload;
            }

            return new PreparedCall(message, path, authority, frameSize, bytes, frames);
        }

        /// <summary>Writes <paramref name="stream"/> into every frame's header.</summary>
        public void SetStream(int stream)
        {
            foreach (var (offset, _) in Frames)
            {
                BinaryPrimitives.WriteInt32BigEndian(Bytes.AsSpan(offset + 5), stream);
            }
        }

        private static void Literal(MemoryStream block, int nameIndex, string value)
        {
            // Literal header field without indexing, indexed name (4-bit prefix).
            WriteInteger(block, 0x00, 4, nameIndex);
            WriteString(block, value);
        }

        private static void LiteralName(MemoryStream block, string name, string value)
        {
            block.WriteByte(0x00);
            WriteString(block, name);
            WriteString(block, value);
        }

        private static void WriteString(MemoryStream block, string value)
        {
            var bytes = Encoding.ASCII.GetBytes(value);
            WriteInteger(block, 0x00, 7, bytes.Length);
            block.Write(bytes);
        }

        private static void WriteInteger(MemoryStream block, byte first, int prefixBits, int value)
        {
            var max = (1 << prefixBits) - 1;
            if (value < max)
            {
                block.WriteByte((byte)(first | value));
                return;
            }

            block.WriteByte((byte)(first | max));
            value -= max;
            while (value >= 128)
            {
                block.WriteByte((byte)((value & 0x7F) | 0x80));
                value >>= 7;
            }

            block.WriteByte((byte)value);
        }
    }
}
