using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Values a session derives from its constants (BN-folded and reordered filters, folded nodes), each made once: the
/// key is the recipe and the identity of the source tensors, which the session keeps for its whole life.
/// </summary>
internal sealed class SessionConstants
{
    private readonly ConcurrentDictionary<Key, object> _values = new();

    /// <summary>Values made so far.</summary>
    public int Count => _values.Count;

    /// <summary>
    /// The value of <paramref name="recipe"/> over <paramref name="sources"/>, made by <paramref name="make"/> the first
    /// time; only when every source is session-owned (<see cref="HostTensor.IsInitializer"/>), else made afresh.
    /// Host tensors in the result become session-owned too.
    /// </summary>
    public T Derive<T>(string recipe, IReadOnlyList<HostTensor?> sources, Func<T> make)
        where T : class
    {
        if (sources.Any(s => s is { IsInitializer: false }))
        {
            return make();
        }

        return (T)_values.GetOrAdd(new Key(recipe, [.. sources]), _ =>
        {
            var value = make();
            switch (value)
            {
                case HostTensor t:
                    t.IsInitializer = true;
                    break;
                case HostTensor[] ts:
                    foreach (var t in ts)
                    {
                        t.IsInitializer = true;
                    }

                    break;
            }

            return value;
        });
    }

    private sealed class Key(string recipe, HostTensor?[] sources) : IEquatable<Key>
    {
        private readonly string _recipe = recipe;
        private readonly HostTensor?[] _sources = sources;

        public bool Equals(Key? other) =>
            other is not null && other._recipe == _recipe && other._sources.Length == _sources.Length
            && _sources.Zip(other._sources).All(p => ReferenceEquals(p.First, p.Second));

        public override bool Equals(object? obj) => Equals(obj as Key);

        public override int GetHashCode()
        {
            var h = new HashCode();
            h.Add(_recipe);
            foreach (var s in _sources)
            {
                h.Add(s is null ? 0 : RuntimeHelpers.GetHashCode(s));
            }

            return h.ToHashCode();
        }
    }
}

/// <summary>
/// Library choices by problem (a cuDNN convolution's algorithm and math type, a cuBLASLt product's algorithm), kept for
/// a session: heuristics are asked once per shape, and a saved engine carries them to the next process.
/// </summary>
internal sealed class TacticStore
{
    private readonly ConcurrentDictionary<string, byte[]> _choices = new(StringComparer.Ordinal);

    /// <summary>A store that keeps nothing (plans built outside a session, in tests).</summary>
    public static TacticStore None { get; } = new() { Disabled = true };

    private bool Disabled { get; init; }

    /// <summary>Choices made or loaded so far.</summary>
    public int Count => _choices.Count;

    /// <summary>Looked up and found.</summary>
    public int Hits => _hits;

    private int _hits;

    /// <summary>The stored choice for a problem, as the bytes it was stored as.</summary>
    public bool TryGet(string key, out byte[] choice)
    {
        if (!Disabled && _choices.TryGetValue(key, out choice!))
        {
            Interlocked.Increment(ref _hits);
            return true;
        }

        choice = [];
        return false;
    }

    public void Set(string key, byte[] choice)
    {
        if (!Disabled)
        {
            _choices[key] = choice;
        }
    }

    /// <summary>Everything stored, for a saved engine.</summary>
    public IReadOnlyDictionary<string, byte[]> Snapshot() => new Dictionary<string, byte[]>(_choices, StringComparer.Ordinal);

    /// <summary>Adds choices read from a saved engine.</summary>
    public void Load(IReadOnlyDictionary<string, byte[]> choices)
    {
        foreach (var (k, v) in choices)
        {
            _choices[k] = v;
        }
    }
}
