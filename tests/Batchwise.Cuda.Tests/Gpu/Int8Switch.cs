using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// Sets <see cref="Int8Layers.Switch"/> (the int8 path is off by default) and <see cref="Int8Layers.GraphSwitch"/> (cuDNN's
/// graph API for int8 convolutions, on by default) for a scope and restores them.
/// </summary>
internal sealed class Int8Switch : IDisposable
{
    private readonly string? _previous = Environment.GetEnvironmentVariable(Int8Layers.Switch);
    private readonly string? _previousGraph = Environment.GetEnvironmentVariable(Int8Layers.GraphSwitch);

    private Int8Switch(string value, string graph)
    {
        Environment.SetEnvironmentVariable(Int8Layers.Switch, value);
        Environment.SetEnvironmentVariable(Int8Layers.GraphSwitch, graph);
    }

    /// <summary>The int8 path on (or off) until disposed, with <see cref="Int8Layers.GraphSwitch"/> set to <paramref name="graph"/> (on, off or pad).</summary>
    public static Int8Switch Set(bool on, string graph = "on") => new(on ? "on" : "off", graph);

    public void Dispose()
    {
        Environment.SetEnvironmentVariable(Int8Layers.Switch, _previous);
        Environment.SetEnvironmentVariable(Int8Layers.GraphSwitch, _previousGraph);
    }
}
