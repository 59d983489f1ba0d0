using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>Sets <see cref="Int8Layers.Switch"/> for a scope (the int8 path is off by default) and restores it.</summary>
internal sealed class Int8Switch : IDisposable
{
    private readonly string? _previous = Environment.GetEnvironmentVariable(Int8Layers.Switch);

    private Int8Switch(string value) => Environment.SetEnvironmentVariable(Int8Layers.Switch, value);

    /// <summary>The int8 path on (or off) until disposed.</summary>
    public static Int8Switch Set(bool on) => new(on ? "on" : "off");

    public void Dispose() => Environment.SetEnvironmentVariable(Int8Layers.Switch, _previous);
}
