using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Batchwise.Cuda.Kernels;

/// <summary>
/// A generated kernel: its CUDA C source, which depends only on the operator's signature (element types, rank, layout,
/// fused expression), and the bytes of its argument block, which carry every size and stride. Plans for new shapes
/// reuse compiled kernels and only fill new argument blocks.
/// </summary>
/// <param name="Source">The kernel's source (with <see cref="KernelSource.Name"/> as the placeholder for its name).</param>
/// <param name="Args">The argument block passed by value after the buffer pointers, as the source's struct lays it out.</param>
/// <param name="SharedBytes">Dynamic shared memory a block is launched with (a kernel that declares its shared memory
/// <c>extern</c> because a block needs more than the 48 KB static limit); 0 for none.</param>
/// <param name="TensorMaps">TMA tensor maps the kernel takes by value after its buffer pointers (its
/// <c>const __grid_constant__ bw_tensor_map</c> parameters, in order), or null for none.</param>
internal sealed record KernelCode(string Source, byte[] Args, int SharedBytes = 0, IReadOnlyList<HalfTensorMap>? TensorMaps = null);

/// <summary>
/// A TMA tensor map a kernel takes (sm_90; <c>cp.async.bulk.tensor</c> copies boxes of it into shared memory): the
/// dense row-major fp16 matrix in the launch's buffer at position <paramref name="Buffer"/> of its pointers,
/// <paramref name="Rows"/> x <paramref name="Columns"/>, copied in boxes of <paramref name="BoxRows"/> x
/// <paramref name="BoxColumns"/> (a row of 128 bytes, the 128-byte swizzle), elements past its end read as zeros. Each
/// execution context encodes it over its own buffer's address.
/// </summary>
internal sealed record HalfTensorMap(int Buffer, long Rows, long Columns, int BoxRows, int BoxColumns);

/// <summary>
/// Writes a kernel's source and its argument block together: every size goes through <see cref="Size"/>,
/// <see cref="Div"/> or <see cref="Float"/>, which declares a field of the kernel's argument struct and records its
/// value, so the source never holds a shape. Index arithmetic is 32-bit where every index fits
/// (<see cref="Small"/>), dividing by precomputed magic numbers (a multiply-high, an add and a shift, as PyTorch's
/// IntDivider); otherwise 64-bit with plain division.
/// </summary>
internal sealed class KernelWriter
{
    private readonly StringBuilder _fields = new();
    private readonly List<(int Offset, int Size, long Bits)> _values = [];
    private int _size;
    private int _align = 1;
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    public KernelWriter(bool small)
    {
        Small = small;
    }

    /// <summary>True for 32-bit index arithmetic.</summary>
    public bool Small { get; }

    /// <summary>The C type of indices: unsigned (32-bit) or i64.</summary>
    public string Idx => Small ? "unsigned" : "i64";

    /// <summary>The kernel body (after the signature).</summary>
    public StringBuilder Body { get; } = new();

    /// <summary>
    /// The body calls <c>bw_pdl_enter()</c> itself, after reading only constants (a filter's first stages), instead of
    /// as its first statement (<see cref="PdlEnter"/>): every path through it must reach the call before it reads or
    /// writes anything another kernel writes or reads. <see cref="Build"/> checks that the call is there.
    /// </summary>
    public bool PlacesPdlEnter { get; init; }

    /// <summary>Whether every index up to <paramref name="limit"/> fits 32-bit arithmetic (with room for a sum of two).</summary>
    public static bool Fits32(long limit) => limit >= 0 && limit < int.MaxValue;

    /// <summary>A size or offset as an index-typed field; returns the expression that reads it.</summary>
    public string Size(string name, long value) => Small ? Field(name, "unsigned", 4, checked((uint)value)) : Field(name, "i64", 8, value);

    /// <summary>A signed 64-bit field (offsets that may be negative, counts that may exceed 32 bits).</summary>
    public string I64(string name, long value) => Field(name, "i64", 8, value);

    /// <summary>A 32-bit signed field.</summary>
    public string I32(string name, int value) => Field(name, "int", 4, (uint)value);

    /// <summary>A float field (scales, coordinate factors).</summary>
    public string Float(string name, double value) => Field(name, "float", 4, (uint)BitConverter.SingleToInt32Bits((float)value));

    /// <summary>A divisor: in 32-bit mode its magic numbers (read with <see cref="Quot"/>), else an i64.</summary>
    public string Div(string name, long divisor)
    {
        if (!Small)
        {
            return Field(name, "i64", 8, Math.Max(1, divisor));
        }

        var (d, m, s) = Magic((uint)Math.Max(1, divisor));
        Declare(name, "bw_div", 4, 12);
        Put(_size - 12, 4, d);
        Put(_size - 8, 4, m);
        Put(_size - 4, 4, s);
        return "a." + name;
    }

    /// <summary>The quotient of <paramref name="n"/> by a divisor declared with <see cref="Div"/>.</summary>
    public string Quot(string div, string n) => Small ? $"bw_q({div}, {n})" : $"(({n}) / {div})";

    /// <summary>The divisor's value.</summary>
    public string DivValue(string div) => Small ? div + ".d" : div;

    /// <summary>Emits <c>{ q = r / d; c = r - q*d; r = q; }</c>: peels coordinate <paramref name="coord"/> off <paramref name="rest"/>.</summary>
    public string Peel(string div, string rest, string coord) =>
        $"{Idx} {coord}; {{ const {Idx} q_ = {Quot(div, rest)}; {coord} = {rest} - q_ * {DivValue(div)}; {rest} = q_; }}";

    /// <summary>The source: the argument struct, then <paramref name="signature"/> (which must end with <c>const KERNEL_NAME_args a</c>), then the body.</summary>
    public KernelCode Build(string signature)
    {
        if (_size == 0)
        {
            Field("unused", "unsigned", 4, 0);
        }

        var total = (_size + 7) / 8 * 8;
        var bytes = new byte[total];
        foreach (var (offset, size, bits) in _values)
        {
            if (size == 8)
            {
                BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(offset), bits);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(offset), unchecked((uint)bits));
            }
        }

        var source = new StringBuilder();
        source.Append("struct __align__(8) ").Append(KernelSource.Name).Append("_args {\n").Append(_fields).Append("};\n");
        source.Append("extern \"C\" __global__ void ").Append(KernelSource.Name).Append('(').Append(signature).Append(")\n{\n");
        var body = Body.ToString();
        if (PlacesPdlEnter && !body.Contains(PdlEnterCall, StringComparison.Ordinal))
        {
            throw new InvalidOperationException("a kernel that places bw_pdl_enter itself has no call to it");
        }

        source.Append(PlacesPdlEnter ? string.Empty : PdlEnter).Append(body).Append("}\n");
        return new KernelCode(source.ToString(), bytes);
    }

    /// <summary>
    /// The first statement of every generated kernel (<c>bw_pdl_enter</c> in <see cref="KernelSource.Prelude"/>): nothing
    /// is read before it, so a kernel may be launched with programmatic dependent launch
    /// (<see cref="Interop.CudaDriver.Launch(IntPtr, uint, uint, uint, IntPtr, void**, string, bool)"/>) and still see
    /// everything the kernels before it wrote.
    /// </summary>
    public const string PdlEnter = "    " + PdlEnterCall + "\n";

    /// <summary>The call itself, as a kernel that places it (<see cref="PlacesPdlEnter"/>) writes it.</summary>
    public const string PdlEnterCall = "bw_pdl_enter();";

    /// <summary>The argument parameter that ends every signature.</summary>
    public static string ArgsParameter => "const " + KernelSource.Name + "_args a";

    /// <summary>Magic numbers for dividing 32-bit n &lt; 2^31 by d: q = (umulhi(n, m) + n) &gt;&gt; s.</summary>
    public static (uint D, uint M, uint S) Magic(uint d)
    {
        var s = 0;
        while (s < 32 && (1UL << s) < d)
        {
            s++;
        }

        var m = (((1UL << 32) * ((1UL << s) - d)) / d) + 1;
        return (d, checked((uint)m), (uint)s);
    }

    private string Field(string name, string type, int size, long bits)
    {
        Declare(name, type, size, size);
        Put(_size - size, size, bits);
        return "a." + name;
    }

    private void Declare(string name, string type, int align, int size)
    {
        if (!_names.Add(name))
        {
            throw new InvalidOperationException($"kernel argument '{name}' declared twice");
        }

        _size = (_size + align - 1) / align * align;
        _align = Math.Max(_align, align);
        _fields.Append("    ").Append(type).Append(' ').Append(name).Append(";\n");
        _size += size;
    }

    private void Put(int offset, int size, long bits) => _values.Add((offset, size, bits));

    /// <summary>An integer literal (for values that are part of the signature, never sizes).</summary>
    public static string Lit(long v) => v.ToString(CultureInfo.InvariantCulture);
}
