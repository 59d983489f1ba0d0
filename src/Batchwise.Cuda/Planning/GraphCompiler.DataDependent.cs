using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Data-dependent shapes (NonZero): a plan runs in segments split at each such node. The plan for the input shapes
/// ends with a kernel that counts the node's result; the session reads the count back (a host synchronisation) and
/// runs the rest under a plan built for (input shapes, counts so far), which repeats the first segment's steps and
/// buffers exactly (the compiler is deterministic) and places its own buffers above the first segment's arena, so it
/// resumes on the same arena where the first segment stopped. Values the rest reads are materialised and kept live to
/// the end of the segment that made them.
/// </summary>
internal sealed partial class GraphCompiler
{
    private IReadOnlyList<long> _counts = [];
    private int _countsUsed;
    private int _nodeIndex;
    private int _countBuffer = -1;
    private readonly HashSet<int> _keepAlive = [];
    private readonly List<string> _syncNodes = [];

    /// <summary>True once the plan stops at a count the host must read before the rest can be planned.</summary>
    private bool StoppedAtSync => _countBuffer >= 0;

    /// <summary>
    /// NonZero: on an input known when the plan is built (computed from shapes and constants) it folds on the host;
    /// on a run-time input (or a constant too large to fold) the plan synchronises here: a count kernel, then (when
    /// the count is known) the coordinates at their exact shape.
    /// </summary>
    private void LowerNonZero(OnnxProto.NodeProto node, PlanValue?[] ins)
    {
        var x = ins[0]!;
        if (x.Constant is not null && Operators.HostEvaluator.TryEvaluate(node, _model.Opset, [new ConcreteValue(x.Type, x.Shape, x.Constant)], whenNeeded: true) is { } folded)
        {
            _values[node.Output[0]] = new PlanValue(folded[0].Type, folded[0].Shape, folded[0]);
            return;
        }

        KeepLiveAcrossSync(x);
        _syncNodes.Add(_node);
        var count = NewBuffer(sizeof(long), "count for " + _node, storage: ElementType.Int64);
        Emit(new KernelStep(_node, KernelSource.NonZeroCount(St(x), x.Count), KernelSource.NonZeroBlock, KernelSource.NonZeroBlock, [count.Id, Dev(x)]));
        if (_countsUsed >= _counts.Count)
        {
            _countBuffer = count.Id; // the segment ends here: the host reads the count and plans the rest
            return;
        }

        var nonzero = _counts[_countsUsed++];
        if (nonzero < 0 || nonzero > x.Count)
        {
            throw new BatchwiseException($"a count of {nonzero} non-zero elements is impossible for {x.Count} elements", "This is a bug in the cuda engine's data-dependent planning.");
        }

        var y = Output(node, 0, ElementType.Int64, [x.Shape.Length, nonzero]);
        if (y.Count > 0)
        {
            Emit(new KernelStep(_node, KernelSource.NonZeroIndices(St(x), x.Shape, nonzero), KernelSource.NonZeroBlock, KernelSource.NonZeroBlock, [Dev(y), Dev(x)]));
        }
    }

    /// <summary>
    /// Before a synchronisation: every value a later node or a graph output reads (and <paramref name="input"/>) is
    /// written out and kept live to the end of this segment, so the next segment finds it; copies in another layout
    /// made so far, and attention biases, are forgotten (the next segment makes its own).
    /// </summary>
    private void KeepLiveAcrossSync(PlanValue input)
    {
        var later = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var nodes = _facts.Nodes;
        for (var i = _nodeIndex; i < nodes.Count; i++)
        {
            later.AddRange(nodes[i].Input.Where(n => n.Length > 0 && seen.Add(n)));
        }

        later.AddRange(_model.Graph.Output.Select(o => o.Name).Where(seen.Add));
        foreach (var name in later)
        {
            if (_values.TryGetValue(name, out var v) && v.Constant is null)
            {
                var m = Materialize(v);
                if (m.Buffer >= 0)
                {
                    _keepAlive.Add(m.Buffer);
                }
            }
        }

        if (input.Buffer >= 0)
        {
            _keepAlive.Add(input.Buffer);
        }

        _nchwCopies.Clear();
        _nhwcCopies.Clear();
        _cudnnAttentionBiases.Clear();
    }

    /// <summary>
    /// The arena offsets of a plan: every buffer of a first segment by liveness; for a later segment's plan, the
    /// buffers it shares with <paramref name="parent"/> keep the parent's offsets (checked to be the same buffers made
    /// by the same steps) and its own go above the parent's arena.
    /// </summary>
    private MemoryPlan PlaceBuffers(ExecutionPlan? parent)
    {
        if (StoppedAtSync)
        {
            foreach (var id in _keepAlive)
            {
                _buffers[id].LastStep = Math.Max(_buffers[id].LastStep, _steps.Count);
            }
        }

        var shared = parent?.Buffers.Count ?? 0;
        if (parent is not null)
        {
            var same = _buffers.Count >= shared && _steps.Count >= parent.Steps.Count
                && Enumerable.Range(0, shared).All(i => _buffers[i].Bytes == parent.Buffers[i].Bytes && _buffers[i].IsArena == parent.Buffers[i].IsArena)
                && Enumerable.Range(0, parent.Steps.Count).All(i => _steps[i].Node == parent.Steps[i].Node && _steps[i].GetType() == parent.Steps[i].GetType());
            if (!same)
            {
                throw new InvalidOperationException("the plan after a data-dependent node does not repeat the steps before it");
            }
        }

        var own = _buffers.Skip(shared).Where(b => b.IsArena).ToList();
        foreach (var b in own.Where(b => b.LastStep < 0))
        {
            b.FirstStep = b.LastStep = 0; // never touched (an unused input): still give it room
        }

        var placed = MemoryPlan.Build(own.Select(b => new BufferLifetime(b.Bytes, b.FirstStep, b.LastStep)).ToList());
        var below = parent?.Memory.ArenaBytes ?? 0;
        for (var i = 0; i < own.Count; i++)
        {
            own[i].Offset = below + placed.Offsets[i];
        }

        var arena = _buffers.Where(b => b.IsArena).ToList();
        for (var i = 0; i < shared; i++)
        {
            _buffers[i].Offset = parent!.Buffers[i].Offset;
        }

        return MemoryPlan.Placed([.. arena.Select(b => b.Offset)], below + placed.ArenaBytes, (parent?.Memory.UnsharedBytes ?? 0) + placed.UnsharedBytes);
    }
}
