using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Benchmarking;

/// <summary>Per-layer times of one batch size, with the total of the layer-by-layer run.</summary>
/// <param name="BatchSize">The batch size profiled.</param>
/// <param name="Runs">Runs averaged.</param>
/// <param name="Layers">Every layer's mean time, in execution order.</param>
public sealed record LayerProfile(int BatchSize, int Runs, IReadOnlyList<LayerTime> Layers)
{
    /// <summary>
    /// The median time of the same prepared run as it runs when not profiled (the cuda engine: its CUDA graph replayed),
    /// in milliseconds; null where not measured. Layer by layer, each layer also holds the events between layers and the
    /// launch overlap a graph has (session 38's H100: ResNet-50 fp16 at b=1, 56 layers summing to 0.473 ms against 0.317
    /// ms for the run), so at small batches the layers' total exceeds this.
    /// </summary>
    public double? WholeRunMilliseconds { get; init; }

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

            var layers = profiling.ProfileLayers(runs);
            var whole = new List<double>(runs);
            for (var i = -3; i < runs; i++)
            {
                var seconds = run.Run();
                if (i >= 0)
                {
                    whole.Add(seconds * 1000);
                }
            }

            whole.Sort();
            profiles.Add(new LayerProfile(batch, runs, layers) { WholeRunMilliseconds = whole[whole.Count / 2] });
        }

        return profiles;
    }
}
