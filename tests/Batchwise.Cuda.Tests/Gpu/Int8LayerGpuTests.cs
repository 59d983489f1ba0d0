using System.Globalization;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// One QDQ convolution at a time on the int8 path against ONNX Runtime's QDQ run: each way the engine takes it (cuDNN's
/// graph API with per-channel or border offsets, ReLU and zero vector; with the graph API off, cuDNN with the border
/// tables, strided, cuBLASLt 1x1 with the ReLU or saturation clamp), so a ResNet-50 mismatch points at its layer kind. The
/// quantized output may differ from ORT's by one step where rounding ties. Each convolution case runs in a child process
/// (<see cref="ChildRun"/>): a fault in one cannot fail the others.
/// </summary>
[Trait("Category", "GPU")]
[Collection(nameof(ProcessEnvironment))]
public sealed class Int8LayerGpuTests
{
    private static void AddNode(OnnxProto.GraphProto g, string op, string output, string[] inputs, OnnxProto.AttributeProto[] attributes)
    {
        var n = new OnnxProto.NodeProto { OpType = op, Name = output };
        n.Input.AddRange(inputs);
        n.Output.Add(output);
        n.Attribute.AddRange(attributes);
        g.Node.Add(n);
    }

    private static OnnxProto.ValueInfoProto Info(string name, ElementType type, params long[] dims)
    {
        var info = new OnnxProto.ValueInfoProto { Name = name, Type = new OnnxProto.TypeProto { TensorType = new OnnxProto.TypeProto.Types.Tensor { ElemType = (int)type, Shape = new OnnxProto.TensorShapeProto() } } };
        info.Type.TensorType.Shape.Dim.AddRange(dims.Select(d => new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = d }));
        return info;
    }

    /// <summary>xq uint8 [2, c, 9, 9] (inputs quantized already, so both engines read the same integers) -> DQ -> Conv(DQ(int8 w, per channel), bias) [-> Relu] -> Q(yScale, yZero, yType) -> DQ -> y.</summary>
    internal static OnnxModel QdqConv(int c, int k, int kernel, int stride, int pad, int xZero, bool relu, int yZero, ElementType yType, int seed = 1)
    {
        var rng = new Random(seed);
        var g = new OnnxProto.GraphProto { Name = "qdq-conv" };
        void Node(string op, string output, string[] inputs, params OnnxProto.AttributeProto[] attributes) => AddNode(g, op, output, inputs, attributes);

        void Init(HostTensor t, string name) => g.Initializer.Add(t.ToProto(name));
        Init(HostTensor.OfFloats(ElementType.Float, [], [0.02]), "xs");
        Init(HostTensor.OfInts(ElementType.UInt8, [], [xZero]), "xz");
        Init(HostTensor.OfInts(ElementType.Int8, [k, c, kernel, kernel], [.. Enumerable.Range(0, k * c * kernel * kernel).Select(_ => (long)rng.Next(-127, 128))]), "wq");
        Init(HostTensor.OfFloats(ElementType.Float, [k], [.. Enumerable.Range(0, k).Select(_ => 0.002 + (rng.NextDouble() * 0.004))]), "ws");
        Init(HostTensor.OfInts(ElementType.Int8, [k], new long[k]), "wz");
        Init(HostTensor.OfFloats(ElementType.Float, [k], [.. Enumerable.Range(0, k).Select(_ => rng.NextDouble() - 0.5)]), "b");
        Init(HostTensor.OfFloats(ElementType.Float, [], [0.05]), "ys");
        Init(HostTensor.OfInts(yType, [], [yZero]), "yz");
        Node("DequantizeLinear", "xd", ["xq", "xs", "xz"]);
        Node("DequantizeLinear", "wd", ["wq", "ws", "wz"], new OnnxProto.AttributeProto { Name = "axis", Type = OnnxProto.AttributeProto.Types.AttributeType.Int, I = 0 });
        var ints = (string name, long v) => new OnnxProto.AttributeProto { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Ints, Ints = { v, v } };
        Node("Conv", "conv", ["xd", "wd", "b"], ints("strides", stride), ints("kernel_shape", kernel), new OnnxProto.AttributeProto { Name = "pads", Type = OnnxProto.AttributeProto.Types.AttributeType.Ints, Ints = { pad, pad, pad, pad } });
        var last = "conv";
        if (relu)
        {
            Node("Relu", "relu", ["conv"]);
            last = "relu";
        }

        Node("QuantizeLinear", "yq", [last, "ys", "yz"]);
        Node("DequantizeLinear", "y", ["yq", "ys", "yz"]);
        var o = ((9 + (2 * pad) - kernel) / stride) + 1;
        g.Input.Add(Info("xq", ElementType.UInt8, 2, c, 9, 9));
        g.Output.Add(Info("y", ElementType.Float, 2, k, o, o));
        var proto = new OnnxProto.ModelProto { IrVersion = 8, Graph = g };
        proto.OpsetImport.Add(new OnnxProto.OperatorSetIdProto { Domain = string.Empty, Version = 17 });
        return OnnxModel.FromProto(proto, "qdq-conv");
    }

    /// <summary>aq uint8 [rows, inner] -> DQ -> MatMul(DQ(int8 w [inner, columns], per column)) -> y float (or Gemm with transB and a bias).</summary>
    internal static OnnxModel QdqMatMul(int rows, int inner, int columns, int aZero, bool gemm, int seed = 2)
    {
        var rng = new Random(seed);
        var g = new OnnxProto.GraphProto { Name = "qdq-matmul" };
        void Node(string op, string output, string[] inputs, params OnnxProto.AttributeProto[] attributes) => AddNode(g, op, output, inputs, attributes);

        void Init(HostTensor t, string name) => g.Initializer.Add(t.ToProto(name));
        Init(HostTensor.OfFloats(ElementType.Float, [], [0.02]), "as");
        Init(HostTensor.OfInts(ElementType.UInt8, [], [aZero]), "az");
        long[] wShape = gemm ? [columns, inner] : [inner, columns];
        Init(HostTensor.OfInts(ElementType.Int8, wShape, [.. Enumerable.Range(0, inner * columns).Select(_ => (long)rng.Next(-127, 128))]), "wq");
        Init(HostTensor.OfFloats(ElementType.Float, [columns], [.. Enumerable.Range(0, columns).Select(_ => 0.002 + (rng.NextDouble() * 0.004))]), "ws");
        Init(HostTensor.OfFloats(ElementType.Float, [columns], [.. Enumerable.Range(0, columns).Select(_ => rng.NextDouble() - 0.5)]), "b");
        Node("DequantizeLinear", "ad", ["aq", "as", "az"]);
        Node("DequantizeLinear", "wd", ["wq", "ws"], new OnnxProto.AttributeProto { Name = "axis", Type = OnnxProto.AttributeProto.Types.AttributeType.Int, I = gemm ? 0 : 1 });
        if (gemm)
        {
            Node("Gemm", "y", ["ad", "wd", "b"], new OnnxProto.AttributeProto { Name = "transB", Type = OnnxProto.AttributeProto.Types.AttributeType.Int, I = 1 });
        }
        else
        {
            Node("MatMul", "y", ["ad", "wd"]);
        }

        g.Input.Add(Info("aq", ElementType.UInt8, rows, inner));
        g.Output.Add(Info("y", ElementType.Float, rows, columns));
        var proto = new OnnxProto.ModelProto { IrVersion = 8, Graph = g };
        proto.OpsetImport.Add(new OnnxProto.OperatorSetIdProto { Domain = string.Empty, Version = 17 });
        return OnnxModel.FromProto(proto, "qdq-matmul");
    }

    [Theory]
    [InlineData(false, 0)]
    [InlineData(true, 131)]
    public void A_qdq_matmul_or_gemm_on_the_int8_path_matches_onnx_runtime(bool gemm, int aZero)
    {
        Gpu.Require();
        const int rows = 24, inner = 64, columns = 48;
        var model = QdqMatMul(rows, inner, columns, aZero, gemm);
        var rng = new Random(9);
        List<Tensor> inputs = [Tensor.From<byte>(ElementType.UInt8, [rows, inner], [.. Enumerable.Range(0, rows * inner).Select(_ => (byte)rng.Next(0, 256))])];
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        foreach (var precision in new[] { Precision.Fp32, Precision.Fp16 })
        {
            using var int8 = Int8Switch.Set(on: true);
            using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = precision });
            var actual = cuda.Run(inputs);
            var how = ((CudaSession)cuda).Int8Layers().Values.Single();
            var r = Gpu.Compare(actual, expected, model.Outputs)[0];
            Gpu.Report("int8-layers.md", string.Create(CultureInfo.InvariantCulture, $"| {(gemm ? "Gemm transB" : "MatMul")} zero point {aZero} | {precision} | {how} | max rel {r.MaxRel:E2} | cosine {r.Cosine:F7} |"));
            Assert.StartsWith("int8", how, StringComparison.Ordinal);
            Assert.True(r.MaxRel < (precision == Precision.Fp16 ? 2e-3 : 1e-5), $"{precision} ({how}): max relative error {r.MaxRel}");
        }
    }

    /// <summary>The convolution cases: (c, k, kernel, stride, pad, input zero point, ReLU, output zero point, what the engine should take).</summary>
    internal static readonly (int C, int K, int Kernel, int Stride, int Pad, int XZero, bool Relu, int YZero, string What)[] ConvCases =
    [
        (16, 32, 3, 1, 1, 131, false, 128, "cuDNN, padded, input zero point 131 (border tables)"),
        (16, 32, 3, 1, 1, 0, true, 0, "cuDNN, padded, post-ReLU input (zero point 0), ReLU"),
        (32, 16, 3, 2, 1, 60, false, 100, "cuDNN, strided"),
        (32, 64, 1, 1, 0, 0, false, 0, "cuBLASLt 1x1, uint8 zero point 0 (saturation clamps)"),
        (64, 32, 1, 1, 0, 77, true, 128, "cuBLASLt 1x1, ReLU epilogue (zero point 128)"),
        (64, 32, 1, 2, 0, 77, false, 128, "cuDNN 1x1 strided"),
        (32, 16, 3, 1, 1, 5, true, 100, "ReLU at a zero point stored as -28 (graph: ReLU, then the zero vector)"),
        (64, 64, 3, 1, 1, 0, true, 0, "ResNet-50's 3x3 64->64: post-ReLU input and output (border offsets, ReLU by saturation)"),
        (64, 256, 1, 1, 0, 0, false, 118, "ResNet-50's 1x1 64->256 before the residual add (no ReLU)"),
    ];

    /// <summary>
    /// Each convolution case in a child process of its own (<see cref="Int8ChildGpuTests.A_convolution_case_in_a_child"/>):
    /// its five routes (fp32/fp16 with the graph API, padded, and without it; the graph API last) against ONNX Runtime.
    /// A case that faults the GPU costs its own child only: the table names it and the other cases still run.
    /// </summary>
    [Fact]
    public void Each_qdq_convolution_case_on_the_int8_path_matches_onnx_runtime_in_a_child_process()
    {
        Gpu.Require();
        var failures = new List<string>();
        Gpu.Publish("int8-layers.md", "| case | precision | BATCHWISE_INT8_GRAPH | route taken | max steps off ORT | outputs that differ | verdict |");
        Gpu.Publish("int8-layers.md", "|---|---|---|---|---|---|---|");
        for (var i = 0; i < ConvCases.Length; i++)
        {
            var r = ChildRun.Run(typeof(Int8ChildGpuTests).FullName + "." + nameof(Int8ChildGpuTests.A_convolution_case_in_a_child), new Dictionary<string, string?>
            {
                [Int8ChildGpuTests.Mode] = "layer",
                [Int8ChildGpuTests.Case] = i.ToString(CultureInfo.InvariantCulture),
                [Int8Layers.TraceSwitch] = "1",
                ["BATCHWISE_REPORT_DIR"] = null,
            }, TimeSpan.FromMinutes(3));
            foreach (var row in r.Tagged("LAYER"))
            {
                Gpu.Publish("int8-layers.md", "| " + string.Join(" | ", row) + " |");
                if (row[^1] != "ok")
                {
                    failures.Add($"{row[0]} ({row[1]}, graph {row[2]}): {row[^1]}");
                }
            }

            if (r.Passed && !r.Tagged("LAYER").Any())
            {
                failures.Add($"case {i} ({ConvCases[i].What}): the child printed no routes (skipped?); last lines: {string.Join(" // ", r.Tail(8))}");
            }

            if (!r.Passed)
            {
                failures.Add($"case {i} ({ConvCases[i].What}): the child {(r.TimedOut ? "timed out" : $"exited {r.ExitCode}")} after {r.Seconds:F0} s; last lines: {string.Join(" // ", r.Tail(12))}");
                Gpu.Publish("int8-layers.md", $"| {ConvCases[i].What} | - | - | CHILD {(r.TimedOut ? "TIMED OUT" : $"EXITED {r.ExitCode}")} | - | - | see the failure |");
            }
        }

        Assert.True(failures.Count == 0, string.Join(Environment.NewLine, failures));
    }

    /// <summary>One case's five routes in this process, the graph API's last; a line per route (tag LAYER), then the first failure asserted.</summary>
    internal static void RunConvolutionCase(int index)
    {
        var (c, k, kernel, stride, pad, xZero, relu, yZero, what) = ConvCases[index];
        var model = QdqConv(c, k, kernel, stride, pad, xZero, relu, yZero, ElementType.UInt8);
        var rng = new Random(5);
        List<Tensor> inputs = [Tensor.From<byte>(ElementType.UInt8, [2, c, 9, 9], [.. Enumerable.Range(0, 2 * c * 81).Select(_ => (byte)rng.Next(0, 256))])];
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs)[0].ToDoubles();
        var failures = new List<string>();
        foreach (var (precision, graph) in new[] { (Precision.Fp32, "off"), (Precision.Fp16, "off"), (Precision.Fp32, "on"), (Precision.Fp16, "on"), (Precision.Fp32, "pad") })
        {
            using var int8 = Int8Switch.Set(on: true, graph);
            using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = precision });
            var actual = cuda.Run(inputs)[0].ToDoubles();
            var how = ((CudaSession)cuda).Int8Layers().Values.Single();
            var steps = Enumerable.Range(0, actual.Length).Select(i => Math.Round(Math.Abs(actual[i] - expected[i]) / 0.05)).ToList();
            var differ = steps.Count(s => s > 0);
            // The own kernels (BATCHWISE_INT8_CONV=auto, the default since session 31) take the 1x1 expansions they run
            // before the graph API is asked, whatever BATCHWISE_INT8_GRAPH says: the graph switch decides the rest.
            var own = how.StartsWith("int8 (own", StringComparison.Ordinal);
            var verdict = !how.StartsWith("int8", StringComparison.Ordinal) ? "not int8"
                : !own && (graph != "off") != how.StartsWith("int8 (cuDNN graph", StringComparison.Ordinal) ? "graph API route expected " + (graph != "off" ? "taken" : "not taken")
                : graph == "pad" && how.Contains("border offsets", StringComparison.Ordinal) ? "border offsets with BATCHWISE_INT8_GRAPH=pad"
                : steps.Max() > 1 ? $"an output {steps.Max()} quantization steps off ORT"
                : differ > steps.Count / 50 ? $"{differ} of {steps.Count} outputs differ (more than rounding ties)"
                : "ok";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"LAYER\t{what}\t{precision}\t{graph}\t{how}\t{steps.Max()}\t{differ} of {steps.Count}\t{verdict}"));
            if (verdict != "ok")
            {
                failures.Add($"{precision}, graph {graph} ({how}): {verdict}");
            }
        }

        Assert.True(failures.Count == 0, what + ": " + string.Join("; ", failures));
    }
}
