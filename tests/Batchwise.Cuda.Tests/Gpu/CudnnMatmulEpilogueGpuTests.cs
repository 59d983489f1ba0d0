using System.Globalization;
using System.Runtime.InteropServices;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Tests.Planning;
using Batchwise.Engines;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// A probe of cuDNN's runtime-fused product with an exact (erf) GELU epilogue (<see cref="CudnnMatmulEpilogue"/>): whether
/// it agrees with a double-precision CPU reference at a small shape, and its time at the first MLP products of BERT-base /
/// DistilBERT (b=64, seq 128), ViT-S and ViT-B (b=64, 197 tokens) beside the engine's plan for the same nodes today (the
/// cuBLASLt product with its bias, then the erf GELU pass in place), each of cuDNN's first candidates timed. It measures,
/// it does not judge speed.
/// </summary>
[Trait("Category", "GPU")]
public sealed unsafe class CudnnMatmulEpilogueGpuTests
{
    private const string ReportFile = "cudnn-matmul-gelu-probe.md";

    [Fact]
    public void Cudnn_matmul_bias_erf_gelu_matches_a_cpu_reference_small()
    {
        Gpu.Require();
        const int m = 96, k = 64, n = 128;
        using var probe = new CudnnProbe();
        var (stream, handle) = (probe.Stream, probe.Handle);
        var rng = new Random(99);
        Half[] Random(int count, double scale) => [.. Enumerable.Range(0, count).Select(_ => (Half)(((rng.NextDouble() * 2) - 1) * scale))];
        var (a, b, bias) = (Random(m * k, 1), Random(k * n, 0.25), Random(n, 1));
        using var epilogue = new CudnnMatmulEpilogue(handle, 1, m, n, k, [m * k, k, 1], [k * n, n, 1], [m * n, n, 1], bias: true, Cudnn.CUDNN_POINTWISE_GELU_FWD);
        using var da = CudaDriver.Allocate(a.Length * 2L);
        using var db = CudaDriver.Allocate(b.Length * 2L);
        using var dbias = CudaDriver.Allocate(bias.Length * 2L);
        using var dy = CudaDriver.Allocate(m * n * 2L);
        using var workspace = CudaDriver.Allocate(Math.Max(epilogue.WorkspaceBytes(), 256));
        CudaDriver.CopyToDeviceSync(da.Pointer, MemoryMarshal.AsBytes(a.AsSpan()));
        CudaDriver.CopyToDeviceSync(db.Pointer, MemoryMarshal.AsBytes(b.AsSpan()));
        CudaDriver.CopyToDeviceSync(dbias.Pointer, MemoryMarshal.AsBytes(bias.AsSpan()));
        using (var pack = epilogue.Pack(da.Pointer, db.Pointer, dbias.Pointer, dy.Pointer, workspace.Pointer))
        {
            epilogue.Execute(handle, pack);
        }

        CudaDriver.Synchronize(stream);
        var y = new Half[m * n];
        CudaDriver.CopyToHostSync(MemoryMarshal.AsBytes(y.AsSpan()), dy.Pointer);
        var error = 0.0;
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < n; j++)
            {
                var h = (double)bias[j];
                for (var t = 0; t < k; t++)
                {
                    h += (double)a[(i * k) + t] * (double)b[(t * n) + j];
                }

                var expected = 0.5 * h * (1 + Erf(h / Math.Sqrt(2)));
                var actual = (double)y[(i * n) + j];
                error = Math.Max(error, double.IsFinite(actual) ? Math.Abs(actual - expected) : double.PositiveInfinity);
            }
        }

        var (engine, compiled) = epilogue.EngineOf();
        var line = string.Create(CultureInfo.InvariantCulture, $"| cudnn matmul+bias+gelu(erf) vs cpu | m={m} k={k} n={n} | engine {engine} (runtime compiled: {(compiled ? "yes" : "no")}; offered: {string.Join(",", epilogue.Offered)}) | max abs error {error:E2} |");
        Gpu.Publish(ReportFile, line);
        Assert.True(error <= 1e-2, line);
    }

    public static TheoryData<string, int, int, int> Shapes() => new()
    {
        { "bert_base_fc1_b64", 64 * 128, 768, 3072 },
        { "vit_s_fc1_b64", 64 * 197, 384, 1536 },
        { "vit_b_fc1_b64", 64 * 197, 768, 3072 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Cudnn_matmul_bias_erf_gelu_is_timed_beside_the_engines_plan(string name, int m, int k, int n)
    {
        Gpu.Require();

        // The engine's plan today for the same nodes (MatMul, Add bias, erf GELU as torch.onnx writes it): each step's time.
        var model = MatmulEpiloguePlanTests.ErfGelu("torch", m, k, n);
        var inputs = MatmulEpiloguePlanTests.Inputs(model, 3);
        double ownMs;
        string ownSteps;
        using (var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 }))
        using (var run = cuda.Prepare(inputs))
        {
            run.Run();
            var layers = Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(30)
                .Where(l => !l.Layer.StartsWith("input ", StringComparison.Ordinal) && !l.Layer.StartsWith("output ", StringComparison.Ordinal)).ToList();
            ownMs = layers.Sum(l => l.Milliseconds);
            ownSteps = string.Join(" + ", layers.Select(l => string.Create(CultureInfo.InvariantCulture, $"{l.Milliseconds * 1e3:F1}")));
        }

        using var probe = new CudnnProbe();
        var (stream, handle) = (probe.Stream, probe.Handle);
        using var a = CudaDriver.Allocate((long)m * k * 2);
        using var b = CudaDriver.Allocate((long)k * n * 2);
        using var bias = CudaDriver.Allocate((long)n * 2);
        using var y = CudaDriver.Allocate((long)m * n * 2);
        probe.Fill(a, 1);
        probe.Fill(b, 2);
        probe.Fill(bias, 3);

        CudaDriver.Synchronize(stream);
        Gpu.Publish(ReportFile, probe.Heading("cuDNN matmul + bias + erf GELU probe"));
        var flops = 2.0 * m * n * k;
        var best = double.MaxValue;
        foreach (var (mode, modeName) in new[] { (Cudnn.CUDNN_HEUR_MODE_A, "A"), (Cudnn.CUDNN_HEUR_MODE_B, "B") })
        {
            try
            {
                // Every configuration each mode offers (session 46 timed mode A's first 4: all engine 4; engine 7 came 8th).
                using var epilogue = new CudnnMatmulEpilogue(handle, 1, m, n, k, [(long)m * k, k, 1], [(long)k * n, n, 1], [(long)m * n, n, 1], bias: true, Cudnn.CUDNN_POINTWISE_GELU_FWD, candidates: 16, heuristicsMode: mode);
                for (var c = 0; c < epilogue.Candidates; c++)
                {
                    using var workspace = CudaDriver.Allocate(Math.Max(epilogue.WorkspaceBytes(c), 256));
                    using var pack = epilogue.Pack(a.Pointer, b.Pointer, bias.Pointer, y.Pointer, workspace.Pointer);
                    var candidate = c;
                    var seconds = probe.Time(() => epilogue.Execute(handle, pack, candidate));
                    best = Math.Min(best, seconds);
                    var (engine, compiled) = epilogue.EngineOf(c);
                    Gpu.Publish(ReportFile, string.Create(CultureInfo.InvariantCulture, $"| {name} mode {modeName} candidate {c} | m={m} k={k} n={n} | engine {engine} (runtime compiled: {(compiled ? "yes" : "no")}; workspace {epilogue.WorkspaceBytes(c)} B) | {seconds * 1e6:F1} us | {flops / seconds / 1e12:F1} TFLOP/s |"));
                }

                Gpu.Publish(ReportFile, $"| {name} mode {modeName} | {epilogue.Candidates} built | offered: {string.Join(",", epilogue.Offered)} | | |");
            }
            catch (CudaException e)
            {
                Gpu.Publish(ReportFile, $"| {name} mode {modeName} | cuDNN refused: {e.Message} | engine's plan {ownMs * 1e3:F1} us | | |");
            }
        }

        var line = string.Create(CultureInfo.InvariantCulture, $"| {name} | cuDNN fused best {best * 1e6:F1} us | engine's plan {ownMs * 1e3:F1} us ({ownSteps}) | own / cuDNN {ownMs * 1e-3 / best:F2}x | |");
        Gpu.Publish(ReportFile, line);
        Assert.True(best is > 0 and < double.MaxValue && ownMs > 0, line);
    }

    /// <summary>erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7, far inside the check's 1e-2).</summary>
    private static double Erf(double x)
    {
        var t = 1 / (1 + (0.3275911 * Math.Abs(x)));
        var poly = t * (0.254829592 + (t * (-0.284496736 + (t * (1.421413741 + (t * (-1.453152027 + (t * 1.061405429))))))));
        return Math.Sign(x) * (1 - (poly * Math.Exp(-x * x)));
    }
}
