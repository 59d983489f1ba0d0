using System.Diagnostics;

namespace Batchwise.Engines;

/// <summary>
/// Where a cold start's time went: named spans in seconds, in the order they began (reading the file, CUDA's context,
/// library handles, the first plan's stages, the first run). Each name is kept once (the first time it is measured);
/// a name measured again adds to it when <see cref="Add"/> is asked to. Safe to use from several threads.
/// </summary>
public sealed class StartupSpans
{
    private readonly List<KeyValuePair<string, double>> _spans = [];
    private readonly Lock _lock = new();

    /// <summary>Records <paramref name="seconds"/> under <paramref name="name"/>, adding to it where it is already there.</summary>
    public void Add(string name, double seconds)
    {
        lock (_lock)
        {
            var i = _spans.FindIndex(p => p.Key == name);
            if (i < 0)
            {
                _spans.Add(new(name, seconds));
            }
            else
            {
                _spans[i] = new(name, _spans[i].Value + seconds);
            }
        }
    }

    /// <summary>Records <paramref name="seconds"/> under <paramref name="name"/> unless a span of that name is there already.</summary>
    public void AddOnce(string name, double seconds)
    {
        lock (_lock)
        {
            if (_spans.FindIndex(p => p.Key == name) < 0)
            {
                _spans.Add(new(name, seconds));
            }
        }
    }

    /// <summary>True when a span of that name was recorded.</summary>
    public bool Has(string name)
    {
        lock (_lock)
        {
            return _spans.Exists(p => p.Key == name);
        }
    }

    /// <summary>Runs <paramref name="work"/> and adds its wall time to span <paramref name="name"/>.</summary>
    public T Measure<T>(string name, Func<T> work)
    {
        ArgumentNullException.ThrowIfNull(work);
        var started = Stopwatch.GetTimestamp();
        try
        {
            return work();
        }
        finally
        {
            Add(name, Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    /// <summary>Runs <paramref name="work"/> and adds its wall time to span <paramref name="name"/>.</summary>
    public void Measure(string name, Action work)
    {
        ArgumentNullException.ThrowIfNull(work);
        var started = Stopwatch.GetTimestamp();
        try
        {
            work();
        }
        finally
        {
            Add(name, Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    /// <summary>The spans so far, in the order they began (seconds by name).</summary>
    public IReadOnlyDictionary<string, double> Snapshot()
    {
        lock (_lock)
        {
            var copy = new Dictionary<string, double>(_spans.Count, StringComparer.Ordinal);
            foreach (var (k, v) in _spans)
            {
                copy[k] = v;
            }

            return copy;
        }
    }
}
