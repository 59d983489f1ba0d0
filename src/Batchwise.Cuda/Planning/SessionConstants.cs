using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Values a session derives from its constants (BN-folded and reordered filters, folded nodes, views of weights), each
/// made once: the key is the recipe and the identity of the source tensors, which the session keeps for its whole life.
/// Every session constant also has a name that a new process can find again (an initializer's name; a derived value's
/// recipe over its sources' names), so that a saved engine (<see cref="SavedConstants"/>) can carry the device-ready
/// bytes of each: a session loaded from one then hands out deferred values (type and shape known, values made only if
/// something on the host reads them, by the same recipe) and uploads the saved bytes, doing no weight work at all.
/// </summary>
internal sealed class SessionConstants
{
    private readonly ConcurrentDictionary<Key, object> _values = new();
    private readonly ConcurrentDictionary<HostTensor, string> _names = new(ReferenceEqualityComparer.Instance);
    private readonly ConcurrentDictionary<string, SavedDerivation> _derivations = new(StringComparer.Ordinal);
    private SavedConstants? _saved;
    private long _weightTicks;
    private int _reused;
    private int _made;

    [ThreadStatic]
    private static int t_depth;

    /// <summary>Values made so far.</summary>
    public int Count => _values.Count;

    /// <summary>
    /// Seconds of host work on weights so far (decoding, folding, reordering, converting to the stored type), the
    /// outermost measured call only: a build reports it apart from the graph work.
    /// </summary>
    public double WeightSeconds => Interlocked.Read(ref _weightTicks) / (double)System.Diagnostics.Stopwatch.Frequency;

    /// <summary>Derived values given by a saved engine and not made here (their values deferred).</summary>
    public int Reused => _reused;

    /// <summary>Derived values made here (their recipe ran).</summary>
    public int Made => _made;

    /// <summary>Every derived value's form (how many tensors, each one's type and shape) by name, for a saved engine.</summary>
    public IReadOnlyDictionary<string, SavedDerivation> Derivations => _derivations;

    /// <summary>
    /// The model's initializers as session constants, decoded in parallel (a ResNet-50 holds 25 M values: part of every
    /// cold start); with <paramref name="defer"/> (a saved engine carries the processed, device-ready weights) float
    /// weights are not decoded at all unless a plan reads one on the host.
    /// </summary>
    public Dictionary<string, HostTensor> AddInitializers(IList<OnnxProto.TensorProto> initializers, bool defer)
    {
        var decoded = new HostTensor[initializers.Count];
        Parallel.For(0, decoded.Length, i =>
        {
            var p = initializers[i];
            var type = (ElementType)p.DataType;
            // A saved engine's model may declare large float weights by type and shape only (their device-ready form
            // is saved): deferred too, and read only if a plan needs their values on the host (then refused in one line).
            if (defer && Enum.IsDefined(type) && type.IsFloatingPoint() && (HostTensor.HasValues(p) || Engines.SavedEngineFile.IsLeftOut(p)))
            {
                decoded[i] = HostTensor.Deferred(type, [.. p.Dims], () => MeasureWeightWork(() => HostTensor.FromProto(p).Floats!));
                return;
            }

            var h = HostTensor.FromProto(p);
            decoded[i] = new HostTensor(h.Type, h.Shape, h.Ints, h.Floats);
        });
        var byName = new Dictionary<string, HostTensor>(decoded.Length, StringComparer.Ordinal);
        for (var i = 0; i < decoded.Length; i++)
        {
            byName[initializers[i].Name] = decoded[i];
            decoded[i].IsInitializer = true;
            _names[decoded[i]] = "init:" + initializers[i].Name;
        }

        return byName;
    }

    /// <summary>The name a session constant is found by in a saved engine, or null (not a session constant).</summary>
    public string? NameOf(HostTensor value) => _names.TryGetValue(value, out var name) ? name : null;

    /// <summary>Takes a saved engine's derived values and device bytes: later derivations of the same name are deferred.</summary>
    public void Load(SavedConstants saved) => _saved = saved;

    /// <summary>The device bytes a saved engine holds for <paramref name="value"/> stored as <paramref name="storage"/>, or null.</summary>
    public ReadOnlyMemory<byte>? SavedBytes(HostTensor value, ElementType storage) =>
        _saved is { } saved && NameOf(value) is { } name ? saved.Bytes(name, storage, value.Count * storage.SizeOf()) : null;

    /// <summary>Runs host work on weights, counting its time once (nested work is inside the outer call's time).</summary>
    public T MeasureWeightWork<T>(Func<T> work)
    {
        if (t_depth > 0)
        {
            return work();
        }

        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        t_depth++;
        try
        {
            return work();
        }
        finally
        {
            t_depth--;
            Interlocked.Add(ref _weightTicks, System.Diagnostics.Stopwatch.GetTimestamp() - started);
        }
    }

    /// <summary>
    /// The value of <paramref name="recipe"/> over <paramref name="sources"/>, made by <paramref name="make"/> the first
    /// time; only when every source is session-owned (<see cref="HostTensor.IsInitializer"/>), else made afresh.
    /// Host tensors in the result become session-owned too. Where a saved engine has this value, it is deferred instead:
    /// <paramref name="make"/> runs only when something reads its values.
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
            var names = sources.Select(s => s is null ? "-" : NameOf(s)).ToArray();
            var name = names.Any(n => n is null) ? null : recipe + "(" + string.Join(",", names) + ")";
            object value;
            if (name is not null && _saved?.Derivation(name) is { } saved && Defer(name, saved, make) is { } deferred)
            {
                value = deferred;
                Interlocked.Increment(ref _reused);
            }
            else
            {
                value = MeasureWeightWork(make);
                Interlocked.Increment(ref _made);
            }

            switch (value)
            {
                case HostTensor t:
                    t.IsInitializer = true;
                    if (name is not null)
                    {
                        _names[t] = name;
                        _derivations[name] = new SavedDerivation(false, [SavedForm.Of(t)]);
                    }

                    break;
                case HostTensor[] ts:
                    for (var i = 0; i < ts.Length; i++)
                    {
                        ts[i].IsInitializer = true;
                        if (name is not null)
                        {
                            _names[ts[i]] = name + "#" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
                        }
                    }

                    if (name is not null)
                    {
                        _derivations[name] = new SavedDerivation(true, [.. ts.Select(SavedForm.Of)]);
                    }

                    break;
            }

            return value;
        });
    }

    /// <summary>
    /// The deferred form of a saved derivation: tensors of the saved types and shapes whose values <paramref name="make"/>
    /// gives when first read (checked against the saved form); null where it cannot be deferred (integer values, which
    /// are small and made at once, or a result type other than tensors).
    /// </summary>
    private object? Defer<T>(string name, SavedDerivation saved, Func<T> make)
        where T : class
    {
        if (saved.Values.Any(v => !v.ElementType.IsFloatingPoint()))
        {
            return null;
        }

        if (saved.Many && typeof(T) == typeof(HostTensor[]))
        {
            var made = new Lazy<HostTensor[]>(() => MeasureWeightWork(() => Check(name, saved, (HostTensor[])(object)make())), LazyThreadSafetyMode.ExecutionAndPublication);
            return saved.Values.Select((v, i) => HostTensor.Deferred(v.ElementType, v.Shape, () => made.Value[i].Floats!)).ToArray();
        }

        if (!saved.Many && typeof(T) == typeof(HostTensor))
        {
            var v = saved.Values.Single();
            return HostTensor.Deferred(v.ElementType, v.Shape, () => MeasureWeightWork(() => Check(name, saved, [(HostTensor)(object)make()])[0].Floats!));
        }

        return null;
    }

    private static HostTensor[] Check(string name, SavedDerivation saved, HostTensor[] made)
    {
        if (made.Length != saved.Values.Length || made.Zip(saved.Values).Any(p => p.First.Type != p.Second.ElementType || !p.First.Shape.SequenceEqual(p.Second.Shape)))
        {
            throw new BatchwiseException($"The saved engine's constant '{name}' is not what this model gives ({string.Join(", ", saved.Values.Select(v => v.ElementType.ShortName() + Engines.Tensor.ShapeText(v.Shape)))} saved, {string.Join(", ", made.Select(t => t.ToString()))} made)", "Rebuild the saved engine with `batchwise build`.");
        }

        return made;
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
