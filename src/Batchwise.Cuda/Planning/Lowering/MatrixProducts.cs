using System.Runtime.InteropServices;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>How GELU's erf form, 0.5 x (1 + erf(x / sqrt 2)), runs where it follows a matrix product (its bias taken).</summary>
internal enum GeluChoice
{
    /// <summary>Exact: one kernel in place behind the product (erff in fp32), 16 bytes a thread.</summary>
    Exact,

    /// <summary>In fp16 plans, GELU's tanh form as the product's cuBLASLt GELU epilogue (|delta| &lt;= 4.7e-4); fp32 plans stay exact.</summary>
    Tanh,

    /// <summary>The nodes as exported, fused by the elementwise chain into the next product's step (the engine before session 9).</summary>
    Chain,

    /// <summary>As <see cref="Exact"/>, the kernel's blocks walking front to back: tests only, to measure what the back-to-front order gains in L2.</summary>
    ExactFrontToBack,
}

/// <summary>Who runs a matrix product with few rows (one batch: a classifier head at small batches).</summary>
internal enum SmallMatmulChoice
{
    /// <summary>
    /// The own kernel (<see cref="KernelSource.SmallRows"/>, a warp per output column) for a single row, cuBLASLt from
    /// two: the default, as measured on an H200 (session 16). ResNet-50's classifier in fp16 (N 1,000, K 2,048) took
    /// 13.6-15.4 us through cuBLASLt at batch 1 (the fastest of its top eight algorithms, for 4 MB of weights); with
    /// the own kernel ResNet-50 fp16 ran 2,998/2,999 img/s at b=1 against 2,950/2,952 (same call). At batch 8 the own
    /// kernel took 20.2 us (every warp reads all eight rows of A) where cuBLASLt took 8.4 us (session 11's profile).
    /// </summary>
    Auto,

    /// <summary>The own kernel wherever it applies (1 to 8 rows; <c>BATCHWISE_SMALL_MATMUL=own</c>).</summary>
    Own,

    /// <summary>cuBLASLt always.</summary>
    Library,
}

/// <summary>Matrix products (Gemm, MatMul) through cuBLASLt: heuristics or timed tactics, batched and broadcast operands.</summary>
internal sealed unsafe partial class GraphCompiler
{
    private const long MatmulWorkspace = 32L << 20;

    /// <summary>BATCHWISE_GELU: exact (default), tanh or chain.</summary>
    internal static GeluChoice GeluFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_GELU")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "exact" => GeluChoice.Exact,
        "tanh" => GeluChoice.Tanh,
        "chain" => GeluChoice.Chain,
        var other => throw new BatchwiseException($"BATCHWISE_GELU '{other}' is not exact, tanh or chain", "Unset it (erf GELU computed exactly), or set BATCHWISE_GELU=tanh to run it in tanh form as the product's epilogue in fp16 (|delta| <= 4.7e-4)."),
    };

    /// <summary>BATCHWISE_SMALL_MATMUL: auto (default: the own kernel for one row), own (1 to 8 rows) or cublaslt.</summary>
    internal static SmallMatmulChoice SmallMatmulFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_SMALL_MATMUL")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => SmallMatmulChoice.Auto,
        "own" => SmallMatmulChoice.Own,
        "cublaslt" => SmallMatmulChoice.Library,
        var other => throw new BatchwiseException($"BATCHWISE_SMALL_MATMUL '{other}' is not auto, own or cublaslt", "Unset it (the own kernel for one-row products, cuBLASLt from two), or set BATCHWISE_SMALL_MATMUL=own (the own kernel for 1 to 8 rows) or cublaslt (cuBLASLt always)."),
    };

    /// <summary>
    /// BATCHWISE_GELU_CHUNKS (an experiment; 1, the default, is off): a product followed by GELU's erf form runs as this
    /// many row chunks, each product chunk followed by the GELU pass over its rows, so the pass reads rows the product
    /// has just written while they are in L2 (BERT's lin1 output at b=64 is 50 MB, an H100's L2 50 MB: the pass moved
    /// 100 MB at 2.7 TB/s in session 43). Only where the rows divide evenly into chunks of at least 256.
    /// </summary>
    internal static int GeluChunksFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_GELU_CHUNKS")?.Trim() switch
    {
        null or "" or "1" => 1,
        var n when int.TryParse(n, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var chunks) && chunks is >= 1 and <= 16 => chunks,
        var other => throw new BatchwiseException($"BATCHWISE_GELU_CHUNKS '{other}' is not a count from 1 to 16", "Unset it (a product and its GELU pass whole), or set BATCHWISE_GELU_CHUNKS=2 or 4 (row chunks, each product's rows then its GELU pass)."),
    };

    /// <summary>
    /// BATCHWISE_GELU_PRODUCT: own (the default: on sm_90, an fp16 product with N in 256s and K in 64s, its weights
    /// constant and its tiles filling the multiprocessors, as the engine's warpgroup-MMA kernel with the bias and the GELU
    /// in it, <see cref="KernelSource.HalfGemm"/>) or library (cuBLASLt's product with its bias, then the erf GELU pass in
    /// place, as every other product and GPU has it).
    /// </summary>
    internal static bool GeluProductFromEnvironment => GeluProductFrom(Environment.GetEnvironmentVariable("BATCHWISE_GELU_PRODUCT"));

    /// <summary><see cref="GeluProductFromEnvironment"/> from the variable's text (true: own); anything else refused in one line.</summary>
    internal static bool GeluProductFrom(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        "library" => false,
        null or "" or "own" => true,
        var other => throw new BatchwiseException($"BATCHWISE_GELU_PRODUCT '{other}' is not own or library", "Unset it (the engine's warpgroup-MMA product with the bias and GELU in it where it qualifies: fp16 on sm_90), or set BATCHWISE_GELU_PRODUCT=library (cuBLASLt's product, then the GELU pass)."),
    };

    /// <summary>
    /// BATCHWISE_GELU_PRODUCT_TILES (an experiment; unset, the default, is one a multiprocessor): the fewest 128 x 256 tiles
    /// an fp16 GELU product must make for the own kernel to take it. Fewer tiles than multiprocessors leave SMs idle, but
    /// the library's product is then followed by the GELU pass, a second kernel (ViT-S at b=8: 78 tiles for 132 SMs).
    /// </summary>
    internal static int GeluProductTilesFromEnvironment => GeluProductTilesFrom(Environment.GetEnvironmentVariable("BATCHWISE_GELU_PRODUCT_TILES"));

    /// <summary><see cref="GeluProductTilesFromEnvironment"/> from the variable's text (0: one a multiprocessor); anything else refused in one line.</summary>
    internal static int GeluProductTilesFrom(string? text) => text?.Trim() switch
    {
        null or "" => 0,
        var n when int.TryParse(n, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var tiles) && tiles is >= 1 and <= 4096 => tiles,
        var other => throw new BatchwiseException($"BATCHWISE_GELU_PRODUCT_TILES '{other}' is not a count from 1 to 4096", "Unset it (the own GELU product where its tiles fill the multiprocessors), or set it to the fewest 128 x 256 tiles it may take, e.g. BATCHWISE_GELU_PRODUCT_TILES=64."),
    };

    /// <summary>
    /// A product whose result GELU's erf form follows: whole, then the pass in place (<see cref="ErfGeluInPlace"/>), or in
    /// <see cref="IPlanTarget.GeluChunks"/> row chunks (each chunk's product, then the pass over its rows) where the rows
    /// divide into chunks of at least 256 and every chunk starts 256-byte aligned in A and Y (not transposed, one batch).
    /// </summary>
    private void EmitMatmulThenErfGelu(PlanValue a, PlanValue b, PlanValue y, int m, int n, int k, bool transA, bool transB, long lda, long ldb, float alpha, PlanValue? bias)
    {
        if (TryEmitHalfGemmGelu(a, b, y, m, n, k, transA, transB, lda, ldb, alpha, bias))
        {
            return;
        }

        var chunks = _target.GeluChunks;
        var size = St(a).SizeOf();
        if (chunks <= 1 || transA || m % chunks != 0 || m / chunks < 256 || lda * size % 256 != 0 || (long)n * size % 256 != 0)
        {
            EmitMatmul(a, b, y, m, n, k, transA, transB, lda, ldb, 1, 0, 0, alpha, 0, bias);
            ErfGeluInPlace(y);
            return;
        }

        var rows = m / chunks;
        var node = _node;
        for (var i = 0; i < chunks; i++)
        {
            _node = FormattableString.Invariant($"{node} (rows {i * rows}-{((i + 1) * rows) - 1})");
            EmitMatmul(a, b, y, rows, n, k, transA, transB, lda, ldb, 1, 0, 0, alpha, 0, bias, rowOffsets: ((long)i * rows * lda * size, (long)i * rows * n * size));
            ErfGeluInPlace(y, (long)i * rows * n, (long)rows * n);
        }

        _node = node;
    }

    /// <summary>
    /// The product, its bias and the erf GELU after it as the own warpgroup-MMA kernel (<see cref="KernelSource.HalfGemm"/>)
    /// where <see cref="IPlanTarget.GeluProductOwn"/> asks and it qualifies: sm_90, fp16, A row-major and dense (pitch K),
    /// B a constant (either orientation; transposed once to W^T [N, K] where it is [K, N]), alpha 1, a constant bias of N or none
    /// (zeros), N in 256s and K in 64s, and at least a tile a multiprocessor (fewer tiles leave SMs idle that cuBLASLt's
    /// smaller or split tiles fill: ViT-S's and DistilBERT's products at b=1 make 12), or <see cref="IPlanTarget.GeluProductMinTiles"/>
    /// tiles where that is set. False, with nothing emitted, otherwise.
    /// </summary>
    private bool TryEmitHalfGemmGelu(PlanValue a, PlanValue b, PlanValue y, int m, int n, int k, bool transA, bool transB, long lda, long ldb, float alpha, PlanValue? bias)
    {
        if (!_target.GeluProductOwn || _target.ComputeCapability != 90 || St(a) != ElementType.Float16 || b.Constant is not { IsFloat: true } w || w.Count != (long)n * k
            || (bias is not null && (bias.Constant is null || bias.Count != n)) || St(y) != ElementType.Float16 || transA || lda != k || alpha != 1
            || ldb != (transB ? k : n) || !KernelSource.HalfGemmTakes(m, n, k)
            || KernelSource.HalfGemmTiles(m, n) < (_target.GeluProductMinTiles > 0 ? _target.GeluProductMinTiles : _target.Multiprocessors))
        {
            return false;
        }

        // W^T [N, K] row-major, the map's rows: B as it is where transposed, else its transpose.
        var wt = transB ? b : ConstantRows(b, n, k);
        var bv = bias ?? ZeroBias(n);
        Emit(new KernelStep(_node + " (own fp16 product + bias + GELU)", KernelSource.HalfGemm(m, n, k), (long)KernelSource.HalfGemmBlocks(m, n, _target.Multiprocessors) * KernelSource.HalfGemmBlock, KernelSource.HalfGemmBlock, [Dev(y), Dev(a), Dev(wt), Dev(bv)]));
        return true;
    }

    private static IEnumerable<(string, OperatorLowering)> MatrixProductLowerings()
    {
        yield return ("Gemm", new((c, n, i, a) => c.LowerGemm(n, i, a)));
        // Operands as they are (pending, strided views): an attention block reads them so; any other product gets them row-major.
        yield return ("MatMul", new((c, n, i, _) => c.LowerMatMul(n, i[0]!, i[1]!), InputLayout.Pending));
    }

    private void LowerGemm(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var (a, b, c) = (ins[0]!, ins[1]!, ins.ElementAtOrDefault(2));
        RequireFloat(a);
        var transA = attrs.Int("transA", 0) != 0;
        var transB = attrs.Int("transB", 0) != 0;
        var m = transA ? a.Shape[1] : a.Shape[0];
        var k = transA ? a.Shape[0] : a.Shape[1];
        var n = transB ? b.Shape[0] : b.Shape[1];
        var beta = (float)attrs.Float("beta", 1.0);
        PlanValue? bias = null, full = null;
        if (c is not null && beta != 0)
        {
            if (beta == 1 && IsBiasVector(c, n))
            {
                // A constant bias of N (a Linear layer's): added in cuBLASLt's epilogue, never broadcast into Y first.
                (bias, beta) = (c, 0);
            }
            else if (c.Shape.SequenceEqual([m, n]) && !c.Nhwc)
            {
                full = c; // read in place as cuBLASLt's C
            }
        }
        else
        {
            beta = 0;
        }

        var broadcastC = c is not null && beta != 0 && bias is null && full is null;
        var (gelu, erf) = !broadcastC && full is null ? TakeGelu(node.Output[0]) : (null, false);
        var (name, yShape, residual) = gelu is not null ? (gelu, [m, n], null) : !broadcastC && full is null ? TakeResidual(node.Output[0], [m, n], St(a)) : (node.Output[0], [m, n], null);
        var plain = gelu is null && residual is null && !broadcastC && full is null;
        var y = plain && GemmOutputType(name, a, b, (int)m, (int)n, transA, transB, b.Shape[1], bias) is var stored && stored != St(a)
            ? StoredOutput(name, stored, yShape)
            : Output(name, a.Type, yShape);
        if (residual is not null)
        {
            // beta * C is already spoken for by the Add that follows: C is its other operand, beta 1.
            (full, beta) = (residual, 1);
        }
        else if (broadcastC)
        {
            ViewCopy(c!, [m, n], Shapes.BroadcastStrides(c!.Shape, [m, n]), 0, y, [n, 1], 0);
        }

        if (erf)
        {
            // GELU is taken only with no C but the bias (beta 0, no residual): the product and its pass alone.
            EmitMatmulThenErfGelu(a, b, y, (int)m, (int)n, (int)k, transA, transB, a.Shape[1], b.Shape[1], (float)attrs.Float("alpha", 1.0), bias);
            return;
        }

        EmitMatmul(a, b, y, (int)m, (int)n, (int)k, transA, transB, a.Shape[1], b.Shape[1], 1, 0, 0, (float)attrs.Float("alpha", 1.0), beta, bias, full, gelu is not null);
    }

    /// <summary>True for a constant of <paramref name="n"/> elements along its last axis (shape [N], [1, N], ...): a bias per output column.</summary>
    private static bool IsBiasVector(PlanValue v, long n) =>
        v.Constant is { IsFloat: true } && v.Shape.Length >= 1 && v.Shape[^1] == n && v.Count == n;

    /// <summary>
    /// Where a matrix product's result Y (of <paramref name="shape"/>) is read by one Add alone, and that Add's other
    /// operand is a constant bias of N: the Add is taken into the product (cuBLASLt's bias epilogue). Returns the name the
    /// result is stored under and the bias, or the product's own name and null.
    /// </summary>
    private (string Name, PlanValue? Bias) TakeBias(string name, long[] shape)
    {
        if (BiasAdd(name, shape) is var (add, bias))
        {
            _folded.Add(add);
            return (add.Output[0], bias);
        }

        return (name, null);
    }

    /// <summary>
    /// The Add that alone reads a product's result <paramref name="name"/> (of <paramref name="shape"/>) with a constant
    /// bias of N as its other operand, and that bias; null otherwise. Folds nothing.
    /// </summary>
    private (OnnxProto.NodeProto Add, PlanValue Bias)? BiasAdd(string name, long[] shape) =>
        SoleConsumer(name) is { OpType: "Add", Input.Count: 2 } add && add.Input[0] != add.Input[1]
            && _values.TryGetValue(add.Input[0] == name ? add.Input[1] : add.Input[0], out var bias)
            && IsBiasVector(bias, shape[^1]) && bias.Shape.Length <= shape.Length
            ? (add, bias)
            : null;

    /// <summary>
    /// Where the result (of <paramref name="shape"/>, stored as <paramref name="type"/>) is read by one Add alone whose
    /// other operand is a computed value of the same shape and type in row-major order (a residual connection): the Add
    /// is taken into the product as its C, beta 1. One Reshape alone between them is looked through (GPT-2's Conv1D
    /// layers: a Gemm over [B*S, C], reshaped to [B, S, C], then the residual): the same elements in the same order.
    /// Returns the name the result is stored under (at the Add's shape) and the residual.
    /// </summary>
    private (string Name, long[] Shape, PlanValue? Residual) TakeResidual(string name, long[] shape, ElementType type)
    {
        var next = SoleConsumer(name);
        var (readAs, at) = (name, shape);
        if (next is { OpType: "Reshape" } reshape && ReshapedShape(reshape, shape) is { } target)
        {
            (readAs, at) = (reshape.Output[0], target);
            next = SoleConsumer(readAs);
        }

        if (next is { OpType: "Add", Input.Count: 2 } add && add.Input[0] != add.Input[1]
            && _values.TryGetValue(add.Input[0] == readAs ? add.Input[1] : add.Input[0], out var residual)
            && residual.Constant is null && !residual.Nhwc && St(residual) == type && residual.Shape.SequenceEqual(at))
        {
            if (readAs != name)
            {
                _folded.Add(SoleConsumer(name)!);
            }

            _folded.Add(add);
            return (add.Output[0], at, residual);
        }

        return (name, shape, null);
    }

    /// <summary>
    /// Where the product's result (its bias taken) feeds elementwise nodes that together compute GELU, read nowhere else:
    /// they are taken into the product. Its tanh form, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2's gelu_new;
    /// Gelu with approximate "tanh"), is cuBLASLt's GELU epilogue exactly. Its erf form, 0.5 x (1 + erf(x / sqrt 2))
    /// (timm's, torchvision's and Hugging Face's ViT; Gelu), has no exact epilogue: it runs as one kernel in place behind
    /// the product (<see cref="ErfGeluInPlace"/>), or with <see cref="GeluChoice.Tanh"/> in an fp16 plan as the tanh
    /// epilogue (within 4.7e-4 of it); with <see cref="GeluChoice.Chain"/> it is not taken. Recognised by what the nodes
    /// compute, not by their spelling: the nodes after the product that read only it, each other and one-element constants
    /// are evaluated on the host at sample points, and the first whose values are either GELU's ends the chain. Returns the
    /// name the activation is stored under and whether it is the erf form to compute behind the product, or null. Without
    /// <paramref name="commit"/> the chain is only found, not taken (an int8 product asks before cuDNN says whether its
    /// graph takes the GELU).
    /// </summary>
    private (string? Name, bool Erf) TakeGelu(string name, bool commit = true)
    {
        double[] samples = [-5, -3, -1.7, -1, -0.4, -0.05, 0, 0.1, 0.6, 1.3, 2.2, 4];
        static double Tanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + (0.044715 * x * x * x))));
        static double Erf(double x) => 0.5 * x * (1 + Batchwise.Operators.ElementwiseOperators.Erf(x / Math.Sqrt(2)));
        bool Matches(HostTensor y, Func<double, double> reference) =>
            samples.Select((x, k) => Math.Abs(y[k] - reference(x)) <= 1e-5 * Math.Max(1, Math.Abs(reference(x)))).All(ok => ok);
        var values = new Dictionary<string, HostTensor>(StringComparer.Ordinal) { [name] = HostTensor.OfFloats(ElementType.Float, [samples.Length], samples) };
        var chain = new List<OnnxProto.NodeProto>();
        var nodes = _facts.Nodes;

        // One-element constants of the chain: planned already, or Constant nodes between its nodes that have not been
        // reached yet (torch.onnx writes each scalar as a Constant node right before its use: timm's ViT-S).
        var scalars = new Dictionary<string, PlanValue>(StringComparer.Ordinal);
        bool Scalar(string x, out PlanValue? v) =>
            (v = scalars.GetValueOrDefault(x) ?? (_values.TryGetValue(x, out var c) && c.Constant is { Count: 1 } ? c : null)) is not null;
        for (var i = _nodeIndex + 1; i < nodes.Count && i <= _nodeIndex + 24 && chain.Count < 12; i++)
        {
            var node = nodes[i];
            if (node is { OpType: "Constant", Input.Count: 0, Output.Count: 1 } && !_values.ContainsKey(node.Output[0])
                && HostEvaluator.TryEvaluate(node, [], _model.Opset, needed: true) is [{ Count: 1 } k])
            {
                scalars[node.Output[0]] = new PlanValue(k.Type, k.Shape, k);
                continue;
            }

            var reads = node.Input.Where(x => x.Length > 0).ToList();
            if (_folded.Contains(node) || node.Output.Count != 1 || !(ElementwiseOps.Handles(node.OpType) || node.OpType == "Gelu") || !reads.Any(values.ContainsKey)
                || !reads.All(x => values.ContainsKey(x) || Scalar(x, out _)))
            {
                continue;
            }

            var ins = node.Input.Select(x => x.Length == 0 ? null : values.TryGetValue(x, out var h) ? new PlanValue(h.Type, h.Shape, h) : Scalar(x, out var v) ? v : null).ToArray();
            if (HostEvaluator.TryEvaluate(node, ins, _model.Opset, needed: true) is not [{ IsFloat: true } y] || y.Count != samples.Length)
            {
                return (null, false);
            }

            chain.Add(node);
            values[node.Output[0]] = y;
            var erf = !Matches(y, Tanh);
            if (erf && (_target.Gelu == GeluChoice.Chain || !Matches(y, Erf)))
            {
                continue;
            }

            // The chain's values are read by the chain alone (the last by anything).
            var inside = chain.SelectMany(n => n.Output).Append(name).ToHashSet(StringComparer.Ordinal);
            var members = chain.ToHashSet(ReferenceEqualityComparer.Instance);
            if (inside.Where(v => v != node.Output[0]).Any(v => _graphOutputs.Contains(v) || _consumers.GetValueOrDefault(v, []).Any(u => !members.Contains(u))))
            {
                return (null, false);
            }

            if (commit)
            {
                _folded.UnionWith(chain);
            }

            return (node.Output[0], erf && !(_target.Gelu == GeluChoice.Tanh && Half));
        }

        return (null, false);
    }

    /// <summary>
    /// GELU's erf form applied in place to a product's result (float32 or float16: <see cref="KernelSource.UnaryInPlace"/>,
    /// 16 bytes a thread, erff in fp32), as its own step named after the product so a layer profile shows its time apart
    /// from the product's.
    /// </summary>
    private void ErfGeluInPlace(PlanValue y, long offset = 0, long count = -1)
    {
        count = count < 0 ? y.Count : count;
        Emit(new KernelStep(_node + " + GELU (erf, in place)", KernelSource.UnaryInPlace(St(y), "bw_gelu(x0)", count, backToFront: _target.Gelu != GeluChoice.ExactFrontToBack, offset), KernelSource.UnaryInPlaceThreads(St(y), count), KernelSource.BlockSize, [Dev(y)]));
    }

    /// <summary>What a Reshape gives for an input of <paramref name="shape"/>, where its target is a constant here; else null.</summary>
    private long[]? ReshapedShape(OnnxProto.NodeProto reshape, long[] shape)
    {
        var attrs = new NodeAttributes(reshape);
        var target = _model.Opset >= 5
            ? reshape.Input.Count > 1 && _values.TryGetValue(reshape.Input[1], out var t) && t.Constant is { } c ? c.AsLongs() : null
            : attrs.Ints("shape");
        return target is null ? null : Shapes.ReshapeTarget(shape, target, attrs.Int("allowzero", 0) != 0);
    }

    private void LowerMatMul(OnnxProto.NodeProto node, PlanValue a, PlanValue b)
    {
        RequireFloat(a);
        if (TryLowerAttention(node, a, b))
        {
            return;
        }

        (a, b) = (Nchw(a), Nchw(b));

        var aShape = a.Shape.Length == 1 ? new[] { 1L, a.Shape[0] } : a.Shape;
        var bShape = b.Shape.Length == 1 ? new[] { b.Shape[0], 1L } : b.Shape;
        var (m, k) = (aShape[^2], aShape[^1]);
        var n = bShape[^1];
        if (bShape[^2] != k)
        {
            throw new BatchwiseException($"MatMul inner dimensions differ: {Tensor.ShapeText(a.Shape)} x {Tensor.ShapeText(b.Shape)}", "Check the model's shapes.");
        }

        var aBatch = aShape[..^2];
        var bBatch = bShape[..^2];
        var batchShape = Shapes.Broadcast(aBatch, bBatch);
        var outShape = batchShape.Concat(new[] { m, n }).ToArray();
        var yShape = batchShape.ToList();
        if (a.Shape.Length > 1)
        {
            yShape.Add(m);
        }

        if (b.Shape.Length > 1)
        {
            yShape.Add(n);
        }

        var batch = Shapes.Product(batchShape);
        var aCount = Shapes.Product(aBatch);
        var bCount = Shapes.Product(bBatch);
        if (bCount == 1)
        {
            // [..., M, K] x [K, N]: one GEMM with M' = batch * M; a bias Add and a residual Add after it run in its
            // epilogue (a transformer's projections and MLP: no elementwise pass over the result).
            if (aCount == batch && TryLowerSiblingProducts(node, a, b, batchShape, m))
            {
                return;
            }

            var av = aCount == batch ? a : Broadcasted(a, batchShape.Concat(new[] { m, k }).ToArray());
            var (name, bias) = b.Shape.Length > 1 ? TakeBias(node.Output[0], [.. yShape]) : (node.Output[0], null);
            var (gelu, erf) = b.Shape.Length > 1 ? TakeGelu(name) : (null, false);
            var (final, finalShape, residual) = gelu is not null ? (gelu, [.. yShape], null) : b.Shape.Length > 1 ? TakeResidual(name, [.. yShape], St(a)) : (name, [.. yShape], null);
            var product = Output(final, a.Type, finalShape);
            if (erf)
            {
                // A GELU taken leaves no residual to add.
                EmitMatmulThenErfGelu(av, b, product, checked((int)(batch * m)), (int)n, (int)k, false, false, k, n, 1, bias);
                return;
            }

            EmitMatmul(av, b, product, checked((int)(batch * m)), (int)n, (int)k, false, false, k, n, 1, 0, 0, 1, residual is null ? 0 : 1, bias, residual, gelu is not null);
            return;
        }

        var y = Output(node, 0, a.Type, yShape.ToArray());

        var aOp = aCount == batch ? a : aCount == 1 ? a : Broadcasted(a, batchShape.Concat(new[] { m, k }).ToArray());
        var bOp = Broadcasted(b, batchShape.Concat(new[] { k, n }).ToArray());
        var aStride = aCount == 1 ? 0 : m * k;
        EmitMatmul(aOp, bOp, y, (int)m, (int)n, (int)k, false, false, k, n, checked((int)batch), aStride, k * n, 1, 0);
        _ = outShape;
    }

    /// <summary>How many of cuBLASLt's candidates a product's timed tactics time by default (the explain probe's GEMM tables time as many).</summary>
    internal const int DefaultMatmulCandidates = 8;

    /// <summary>
    /// How many of cuBLASLt's candidates a product's timed tactics time: BATCHWISE_MATMUL_CANDIDATES (1 to 64), else
    /// <see cref="DefaultMatmulCandidates"/>. Read once per process.
    /// </summary>
    internal static int MatmulCandidates { get; } = MatmulCandidatesFrom(Environment.GetEnvironmentVariable("BATCHWISE_MATMUL_CANDIDATES"));

    /// <summary><see cref="MatmulCandidates"/> from the variable's text; a value out of range is refused in one line.</summary>
    internal static int MatmulCandidatesFrom(string? text) => EnvironmentSetting.ParseInt("BATCHWISE_MATMUL_CANDIDATES", text, DefaultMatmulCandidates, 1, 64,
        $"Unset it (cuBLASLt's first {DefaultMatmulCandidates} candidates are timed for each product) or set a whole number from 1 to 64.");

    /// <summary>
    /// What the scratch operands hold while candidates are timed: BATCHWISE_TACTIC_DATA=zeros (the default) or random
    /// (uniform values in [-1, 1): the switching a real product's data causes, which draws the power that caps the clock
    /// under load, where zeros let a candidate run at a clock the plan will not see). Read once per process.
    /// </summary>
    internal static bool TimesOnRandomData { get; } = TacticDataIsRandom(Environment.GetEnvironmentVariable("BATCHWISE_TACTIC_DATA"));

    /// <summary>Whether BATCHWISE_TACTIC_DATA's text asks for random scratch data; anything but zeros or random is refused in one line.</summary>
    internal static bool TacticDataIsRandom(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "zeros" => false,
        "random" => true,
        var other => throw new BatchwiseException($"BATCHWISE_TACTIC_DATA '{other}' is not zeros or random", "Unset it (candidates are timed on zeroed operands) or set BATCHWISE_TACTIC_DATA=random (uniform values in [-1, 1))."),
    };

    /// <summary>
    /// The timing cache key's suffix for the settings that change what a timed choice means: the candidate count where
    /// it is not the default and the scratch data where it is random (a choice timed otherwise is not this search's).
    /// </summary>
    internal static string TacticSearchSuffix => (MatmulCandidates == DefaultMatmulCandidates ? string.Empty : $"|cands={MatmulCandidates}") + (TimesOnRandomData ? "|data=random" : string.Empty);

    /// <summary>
    /// The fastest of cuBLASLt's first <see cref="MatmulCandidates"/> candidates for this product, timed on scratch buffers (<see cref="ScratchOperand"/>: zeroed by default; CUDA events,
    /// median of five after a warm-up) when the plan is built, or read from the timing cache by its heuristic rank. Timed
    /// as the step runs: with its <paramref name="beta"/>, reading C from a buffer of its own where the step reads a
    /// residual (<paramref name="separateC"/>). Session 22 measured why: timed with beta 0, ResNet-50's residual 1x1
    /// layers at b=256 took candidates that ran 1.9-2.4x slower than the heuristic's once they read their residual.
    /// </summary>
    private static CublasLt.HeuristicResult TimedMatmul(TimingCache cache, CublasLtHandle handle, CublasLtMatmulDescriptor desc, CublasLtMatrixLayout bl, CublasLtMatrixLayout al, CublasLtMatrixLayout dl, string key, long bElements, long aElements, long dElements, int elementSize, long biasElements, float beta, bool separateC)
    {
        var candidates = CublasLt.Algorithms(handle, desc, bl, al, dl, dl, MatmulWorkspace, MatmulCandidates);
        if (candidates.Length == 0)
        {
            throw CublasLt.NoAlgorithm();
        }

        if (cache.TryGet(key, out var cached) && cached.Algo < candidates.Length)
        {
            return candidates[cached.Algo];
        }

        using var stream = CudaDriver.CreateStream();
        DeviceMemory Scratch(long elements) => ScratchOperand(Math.Max(1, elements), elementSize, stream);

        using var b = Scratch(bElements);
        using var a = Scratch(aElements);
        using var d = Scratch(dElements);
        using var c = separateC ? Scratch(dElements) : null;
        using var workspace = CudaDriver.Allocate(MatmulWorkspace);
        using var bias = CudaDriver.Allocate(Math.Max(1, biasElements) * elementSize);
        if (biasElements > 0)
        {
            // A bias epilogue reads its vector: a scratch one while timing (the step sets the plan's own when it runs).
            CublasLt.SetBias(desc, bias.Pointer);
        }

        using var start = CudaDriver.CreateEvent();
        using var end = CudaDriver.CreateEvent();
        var best = FastestCandidate(candidates.Length, i =>
        {
            var candidate = (IntPtr)NativeMemory.Alloc((nuint)sizeof(CublasLt.HeuristicResult));
            *(CublasLt.HeuristicResult*)candidate = candidates[i];
            try
            {
                return MedianMilliseconds(stream, start, end, () => CublasLt.Matmul(handle, desc, 1, b.Pointer, bl, a.Pointer, al, beta, (c ?? d).Pointer, dl, d.Pointer, dl, (CublasLt.HeuristicResult*)candidate, workspace.Pointer, MatmulWorkspace, stream.Handle));
            }
            finally
            {
                NativeMemory.Free((void*)candidate);
            }
        });
        if (best.Index < 0)
        {
            best = (0, double.PositiveInfinity); // none ran: the heuristic's first, as the plan then runs it
        }

        cache.Set(key, new TacticChoice(best.Index, 0, (long)candidates[best.Index].WorkspaceSize, best.Milliseconds));
        return candidates[best.Index];
    }

    /// <summary>
    /// A scratch operand of <paramref name="elements"/> values of <paramref name="elementSize"/> bytes (2: half, 4: float)
    /// for timing candidates: zeroed, or uniform values in [-1, 1) where <see cref="TimesOnRandomData"/> (one seeded
    /// pattern of up to 1 MiB, copied over the buffer).
    /// </summary>
    internal static DeviceMemory ScratchOperand(long elements, int elementSize, CudaStream stream)
    {
        var bytes = elements * elementSize;
        var memory = CudaDriver.Allocate(bytes);
        if (!TimesOnRandomData)
        {
            CudaDriver.MemsetD8(memory.Pointer, 0, bytes, stream.Handle);
            return memory;
        }

        var pattern = elementSize == 2 ? RandomHalves.Value : RandomFloats.Value;
        fixed (byte* p = pattern)
        {
            for (long at = 0; at < bytes; at += pattern.Length)
            {
                CudaDriver.CopyToDevice(memory.Pointer + (ulong)at, p, Math.Min(pattern.Length, bytes - at), stream);
            }

            CudaDriver.Synchronize(stream); // the pattern is pageable memory: the copies finish before it may move
        }

        return memory;
    }

    /// <summary>The random scratch data of half and of float operands (<see cref="RandomPattern"/>), made once per process.</summary>
    private static readonly Lazy<byte[]> RandomHalves = new(() => RandomPattern(2)), RandomFloats = new(() => RandomPattern(4));

    /// <summary>1 MiB of uniform values in [-1, 1) as half (<paramref name="elementSize"/> 2) or float, the same every call.</summary>
    private static byte[] RandomPattern(int elementSize)
    {
        var random = new Random(20261206);
        var pattern = new byte[1 << 20];
        for (var i = 0; i < pattern.Length; i += elementSize)
        {
            var v = (random.NextSingle() * 2) - 1;
            if (elementSize == 2)
            {
                BitConverter.TryWriteBytes(pattern.AsSpan(i), (Half)v);
            }
            else
            {
                BitConverter.TryWriteBytes(pattern.AsSpan(i), v);
            }
        }

        return pattern;
    }

    /// <summary>Materialises a broadcast operand (only where strides cannot express it).</summary>
    private PlanValue Broadcasted(PlanValue v, long[] shape)
    {
        var aligned = Shapes.RightAlign(v.Shape, shape.Length);
        if (aligned.SequenceEqual(shape))
        {
            return v;
        }

        var t = Temp(v.Type, shape);
        ViewCopy(v, shape, Shapes.BroadcastStrides(v.Shape, shape), 0, t, KernelSource.Strides(shape), 0);
        return t;
    }

    /// <summary>
    /// Row-major Y[M,N] = alpha op(A) op(B) + beta C + bias, through column-major cuBLASLt as Y^T = op(B)^T op(A)^T: the
    /// row-major buffers read as their own transposes, so B goes first. C is Y itself unless <paramref name="c"/> is given
    /// (a residual of Y's shape, read where it is); <paramref name="bias"/>, a constant of N, is added in the epilogue
    /// (CUBLASLT_EPILOGUE_BIAS: per row of the column-major D, per column of Y), then GELU's tanh form where
    /// <paramref name="tanhGelu"/> (CUBLASLT_EPILOGUE_GELU_BIAS).
    /// </summary>
    private void EmitMatmul(PlanValue a, PlanValue b, PlanValue y, int m, int n, int k, bool transA, bool transB, long lda, long ldb, int batch, long strideA, long strideB, float alpha, float beta, PlanValue? bias = null, PlanValue? c = null, bool tanhGelu = false, bool relu = false, (long Activations, long Output) rowOffsets = default)
    {
        if (rowOffsets == default && TryEmitSmallRows(a, b, y, m, n, k, transA, transB, lda, ldb, batch, alpha, beta, bias, c, tanhGelu, relu))
        {
            return;
        }

        if (St(y) != St(a))
        {
            throw new InvalidOperationException($"{_node}: a {St(y)} output of {St(a)} operands is the small-row kernel's alone (GemmOutputType chose it, SmallRowsTake declined)");
        }

        var half = St(a) == ElementType.Float16;
        var problem = new MatmulProblem(St(a), m, n, k, transA, transB, lda, ldb, batch, strideA, strideB, alpha, beta, tanhGelu, relu && !tanhGelu);
        if (_target.PlansMatmulsWithoutLibrary)
        {
            Emit(new MatmulStep(_node, problem, Dev(b), Dev(a), Dev(y), bias is null ? -1 : Dev(bias), c is null ? -1 : Dev(c), null, null, null, null, default) { RowOffsets = rowOffsets });
            return;
        }

        var handle = _target.PlanningCublasLt;
        var dataType = half ? CublasLt.CUDA_R_16F : CublasLt.CUDA_R_32F;
        var compute = _target.AllowTf32 && !half ? CublasLt.CUBLAS_COMPUTE_32F_FAST_TF32 : CublasLt.CUBLAS_COMPUTE_32F;
        var desc = CublasLt.MatmulDesc(compute, transB, transA);
        if (bias is not null)
        {
            // The address is set when the step first runs (a constant buffer: the same for every context).
            CublasLt.SetEpilogue(desc, tanhGelu ? CublasLt.CUBLASLT_EPILOGUE_GELU_BIAS : problem.Relu ? CublasLt.CUBLASLT_EPILOGUE_RELU_BIAS : CublasLt.CUBLASLT_EPILOGUE_BIAS, 0, dataType);
            CublasLt.SetBiasType(desc, dataType);
        }
        else if (tanhGelu || problem.Relu)
        {
            CublasLt.SetEpilogue(desc, tanhGelu ? CublasLt.CUBLASLT_EPILOGUE_GELU : CublasLt.CUBLASLT_EPILOGUE_RELU, 0, dataType);
        }

        var bRows = transB ? k : n;
        var bCols = transB ? n : k;
        var aRows = transA ? m : k;
        var aCols = transA ? k : m;
        var bl = CublasLt.Layout(dataType, bRows, bCols, ldb, batch, strideB);
        var al = CublasLt.Layout(dataType, aRows, aCols, lda, batch, strideA);
        var dl = CublasLt.Layout(dataType, n, m, n, batch, (long)m * n);
        var key = $"matmul|{(half ? "fp16" : _target.AllowTf32 ? "fp32+tf32" : "fp32")}|m={m}|n={n}|k={k}|ta={transA}|tb={transB}|lda={lda}|ldb={ldb}|batch={batch}|sa={strideA}|sb={strideB}|ws={MatmulWorkspace}{(bias is null ? string.Empty : "|bias")}{(tanhGelu ? "|gelu" : string.Empty)}{(problem.Relu ? "|relu" : string.Empty)}{(beta != 0 ? FormattableString.Invariant($"|beta={beta:R}{(c is null ? string.Empty : "|c")}") : string.Empty)}";
        if (_target.Tactics is not null)
        {
            key += TacticSearchSuffix;
        }

        var storeKey = (_target.Tactics is null ? "heuristic|" : "timed|") + key;
        CublasLt.HeuristicResult algo;
        var queried = System.Diagnostics.Stopwatch.GetTimestamp();
        if (_target.Choices.TryGet(storeKey, out var stored) && stored.Length == sizeof(CublasLt.HeuristicResult))
        {
            algo = MemoryMarshal.Read<CublasLt.HeuristicResult>(stored);
        }
        else
        {
            algo = TimedLibrary("matmul_heuristics", () => _target.Tactics is { } cache
                ? TimedMatmul(cache, handle, desc, bl, al, dl, key, (bRows * (long)bCols) + (strideB * (batch - 1)), (aRows * (long)aCols) + (strideA * (batch - 1)), (long)m * n * batch, half ? 2 : 4, bias is null ? 0 : n, beta, c is not null)
                : CublasLt.BestAlgorithm(handle, desc, bl, al, dl, dl, MatmulWorkspace));
            var bytes = new byte[sizeof(CublasLt.HeuristicResult)];
            MemoryMarshal.Write(bytes, in algo);
            _target.Choices.Set(storeKey, bytes);
        }

        LibrarySeconds += System.Diagnostics.Stopwatch.GetElapsedTime(queried).TotalSeconds;

        ReserveWorkspace(MatmulWorkspace);
        Emit(new MatmulStep(_node, problem, Dev(b), Dev(a), Dev(y), bias is null ? -1 : Dev(bias), c is null ? -1 : Dev(c), desc, bl, al, dl, algo) { RowOffsets = rowOffsets });
    }

    /// <summary>
    /// Whether the own small-row kernel takes a product (<see cref="TryEmitSmallRows"/>) whose Y is stored as
    /// <paramref name="yType"/>: one batch of 1 to 8 rows (1 under auto) in float32 or float16, A not transposed, no tanh
    /// GELU, C given apart from Y, W readable as [N, K]; Y of the operands' type, or float32 over float16 operands without C.
    /// </summary>
    private bool SmallRowsTake(PlanValue a, PlanValue b, ElementType yType, int m, int n, bool transA, bool transB, long ldb, int batch, float beta, PlanValue? bias, PlanValue? c, bool tanhGelu)
    {
        var type = St(a);
        var most = _target.SmallMatmuls switch { SmallMatmulChoice.Own => KernelSource.SmallRowsMax, SmallMatmulChoice.Auto => 1, _ => 0 };
        return batch == 1 && !transA && m >= 1 && m <= most && !tanhGelu
            && type is ElementType.Float or ElementType.Float16 && St(b) == type
            && (yType == type || (type == ElementType.Float16 && yType == ElementType.Float && c is null))
            && (bias is null || St(bias) == type) && (c is null || St(c) == type) && (beta == 0 || c is not null)
            && (transB || (b.Constant is not null && ldb == n));
    }

    /// <summary>
    /// The type a Gemm stores its output <paramref name="name"/> in: float32 over float16 operands where that output is a
    /// graph output declared float32 that nothing else reads and the small-row kernel computes it (a classifier's logits
    /// at a small batch: the kernel writes its float sums and the conversion pass after it goes), else the operands' type.
    /// </summary>
    private ElementType GemmOutputType(string name, PlanValue a, PlanValue b, int m, int n, bool transA, bool transB, long ldb, PlanValue? bias)
    {
        var floatOutput = St(a) == ElementType.Float16 && FloatGraphOutput(name);
        return floatOutput && SmallRowsTake(a, b, ElementType.Float, m, n, transA, transB, ldb, 1, 0, bias, null, false) ? ElementType.Float : St(a);
    }

    /// <summary>A constant B [K, N] as W^T [N, K] row-major (a column's K values in one row), derived once per weight.</summary>
    private PlanValue ConstantRows(PlanValue b, int n, int k)
    {
        var f = b.Constant!;
        return new PlanValue(b.Type, [n, k], _target.Derive(FormattableString.Invariant($"rows-transposed:{k}x{n}"), [f], () => HostTensor.Create(f.Type, [n, k], i => f[((i % k) * n) + (i / k)])));
    }

    /// <summary>
    /// Emits a product of 1 to 8 rows as the own kernel (<see cref="KernelSource.SmallRows"/>: a warp per output column
    /// reads its row of W once) and returns true, where <see cref="IPlanTarget.SmallMatmuls"/> chooses it and the product
    /// is one batch of float32 or float16 with A not transposed, no GELU epilogue and C, if any, given apart from Y; B must
    /// read as W [N, K]: transposed already (its pitch <paramref name="ldb"/>), or a constant row-major [K, N], transposed
    /// once per session. Else returns false and emits nothing (cuBLASLt runs it).
    /// </summary>
    private bool TryEmitSmallRows(PlanValue a, PlanValue b, PlanValue y, int m, int n, int k, bool transA, bool transB, long lda, long ldb, int batch, float alpha, float beta, PlanValue? bias, PlanValue? c, bool tanhGelu, bool relu)
    {
        var type = St(a);
        if (!SmallRowsTake(a, b, St(y), m, n, transA, transB, ldb, batch, beta, bias, c, tanhGelu))
        {
            return false;
        }

        var (w, ldw) = transB ? (b, ldb) : (ConstantRows(b, n, k), k);

        var code = KernelSource.SmallRows(type, bias is not null, c is not null, relu, m, n, k, lda, ldw, alpha, beta, St(y));
        List<int> buffers = [Dev(y), Dev(a), Dev(w)];
        if (bias is not null)
        {
            buffers.Add(Dev(bias));
        }

        if (c is not null)
        {
            buffers.Add(Dev(c));
        }

        Emit(new KernelStep(_node + " (own small-row product)", code, KernelSource.SmallRowsThreads(n), KernelSource.SmallRowsBlock, [.. buffers]));
        return true;
    }
}
