using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Benchmarking;

/// <summary>Reads NumPy .npy files (format versions 1-3, little-endian, C order) into tensors.</summary>
public static partial class NpyReader
{
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Reads a .npy file.</summary>
    public static Tensor Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new BatchwiseException($"Input data file '{path}' not found", "Check the path given with --input NAME=FILE.npy.");
        }

        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses .npy bytes; <paramref name="where"/> names the source in errors.</summary>
    public static Tensor Parse(byte[] bytes, string where)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        const string Hint = "Save it with numpy.save(path, array) from a C-ordered array.";
        if (bytes.Length < 10 || !bytes.AsSpan(0, 6).SequenceEqual(Magic))
        {
            throw new BatchwiseException($"'{where}' is not a .npy file (no \\x93NUMPY magic)", Hint);
        }

        var major = bytes[6];
        int headerLength, offset;
        if (major == 1)
        {
            headerLength = BitConverter.ToUInt16(bytes, 8);
            offset = 10;
        }
        else if (major is 2 or 3)
        {
            if (bytes.Length < 12)
            {
                throw new BatchwiseException($"'{where}' is truncated", Hint);
            }

            headerLength = checked((int)BitConverter.ToUInt32(bytes, 8));
            offset = 12;
        }
        else
        {
            throw new BatchwiseException($"'{where}' is .npy format version {major}, which Batchwise does not read", Hint);
        }

        if (offset + headerLength > bytes.Length)
        {
            throw new BatchwiseException($"'{where}' is truncated (header)", Hint);
        }

        var header = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(bytes, offset, headerLength);
        var descr = DescrPattern().Match(header);
        var fortran = FortranPattern().Match(header);
        var shapeMatch = ShapePattern().Match(header);
        if (!descr.Success || !fortran.Success || !shapeMatch.Success)
        {
            throw new BatchwiseException($"'{where}' has a .npy header Batchwise cannot read: {header.Trim()}", Hint);
        }

        if (fortran.Groups[1].Value == "True")
        {
            throw new BatchwiseException($"'{where}' is stored in Fortran order", "Save numpy.ascontiguousarray(array) instead.");
        }

        var type = ElementTypeOf(descr.Groups[1].Value, where);
        var shape = shapeMatch.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(d => long.Parse(d.TrimEnd('L'), CultureInfo.InvariantCulture)).ToArray();
        var dataOffset = offset + headerLength;
        var expected = Tensor.ElementCountOf(shape) * type.SizeOf();
        if (bytes.LongLength - dataOffset != expected)
        {
            throw new BatchwiseException($"'{where}' holds {bytes.LongLength - dataOffset} data bytes; {type.ShortName()} {Tensor.ShapeText(shape)} needs {expected}", "The file is truncated or corrupt; save it again.");
        }

        var tensor = Tensor.Zeros(type, shape);
        bytes.AsSpan(dataOffset).CopyTo(tensor.Data);
        return tensor;
    }

    /// <summary>The element type of a numpy dtype string such as '&lt;f4'.</summary>
    public static ElementType ElementTypeOf(string descr, string where)
    {
        ArgumentNullException.ThrowIfNull(descr);
        if (descr.Length < 2 || descr[0] == '>')
        {
            throw new BatchwiseException($"'{where}' has dtype '{descr}', which is big-endian or not a plain number", "Save a little-endian array (array.astype('<f4')).");
        }

        return descr[1..] switch
        {
            "f4" => ElementType.Float,
            "f2" => ElementType.Float16,
            "f8" => ElementType.Double,
            "i8" => ElementType.Int64,
            "i4" => ElementType.Int32,
            "i2" => ElementType.Int16,
            "i1" => ElementType.Int8,
            "u1" => ElementType.UInt8,
            "u2" => ElementType.UInt16,
            "u4" => ElementType.UInt32,
            "u8" => ElementType.UInt64,
            "b1" => ElementType.Bool,
            _ => throw new BatchwiseException($"'{where}' has dtype '{descr}', which Batchwise cannot feed to a model", "Use float32, float16, float64, int8-64, uint8-64 or bool."),
        };
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
