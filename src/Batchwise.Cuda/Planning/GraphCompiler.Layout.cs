using System.Globalization;
using System.Text;
using Batchwise.Cuda.Kernels;
using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Precision, memory layout and elementwise fusion: in a half-precision plan every float32 tensor on the device is stored
/// as float16 (weights converted when uploaded, inputs and outputs converted by one kernel each); 4-d activations are
/// stored channels-last where convolutions produce them (what cuDNN's tensor-core kernels want); and chains of
/// elementwise operators stay pending until a consumer needs them in memory, then run as one generated kernel.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>Most statements one fused elementwise kernel gets before its inputs are written out first.</summary>
    private const int MaxFusedStatements = 32;

    /// <summary>Most distinct inputs one fused elementwise kernel reads.</summary>
    private const int MaxFusedLeaves = 8;


    private readonly Dictionary<PlanValue, int> _leafIds = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<int, PlanValue> _nchwCopies = [];
    private readonly Dictionary<int, PlanValue> _nhwcCopies = [];
    private int _temps;

    private bool Half => _target.Precision == Precision.Fp16;

    /// <summary>The element type a value of <paramref name="t"/> is stored as on the device.</summary>
    private ElementType St(ElementType t) => Half && t == ElementType.Float ? ElementType.Float16 : t;

    /// <summary>A device value's type is already its storage type; a constant is converted when uploaded.</summary>
    private ElementType St(PlanValue v) => v.Constant is null ? v.Type : St(v.Type);

    /// <summary>The shape as laid out in memory: [N, H, W, C] for a channels-last value.</summary>
    private static long[] Phys(PlanValue v) => v.Nhwc ? ToNhwcOrder(v.Shape) : v.Shape;

    private static long[] ToNhwcOrder(long[] s) => [s[0], s[2], s[3], s[1]];

    /// <summary>True when a rank-4 shape reads the same in NCHW and NHWC order (one channel, or 1x1 spatial).</summary>
    private static bool LayoutFree(long[] shape) => shape.Length != 4 || shape[1] == 1 || (shape[2] == 1 && shape[3] == 1);

    /// <summary>Whether new 4-d activations should be channels-last in this plan.</summary>
    private bool PreferNhwc(long[] shape) => Half && shape.Length == 4;

    /// <summary>The value in NCHW order: itself, the same buffer relabelled where the order does not matter, or a transposed copy.</summary>
    private PlanValue Nchw(PlanValue v)
    {
        v = Materialize(v);
        if (!v.Nhwc || v.Constant is not null)
        {
            return v;
        }

        if (LayoutFree(v.Shape))
        {
            return new PlanValue(v.Type, v.Shape, null, v.Buffer);
        }

        if (!_nchwCopies.TryGetValue(v.Buffer, out var copy))
        {
            copy = Temp(v.Type, v.Shape);
            var s = v.Shape;
            Transpose(v, copy, s[0], s[2] * s[3], s[1]); // [N, HW, C] -> [N, C, HW]
            _nchwCopies[v.Buffer] = copy;
        }

        return copy;
    }

    /// <summary>The value channels-last (rank-4 device values; anything else is returned as it is).</summary>
    private PlanValue Nhwc(PlanValue v)
    {
        v = Materialize(v);
        if (v.Nhwc || v.Shape.Length != 4)
        {
            return v;
        }

        if (v.Constant is { } c)
        {
            // A 4-d constant read channels-last: transposed on the host, uploaded in that order.
            return new PlanValue(c.Type, v.Shape, ChannelsLastConstant(c, v.Shape)) { Nhwc = true };
        }

        if (LayoutFree(v.Shape))
        {
            return new PlanValue(v.Type, v.Shape, null, v.Buffer) { Nhwc = true };
        }

        if (!_nhwcCopies.TryGetValue(v.Buffer, out var copy))
        {
            var s = v.Shape;
            copy = NewValue(v.Type, s, true, "channels-last copy for " + _node);
            Transpose(v, copy, s[0], s[1], s[2] * s[3]); // [N, C, HW] -> [N, HW, C]
            _nhwcCopies[v.Buffer] = copy;
        }

        return copy;
    }

    /// <summary>
    /// A 4-d host tensor of shape [A, B, C, D] reordered to [A, C, D, B]: an NCHW constant as NHWC, or a [K, C, kh, kw]
    /// filter as [K, kh, kw, C] (cuDNN's NHWC filter format).
    /// </summary>
    private HostTensor ChannelsLastConstant(HostTensor t, long[] s4) => _target.Derive("nhwc:" + string.Join('x', s4), [t], () => ChannelsLast(t, s4));

    internal static HostTensor ChannelsLast(HostTensor t, long[] s4)
    {
        // [A, B, C, D] -> [A, C, D, B] by rows of B (a filter's input channels), in parallel over A: weights of a large
        // model are millions of elements, reordered when a session's first plan is built.
        var (a, b, c, d) = (s4[0], s4[1], s4[2], s4[3]);
        var plane = c * d;
        var shape = ToNhwcOrder(s4);
        if (t.IsFloat)
        {
            var from = t.Floats!;
            var to = new double[from.Length];
            Parallel.For(0, a, n =>
            {
                var src = n * b * plane;
                var dst = n * b * plane;
                for (long p = 0; p < plane; p++)
                {
                    for (long ch = 0; ch < b; ch++)
                    {
                        to[dst + (p * b) + ch] = from[src + (ch * plane) + p];
                    }
                }
            });
            return HostTensor.OfFloats(t.Type, shape, to);
        }

        var ints = t.Ints!;
        var moved = new long[ints.Length];
        for (long n = 0; n < a; n++)
        {
            for (long p = 0; p < plane; p++)
            {
                for (long ch = 0; ch < b; ch++)
                {
                    moved[(n * b * plane) + (p * b) + ch] = ints[(n * b * plane) + (ch * plane) + p];
                }
            }
        }

        return HostTensor.OfInts(t.Type, shape, moved);
    }

    private void Transpose(PlanValue src, PlanValue dst, long batch, long rows, long cols) =>
        Kernel(KernelSource.Transpose(St(src).SizeOf(), batch, rows, cols), KernelSource.TransposeThreads(batch, rows, cols), Dev(dst), Dev(src));

    private PlanValue NewValue(ElementType type, long[] shape, bool nhwc, string label)
    {
        var b = NewBuffer(Math.Max(1, Tensor.ElementCountOf(shape)) * St(type).SizeOf(), label);
        return new PlanValue(St(type), shape, null, b.Id) { Nhwc = nhwc };
    }

    /// <summary>
    /// A graph input as the plan computes with it: float32 becomes float16 (4-d inputs channels-last) in one kernel; an
    /// image whose only consumers are convolutions gets its few channels padded to <paramref name="padTo"/> in that kernel,
    /// each value first quantized and dequantized where <paramref name="rounding"/> is given (a QDQ model's stem input).
    /// </summary>
    private PlanValue EnterInput(PlanValue raw, long padTo = 0, KernelSource.QuantRounding? rounding = null)
    {
        if (St(raw.Type) == raw.Type)
        {
            return raw;
        }

        var s4 = raw.Shape;
        if (padTo > 0)
        {
            var padded = NewValue(raw.Type, [s4[0], padTo, s4[2], s4[3]], true, "input padded to " + padTo + " channels");
            Kernel(KernelSource.ChannelsLastPadded(raw.Type, padded.Type, s4[0], s4[1], s4[2] * s4[3], padTo, rounding), KernelSource.ChannelsLastPaddedThreads(s4[0], s4[2] * s4[3]), Dev(padded), Dev(raw));
            return new PlanValue(padded.Type, s4, null, padded.Buffer) { Nhwc = true, PaddedChannels = padTo };
        }

        var nhwc = PreferNhwc(raw.Shape);
        var v = NewValue(raw.Type, raw.Shape, nhwc, "input in compute precision");
        var s = raw.Shape;
        if (nhwc)
        {
            var src = KernelSource.Strides(s);
            ConvertCopy(raw, ToNhwcOrder(s), [src[0], src[2], src[3], src[1]], v, KernelSource.Strides(ToNhwcOrder(s)));
        }
        else
        {
            ConvertCopy(raw, s, KernelSource.Strides(s), v, KernelSource.Strides(s));
        }

        return v;
    }

    /// <summary>
    /// The channel count a half-precision image input is padded to at entry (8, for tensor cores), when every consumer is
    /// an ordinary convolution with constant weights reading it as its data input; 0 otherwise.
    /// </summary>
    private long StemChannels(string input, long[] shape)
    {
        if (!Half || shape.Length != 4 || shape[1] % 8 == 0 || _graphOutputs.Contains(input) || !_consumers.TryGetValue(input, out var users))
        {
            return 0;
        }

        var convs = users.All(n => n.OpType == "Conv" && n.Input[0] == input && n.Input.Skip(1).All(w => w != input)
            && new NodeAttributes(n).Int("group", 1) == 1 && ConstantFilter(n.Input[1]));
        return convs ? (shape[1] + 7) / 8 * 8 : 0;
    }

    /// <summary>An initializer, or a QDQ model's quantized filter: the output of a DequantizeLinear of initializers.</summary>
    private bool ConstantFilter(string name)
    {
        bool Initializer(string n) => _model.Graph.Initializer.Any(t => t.Name == n);
        return Initializer(name) || Producer(name) is { OpType: "DequantizeLinear", Domain: "" } dq
            && dq.Input.All(i => i.Length == 0 || Initializer(i));
    }

    /// <summary>
    /// A QDQ model's image input (<c>batchwise optimize --int8</c>, ONNX Runtime's quantizer): input -> QuantizeLinear ->
    /// DequantizeLinear -> convolutions only, each node the other's only reader, the pair with one constant scale and zero
    /// point. Its rounding then joins the input's padded entry kernel, reading the float32 input as ONNX Runtime does, and
    /// the stem convolution gets the padded channels it wants: no pass that rounds a half copy, no padding copy after it.
    /// A zero padded channel stays zero (the stored zero point dequantizes to 0). Null for any other input.
    /// </summary>
    private (OnnxProto.NodeProto Quantize, OnnxProto.NodeProto Dequantize, long PadTo, KernelSource.QuantRounding Rounding)? QuantizedStemInput(string input, long[] shape, IReadOnlyDictionary<string, HostTensor> initializers)
    {
        if (!Half || _graphOutputs.Contains(input) || !_consumers.TryGetValue(input, out var users) || users is not [{ OpType: "QuantizeLinear", Domain: "" } q]
            || q.Input[0] != input || _graphOutputs.Contains(q.Output[0]) || !_consumers.TryGetValue(q.Output[0], out var readers)
            || readers is not [{ OpType: "DequantizeLinear", Domain: "" } dq] || dq.Input[0] != q.Output[0])
        {
            return null;
        }

        if (QdqRounding(q, dq, initializers) is not { } pair || _graphOutputs.Contains(dq.Output[0]))
        {
            return null;
        }

        var padTo = StemChannels(dq.Output[0], shape);
        return padTo == 0 ? null : (q, dq, padTo, pair.Rounding);
    }

    /// <summary>
    /// The rounding of QuantizeLinear <paramref name="q"/> (with the DequantizeLinear <paramref name="dq"/> that undoes it,
    /// where given) and what it stores: per tensor with a positive scale and constants of <paramref name="initializers"/>,
    /// unblocked, 8 bits; the pair's constants and zero-point inputs alike. Null otherwise.
    /// </summary>
    internal static (KernelSource.QuantRounding Rounding, ElementType Stored)? QdqRounding(OnnxProto.NodeProto q, OnnxProto.NodeProto? dq, IReadOnlyDictionary<string, HostTensor> initializers)
    {
        static bool ZeroGiven(OnnxProto.NodeProto n) => n.Input.Count > 2 && n.Input[2].Length > 0;
        PlanValue? Initializer(string name) => initializers.TryGetValue(name, out var c) ? new PlanValue(c.Type, c.Shape, c) : null;
        if (QdqPerTensor(q, Initializer) is not { } own || !(own.Scale > 0) || new NodeAttributes(q).Int("block_size", 0) != 0
            || (dq is not null && (QdqPerTensor(dq, Initializer) is not { } undo || undo != own || ZeroGiven(q) != ZeroGiven(dq))))
        {
            return null;
        }

        var stored = QuantizedType(q, own);
        if (stored is not (ElementType.UInt8 or ElementType.Int8))
        {
            return null;
        }

        var (low, high) = QuantRange(stored);
        return (new KernelSource.QuantRounding((float)own.Scale, own.Zero, low, high), stored);
    }

    /// <summary>A graph output as the caller wants it: in the model's declared type and NCHW order.</summary>
    private PlanValue LeaveOutput(PlanValue v, ElementType declared)
    {
        v = Materialize(v);
        if (v.Constant is not null || (v.Type == declared && !v.Nhwc))
        {
            return v;
        }

        var b = NewBuffer(Math.Max(1, v.Count) * declared.SizeOf(), "output in " + declared.ShortName());
        var y = new PlanValue(declared, v.Shape, null, b.Id);
        var s = v.Shape;
        if (v.Nhwc && !LayoutFree(s))
        {
            var phys = KernelSource.Strides(ToNhwcOrder(s));
            ConvertCopy(v, s, [phys[0], phys[3], phys[1], phys[2]], y, KernelSource.Strides(s));
        }
        else
        {
            ConvertCopy(v, s, KernelSource.Strides(s), y, KernelSource.Strides(s));
        }

        return y;
    }

    private void ConvertCopy(PlanValue src, long[] shape, long[] srcStrides, PlanValue dst, long[] dstStrides)
    {
        var count = Tensor.ElementCountOf(shape);
        if (count == 0)
        {
            return;
        }

        var contiguous = KernelSource.Strides(shape);
        static bool SixteenBit(ElementType t) => t is ElementType.Float16 or ElementType.BFloat16;
        if (((St(src) == ElementType.Float && SixteenBit(St(dst))) || (SixteenBit(St(src)) && St(dst) == ElementType.Float))
            && srcStrides.SequenceEqual(contiguous) && dstStrides.SequenceEqual(contiguous))
        {
            // Between float and a 16-bit float, row-major on both sides (a half plan's float output, a float input into a
            // half plan): the elementwise kernel's vector path, 16 bytes a thread. One element a thread ran at about a third of
            // the copy bandwidth (session 43's H100, DistilBERT b=64's output: 32.8 us for 6.3 M; 12.4 us so in session 44).
            var vector = KernelSource.ElementwiseVector(St(dst), [St(src)], shape, [shape]);
            Kernel(KernelSource.Elementwise(St(dst), [St(src)], shape, [shape], "x0", vector: vector), count / vector, Dev(dst), Dev(src));
            return;
        }

        Kernel(KernelSource.ConvertCopy(St(src), St(dst), shape, srcStrides, 0, dstStrides, 0), KernelSource.ConvertCopyThreads(St(src), St(dst), shape, srcStrides, 0, dstStrides, 0), Dev(dst), Dev(src));
    }

    /// <summary>
    /// An elementwise operator over its operands, not emitted yet: pending operands are extended (their statements and
    /// inputs carried over), so a chain such as bias + SiLU becomes one kernel when something needs its result.
    /// </summary>
    private PlanValue Pending(IReadOnlyList<PlanValue> operands, Func<IReadOnlyList<ElementType>, string> expression, ElementType outType, long[] outShape)
    {
        // Channels-last when any 4-d operand is; operands whose order does not fit are brought to it first.
        var nhwc = outShape.Length == 4 && operands.Any(o => o.Nhwc);
        var ready = new List<PlanValue>();
        foreach (var o in operands)
        {
            var v = o;
            if (v.Pending is not null && (v.Pending.Leaves.Any(l => !Fits(l, nhwc, outShape.Length)) || v.Pending.Statements.Count >= MaxFusedStatements))
            {
                v = Materialize(v);
            }

            if (v.Pending is null && !Fits(v, nhwc, outShape.Length))
            {
                v = nhwc ? Nhwc(v) : Nchw(v);
            }

            ready.Add(v);
        }

        var leaves = new List<PlanValue>();
        var statements = new List<(string Temp, string Code)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var operandText = new List<string>();
        foreach (var v in ready)
        {
            if (v.Pending is { } p)
            {
                foreach (var s in p.Statements.Where(s => seen.Add(s.Temp)))
                {
                    statements.Add(s);
                }

                foreach (var l in p.Leaves.Where(l => !leaves.Contains(l)))
                {
                    leaves.Add(l);
                }

                operandText.Add(p.Result);
            }
            else
            {
                if (!leaves.Contains(v))
                {
                    leaves.Add(v);
                }

                operandText.Add($"@{LeafId(v)}@");
            }
        }

        if (leaves.Count > MaxFusedLeaves)
        {
            // Too many inputs for one kernel: write the operands out and start a new chain from them.
            return Pending(ready.Select(Materialize).ToList(), expression, outType, outShape);
        }

        var computeTypes = ready.Select(v => KernelSource.ComputeType(St(v))).ToList();
        var text = ReplaceOperands(expression(computeTypes), k => $"(({KernelSource.CType(computeTypes[k])}){operandText[k]})");
        var result = KernelSource.ComputeType(St(outType));
        var temp = "t" + (_temps++).ToString(CultureInfo.InvariantCulture);
        statements.Add((temp, $"const {KernelSource.CType(result)} {temp} = ({KernelSource.CType(result)})({text});"));
        return new PlanValue(St(outType), outShape) { Nhwc = nhwc, Pending = new PendingElementwise(statements, temp, leaves) };
    }

    /// <summary>
    /// Where <paramref name="x"/> is an elementwise chain not written yet over one value of its own shape and layout
    /// <paramref name="nhwc"/> (a DequantizeLinear of an int8 activation, a Clip after a product): that value and the
    /// chain's statements with it as xe, which a kernel applies to each element as it loads it, so no pass writes the
    /// chain's result first. Null otherwise (the input is written out as before). A kernel that loads each element
    /// several times (<paramref name="eachElementOnce"/> false: a depthwise window, about 4.5 loads an element for 3x3
    /// and 4 outputs a thread) takes over a wider value only a chain without division, rounding or transcendentals (a
    /// Clip, a ReLU); over an 8-bit value it runs the chain once a value, into a table.
    /// </summary>
    private (PlanValue Leaf, string Statements, string Result)? OneLeafChain(PlanValue x, bool nhwc, bool eachElementOnce)
    {
        if (x.Pending is not { Leaves: [var leaf] } p || leaf.Pending is not null || leaf.ViewStrides is not null || leaf.Constant is not null
            || leaf.Nhwc != nhwc || leaf.PaddedChannels > 0 || !leaf.Shape.SequenceEqual(x.Shape) || leaf.Type is ElementType.Double or ElementType.Int64)
        {
            return null;
        }

        string[] costly = ["/", "rintf", "bw_quantize", "exp", "tanh", "erf", "log", "pow", "sqrt", "bw_sigmoid", "bw_gelu", "bw_softplus"];
        if (!eachElementOnce && leaf.Type.SizeOf() != 1 && p.Statements.Any(st => costly.Any(c => st.Code.Contains(c, StringComparison.Ordinal))))
        {
            return null;
        }

        var id = LeafId(leaf);
        var text = new StringBuilder();
        foreach (var (_, code) in p.Statements)
        {
            AppendWithLeaves(text, code, k => k == id ? "xe" : throw new InvalidOperationException($"a one-leaf chain names leaf {k}"));
            text.Append('\n');
        }

        return (leaf, text.ToString(), p.Result);
    }

    /// <summary>Whether a value can be read as a broadcast input of an output in the given order without a copy.</summary>
    private static bool Fits(PlanValue v, bool nhwc, int outRank)
    {
        if (v.Nhwc == nhwc)
        {
            return true;
        }

        var aligned = Shapes.RightAlign(v.Shape, outRank);
        return LayoutFree(aligned);
    }

    private int LeafId(PlanValue v)
    {
        if (!_leafIds.TryGetValue(v, out var id))
        {
            id = _leafIds.Count;
            _leafIds[v] = id;
        }

        return id;
    }

    /// <summary>Emits a pending value's kernel (once) and returns the value with its buffer.</summary>
    private PlanValue Materialize(PlanValue v) => v.ViewStrides is not null ? MaterializeView(v) : v.Pending is null ? v : Materialize(v, null, 0, 0, 0);

    /// <summary>Copies a strided view (<see cref="PlanValue.ViewStrides"/>) row-major into its own buffer, once: the value becomes that copy.</summary>
    private PlanValue MaterializeView(PlanValue v)
    {
        var (source, strides, offset) = (Backing(v), v.ViewStrides!, v.ViewOffset);
        v.Buffer = NewBuffer(Math.Max(1, v.Count) * v.Type.SizeOf(), "row-major copy of a view for " + _node).Id;
        v.ViewStrides = null;
        v.ViewOffset = 0;
        ViewCopy(source, v.Shape, strides, offset, v, KernelSource.Strides(v.Shape), 0);
        return v;
    }

    /// <summary>The buffer under a value as a plain value (a strided view's source, read without copying it).</summary>
    private static PlanValue Backing(PlanValue v) => new(v.Type, [1], null, v.Buffer);

    /// <summary>
    /// Emits a pending value's kernel into its own buffer, or into a slice of <paramref name="target"/> (element i of the
    /// value at (i / block) * rowStride + offset + i % block) when its only consumer is a Concat writing there.
    /// </summary>
    private PlanValue Materialize(PlanValue v, PlanValue? target, long block, long rowStride, long offset)
    {
        var p = v.Pending!;

        var rank = v.Shape.Length;
        var outPhys = Phys(v);
        var index = new Dictionary<int, int>();
        var leafShapes = new List<long[]>();
        for (var k = 0; k < p.Leaves.Count; k++)
        {
            var l = p.Leaves[k];
            index[LeafId(l)] = k;
            var aligned = Shapes.RightAlign(l.Shape, rank);
            leafShapes.Add(v.Nhwc ? ToNhwcOrder(aligned) : aligned);
        }

        var body = new StringBuilder();
        foreach (var (_, code) in p.Statements)
        {
            body.Append("    ");
            AppendWithLeaves(body, code, id => "x" + index[id].ToString(CultureInfo.InvariantCulture));
            body.Append('\n');
        }

        var output = target is null ? NewBuffer(Math.Max(1, v.Count) * v.Type.SizeOf(), "fused elementwise for " + _node).Id : Dev(target);
        v.Buffer = target is null ? output : -1; // written into a Concat's output: nothing else reads it on its own
        v.Pending = null;
        var buffers = new[] { output }.Concat(p.Leaves.Select(Dev)).ToArray();
        var types = p.Leaves.Select(St).ToList();
        var vector = KernelSource.ElementwiseVector(v.Type, types, outPhys, leafShapes);
        if (target is not null && (block % vector != 0 || rowStride % vector != 0 || offset % vector != 0))
        {
            vector = 1;
        }

        Kernel(KernelSource.Elementwise(v.Type, types, outPhys, leafShapes, p.Result, body.ToString(), vector, block, rowStride, offset), v.Count / vector, buffers);
        return v;
    }

    /// <summary>
    /// <paramref name="expression"/> with every operand token x0, x1... (a whole word: not inside another name or number)
    /// replaced by <paramref name="operand"/> of its number. By hand, not by regular expression: plans for new shapes
    /// rewrite every fused statement.
    /// </summary>
    internal static string ReplaceOperands(string expression, Func<int, string> operand)
    {
        StringBuilder? result = null;
        var copied = 0;
        for (var i = 0; i < expression.Length; i++)
        {
            if (expression[i] != 'x' || (i > 0 && IsWordChar(expression[i - 1])))
            {
                continue;
            }

            var end = i + 1;
            while (end < expression.Length && char.IsAsciiDigit(expression[end]))
            {
                end++;
            }

            if (end == i + 1 || (end < expression.Length && IsWordChar(expression[end])))
            {
                continue;
            }

            result ??= new StringBuilder(expression.Length + 64);
            result.Append(expression, copied, i - copied).Append(operand(int.Parse(expression.AsSpan(i + 1, end - i - 1), CultureInfo.InvariantCulture)));
            copied = end;
            i = end - 1;
        }

        return result is null ? expression : result.Append(expression, copied, expression.Length - copied).ToString();
    }

    /// <summary>Appends <paramref name="code"/> with every leaf token @id@ replaced by <paramref name="leaf"/> of its id.</summary>
    internal static void AppendWithLeaves(StringBuilder to, string code, Func<int, string> leaf)
    {
        var copied = 0;
        for (var i = 0; i < code.Length; i++)
        {
            if (code[i] != '@')
            {
                continue;
            }

            var end = i + 1;
            while (end < code.Length && char.IsAsciiDigit(code[end]))
            {
                end++;
            }

            if (end == i + 1 || end >= code.Length || code[end] != '@')
            {
                continue;
            }

            to.Append(code, copied, i - copied).Append(leaf(int.Parse(code.AsSpan(i + 1, end - i - 1), CultureInfo.InvariantCulture)));
            copied = end + 1;
            i = end;
        }

        to.Append(code, copied, code.Length - copied);
    }

    /// <summary>A character of a word as regular expressions' \b sees it (letters, digits, underscore).</summary>
    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';
}
