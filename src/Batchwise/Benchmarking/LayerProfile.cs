using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Benchmarking;

/// <summary>Per-layer times of one batch size, with the total of the layer-by-layer run.</summary>
/// <param name="BatchSize">The batch size profiled.</param>
/// <param name="Runs">Runs averaged.</param>
/// <param name="Layers">Every layer's mean time, in execution order.</param>
public sealed record LayerProfile(int BatchSize, int Runs, IReadOnlyList<LayerTime> Layers)
{
    /// <summary>Sum of the layers' times, in milliseconds.</summary>
    public double TotalMilliseconds => Layers.Sum(l => l.Milliseconds);

    /// <summary>The slowest layers, slowest first, with their share of the total.</summary>
    public IReadOnlyList<(LayerTime Layer, double Share)> Top(int count)
    {
        var total = TotalMilliseconds;
        return Layers.OrderByDescending(l => l.Milliseconds).Take(count).Select(l => (l, total > 0 ? l.Milliseconds / total : 0)).ToList();
    }

    /// <summary>
    /// Loads the model on the engine, binds generated inputs of each batch size and times every layer; throws a
    /// <see cref="BatchwiseException"/> when the engine cannot profile layers.
    /// </summary>
    public static IReadOnlyList<LayerProfile> Measure(IEngine engine, EngineOptions engineOptions, OnnxModel model, BenchmarkOptions options, IReadOnlyList<int> batchSizes, int runs = 20)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(batchSizes);
        var axis = model.FindBatchAxis();
        var generator = new InputGenerator(model, options.Seed, options.Data);
        using var session = engine.Load(model, engineOptions);
        var profiles = new List<LayerProfile>();
        foreach (var batch in batchSizes)
        {
            var inputs = generator.Generate(options.Shapes.Resolve(model.Inputs, axis, batch));
            using var run = session.Prepare(inputs);
            if (run is not ILayerProfiling profiling)
            {
                throw new BatchwiseException($"--profile: engine '{engine.Name}' has no per-layer timings", "Drop --profile, or use --engine cuda (per-layer CUDA event timings).");
            }

            profiles.Add(new LayerProfile(batch, runs, profiling.ProfileLayers(runs)));
        }

        return profiles;
    }
}
