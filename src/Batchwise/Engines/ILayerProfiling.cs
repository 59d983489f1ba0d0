namespace Batchwise.Engines;

/// <summary>
/// An optional capability of an <see cref="IPreparedRun"/>: time each layer on its own. `bench --profile` checks for it;
/// engines without it have no per-layer profile.
/// </summary>
public interface ILayerProfiling
{
    /// <summary>Runs <paramref name="runs"/> times layer by layer (no graph replay) and returns each layer's mean time, in execution order.</summary>
    IReadOnlyList<LayerTime> ProfileLayers(int runs);
}

/// <summary>The time of one layer (an ONNX node, with whatever the engine fused into it).</summary>
/// <param name="Layer">The node: op type and name.</param>
/// <param name="Milliseconds">Mean time per run.</param>
public sealed record LayerTime(string Layer, double Milliseconds);
