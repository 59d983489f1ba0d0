using System.Text;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Comparison;

/// <summary>Model input data kept in a folder: NAME.npy or NAME.pb per input, else input_N.npy / input_N.pb by position.</summary>
public static class InputFiles
{
    /// <summary>Reads the inputs <paramref name="directory"/> has files for (input name → tensor); fails when it has none.</summary>
    public static IReadOnlyDictionary<string, Tensor> Load(string directory, IReadOnlyList<TensorSpec> inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (!Directory.Exists(directory))
        {
            throw new BatchwiseException($"Inputs folder '{directory}' not found", "Pass a folder with one NAME.npy (or NAME.pb) per model input.");
        }

        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var looked = new List<string>();
        for (var i = 0; i < inputs.Count; i++)
        {
            var spec = inputs[i];
            var safe = string.Concat(spec.Name.Select(c => Path.GetInvalidFileNameChars().Contains(c) ? '_' : c));
            var names = new[] { $"{safe}.npy", $"{safe}.pb", $"input_{i}.npy", $"input_{i}.pb" };
            looked.AddRange(names);
            var file = names.Select(f => Path.Combine(directory, f)).FirstOrDefault(File.Exists);
            if (file is not null)
            {
                result[spec.Name] = file.EndsWith(".npy", StringComparison.Ordinal) ? NpyReader.Read(file) : TensorProtos.ToTensor(TensorProtos.ReadFile(file));
            }
        }

        if (result.Count == 0)
        {
            throw new BatchwiseException($"'{directory}' has no file for any input (looked for {string.Join(", ", looked)})", "Save each input with numpy.save('NAME.npy', array).");
        }

        return result;
    }

    /// <summary>Writes a NumPy .npy file (format 1.0, header padded to 64 bytes as numpy writes it).</summary>
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
}
