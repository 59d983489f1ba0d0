using Batchwise.Zoo;

namespace Batchwise.Server;

/// <summary>The models a server serves, by name: a repository folder (one subfolder per model) or single models.</summary>
public sealed class ModelRepository : IAsyncDisposable
{
    private readonly Dictionary<string, ServedModel> _models = new(StringComparer.Ordinal);

    /// <summary>Creates an empty repository with its metrics.</summary>
    public ModelRepository(ServerMetrics? metrics = null) => Metrics = metrics ?? new ServerMetrics();

    /// <summary>The metrics every model reports to.</summary>
    public ServerMetrics Metrics { get; }

    /// <summary>The models, in load order.</summary>
    public IReadOnlyCollection<ServedModel> Models => _models.Values;

    /// <summary>True when every model is ready.</summary>
    public bool IsReady => _models.Count > 0 && _models.Values.All(m => m.IsReady);

    /// <summary>Loads every subfolder of <paramref name="directory"/> holding a model.onnx (and an optional config.json).</summary>
    public static ModelRepository LoadDirectory(string directory, TimeProvider? time = null)
    {
        if (!Directory.Exists(directory))
        {
            throw new BatchwiseException($"Model repository '{directory}' not found", "Pass a folder with one subfolder per model, each holding model.onnx and optionally config.json.");
        }

        var repository = new ModelRepository();
        try
        {
            foreach (var folder in Directory.GetDirectories(directory).Order(StringComparer.Ordinal))
            {
                var file = Path.Combine(folder, "model.onnx");
                if (!File.Exists(file))
                {
                    continue;
                }

                var configPath = Path.Combine(folder, ModelConfig.FileName);
                var config = File.Exists(configPath) ? ModelConfig.Load(configPath) : new ModelConfig();
                repository.Add(Path.GetFileName(folder), file, config, time);
            }
        }
        catch
        {
            repository.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }

        if (repository._models.Count == 0)
        {
            throw new BatchwiseException($"Model repository '{directory}' holds no models", "Put each model in its own subfolder as model.onnx (e.g. DIR/resnet18/model.onnx).");
        }

        return repository;
    }

    /// <summary>Loads one model from a file path or zoo:NAME and serves it as <paramref name="name"/>.</summary>
    public ServedModel Add(string name, string source, ModelConfig config, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (_models.ContainsKey(name))
        {
            throw new BatchwiseException($"Two models are named '{name}'", "Give each model its own name.");
        }

        var model = ServedModel.Load(name, ModelSource.Load(source), config, Metrics, time);
        _models.Add(name, model);
        return model;
    }

    /// <summary>The model called <paramref name="name"/> at <paramref name="version"/> (empty: the served one), or a 404.</summary>
    public ServedModel Find(string name, string? version = null)
    {
        if (!_models.TryGetValue(name, out var model))
        {
            throw InferenceError.NotFound($"Unknown model '{name}'; this server serves {string.Join(", ", _models.Keys)}");
        }

        model.CheckVersion(version);
        return model;
    }

    /// <summary>True when <paramref name="name"/> is served at <paramref name="version"/> (empty: any) and ready.</summary>
    public bool IsModelReady(string name, string? version) =>
        _models.TryGetValue(name, out var model) && (string.IsNullOrEmpty(version) || version == model.Version) && model.IsReady;

    /// <summary>The model name for a single-model source: the file name without extension, or the zoo name.</summary>
    public static string NameOf(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.StartsWith(ModelZoo.Prefix, StringComparison.OrdinalIgnoreCase))
        {
            var name = source[ModelZoo.Prefix.Length..];
            var q = name.IndexOf('?', StringComparison.Ordinal);
            return q < 0 ? name : name[..q];
        }

        return Path.GetFileNameWithoutExtension(source);
    }

    /// <summary>Marks every model not ready (the server is stopping).</summary>
    public void MarkStopping()
    {
        foreach (var m in _models.Values)
        {
            m.MarkStopping();
        }
    }

    /// <summary>Drains and releases every model.</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var m in _models.Values)
        {
            await m.DisposeAsync().ConfigureAwait(false);
        }

        _models.Clear();
    }
}
