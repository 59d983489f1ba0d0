using System.Diagnostics;
using Batchwise.Cuda.Interop;
using Batchwise.Engines;

namespace Batchwise.Cuda.Planning;

/// <summary>One convolution a saved engine chose an algorithm for: its exact key, its shapes and the choice.</summary>
internal sealed record WarmProblem(string Key, ConvShapeKey Shape, TacticChoice Choice)
{
    public bool Half => Shape.Precision.StartsWith("fp16", StringComparison.Ordinal);

    public bool Nhwc => Shape.Precision.StartsWith("fp16-nhwc", StringComparison.Ordinal);

    /// <summary>Bias and ReLU fused into cuDNN's call (cudnnConvolutionBiasActivationForward).</summary>
    public bool Fused => Shape.Precision.Contains("+bias-relu", StringComparison.Ordinal);

    private int ElementBytes => Half ? 2 : 4;

    /// <summary>Scratch for one call: input, filter, output, bias (float-sized) and workspace, each 256-byte aligned.</summary>
    public long ScratchBytes => Align(Count(Shape.X) * ElementBytes) + Align(Count(Shape.W) * ElementBytes) + Align(Count(Shape.Y) * ElementBytes) + Align(Shape.W[0] * 4) + Align(Choice.WorkspaceBytes);

    /// <summary>What makes two problems likely to run the same kernels: everything but the batch and the image size.</summary>
    public string Kind => string.Join('|', Shape.Precision, Shape.X[1], string.Join('x', Shape.W), string.Join('x', Shape.Pads), string.Join('x', Shape.Strides), string.Join('x', Shape.Dilations), Shape.Groups, Choice.Algo, Choice.MathType);

    internal static long Count(long[] shape) => shape.Aggregate(1L, (a, d) => a * d);

    internal static long Align(long bytes) => (bytes + 255) / 256 * 256;
}

/// <summary>
/// cuDNN's first calls, made early. cuDNN loads each kernel lazily on its first call (ResNet-50's took 170-210 ms of a
/// 0.5-0.6 s cold start on an H200, mostly serial inside the driver, after the first plan was built). A saved engine
/// holds the algorithm of every convolution its plans call, so as soon as the device context exists each kind of
/// convolution (at its smallest batch and image size) is called once on scratch buffers, on threads, streams and
/// handles of its own, while the session loads and its first plan builds; the first run waits for what is left of it
/// and finds the kernels loaded. Nothing it writes is read by a plan. A failure is kept (<see cref="Failure"/>): the
/// first run then makes those calls itself, as without a saved engine.
/// </summary>
internal sealed class ConvWarmUp
{
    /// <summary>Scratch all threads together may take; problems that need more are left to the first run.</summary>
    internal const long ScratchLimit = 256L << 20;

    private readonly Task _done;
    private readonly HashSet<string> _called = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private string? _failure;

    private ConvWarmUp(IReadOnlyList<WarmProblem> problems, IntPtr context, int threads, StartupSpans spans)
    {
        Problems = problems;
        var started = Stopwatch.GetTimestamp();
        var workers = Enumerable.Range(0, threads).Select(t => Task.Factory.StartNew(() => Work(context, t, threads), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default));
        _done = Task.WhenAll(workers).ContinueWith(_ => spans.AddOnce("load_conv_warm", Stopwatch.GetElapsedTime(started).TotalSeconds), TaskScheduler.Default);
    }

    /// <summary>The problems it calls.</summary>
    public IReadOnlyList<WarmProblem> Problems { get; }

    /// <summary>Why a call (or a thread's set-up) failed, the first such reason; null while none did.</summary>
    public string? Failure
    {
        get
        {
            lock (_lock)
            {
                return _failure;
            }
        }
    }

    /// <summary>
    /// Starts the warm-up of <paramref name="choices"/>'s convolutions on <paramref name="threads"/> threads in the
    /// current CUDA context; null where there is nothing to call or fewer than two threads are allowed
    /// (BATCHWISE_CONV_WARM_THREADS 0 or 1 turns every warm-up off).
    /// </summary>
    public static ConvWarmUp? Start(IReadOnlyDictionary<string, byte[]> choices, int threads, StartupSpans spans)
    {
        var problems = Select(choices);
        threads = Math.Min(threads, problems.Count);
        if (threads < 2)
        {
            return null;
        }

        var perThread = ScratchLimit / threads;
        problems = [.. problems.Where(p => p.ScratchBytes <= perThread)];
        return problems.Count == 0 ? null : new ConvWarmUp(problems, CudaDriver.CurrentContext(), Math.Min(threads, problems.Count), spans);
    }

    /// <summary>
    /// The problems to call: every exact convolution choice (heuristic or timed), one per <see cref="WarmProblem.Kind"/>
    /// (its smallest input), largest filters first (they spread over the threads evenly).
    /// </summary>
    internal static List<WarmProblem> Select(IReadOnlyDictionary<string, byte[]> choices)
    {
        var all = new List<WarmProblem>();
        foreach (var (key, value) in choices)
        {
            var text = key.StartsWith(GraphCompiler.ExactHeuristicChoice, StringComparison.Ordinal) ? key[GraphCompiler.ExactHeuristicChoice.Length..]
                : key.StartsWith(GraphCompiler.ExactTimedChoice, StringComparison.Ordinal) ? key[GraphCompiler.ExactTimedChoice.Length..]
                : null;
            if (text is not null && ConvShapeKey.Parse(text) is { } shape && GraphCompiler.Decode(value) is { } choice
                && shape.Precision.Split('+')[0] is "fp16-nhwc" or "fp16" or "fp32" && shape.X.Length == shape.W.Length && shape.X.Length is 4 or 5 && shape.W[0] > 0)
            {
                all.Add(new WarmProblem(key, shape, choice));
            }
        }

        return [.. all.GroupBy(p => p.Kind, StringComparer.Ordinal)
            .Select(g => g.OrderBy(p => WarmProblem.Count(p.Shape.X)).ThenBy(p => p.Key, StringComparer.Ordinal).First())
            .OrderByDescending(p => WarmProblem.Count(p.Shape.W)).ThenBy(p => p.Key, StringComparer.Ordinal)];
    }

    /// <summary>True when the problem of this exact choice key was called (its kernels are loaded).</summary>
    public bool Called(string? key)
    {
        lock (_lock)
        {
            return key is not null && _called.Contains(key);
        }
    }

    /// <summary>Waits until every thread is done; returns the seconds waited.</summary>
    public double Wait()
    {
        var started = Stopwatch.GetTimestamp();
        _done.GetAwaiter().GetResult(); // the workers catch their own errors
        return Stopwatch.GetElapsedTime(started).TotalSeconds;
    }

    private void Work(IntPtr context, int thread, int threads)
    {
        try
        {
            CudaDriver.SetCurrent(context);
            var mine = Problems.Where((_, i) => i % threads == thread).ToList();
            var bytes = mine.Max(p => p.ScratchBytes);
            using var stream = CudaDriver.CreateStream();
            using var handle = Cudnn.Create(stream);
            using var scratch = CudaDriver.Allocate(bytes);
            CudaDriver.MemsetD8(scratch.Pointer, 0, bytes, stream.Handle); // finite inputs (nothing reads the outputs)
            foreach (var p in mine)
            {
                try
                {
                    Call(p, handle, scratch.Pointer);
                    lock (_lock)
                    {
                        _called.Add(p.Key);
                    }
                }
                catch (BatchwiseException e)
                {
                    Fail($"{p.Key}: {e.Message}");
                }
            }

            CudaDriver.Synchronize(stream);
        }
        catch (Exception e) when (e is BatchwiseException or DllNotFoundException or EntryPointNotFoundException or OutOfMemoryException)
        {
            Fail(e.Message); // what this thread did not call, the first run calls itself
        }
    }

    private void Fail(string why)
    {
        lock (_lock)
        {
            _failure ??= why;
        }
    }

    /// <summary>The call a plan's <see cref="ConvStep"/> makes for this problem, on scratch: input, filter, output, bias, workspace in that order.</summary>
    private static void Call(WarmProblem p, CudnnHandle handle, ulong scratch)
    {
        var s = p.Shape;
        var dataType = p.Half ? Cudnn.CUDNN_DATA_HALF : Cudnn.CUDNN_DATA_FLOAT;
        var format = p.Nhwc ? Cudnn.CUDNN_TENSOR_NHWC : Cudnn.CUDNN_TENSOR_NCHW;
        var elementBytes = p.Half ? 2 : 4;
        var x = scratch;
        var w = x + (ulong)WarmProblem.Align(WarmProblem.Count(s.X) * elementBytes);
        var y = w + (ulong)WarmProblem.Align(WarmProblem.Count(s.W) * elementBytes);
        var bias = y + (ulong)WarmProblem.Align(WarmProblem.Count(s.Y) * elementBytes);
        var workspace = bias + (ulong)WarmProblem.Align(s.W[0] * 4);
        using var xDesc = Cudnn.Tensor(dataType, s.X, format);
        using var wDesc = Cudnn.Filter(dataType, s.W, format);
        using var yDesc = Cudnn.Tensor(dataType, s.Y, format);
        using var convDesc = Cudnn.Convolution(s.Pads, s.Strides, s.Dilations, s.Groups, p.Choice.MathType);
        var wsBytes = p.Choice.WorkspaceBytes;
        if (!p.Fused)
        {
            Cudnn.ConvolutionForward(handle, xDesc, x, wDesc, w, convDesc, p.Choice.Algo, wsBytes > 0 ? workspace : 0, wsBytes, 0f, yDesc, y);
            return;
        }

        long[] biasShape = [1, s.W[0], .. Enumerable.Repeat(1L, s.X.Length - 2)];
        using var biasDesc = Cudnn.Tensor(dataType, biasShape);
        using var activation = Cudnn.Activation(Cudnn.CUDNN_ACTIVATION_RELU);
        Cudnn.ConvolutionBiasActivationForward(handle, xDesc, x, wDesc, w, convDesc, p.Choice.Algo, wsBytes > 0 ? workspace : 0, wsBytes, 0f, yDesc, y, biasDesc, bias, activation, yDesc, y);
    }
}
