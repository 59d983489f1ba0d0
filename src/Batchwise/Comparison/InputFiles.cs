using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Comparison;

/// <summary>Reads model inputs from a folder: NAME.npy or NAME.pb per input, else input_N.npy / input_N.pb by position.</summary>
public static partial class InputFiles
{
    /// <summary>Loads one tensor per model input from <paramref name="directory"/>.</summary>
    public static IReadOnlyList<Tensor> Load(string directory, IReadOnlyList<TensorSpec> inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (!Directory.Exists(directory))
        {
            throw new BatchwiseException($"Inputs folder '{directory}' not found", "Pass a folder with one NAME.npy (or NAME.pb) per model input.");
        }

        var result = new List<Tensor>(inputs.Count);
        for (var i = 0; i < inputs.Count; i++)
        {
            var spec = inputs[i];
            var safe = string.Concat(spec.Name.Select(c => Path.GetInvalidFileNameChars().Contains(c) ? '_' : c));
            var candidates = new[] { $"{safe}.npy", $"{safe}.pb", $"input_{i}.npy", $"input_{i}.pb" }.Select(f => Path.Combine(directory, f)).ToList();
            var file = candidates.FirstOrDefault(File.Exists)
                ?? throw new BatchwiseException($"No file for input '{spec.Name}' in '{directory}' (looked for {string.Join(", ", candidates.Select(Path.GetFileName))})", "Save it with numpy.save(NAME.npy, array).");
            var tensor = file.EndsWith(".npy", StringComparison.Ordinal) ? ReadNpy(file) : TensorProtos.ToTensor(TensorProtos.ReadFile(file));
            if (tensor.ElementType != spec.ElementType)
            {
                throw new BatchwiseException($"'{Path.GetFileName(file)}' holds {tensor.ElementType.ShortName()}; input '{spec.Name}' takes {spec.ElementType.ShortName()}", $"Save it as {spec.ElementType.ShortName()} (array.astype(numpy.{spec.ElementType.ShortName()})).");
            }

            if (tensor.Shape.Length != spec.Shape.Count || spec.Shape.Select((d, j) => d.Value is long v && v != tensor.Shape[j]).Any(x => x))
            {
                throw new BatchwiseException($"'{Path.GetFileName(file)}' has shape {Tensor.ShapeText(tensor.Shape)}; input '{spec.Name}' is {spec.ShapeText}", "Save an array of the input's shape.");
            }

            result.Add(tensor);
        }

        return result;
    }

    /// <summary>Reads a NumPy .npy file (format 1.0-3.0, C order, little-endian numeric or bool dtype).</summary>
    public static Tensor ReadNpy(string path)
    {
        var bytes = File.ReadAllBytes(path);
        ReadOnlySpan<byte> magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
        if (bytes.Length < 10 || !bytes.AsSpan(0, 6).SequenceEqual(magic))
        {
            throw new BatchwiseException($"'{path}' is not a .npy file", "Write it with numpy.save.");
        }

        var major = bytes[6];
        var (headerLength, headerStart) = major == 1
            ? (BitConverter.ToUInt16(bytes, 8), 10)
            : ((int)BitConverter.ToUInt32(bytes, 8), 12);
        if (headerStart + headerLength > bytes.Length)
        {
            throw new BatchwiseException($"'{path}' is truncated", "Write it again with numpy.save.");
        }

        var header = Encoding.Latin1.GetString(bytes, headerStart, headerLength);
        var descr = DescrPattern().Match(header);
        var fortran = FortranPattern().Match(header);
        var shapeMatch = ShapePattern().Match(header);
        if (!descr.Success || !shapeMatch.Success)
        {
            throw new BatchwiseException($"'{path}' has a header Batchwise cannot read: {header.Trim()}", "Write it with numpy.save.");
        }

        if (fortran.Success && fortran.Groups[1].Value == "True")
        {
            throw new BatchwiseException($"'{path}' is in Fortran order", "Save numpy.ascontiguousarray(array).");
        }

        var type = descr.Groups[1].Value switch
        {
            "<f4" => ElementType.Float,
            "<f2" => ElementType.Float16,
            "<f8" => ElementType.Double,
            "<i8" => ElementType.Int64,
            "<i4" => ElementType.Int32,
            "<i2" => ElementType.Int16,
            "|i1" => ElementType.Int8,
            "|u1" => ElementType.UInt8,
            "<u2" => ElementType.UInt16,
            "<u4" => ElementType.UInt32,
            "<u8" => ElementType.UInt64,
            "|b1" => ElementType.Bool,
            var other => throw new BatchwiseException($"'{path}' holds dtype '{other}', which Batchwise does not read", "Save a little-endian numeric or bool array."),
        };
        var shape = shapeMatch.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => long.Parse(s.TrimEnd('L'), CultureInfo.InvariantCulture)).ToArray();
        var tensor = Tensor.Zeros(type, shape);
        var dataStart = headerStart + headerLength;
        if (bytes.Length - dataStart != tensor.Data.Length)
        {
            throw new BatchwiseException($"'{path}' holds {bytes.Length - dataStart} data bytes; {type.ShortName()} {Tensor.ShapeText(shape)} needs {tensor.Data.Length}", "Write it again with numpy.save.");
        }

        bytes.AsSpan(dataStart).CopyTo(tensor.Data);
        return tensor;
    }

    /// <summary>Writes a NumPy .npy file (format 1.0).</summary>
    public static void WriteNpy(string path, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var descr = tensor.ElementType switch
        {
            ElementType.Float => "<f4",
            ElementType.Float16 => "<f2",
            ElementType.Double => "<f8",
            ElementType.Int64 => "<i8",
            ElementType.Int32 => "<i4",
            ElementType.Int16 => "<i2",
            ElementType.Int8 => "|i1",
            ElementType.UInt8 => "|u1",
            ElementType.UInt16 => "<u2",
            ElementType.UInt32 => "<u4",
            ElementType.UInt64 => "<u8",
            ElementType.Bool => "|b1",
            _ => throw new BatchwiseException($"numpy has no {tensor.ElementType} dtype", "Convert the tensor first."),
        };
        var shape = tensor.Shape.Length == 1 ? $"({tensor.Shape[0]},)" : "(" + string.Join(", ", tensor.Shape) + ")";
        var header = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}";
        var total = 10 + header.Length + 1;
        header += new string(' ', (64 - (total % 64)) % 64) + "\n";
        using var stream = File.Create(path);
        stream.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0]);
        stream.Write(BitConverter.GetBytes((ushort)header.Length));
        stream.Write(Encoding.Latin1.GetBytes(header));
        stream.Write(tensor.Data);
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']+)'")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
