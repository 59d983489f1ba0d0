using System.Globalization;
using System.Text.Json;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Server.Protocol;

namespace Batchwise.Server;

/// <summary>An integer request parameter as a protocol sent it: a value when it was an integer of any width, else what it was.</summary>
/// <param name="Value">The integer (a 64-bit signed or unsigned value fits), or null when it was not an integer.</param>
/// <param name="Text">How it reads in an error message.</param>
public readonly record struct IntegerParameter(Int128? Value, string Text);

/// <summary>
/// The rules both protocols apply to a request before anything is allocated for it: element and byte counts with
/// overflow checks, the data present against the size claimed, and the priority and timeout parameters. HTTP and
/// gRPC call the same functions, so they refuse the same things with the same words.
/// </summary>
public static class RequestValidator
{
    /// <summary>The longest queue timeout a request may ask for, in microseconds (24 hours).</summary>
    public const long MaxTimeoutMicroseconds = 86_400_000_000;

    /// <summary>Elements in <paramref name="shape"/>; a 400 for a negative dimension or a count that overflows.</summary>
    public static long ElementCount(string input, IReadOnlyList<long> shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long n = 1;
        foreach (var d in shape)
        {
            if (d < 0)
            {
                throw InferenceError.BadRequest($"Input '{input}' has a negative dimension in shape {Tensor.ShapeText(shape)}");
            }

            if (d != 0 && n > long.MaxValue / d)
            {
                throw InferenceError.BadRequest($"Input '{input}' has shape {Tensor.ShapeText(shape)}, whose element count does not fit in 64 bits; send a real shape");
            }

            n *= d;
        }

        return n;
    }

    /// <summary>Bytes a tensor of <paramref name="type"/> and <paramref name="shape"/> takes; a 400 when that overflows.</summary>
    public static long ByteCount(string input, ElementType type, IReadOnlyList<long> shape)
    {
        var count = ElementCount(input, shape);
        var size = type.SizeOf();
        if (size > 0 && count > long.MaxValue / size)
        {
            throw InferenceError.BadRequest($"Input '{input}' has shape {Tensor.ShapeText(shape)}, whose size in bytes does not fit in 64 bits; send a real shape");
        }

        return count * size;
    }

    /// <summary>Raw bytes sent for an input must be exactly what its datatype and shape need (a request that lies about its size is a 400).</summary>
    public static void CheckDataBytes(string input, ElementType type, IReadOnlyList<long> shape, long expected, long given)
    {
        if (given != expected)
        {
            throw InferenceError.BadRequest($"Input '{input}' has {given} bytes of data; {type.ProtocolName()} {Tensor.ShapeText(shape)} needs {expected}");
        }
    }

    /// <summary>The number of values sent for an input must be what its shape needs.</summary>
    public static void CheckValueCount(string input, IReadOnlyList<long> shape, long expected, long given, bool more = false)
    {
        if (given != expected)
        {
            throw InferenceError.BadRequest($"Input '{input}' has {given}{(more ? " or more" : string.Empty)} values; shape {Tensor.ShapeText(shape)} needs {expected}");
        }
    }

    /// <summary>The request's priority: 0 (the model's default level) or a level; a 400 for anything not an integer in 0..2^31-1.</summary>
    public static int Priority(IntegerParameter p)
    {
        if (p.Value is not { } v || v < 0 || v > int.MaxValue)
        {
            throw InferenceError.BadRequest($"Parameter 'priority' is {p.Text}; it must be an integer from 0 (the model's default level) to the model's priority_levels");
        }

        return (int)v;
    }

    /// <summary>The request's queue timeout: 0 means none; a 400 for anything not an integer in 0..<see cref="MaxTimeoutMicroseconds"/>.</summary>
    public static TimeSpan? Timeout(IntegerParameter p)
    {
        if (p.Value is not { } v || v < 0 || v > MaxTimeoutMicroseconds)
        {
            throw InferenceError.BadRequest($"Parameter 'timeout' is {p.Text}; it must be an integer number of microseconds from 0 (none) to {MaxTimeoutMicroseconds} (24 hours)");
        }

        return v == 0 ? null : TimeSpan.FromMicroseconds((long)v);
    }

    /// <summary>An HTTP/JSON parameter value.</summary>
    public static IntegerParameter Parameter(JsonElement e)
    {
        if (e.ValueKind == JsonValueKind.Number)
        {
            if (e.TryGetInt64(out var l))
            {
                return new IntegerParameter(l, l.ToString(CultureInfo.InvariantCulture));
            }

            if (e.TryGetUInt64(out var u))
            {
                return new IntegerParameter(u, u.ToString(CultureInfo.InvariantCulture));
            }
        }

        return new IntegerParameter(null, Quote(RawText(e)));
    }

    /// <summary>A gRPC parameter value.</summary>
    public static IntegerParameter Parameter(InferParameter p)
    {
        ArgumentNullException.ThrowIfNull(p);
        return p.ParameterChoiceCase switch
        {
            InferParameter.ParameterChoiceOneofCase.Int64Param => new IntegerParameter(p.Int64Param, p.Int64Param.ToString(CultureInfo.InvariantCulture)),
            InferParameter.ParameterChoiceOneofCase.Uint64Param => new IntegerParameter(p.Uint64Param, p.Uint64Param.ToString(CultureInfo.InvariantCulture)),
            InferParameter.ParameterChoiceOneofCase.DoubleParam => new IntegerParameter(null, p.DoubleParam.ToString("R", CultureInfo.InvariantCulture)),
            InferParameter.ParameterChoiceOneofCase.BoolParam => new IntegerParameter(null, p.BoolParam ? "true" : "false"),
            InferParameter.ParameterChoiceOneofCase.StringParam => new IntegerParameter(null, Quote("\"" + p.StringParam + "\"")),
            _ => new IntegerParameter(null, "empty"),
        };
    }

    /// <summary>A JSON string's text, or a 400 naming <paramref name="what"/> when it is not a string or not valid UTF-8.</summary>
    public static string JsonString(JsonElement e, string what)
    {
        if (e.ValueKind != JsonValueKind.String)
        {
            throw InferenceError.BadRequest($"{what} must be a string");
        }

        try
        {
            return e.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw InferenceError.BadRequest($"{what} is not valid UTF-8; send text encoded as UTF-8");
        }
    }

    /// <summary>A JSON value as it was written (cut to 40 characters), safe for invalid UTF-8.</summary>
    public static string RawText(JsonElement e)
    {
        string text;
        try
        {
            text = e.GetRawText();
        }
        catch (InvalidOperationException)
        {
            return "(text that is not valid UTF-8)";
        }

        return text.Length > 40 ? text[..40] + "..." : text;
    }

    private static string Quote(string text) => text.Length > 40 ? text[..40] + "..." : text;
}
