using System.Globalization;
using System.Text;
using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// Half-precision channels-last convolutions with their epilogue (bias, the bottleneck's residual add, ReLU) three ways
/// at ResNet-50's shapes: cuDNN's legacy fused call with the heuristics' first algorithm (the engine's default), the
/// same call with the fastest of its candidates (what --tactics timed picks), and cuDNN's backend (graph) API with the
/// whole epilogue in one runtime-fused plan (heuristics mode A). A table of CUDA-event times; it measures, it does not
/// judge speed, and fails only when no variant ran at all.
/// </summary>
[Trait("Category", "GPU")]
public sealed unsafe class ConvFusionProbeGpuTests
{
    private const long WorkspaceBytes = 256L << 20;

    /// <summary>(name, C, K, H, kernel, stride, pad, residual): the bottleneck's expanding 1x1 with the residual add, a 3x3, the stem (3 channels padded to 8).</summary>
    private static readonly (string Name, int C, int K, int H, int Kernel, int Stride, int Pad, bool Residual)[] Shapes =
    [
        ("1x1 64->256 56x56 +residual", 64, 256, 56, 1, 1, 0, true),
        ("1x1 128->512 28x28 +residual", 128, 512, 28, 1, 1, 0, true),
        ("1x1 256->1024 14x14 +residual", 256, 1024, 14, 1, 1, 0, true),
        ("1x1 512->2048 7x7 +residual", 512, 2048, 7, 1, 1, 0, true),
        ("3x3 64->64 56x56", 64, 64, 56, 3, 1, 1, false),
        ("7x7 s2 8->64 224x224 (stem)", 8, 64, 224, 7, 2, 3, false),
    ];

    [Fact]
    public void Half_convolutions_with_bias_residual_and_relu_legacy_and_graph_api()
    {
        Gpu.Require();
        using var probe = new CudnnProbe();
        var (stream, handle) = (probe.Stream, probe.Handle);
        using var workspace = CudaDriver.Allocate(WorkspaceBytes);

        var text = new StringBuilder();
        text.AppendLine(probe.Heading("fp16 convolution epilogues"));
        text.AppendLine();
        text.AppendLine("NHWC half, float accumulation, bias + (residual) + ReLU fused; CUDA events, best of 3 trials; 'x default' = the engine default's time / this row's.");
        text.AppendLine();
        text.AppendLine("| conv | batch | variant | algo | ms | TFLOP/s | x default |");
        text.AppendLine("|---|---:|---|---|---:|---:|---:|");
        var ran = 0;
        foreach (var batch in new[] { 256, 64, 1 })
        {
            foreach (var s in Shapes)
            {
                var o = ((s.H + (2 * s.Pad) - s.Kernel) / s.Stride) + 1;
                long[] xShape = [batch, s.C, s.H, s.H], wShape = [s.K, s.C, s.Kernel, s.Kernel], yShape = [batch, s.K, o, o], vector = [1, s.K, 1, 1];
                var flops = 2.0 * batch * s.K * s.C * s.Kernel * s.Kernel * o * o;
                using var x = CudaDriver.Allocate(RoundUp(2 * Count(xShape)));
                using var w = CudaDriver.Allocate(RoundUp(2 * Count(wShape)));
                using var y = CudaDriver.Allocate(RoundUp(2 * Count(yShape)));
                using var z = CudaDriver.Allocate(RoundUp(2 * Count(yShape)));
                using var bias = CudaDriver.Allocate(RoundUp(2 * s.K));
                probe.Fill(x, 1);
                probe.Fill(w, 2);
                probe.Fill(z, 3);
                probe.Fill(bias, 4);
                CudaDriver.Synchronize(stream);
                var rows = new List<(string Variant, string Algo, double? Seconds, string? Failure)>();

                try
                {
                    using var xDesc = Cudnn.Tensor(Cudnn.CUDNN_DATA_HALF, xShape, Cudnn.CUDNN_TENSOR_NHWC);
                    using var wDesc = Cudnn.Filter(Cudnn.CUDNN_DATA_HALF, wShape, Cudnn.CUDNN_TENSOR_NHWC);
                    using var yDesc = Cudnn.Tensor(Cudnn.CUDNN_DATA_HALF, yShape, Cudnn.CUDNN_TENSOR_NHWC);
                    using var biasDesc = Cudnn.Tensor(Cudnn.CUDNN_DATA_HALF, vector);
                    using var relu = Cudnn.Activation(Cudnn.CUDNN_ACTIVATION_RELU);
                    using var conv = Cudnn.Convolution([s.Pad, s.Pad], [s.Stride, s.Stride], [1, 1], 1, Cudnn.CUDNN_TENSOR_OP_MATH);
                    var candidates = Cudnn.ForwardAlgorithms(handle, xDesc, wDesc, conv, yDesc).Where(a => a.Status == 0 && (long)a.Memory <= WorkspaceBytes).ToList();
                    var timed = new List<(int Algo, int Math, double Seconds)>();
                    foreach (var c in candidates)
                    {
                        try
                        {
                            Cudnn.SetMathType(conv, c.MathType);
                            timed.Add((c.Algo, c.MathType, probe.Time(() => Cudnn.ConvolutionBiasActivationForward(handle, xDesc, x.Pointer, wDesc, w.Pointer, conv, c.Algo, workspace.Pointer, WorkspaceBytes, s.Residual ? 1f : 0f, yDesc, s.Residual ? z.Pointer : y.Pointer, biasDesc, bias.Pointer, relu, yDesc, y.Pointer))));
                        }
                        catch (CudaException)
                        {
                            // A candidate the fused call refuses: the others are timed.
                        }
                    }

                    if (timed.Count > 0)
                    {
                        var first = timed[0];
                        var best = timed.MinBy(t => t.Seconds);
                        rows.Add(("legacy fused, heuristics' first (engine default)", $"{first.Algo} (math {first.Math})", first.Seconds, null));
                        rows.Add(("legacy fused, fastest candidate (--tactics timed)", $"{best.Algo} (math {best.Math}) of {timed.Count}", best.Seconds, null));
                    }
                    else
                    {
                        rows.Add(("legacy fused", "", null, "no candidate ran"));
                    }
                }
                catch (CudaException e)
                {
                    rows.Add(("legacy fused", "", null, e.Message));
                }

                rows.Add(GraphRow(handle, s.Residual, s.Pad, s.Stride, xShape, wShape, yShape, vector, x, w, z, bias, y, workspace, probe.Time));
                var baseline = rows[0].Seconds;
                foreach (var r in rows)
                {
                    var ms = r.Seconds is { } t ? (t * 1e3).ToString("F4", CultureInfo.InvariantCulture) : "failed: " + r.Failure;
                    var rate = r.Seconds is { } u ? (flops / u / 1e12).ToString("F1", CultureInfo.InvariantCulture) : "";
                    var ratio = r.Seconds is { } v && baseline is { } b ? (b / v).ToString("F2", CultureInfo.InvariantCulture) : "";
                    text.AppendLine(CultureInfo.InvariantCulture, $"| {s.Name} | {batch} | {r.Variant} | {r.Algo} | {ms} | {rate} | {ratio} |");
                    ran += r.Seconds is null ? 0 : 1;
                }
            }
        }

        var table = text.ToString();
        Console.WriteLine(table);
        Gpu.Report("conv-fusion-probe.md", table);
        Assert.True(ran > 0, table);
    }

    /// <summary>conv (float sums) -> + bias -> [+ residual] -> ReLU -> half, as one backend graph, heuristics mode A's first plan that finalizes.</summary>
    private static (string, string, double?, string?) GraphRow(CudnnHandle handle, bool residual, int pad, int stride, long[] xShape, long[] wShape, long[] yShape, long[] vector, DeviceMemory x, DeviceMemory w, DeviceMemory z, DeviceMemory bias, DeviceMemory y, DeviceMemory workspace, Func<Action, double> time)
    {
        static long[] ChannelsLast(long[] d) => [d[1] * d[2] * d[3], 1, d[3] * d[1], d[1]];
        const string name = "graph API: conv -> +bias -> (+residual) -> relu, one plan";
        var configs = new List<CudnnBackendEngineConfig>();
        try
        {
            using var tx = Cudnn.BackendTensorOf(1, Cudnn.CUDNN_DATA_HALF, xShape, ChannelsLast(xShape), false);
            using var tw = Cudnn.BackendTensorOf(2, Cudnn.CUDNN_DATA_HALF, wShape, ChannelsLast(wShape), false);
            using var tBias = Cudnn.BackendTensorOf(3, Cudnn.CUDNN_DATA_HALF, vector, ChannelsLast(vector), false);
            using var tz = Cudnn.BackendTensorOf(4, Cudnn.CUDNN_DATA_HALF, yShape, ChannelsLast(yShape), false);
            using var ty = Cudnn.BackendTensorOf(5, Cudnn.CUDNN_DATA_HALF, yShape, ChannelsLast(yShape), false);
            using var tSums = Cudnn.BackendTensorOf(101, Cudnn.CUDNN_DATA_FLOAT, yShape, ChannelsLast(yShape), true);
            using var tBiased = Cudnn.BackendTensorOf(102, Cudnn.CUDNN_DATA_FLOAT, yShape, ChannelsLast(yShape), true);
            using var tAdded = Cudnn.BackendTensorOf(103, Cudnn.CUDNN_DATA_FLOAT, yShape, ChannelsLast(yShape), true);
            using var conv = Cudnn.BackendConvolutionOf(Cudnn.CUDNN_DATA_FLOAT, [pad, pad], [stride, stride], [1, 1]);
            using var add = Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_ADD);
            using var relu = Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_RELU_FWD);
            using var opConv = Cudnn.BackendConvolutionForwardOf(conv, tx, tw, tSums);
            using var opBias = Cudnn.BackendPointwiseOperationOf(add, tSums, tBias, tBiased);
            using var opResidual = residual ? Cudnn.BackendPointwiseOperationOf(add, tBiased, tz, tAdded) : null;
            using var opRelu = Cudnn.BackendPointwiseOperationOf(relu, residual ? tAdded : tBiased, null, ty);
            NativeHandle[] ops = residual ? [opConv, opBias, opResidual!, opRelu] : [opConv, opBias, opRelu];
            using var graph = Cudnn.BackendGraphOf(handle, ops);
            var (plan, workspaceBytes, tried) = Cudnn.BackendPlanOf(handle, graph);
            configs = tried;
            using (plan)
            {
                if (workspaceBytes > WorkspaceBytes)
                {
                    return (name, "", null, $"workspace {workspaceBytes >> 20} MiB");
                }

                using var pack = residual
                    ? Cudnn.BackendVariantPackOf([1, 2, 3, 4, 5], [x.Pointer, w.Pointer, bias.Pointer, z.Pointer, y.Pointer], workspace.Pointer)
                    : Cudnn.BackendVariantPackOf([1, 2, 3, 5], [x.Pointer, w.Pointer, bias.Pointer, y.Pointer], workspace.Pointer);
                return (name, $"heuristics A ({tried.Count} configs)", time(() => Cudnn.BackendExecute(handle, plan, pack)), null);
            }
        }
        catch (CudaException e)
        {
            return (name, "", null, e.Message);
        }
        finally
        {
            foreach (var c in configs)
            {
                c.Dispose();
            }
        }
    }

    private static long Count(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    private static long RoundUp(long bytes) => (bytes + 255) / 256 * 256;
}
