using System.Collections.Concurrent;
using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// A few threads, each with its own cuDNN handle and stream (a handle is not safe to share between threads), that answer
/// cudnnGetConvolutionForwardWorkspaceSize for a plan while the plan's lowering goes on. A plan for a new image size
/// reuses its octave's algorithm for each of its convolutions but must confirm it at the exact shape (cuDNN 9's legacy
/// query costs ~0.15-0.2 ms; YOLOv8n has ~64 convolutions: 8-14 ms in sequence). Each query builds its own descriptors
/// from the problem's key, exactly as the plan's own (same shapes, format, math type), so the answer is the one the
/// sequential query gives. Threads and handles are made once per session, on the first query.
/// </summary>
internal sealed class ConvQueryPool : IDisposable
{
    private readonly BlockingCollection<Query> _queue = [];
    private readonly Thread[] _threads;
    private int _disposed;

    private ConvQueryPool(IntPtr context, int threads)
    {
        _threads = [.. Enumerable.Range(0, threads).Select(t => new Thread(() => Work(context)) { IsBackground = true, Name = "batchwise-conv-query-" + t })];
        foreach (var t in _threads)
        {
            t.Start();
        }
    }

    /// <summary>How many threads answer queries.</summary>
    public int Threads => _threads.Length;

    /// <summary>
    /// BATCHWISE_PLAN_THREADS: threads that answer a plan's cuDNN workspace queries beside its lowering (0 or 1: none, the
    /// queries are made in sequence as before); default min(8, cores / 2).
    /// </summary>
    public static int ThreadsFromEnvironment() =>
        Math.Min(64, EnvironmentSetting.Int("BATCHWISE_PLAN_THREADS", Math.Min(8, Environment.ProcessorCount / 2), 0, int.MaxValue, "Unset it (min(8, cores / 2) threads) or set it to 0-64 (0 or 1: no threads, queries in sequence)."));

    /// <summary>A pool of <paramref name="threads"/> threads in <paramref name="context"/>, or null for fewer than two.</summary>
    public static ConvQueryPool? Start(IntPtr context, int threads) => threads < 2 ? null : new ConvQueryPool(context, threads);

    /// <summary>
    /// The workspace cuDNN wants for <paramref name="algo"/> at math type <paramref name="mathType"/> on the problem
    /// <paramref name="shape"/> (the task faults with cuDNN's error where it does not support it there).
    /// </summary>
    public Task<long> WorkspaceSize(ConvShapeKey shape, int algo, int mathType)
    {
        var query = new Query(shape, algo, mathType, new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously));
        try
        {
            if (Volatile.Read(ref _disposed) == 0 && _queue.TryAdd(query))
            {
                return query.Result.Task;
            }
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            // Disposed meanwhile: the plan asks in sequence.
        }

        query.Result.SetException(new ObjectDisposedException(nameof(ConvQueryPool)));

        return query.Result.Task;
    }

    /// <summary>The query on <paramref name="handle"/>: the plan's descriptors for this problem, made afresh.</summary>
    internal static long Ask(CudnnHandle handle, ConvShapeKey s, int algo, int mathType)
    {
        var half = s.Precision.StartsWith("fp16", StringComparison.Ordinal);
        var dataType = half ? Cudnn.CUDNN_DATA_HALF : Cudnn.CUDNN_DATA_FLOAT;
        var format = s.Precision.StartsWith("fp16-nhwc", StringComparison.Ordinal) ? Cudnn.CUDNN_TENSOR_NHWC : Cudnn.CUDNN_TENSOR_NCHW;
        using var xDesc = Cudnn.Tensor(dataType, s.X, format);
        using var wDesc = Cudnn.Filter(dataType, s.W, format);
        using var yDesc = Cudnn.Tensor(dataType, s.Y, format);
        using var convDesc = Cudnn.Convolution(s.Pads, s.Strides, s.Dilations, s.Groups, mathType);
        return Cudnn.WorkspaceSize(handle, xDesc, wDesc, convDesc, yDesc, algo);
    }

    private void Work(IntPtr context)
    {
        CudaStream? stream = null;
        CudnnHandle? handle = null;
        Exception? broken = null;
        try
        {
            try
            {
                CudaDriver.SetCurrent(context);
                stream = CudaDriver.CreateStream();
                handle = Cudnn.Create(stream);
            }
            catch (Exception e)
            {
                broken = e; // whatever the cause, every query this thread takes fails (never hangs): the plan asks those in sequence itself
            }

            foreach (var q in _queue.GetConsumingEnumerable())
            {
                try
                {
                    q.Result.SetResult(broken is null ? Ask(handle!, q.Shape, q.Algo, q.MathType) : throw broken);
                }
                catch (Exception e)
                {
                    q.Result.TrySetException(e);
                }
            }
        }
        finally
        {
            handle?.Dispose();
            stream?.Dispose();
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _queue.CompleteAdding();
        foreach (var t in _threads)
        {
            t.Join();
        }

        _queue.Dispose();
    }

    private sealed record Query(ConvShapeKey Shape, int Algo, int MathType, TaskCompletionSource<long> Result);
}
