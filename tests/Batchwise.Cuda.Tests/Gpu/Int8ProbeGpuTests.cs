using System.Globalization;
using System.Text;
using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// What this device's cuDNN and cuBLASLt give for int8 convolutions and GEMMs at ResNet-50 and BERT-base shapes,
/// beside fp16 NHWC (the engine's path today): a table of best times over each library's candidate algorithms, timed
/// with CUDA events. It measures, it does not judge speed: a configuration the library refuses is a row saying
/// "unsupported: …" with the library's own status, and the test fails only when nothing int8 runs at all.
/// </summary>
[Trait("Category", "GPU")]
public sealed unsafe class Int8ProbeGpuTests
{
    private const long WorkspaceBytes = 256L << 20;

    private const string Source = """
        __device__ unsigned int probe_hash(unsigned long long i, unsigned int seed)
        {
            unsigned int x = (unsigned int)(i * 2654435761ull) ^ (unsigned int)(i >> 32) ^ seed;
            x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
            return x;
        }

        // mode 0: four int8 in [-64, 63] per word; 1: two fp16 of random sign in [0.5, 1); 2: one fp32 in [0.5, 1).
        extern "C" __global__ void probe_fill(unsigned int* p, unsigned long long n, unsigned int seed, int mode)
        {
            for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n; i += (unsigned long long)gridDim.x * blockDim.x)
            {
                unsigned int r = probe_hash(i, seed);
                p[i] = mode == 0 ? (r & 0x7f7f7f7fu) - 0x40404040u
                     : mode == 1 ? ((r & 0x8000u) | 0x3800u | (r & 0x3ffu)) | ((((r >> 16) & 0x8000u) | 0x3800u | ((r >> 16) & 0x3ffu)) << 16)
                     : 0x3f000000u | (r & 0x7fffffu);
            }
        }
        """;

    /// <summary>ResNet-50's convolutions: 1x1 expand, 3x3 in the first stage, deep 3x3, the strided 3x3 into stage 2, 1x1 reduce.</summary>
    private static readonly ConvShape[] ConvShapes =
    [
        new("1x1 64->256 56x56", 64, 256, 56, 1, 1, 0),
        new("3x3 64->64 56x56", 64, 64, 56, 3, 1, 1),
        new("3x3 256->256 14x14", 256, 256, 14, 3, 1, 1),
        new("3x3 128->128 56->28 s2", 128, 128, 56, 3, 2, 1),
        new("1x1 1024->256 14x14", 1024, 256, 14, 1, 1, 0),
    ];

    [Fact]
    public void Int8_convolutions_and_gemms_beside_fp16_at_resnet50_and_bert_shapes()
    {
        Gpu.Require();
        var device = CudaDriver.Device(0);
        using var context = new PrimaryContext(device);
        context.MakeCurrent();
        var cc = (CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) * 10) + CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        using var stream = CudaDriver.CreateStream();
        using var start = CudaDriver.CreateEvent();
        using var end = CudaDriver.CreateEvent();
        using var module = CudaDriver.LoadModule(Nvrtc.CompileToCubin(Source, "int8probe.cu", cc));
        var probe = new Probe(stream, start, end, CudaDriver.GetFunction(module, "probe_fill"));

        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"# int8 probe: {CudaDriver.DeviceName(device)} (sm_{cc}), cuDNN {Cudnn.Version()}, cuBLASLt {CublasLt.Version()}, {DateTimeOffset.UtcNow:u}");
        text.AppendLine();
        text.AppendLine("Best of each library's candidate algorithms, CUDA events; TOPS counts 2 operations per multiply-add; 'x fp16' is the fp16 row's time over this row's.");
        text.AppendLine();
        text.AppendLine("| op | batch | variant | algo | ms | TOPS | x fp16 |");
        text.AppendLine("|---|---|---|---|---|---|---|");
        var rows = new List<Row>();
        foreach (var batch in new[] { 256, 1 })
        {
            foreach (var shape in ConvShapes)
            {
                rows.AddRange(probe.Convolutions(shape, batch));
            }
        }

        foreach (var gemm in Gemms())
        {
            rows.AddRange(probe.Gemms(gemm));
        }

        foreach (var r in rows)
        {
            var fp16 = rows.FirstOrDefault(o => o.Op == r.Op && o.Batch == r.Batch && o.Variant.StartsWith("fp16", StringComparison.Ordinal));
            var speedup = r.Seconds is { } s && fp16?.Seconds is { } f ? (f / s).ToString("F2", CultureInfo.InvariantCulture) : "";
            var time = r.Seconds is { } t ? (t * 1e3).ToString("F4", CultureInfo.InvariantCulture) : r.Failure!;
            var tops = r.Seconds is { } u ? (r.Operations / u / 1e12).ToString("F1", CultureInfo.InvariantCulture) : "";
            text.AppendLine(CultureInfo.InvariantCulture, $"| {r.Op} | {r.Batch} | {r.Variant} | {r.Algo} | {time} | {tops} | {speedup} |");
        }

        var table = text.ToString();
        TestContext.Current.TestOutputHelper?.WriteLine(table);
        Console.WriteLine(table);
        Gpu.Report("int8-probe.md", table);

        // The probe is for reading; it fails only when no int8 configuration ran at all (then the table says why).
        Assert.Contains(rows, r => r.Variant.StartsWith("int8", StringComparison.Ordinal) && r.Seconds is not null);
    }

    /// <summary>ResNet-50's 1x1 convolutions and classifier and BERT-base's linears as GEMMs: rows of D = output channels, columns = pixels or tokens, inner = input channels.</summary>
    private static IEnumerable<GemmShape> Gemms()
    {
        foreach (var batch in new[] { 256, 1 })
        {
            yield return new("conv 1x1 64->256 56x56", batch, 256, batch * 56L * 56, 64);
            yield return new("conv 1x1 1024->256 14x14", batch, 256, batch * 14L * 14, 1024);
            yield return new("conv 1x1 512->2048 7x7", batch, 2048, batch * 7L * 7, 512);
            yield return new("fc 2048->1000", batch, 1000, batch, 2048);
        }

        foreach (var batch in new[] { 32, 1 })
        {
            yield return new("bert 768->768 seq128", batch, 768, batch * 128L, 768);
            yield return new("bert 768->3072 seq128", batch, 3072, batch * 128L, 768);
            yield return new("bert 3072->768 seq128", batch, 768, batch * 128L, 3072);
        }
    }

    private sealed record ConvShape(string Name, int C, int K, int H, int Kernel, int Stride, int Pad)
    {
        public int OutH => ((H + (2 * Pad) - Kernel) / Stride) + 1;

        public double Operations(int batch) => 2.0 * batch * K * C * Kernel * Kernel * OutH * OutH;
    }

    private sealed record GemmShape(string Name, int Batch, long M, long N, long K);

    private sealed record Row(string Op, int Batch, string Variant, string Algo, double? Seconds, string? Failure, double Operations);

    private sealed class Probe(CudaStream stream, CudaEvent start, CudaEvent end, IntPtr fill)
    {
        public double Time(Action enqueue) => EventTiming.Best(stream, start, end, enqueue);

        public void Fill(DeviceMemory memory, int mode, uint seed)
        {
            ulong p = memory.Pointer;
            ulong n = (ulong)memory.Bytes / 4;
            var args = stackalloc void*[] { &p, &n, &seed, &mode };
            CudaDriver.Launch(fill, 1024, 256, 0, stream.Handle, args, "probe_fill");
            CudaDriver.Synchronize(stream);
        }

        public List<Row> Convolutions(ConvShape s, int batch)
        {
            var rows = new List<Row>();
            var o = s.OutH;
            long[] xShape = [batch, s.C, s.H, s.H], wShape = [s.K, s.C, s.Kernel, s.Kernel], yShape = [batch, s.K, o, o];
            var xCount = xShape.Aggregate(1L, (a, b) => a * b);
            var wCount = wShape.Aggregate(1L, (a, b) => a * b);
            var yCount = yShape.Aggregate(1L, (a, b) => a * b);
            using var x = CudaDriver.Allocate(RoundUp(2 * xCount));
            using var w = CudaDriver.Allocate(RoundUp(2 * wCount));
            using var y = CudaDriver.Allocate(RoundUp(4 * yCount));
            using var bias = CudaDriver.Allocate(RoundUp(4 * s.K));
            using var workspace = CudaDriver.Allocate(WorkspaceBytes);
            using var handle = Cudnn.Create(stream);
            using var relu = Cudnn.Activation(Cudnn.CUDNN_ACTIVATION_RELU);
            var ops = s.Operations(batch);
            int[] pads = [s.Pad, s.Pad], strides = [s.Stride, s.Stride], dilations = [1, 1];
            long[] biasShape = [1, s.K, 1, 1];

            // (variant, x/w type, y type, bias type, layout, fused bias + ReLU)
            var variants = new (string Name, int XType, int YType, int BiasType, int Format, bool Fused)[]
            {
                ("fp16 nhwc conv+bias+relu (today's path)", Cudnn.CUDNN_DATA_HALF, Cudnn.CUDNN_DATA_HALF, Cudnn.CUDNN_DATA_HALF, Cudnn.CUDNN_TENSOR_NHWC, true),
                ("int8 nhwc -> int8 conv (INT8_CONFIG)", Cudnn.CUDNN_DATA_INT8, Cudnn.CUDNN_DATA_INT8, Cudnn.CUDNN_DATA_FLOAT, Cudnn.CUDNN_TENSOR_NHWC, false),
                ("int8 nhwc -> int8 conv+bias+relu (INT8_CONFIG)", Cudnn.CUDNN_DATA_INT8, Cudnn.CUDNN_DATA_INT8, Cudnn.CUDNN_DATA_FLOAT, Cudnn.CUDNN_TENSOR_NHWC, true),
                ("int8 nhwc -> fp32 conv (INT8_EXT_CONFIG)", Cudnn.CUDNN_DATA_INT8, Cudnn.CUDNN_DATA_FLOAT, Cudnn.CUDNN_DATA_FLOAT, Cudnn.CUDNN_TENSOR_NHWC, false),
                ("int8 nhwc -> fp32 conv+bias+relu (INT8_EXT_CONFIG)", Cudnn.CUDNN_DATA_INT8, Cudnn.CUDNN_DATA_FLOAT, Cudnn.CUDNN_DATA_FLOAT, Cudnn.CUDNN_TENSOR_NHWC, true),
                ("int8x32 nchw_vect_c -> int8x32 conv+bias+relu", Cudnn.CUDNN_DATA_INT8x32, Cudnn.CUDNN_DATA_INT8x32, Cudnn.CUDNN_DATA_FLOAT, Cudnn.CUDNN_TENSOR_NCHW_VECT_C, true),
            };

            foreach (var v in variants)
            {
                var half = v.XType == Cudnn.CUDNN_DATA_HALF;
                Fill(x, half ? 1 : 0, 1);
                Fill(w, half ? 1 : 0, 2);
                Fill(bias, half ? 1 : 2, 3);
                try
                {
                    var vect = v.Format == Cudnn.CUDNN_TENSOR_NCHW_VECT_C;
                    using var xDesc = vect ? Cudnn.TensorInFormat(v.XType, xShape, v.Format) : Cudnn.Tensor(v.XType, xShape, v.Format);
                    using var wDesc = Cudnn.Filter(v.XType, wShape, v.Format);
                    using var yDesc = vect ? Cudnn.TensorInFormat(v.YType, yShape, v.Format) : Cudnn.Tensor(v.YType, yShape, v.Format);
                    using var biasDesc = Cudnn.Tensor(v.BiasType, biasShape);
                    using var conv = Cudnn.Convolution(pads, strides, dilations, 1, Cudnn.CUDNN_TENSOR_OP_MATH, half ? Cudnn.CUDNN_DATA_FLOAT : Cudnn.CUDNN_DATA_INT32);

                    // Int8 into an int8 y: the int32 sum scaled down so it does not saturate everywhere (what a requantize scale does).
                    var alpha = v.YType == Cudnn.CUDNN_DATA_HALF || v.YType == Cudnn.CUDNN_DATA_FLOAT ? 1f : 1f / (s.C * s.Kernel * s.Kernel * 16);
                    var candidates = new List<(int Algo, int MathType)>();
                    string? heuristicsFailure = null;
                    try
                    {
                        candidates.AddRange(Cudnn.ForwardAlgorithms(handle, xDesc, wDesc, conv, yDesc).Where(a => a.Status == 0 && (long)a.Memory <= WorkspaceBytes).Select(a => (a.Algo, a.MathType)));
                    }
                    catch (CudaException e)
                    {
                        heuristicsFailure = e.Message;
                    }

                    // The one algorithm cuDNN documents for int8 (and the only one for the fused call without ReLU).
                    if (!half && !candidates.Any(c => c.Algo == Cudnn.CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM))
                    {
                        candidates.Add((Cudnn.CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, Cudnn.CUDNN_TENSOR_OP_MATH));
                    }

                    var (best, failure) = BestOf(candidates, c =>
                    {
                        Cudnn.SetMathType(conv, c.MathType);
                        var wsBytes = Cudnn.WorkspaceSize(handle, xDesc, wDesc, conv, yDesc, c.Algo);
                        if (wsBytes > WorkspaceBytes)
                        {
                            throw new CudaException("cuDNN", "cudnnGetConvolutionForwardWorkspaceSize", 0, $"workspace {wsBytes >> 20} MiB over the probe's {WorkspaceBytes >> 20} MiB");
                        }

                        return Time(() =>
                        {
                            if (v.Fused)
                            {
                                Cudnn.ConvolutionBiasActivationForward(handle, xDesc, x.Pointer, wDesc, w.Pointer, conv, c.Algo, workspace.Pointer, WorkspaceBytes, 0f, yDesc, y.Pointer, biasDesc, bias.Pointer, relu, yDesc, y.Pointer, alpha);
                            }
                            else
                            {
                                Cudnn.ConvolutionForward(handle, xDesc, x.Pointer, wDesc, w.Pointer, conv, c.Algo, workspace.Pointer, WorkspaceBytes, 0f, yDesc, y.Pointer, alpha);
                            }
                        });
                    });
                    rows.Add(best is { } b
                        ? new Row(s.Name, batch, v.Name, $"{b.Candidate.Algo} (math {b.Candidate.MathType})", b.Seconds, null, ops)
                        : new Row(s.Name, batch, v.Name, "", null, "unsupported: " + (failure ?? heuristicsFailure ?? "no candidate algorithm"), ops));
                }
                catch (CudaException e)
                {
                    rows.Add(new Row(s.Name, batch, v.Name, "", null, "unsupported: " + e.Message, ops));
                }
            }

            rows.AddRange(GraphConvolutions(s, batch, handle, x, w, y, workspace));
            return rows;
        }

        /// <summary>
        /// The cuDNN backend (graph) API: int8 convolution -> per-channel scale -> bias -> ReLU -> int8 in one fused
        /// execution plan (the only way cuDNN applies per-channel weight scales in the convolution's kernel), with the
        /// convolution's virtual output as fp32 or int32.
        /// </summary>
        private List<Row> GraphConvolutions(ConvShape s, int batch, CudnnHandle handle, DeviceMemory x, DeviceMemory w, DeviceMemory y, DeviceMemory workspace)
        {
            var rows = new List<Row>();
            var o = s.OutH;
            long[] xShape = [batch, s.C, s.H, s.H], wShape = [s.K, s.C, s.Kernel, s.Kernel], yShape = [batch, s.K, o, o], vector = [1, s.K, 1, 1];
            static long[] ChannelsLast(long[] d) => [d[1] * d[2] * d[3], 1, d[3] * d[1], d[1]];
            using var scale = CudaDriver.Allocate(RoundUp(4 * s.K));
            using var bias = CudaDriver.Allocate(RoundUp(4 * s.K));
            Fill(x, 0, 11);
            Fill(w, 0, 12);
            Fill(scale, 2, 13);
            Fill(bias, 2, 14);
            foreach (var sums in new[] { Cudnn.CUDNN_DATA_FLOAT, Cudnn.CUDNN_DATA_INT32 })
            {
                var name = $"int8 nhwc graph: conv ({(sums == Cudnn.CUDNN_DATA_FLOAT ? "fp32" : "int32")} sums) * scale[k] + bias[k] -> relu -> int8";
                var configs = new List<CudnnBackendEngineConfig>();
                try
                {
                    using var tx = Cudnn.BackendTensorOf(1, Cudnn.CUDNN_DATA_INT8, xShape, ChannelsLast(xShape), false);
                    using var tw = Cudnn.BackendTensorOf(2, Cudnn.CUDNN_DATA_INT8, wShape, ChannelsLast(wShape), false);
                    using var tScale = Cudnn.BackendTensorOf(3, Cudnn.CUDNN_DATA_FLOAT, vector, ChannelsLast(vector), false);
                    using var tBias = Cudnn.BackendTensorOf(4, Cudnn.CUDNN_DATA_FLOAT, vector, ChannelsLast(vector), false);
                    using var ty = Cudnn.BackendTensorOf(5, Cudnn.CUDNN_DATA_INT8, yShape, ChannelsLast(yShape), false);
                    using var tSums = Cudnn.BackendTensorOf(101, sums, yShape, ChannelsLast(yShape), true);
                    using var tScaled = Cudnn.BackendTensorOf(102, Cudnn.CUDNN_DATA_FLOAT, yShape, ChannelsLast(yShape), true);
                    using var tBiased = Cudnn.BackendTensorOf(103, Cudnn.CUDNN_DATA_FLOAT, yShape, ChannelsLast(yShape), true);
                    using var conv = Cudnn.BackendConvolutionOf(Cudnn.CUDNN_DATA_INT32, [s.Pad, s.Pad], [s.Stride, s.Stride], [1, 1]);
                    using var mul = Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_MUL);
                    using var add = Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_ADD);
                    using var relu = Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_RELU_FWD);
                    using var opConv = Cudnn.BackendConvolutionForwardOf(conv, tx, tw, tSums);
                    using var opMul = Cudnn.BackendPointwiseOperationOf(mul, tSums, tScale, tScaled);
                    using var opAdd = Cudnn.BackendPointwiseOperationOf(add, tScaled, tBias, tBiased);
                    using var opRelu = Cudnn.BackendPointwiseOperationOf(relu, tBiased, null, ty);
                    using var graph = Cudnn.BackendGraphOf(handle, [opConv, opMul, opAdd, opRelu]);
                    var (plan, workspaceBytes, tried) = Cudnn.BackendPlanOf(handle, graph);
                    configs = tried;
                    using (plan)
                    {
                        if (workspaceBytes > WorkspaceBytes)
                        {
                            rows.Add(new Row(s.Name, batch, name, "", null, $"unsupported: workspace {workspaceBytes >> 20} MiB", s.Operations(batch)));
                            continue;
                        }

                        using var pack = Cudnn.BackendVariantPackOf([1, 2, 3, 4, 5], [x.Pointer, w.Pointer, scale.Pointer, bias.Pointer, y.Pointer], workspace.Pointer);
                        var seconds = Time(() => Cudnn.BackendExecute(handle, plan, pack));
                        rows.Add(new Row(s.Name, batch, name, "engine heuristics A", seconds, null, s.Operations(batch)));
                    }
                }
                catch (CudaException e)
                {
                    rows.Add(new Row(s.Name, batch, name, "", null, "unsupported: " + e.Message, s.Operations(batch)));
                }
                finally
                {
                    foreach (var c in configs)
                    {
                        c.Dispose();
                    }
                }
            }

            return rows;
        }

        public List<Row> Gemms(GemmShape g)
        {
            var rows = new List<Row>();
            var ops = 2.0 * g.M * g.N * g.K;
            using var a = CudaDriver.Allocate(RoundUp(2 * g.M * g.K));
            using var b = CudaDriver.Allocate(RoundUp(2 * g.K * g.N));
            using var d = CudaDriver.Allocate(RoundUp(4 * g.M * g.N));
            using var bias = CudaDriver.Allocate(RoundUp(4 * g.M));
            using var alphas = CudaDriver.Allocate(RoundUp(4 * g.M));
            using var workspace = CudaDriver.Allocate(WorkspaceBytes);
            using var handle = CublasLt.Create();

            // Weights [M][K] row-major are column-major K x M, read transposed; activations [N][K] (NHWC pixels or
            // tokens) are column-major K x N; D column-major M x N is [N][M]: NHWC out. The "TN" form int8 wants.
            var variants = new (string Name, int AbType, int DType, int Compute, int Scale, bool AlphaPerRow, int Epilogue, int BiasType)[]
            {
                ("fp16 gemm+bias+relu (today's path)", CublasLt.CUDA_R_16F, CublasLt.CUDA_R_16F, CublasLt.CUBLAS_COMPUTE_32F, CublasLt.CUDA_R_32F, false, CublasLt.CUBLASLT_EPILOGUE_RELU_BIAS, CublasLt.CUDA_R_16F),
                ("int8 -> int8, scalar alpha", CublasLt.CUDA_R_8I, CublasLt.CUDA_R_8I, CublasLt.CUBLAS_COMPUTE_32I, CublasLt.CUDA_R_32F, false, CublasLt.CUBLASLT_EPILOGUE_DEFAULT, 0),
                ("int8 -> int8, per-row alpha", CublasLt.CUDA_R_8I, CublasLt.CUDA_R_8I, CublasLt.CUBLAS_COMPUTE_32I, CublasLt.CUDA_R_32F, true, CublasLt.CUBLASLT_EPILOGUE_DEFAULT, 0),
                ("int8 -> int8, per-row alpha, fp32 bias+relu", CublasLt.CUDA_R_8I, CublasLt.CUDA_R_8I, CublasLt.CUBLAS_COMPUTE_32I, CublasLt.CUDA_R_32F, true, CublasLt.CUBLASLT_EPILOGUE_RELU_BIAS, CublasLt.CUDA_R_32F),
                ("int8 -> int8, scalar alpha, fp32 bias+relu", CublasLt.CUDA_R_8I, CublasLt.CUDA_R_8I, CublasLt.CUBLAS_COMPUTE_32I, CublasLt.CUDA_R_32F, false, CublasLt.CUBLASLT_EPILOGUE_RELU_BIAS, CublasLt.CUDA_R_32F),
                ("int8 -> int32", CublasLt.CUDA_R_8I, CublasLt.CUDA_R_32I, CublasLt.CUBLAS_COMPUTE_32I, CublasLt.CUDA_R_32I, false, CublasLt.CUBLASLT_EPILOGUE_DEFAULT, 0),
            };

            var algo = (CublasLt.HeuristicResult*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)sizeof(CublasLt.HeuristicResult));
            try
            {
                foreach (var v in variants)
                {
                    var half = v.AbType == CublasLt.CUDA_R_16F;
                    Fill(a, half ? 1 : 0, 4);
                    Fill(b, half ? 1 : 0, 5);
                    Fill(bias, v.BiasType == CublasLt.CUDA_R_16F ? 1 : 2, 6);
                    Fill(alphas, 2, 7);
                    try
                    {
                        using var desc = CublasLt.MatmulDesc(v.Compute, transA: true, transB: false, v.Scale);
                        if (v.AlphaPerRow)
                        {
                            CublasLt.SetAlphaPerRow(desc);
                        }

                        CublasLt.SetEpilogue(desc, v.Epilogue, v.Epilogue == CublasLt.CUBLASLT_EPILOGUE_DEFAULT ? 0 : bias.Pointer, v.BiasType);
                        using var la = CublasLt.Layout(v.AbType, g.K, g.M, g.K);
                        using var lb = CublasLt.Layout(v.AbType, g.K, g.N, g.K);
                        using var ld = CublasLt.Layout(v.DType, g.M, g.N, g.M);
                        var candidates = CublasLt.Algorithms(handle, desc, la, lb, ld, ld, WorkspaceBytes, 4);
                        var scale = v.DType == CublasLt.CUDA_R_8I ? 1f / (g.K * 16) : 1f;
                        var (best, failure) = BestOf(Enumerable.Range(0, candidates.Length).ToList(), i =>
                        {
                            *algo = candidates[i];
                            var algoAddress = (IntPtr)algo;
                            return Time(() =>
                            {
                                float alphaF = scale, betaF = 0f;
                                int alphaI = 1, betaI = 0;
                                void* alpha = v.AlphaPerRow ? (void*)alphas.Pointer : v.Scale == CublasLt.CUDA_R_32I ? &alphaI : &alphaF;
                                void* beta = v.Scale == CublasLt.CUDA_R_32I ? &betaI : &betaF;
                                CublasLt.MatmulScaled(handle, desc, alpha, a.Pointer, la, b.Pointer, lb, beta, d.Pointer, ld, d.Pointer, ld, (CublasLt.HeuristicResult*)algoAddress, workspace.Pointer, WorkspaceBytes, stream.Handle);
                            });
                        });
                        rows.Add(best is { } r
                            ? new Row(g.Name, g.Batch, v.Name, $"heuristic #{r.Candidate}", r.Seconds, null, ops)
                            : new Row(g.Name, g.Batch, v.Name, "", null, "unsupported: " + (failure ?? "cublasLtMatmulAlgoGetHeuristic returned no algorithm"), ops));
                    }
                    catch (CudaException e)
                    {
                        rows.Add(new Row(g.Name, g.Batch, v.Name, "", null, "unsupported: " + e.Message, ops));
                    }
                }
            }
            finally
            {
                System.Runtime.InteropServices.NativeMemory.Free(algo);
            }

            return rows;
        }

        /// <summary>The fastest candidate that runs, or the first failure when none does.</summary>
        private static ((T Candidate, double Seconds)? Best, string? Failure) BestOf<T>(List<T> candidates, Func<T, double> time)
        {
            (T, double)? best = null;
            string? failure = null;
            foreach (var c in candidates)
            {
                try
                {
                    var seconds = time(c);
                    if (best is not { } b || seconds < b.Item2)
                    {
                        best = (c, seconds);
                    }
                }
                catch (CudaException e)
                {
                    failure ??= e.Message;
                }
            }

            return (best, failure);
        }

        private static long RoundUp(long bytes) => (bytes + 255) / 256 * 256;
    }
}
