using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Integer products on the int8 tensor-core route (cuBLASLt's int32 sums, emulated here as cuBLASLt defines them): a
/// dynamic int8 export (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul, as `optimize --int8-dynamic` writes it,
/// a large activation's range in many blocks) and QLinearMatMul with constant scales. Planned without a GPU, run on the
/// CPU through g++, against ONNX Runtime.
/// </summary>
public sealed class IntegerMatMulOnCpuTests
{
    /// <summary>x [rows, 256] -> MatMul [256, 96] + bias -> Relu -> MatMul [96, 40], quantized dynamically (full 8-bit weights).</summary>
    private static OnnxModel Model(long rows)
    {
        var rng = new Random(5);
        var g = new GraphBuilder("dyn", seed: 1);
        var x = g.Input("x", ElementType.Float, rows, 256L);
        float[] Values(int n, double spread) => [.. Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() - 0.5) * spread))];
        var h = g.Node("Add", [g.Node("MatMul", [x, g.Initializer("w1", [256, 96], Values(256 * 96, 0.2))]), g.Initializer("b1", [96], Values(96, 0.5))]);
        g.Rename(g.Node("MatMul", [g.Node("Relu", [h]), g.Initializer("w2", [96, 40], Values(96 * 40, 0.4))]), "y");
        g.Output("y", ElementType.Float, rows, 40L);
        var model = g.Build("dyn", opset: 13);
        new Int8DynamicQuantization { ReduceRange = false }.Apply(model);
        return model;
    }

    [Theory]
    [InlineData(Precision.Fp32, 6)]
    [InlineData(Precision.Fp16, 6)]
    [InlineData(Precision.Fp32, 300)] // 76,800 activation values: the range in partials, then the one-block pass over them
    public void Matmul_integer_runs_on_the_int8_route_and_agrees_with_onnx_runtime(Precision precision, long rows)
    {
        CpuKernelRunner.Require();
        var model = Model(rows);
        Assert.Equal(2, model.Graph.Node.Count(n => n.OpType == "MatMulInteger"));
        var rng = new Random(3);
        List<Tensor> inputs = [Tensor.From<float>(ElementType.Float, [rows, 256], [.. Enumerable.Range(0, (int)(rows * 256)).Select(_ => (float)((rng.NextDouble() * 4) - 1.5))])];
        var plan = new NoGpuTarget(precision, hostMatmuls: true).Compile(model, inputs);

        var products = plan.Steps.OfType<Int8GemmStep>().ToList();
        Assert.Equal(2, products.Count);
        Assert.All(products, p => Assert.Contains("(int8 tensor cores, cuBLASLt)", p.Node, StringComparison.Ordinal));
        Assert.Equal((rows, 256L, 96L), products[0].Sums);
        // The first product's operand: quantized by the computed scale and zero point and stored less 128 in one kernel.
        Assert.Contains(plan.Steps.OfType<KernelStep>(), k => k.Source.Contains("signed char* __restrict__ y", StringComparison.Ordinal) && k.Source.Contains("rintf(", StringComparison.Ordinal) && k.Source.Contains("- 128", StringComparison.Ordinal));
        var partials = plan.Steps.OfType<KernelStep>().Count(k => k.Source.Contains("partials[blockIdx.x]", StringComparison.Ordinal));
        Assert.Equal(rows * 256 > 65536 ? 1 : 0, partials);

        using var ort = new OrtEngine().Load(model, new EngineOptions());
        var want = ort.Run(inputs)[0].ToDoubles();
        CpuKernelRunner.Prepare([plan]);
        Assert.Null(CpuKernelRunner.CannotRun(plan));
        var got = CpuKernelRunner.Run(plan, inputs)[0].ToDoubles();
        Assert.Equal(want.Length, got.Length);
        Assert.True(want.Distinct().Count() > want.Length / 2, "the reference is nearly constant: the case checks nothing");

        // The same int32 sums and scales: float32 agrees to its last places (the second product's activation is
        // quantized from the first's float output, where a tie may round a step the other way); half precision to its ~3 digits.
        var tolerance = precision == Precision.Fp16 ? 4e-3 : 2e-3;
        var scale = want.Max(Math.Abs);
        Assert.All(Enumerable.Range(0, want.Length), i => Assert.True(Math.Abs(want[i] - got[i]) <= tolerance * scale, $"[{i}] {got[i]} where ONNX Runtime gives {want[i]}"));
    }

    [Fact]
    public void The_weight_tables_restore_the_activation_zero_point_from_the_column_sums()
    {
        // (a - z)·w = (a - 128)·w + (128 - z)·Σ_k w[k, n] for a uint8 activation a kept as the int8 byte a - 128.
        var rng = new Random(9);
        var (k, n) = (7L, 5L);
        var w = HostTensor.OfInts(ElementType.Int8, [k, n], [.. Enumerable.Range(0, (int)(k * n)).Select(_ => (long)rng.Next(-128, 128))]);
        var a = Enumerable.Range(0, (int)k).Select(_ => rng.Next(0, 256)).ToArray();
        const int zero = 37;
        var t = GraphCompiler.IntegerGemmTables(w);
        Assert.Equal([n, k], t[0].Shape);
        for (var c = 0; c < n; c++)
        {
            long want = 0, sums = 0;
            for (var j = 0; j < k; j++)
            {
                want += (a[j] - zero) * (long)w[(j * n) + c];
                sums += (a[j] - 128) * (long)t[0][(c * k) + j];
            }

            Assert.Equal(want, sums + ((128 - zero) * (long)t[1][c]));
        }
    }

    /// <summary>QLinearMatMul (the QOperator format): uint8 a [5, 64] (scale 0.02, zero 120) by a constant int8 b [64, 48] (per-column scales, zero points 0) into uint8 (scale 0.05, zero 128).</summary>
    private static OnnxModel QLinearMatMul()
    {
        var rng = new Random(6);
        var g = new GraphBuilder("qlinear", seed: 1);
        var a = g.Input("a", ElementType.UInt8, 5L, 64L);
        var b = g.Raw<sbyte>("b", ElementType.Int8, [64, 48], [.. Enumerable.Range(0, 64 * 48).Select(_ => (sbyte)rng.Next(-127, 128))]);
        var bScale = g.Initializer("bs", [48], [.. Enumerable.Range(0, 48).Select(_ => (float)(0.002 + (rng.NextDouble() * 0.002)))]);
        var inputs = new[]
        {
            a, g.Initializer("as", [], [0.02f]), g.Raw<byte>("az", ElementType.UInt8, [], [(byte)120]), b, bScale,
            g.Raw<sbyte>("bz", ElementType.Int8, [48], new sbyte[48]), g.Initializer("ys", [], [0.05f]), g.Raw<byte>("yz", ElementType.UInt8, [], [(byte)128]),
        };
        g.Rename(g.Node("QLinearMatMul", inputs), "y");
        g.Output("y", ElementType.UInt8, 5L, 48L);
        return g.Build("qlinear", opset: 13);
    }

    [Fact]
    public void Qlinear_matmul_with_constant_scales_runs_on_the_int8_route_and_agrees_with_onnx_runtime()
    {
        CpuKernelRunner.Require();
        var model = QLinearMatMul();
        var rng = new Random(2);
        List<Tensor> inputs = [Tensor.From<byte>(ElementType.UInt8, [5, 64], [.. Enumerable.Range(0, 5 * 64).Select(_ => (byte)rng.Next(0, 256))])];
        var plan = new NoGpuTarget(Precision.Fp16, hostMatmuls: true).Compile(model, inputs);
        Assert.Single(plan.Steps.OfType<Int8GemmStep>());

        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var want = ort.Run(inputs)[0].ToDoubles();
        CpuKernelRunner.Prepare([plan]);
        var got = CpuKernelRunner.Run(plan, inputs)[0].ToDoubles();
        QuantizedBytes.AgreeWithinAStep(want, got, 50, 40);
    }
}
