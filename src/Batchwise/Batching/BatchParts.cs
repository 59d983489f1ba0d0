using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Batching;

/// <summary>
/// Runs one batch on a model instance given the requests' own inputs, unmerged: the execution concatenates them where
/// it wants them (an engine's page-locked staging buffers, a pooled array), so a batch's bytes are copied once, not
/// merged into a fresh array first and copied again.
/// </summary>
/// <param name="instance">Which instance (0..InstanceCount-1) runs it; up to <see cref="BatcherOptions.PipelineDepth"/> batches per instance at a time (1 by default).</param>
/// <param name="batch">The requests' inputs and the merged shapes.</param>
/// <param name="cancellationToken">Cancelled when the batcher is disposed without draining.</param>
public delegate Task<IReadOnlyList<Tensor>> BatchPartsExecution(int instance, BatchParts batch, CancellationToken cancellationToken);

/// <summary>The requests of one batch, each with its inputs in model order, and what their concatenation along axis 0 is.</summary>
public sealed class BatchParts
{
    /// <summary>A batch copies its inputs on several threads from this many bytes per input on (below it one thread is faster).</summary>
    public const long ParallelCopyBytes = 4L << 20;

    internal BatchParts(IReadOnlyList<IReadOnlyList<Tensor>> requests, int rows, IReadOnlyList<IReadOnlyList<TensorTarget?>?>? outputTargets = null)
    {
        Requests = requests;
        Rows = rows;
        OutputTargets = outputTargets;
        _delivered = outputTargets is null ? null : new bool[requests.Count][];
    }

    private readonly bool[]?[]? _delivered;

    /// <summary>
    /// Per request, per output (model order), where its rows of that output go instead of a managed array (shared memory
    /// the server holds for the request); null when no request of the batch has any. An execution that writes a request's
    /// rows there marks them with <see cref="MarkDelivered"/>; the others are copied there by the server afterwards.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<TensorTarget?>?>? OutputTargets { get; }

    /// <summary>
    /// Each request's output targets as rows of the batch's outputs: a request's rows are its inputs' axis 0 when the
    /// model is <paramref name="batched"/>, else it runs alone and its target takes the whole output (-1 rows).
    /// </summary>
    public IEnumerable<(int Request, OutputRows Rows)> DirectOutputs(bool batched)
    {
        if (OutputTargets is null)
        {
            yield break;
        }

        long first = 0;
        for (var r = 0; r < OutputTargets.Count; r++)
        {
            if (OutputTargets[r] is { } targets)
            {
                for (var o = 0; o < targets.Count; o++)
                {
                    if (targets[o] is { } target)
                    {
                        yield return (r, new OutputRows(o, batched ? first : 0, batched ? Requests[r][0].Shape[0] : -1, target));
                    }
                }
            }

            first += batched && Requests[r][0].Shape.Length > 0 ? Requests[r][0].Shape[0] : 1;
        }
    }

    /// <summary>Records that request <paramref name="request"/>'s rows of output <paramref name="output"/> were written to its target.</summary>
    public void MarkDelivered(int request, int output)
    {
        if (_delivered is null || OutputTargets?[request] is not { } targets)
        {
            throw new InvalidOperationException($"Request {request} of the batch has no output targets");
        }

        (_delivered[request] ??= new bool[targets.Count])[output] = true;
    }

    /// <summary>True when request <paramref name="request"/>'s rows of output <paramref name="output"/> were written to its target.</summary>
    public bool IsDelivered(int request, int output) => _delivered?[request] is { } d && output < d.Length && d[output];

    /// <summary>Each request's inputs, in model order.</summary>
    public IReadOnlyList<IReadOnlyList<Tensor>> Requests { get; }

    /// <summary>Rows of the merged batch: the sum of the requests' axis-0 sizes; without batching (max batch size 0) the batcher counts each request as 1 row.</summary>
    public int Rows { get; }

    /// <summary>Model inputs.</summary>
    public int InputCount => Requests[0].Count;

    /// <summary>The one request's inputs when the batch holds one request (nothing to merge), else null.</summary>
    public IReadOnlyList<Tensor>? Single => Requests.Count == 1 ? Requests[0] : null;

    /// <summary>Input <paramref name="input"/>'s element type.</summary>
    public ElementType TypeOf(int input) => Requests[0][input].ElementType;

    /// <summary>Input <paramref name="input"/>'s merged shape: the requests' shape with <see cref="Rows"/> on axis 0.</summary>
    public long[] Shape(int input)
    {
        var shape = (long[])Requests[0][input].Shape.Clone();
        if (Requests.Count > 1)
        {
            shape[0] = Rows;
        }

        return shape;
    }

    /// <summary>Input <paramref name="input"/>'s merged size in bytes.</summary>
    public long ByteCount(int input)
    {
        long total = 0;
        foreach (var r in Requests)
        {
            total += r[input].ByteCount;
        }

        return total;
    }

    /// <summary>
    /// Concatenates every request's input <paramref name="input"/> into <paramref name="target"/> (exactly
    /// <see cref="ByteCount"/> bytes), on several threads when the batch is large.
    /// </summary>
    public void CopyInput(int input, Memory<byte> target) => CopyInput(input, target, skip: null);

    /// <summary>
    /// <see cref="CopyInput(int, Memory{byte})"/> leaving out the requests whose <paramref name="skip"/> entry is true
    /// (their rows are written some other way, e.g. copied by the engine straight from shared memory).
    /// </summary>
    public void CopyInput(int input, Memory<byte> target, IReadOnlyList<bool>? skip) =>
        CopyInput(input, target, Environment.ProcessorCount < 4 ? 1 : Math.Min(8, Environment.ProcessorCount / 2), skip);

    /// <summary>Each request's byte offset in input <paramref name="input"/>'s concatenation.</summary>
    public long[] Offsets(int input)
    {
        var offsets = new long[Requests.Count];
        for (var i = 1; i < Requests.Count; i++)
        {
            offsets[i] = offsets[i - 1] + Requests[i - 1][input].ByteCount;
        }

        return offsets;
    }

    /// <summary><see cref="CopyInput(int, Memory{byte})"/> on at most <paramref name="threads"/> threads (tests pick it).</summary>
    internal void CopyInput(int input, Memory<byte> target, int threads, IReadOnlyList<bool>? skip = null)
    {
        var total = ByteCount(input);
        if (target.Length != total)
        {
            throw new ArgumentException($"Input {input} of the batch holds {total} bytes; the target holds {target.Length}", nameof(target));
        }

        if (Requests.Count == 1 || total < ParallelCopyBytes || threads < 2)
        {
            var offset = 0;
            for (var i = 0; i < Requests.Count; i++)
            {
                var t = Requests[i][input];
                if (skip is null || !skip[i])
                {
                    CopyOne(t, target.Span.Slice(offset, (int)t.ByteCount));
                }

                offset += (int)t.ByteCount;
            }

            return;
        }

        var offsets = Offsets(input);
        Parallel.For(0, Requests.Count, new ParallelOptions { MaxDegreeOfParallelism = threads }, i =>
        {
            if (skip is null || !skip[i])
            {
                var t = Requests[i][input];
                CopyOne(t, target.Span.Slice((int)offsets[i], (int)t.ByteCount));
            }
        });
    }

    /// <summary>One request's bytes into its place: from its shared memory source when it has one (no managed copy first).</summary>
    private static void CopyOne(Tensor t, Span<byte> target)
    {
        if (t.Source is { } source)
        {
            source.CopyTo(target);
        }
        else
        {
            t.Data.CopyTo(target);
        }
    }

    /// <summary>The merged inputs as new tensors (the requests' own when the batch holds one request).</summary>
    public IReadOnlyList<Tensor> Merge()
    {
        if (Single is { } single)
        {
            return single;
        }

        var merged = new Tensor[InputCount];
        for (var i = 0; i < merged.Length; i++)
        {
            var t = Tensor.Zeros(TypeOf(i), Shape(i));
            CopyInput(i, t.Data);
            merged[i] = t;
        }

        return merged;
    }
}
