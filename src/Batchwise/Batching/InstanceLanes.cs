namespace Batchwise.Batching;

/// <summary>
/// Which model instance the next batch goes to when each instance may run up to <see cref="Depth"/> batches at once
/// (<see cref="BatcherOptions.PipelineDepth"/>): an idle instance first (the one freed last, as a stack), and only when
/// none is idle a further lane of the busy instance with the fewest batches in flight. With depth 1 this is the stack of
/// idle instances alone. Not thread-safe: its owner locks it.
/// </summary>
internal sealed class InstanceLanes
{
    private readonly Stack<int> _idle = new();
    private readonly int[] _inFlight;

    /// <summary>Every instance idle; instance 0 is taken first.</summary>
    public InstanceLanes(int instances, int depth)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(instances, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        Depth = depth;
        _inFlight = new int[instances];
        for (var i = instances - 1; i >= 0; i--)
        {
            _idle.Push(i);
        }
    }

    /// <summary>Most batches one instance runs at once.</summary>
    public int Depth { get; }

    /// <summary>Batches in flight on <paramref name="instance"/>.</summary>
    public int InFlight(int instance) => _inFlight[instance];

    /// <summary>Takes a lane: of an idle instance if there is one, else of the least busy instance below the depth.</summary>
    public bool TryTake(out int instance)
    {
        if (!_idle.TryPop(out instance))
        {
            instance = -1;
            for (var i = 0; i < _inFlight.Length; i++)
            {
                if (_inFlight[i] < Depth && (instance < 0 || _inFlight[i] < _inFlight[instance]))
                {
                    instance = i;
                }
            }

            if (instance < 0)
            {
                return false;
            }
        }

        _inFlight[instance]++;
        return true;
    }

    /// <summary>Gives back a lane of <paramref name="instance"/> taken with <see cref="TryTake"/>.</summary>
    public void Return(int instance)
    {
        if (_inFlight[instance] <= 0)
        {
            throw new InvalidOperationException($"Instance {instance} has no batch in flight to return");
        }

        if (--_inFlight[instance] == 0)
        {
            _idle.Push(instance);
        }
    }
}
