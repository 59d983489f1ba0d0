using System.Text;

namespace Batchwise.Server.Load;

/// <summary>
/// Decodes an HTTP/2 header block (HPACK, RFC 7541) sent to a peer that announced a header table of size 0: every field
/// is static-table indexed or literal, so no dynamic table is kept. Huffman-coded strings are not decoded (their text
/// comes back null); what the load generator reads (:status, grpc-status) is then judged otherwise.
/// </summary>
internal static class HeaderBlock
{
    /// <summary>RFC 7541 Appendix A: the static table (index 1 first), name and value.</summary>
    private static readonly (string Name, string Value)[] Static =
    [
        (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
        (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
        (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
        ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""), ("cache-control", ""),
        ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
        ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""), ("date", ""), ("etag", ""),
        ("expect", ""), ("expires", ""), ("from", ""), ("host", ""), ("if-match", ""), ("if-modified-since", ""),
        ("if-none-match", ""), ("if-range", ""), ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""),
        ("location", ""), ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""),
        ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""), ("set-cookie", ""),
        ("strict-transport-security", ""), ("transfer-encoding", ""), ("user-agent", ""), ("vary", ""), ("via", ""),
        ("www-authenticate", ""),
    ];

    /// <summary>The block's fields in order (a Huffman-coded name or value is null).</summary>
    public static List<(string? Name, string? Value)> Decode(ReadOnlySpan<byte> block)
    {
        var fields = new List<(string?, string?)>();
        var at = 0;
        while (at < block.Length)
        {
            var b = block[at];
            if ((b & 0x80) != 0)
            {
                // Indexed field.
                var (name, value) = Entry(ReadInteger(block, ref at, 7));
                fields.Add((name, value));
            }
            else if ((b & 0xE0) == 0x20)
            {
                // Dynamic table size update (to 0, as we announced): nothing to keep.
                ReadInteger(block, ref at, 5);
            }
            else
            {
                // Literal, with incremental indexing (6-bit prefix: the entry is evicted at once in a table of size 0), without, or never indexed (4-bit).
                var index = ReadInteger(block, ref at, (b & 0x40) != 0 ? 6 : 4);
                var name = index == 0 ? ReadString(block, ref at) : Entry(index).Name;
                fields.Add((name, ReadString(block, ref at)));
            }
        }

        return fields;
    }

    private static (string Name, string Value) Entry(int index) =>
        index >= 1 && index <= Static.Length
            ? Static[index - 1]
            : throw new InvalidDataException($"HPACK index {index} is not in the static table (the dynamic table is announced as size 0)");

    private static int ReadInteger(ReadOnlySpan<byte> block, ref int at, int prefixBits)
    {
        var max = (1 << prefixBits) - 1;
        var value = block[at++] & max;
        if (value < max)
        {
            return value;
        }

        for (var shift = 0; shift <= 28; shift += 7)
        {
            var b = block[at++];
            value += (b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return value;
            }
        }

        throw new InvalidDataException("HPACK integer too large");
    }

    private static string? ReadString(ReadOnlySpan<byte> block, ref int at)
    {
        var huffman = (block[at] & 0x80) != 0;
        var length = ReadInteger(block, ref at, 7);
        var text = huffman ? null : Encoding.ASCII.GetString(block.Slice(at, length));
        at += length;
        return text;
    }
}
