namespace Batchwise.Engines;

/// <summary>The engines a host knows by name; the CLI and server register what they ship.</summary>
public static class EngineRegistry
{
    private static readonly Dictionary<string, Func<IEngine>> Factories = new(StringComparer.OrdinalIgnoreCase)
    {
        ["ort"] = () => new OrtEngine(),
    };

    /// <summary>Names of the registered engines.</summary>
    public static IReadOnlyCollection<string> Names
    {
        get
        {
            lock (Factories)
            {
                return Factories.Keys.ToList();
            }
        }
    }

    /// <summary>Registers (or replaces) an engine factory.</summary>
    public static void Register(string name, Func<IEngine> factory)
    {
        lock (Factories)
        {
            Factories[name] = factory;
        }
    }

    /// <summary>Creates an engine by name, or explains which names exist.</summary>
    public static IEngine Create(string name)
    {
        Func<IEngine>? factory;
        lock (Factories)
        {
            Factories.TryGetValue(name, out factory);
        }

        return factory?.Invoke() ?? throw new BatchwiseException($"Unknown engine '{name}'", $"Use one of: {string.Join(", ", Names)}.");
    }
}
