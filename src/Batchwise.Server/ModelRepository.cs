using System.Collections.Concurrent;
using Batchwise.Zoo;
using Grpc.Core;

namespace Batchwise.Server;

/// <summary>How models are loaded and unloaded while the server runs (Triton's --model-control-mode).</summary>
public enum ModelControlMode
{
    /// <summary>Every model is loaded at startup; load and unload requests are refused.</summary>
    None,

    /// <summary>Only the startup models are loaded; clients load, reload and unload models by name.</summary>
    Explicit,

    /// <summary>Every model is loaded at startup; the folder is rescanned and added, changed or removed models follow.</summary>
    Poll,
}

/// <summary>How a repository loads its models.</summary>
public sealed record RepositoryOptions
{
    /// <summary>Model control mode.</summary>
    public ModelControlMode Mode { get; init; } = ModelControlMode.None;

    /// <summary>Explicit mode: the models loaded at startup ("*": every model).</summary>
    public IReadOnlyList<string> StartupModels { get; init; } = [];

    /// <summary>Refuse to start when any model fails to load (default: report it in the index and serve the others).</summary>
    public bool ExitOnError { get; init; }

    /// <summary>Poll mode: how often the folder is rescanned.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Where load failures and model control events are written (default: standard error).</summary>
    public Action<string> Log { get; init; } = line => Console.Error.WriteLine(line);
}

/// <summary>A model's line in the repository index: its state and why it is in it.</summary>
/// <param name="Name">The model's name.</param>
/// <param name="Version">The loaded version, or null when none is loaded.</param>
/// <param name="State">READY, LOADING, UNLOADING or UNAVAILABLE (Triton's names).</param>
/// <param name="Reason">Why the model is not ready (load error, "unloaded", "not loaded"); empty when ready.</param>
public sealed record ModelIndexEntry(string Name, string? Version, string State, string Reason);

/// <summary>A request's hold on one loaded model version: the version stays loaded until every lease is disposed.</summary>
public readonly struct ModelLease : IDisposable
{
    internal ModelLease(ServedModel model) => Model = model;

    /// <summary>The model version the request runs on.</summary>
    public ServedModel Model { get; }

    /// <inheritdoc/>
    public void Dispose() => Model?.Release();
}

/// <summary>
/// The models a server serves, by name: a repository folder (one subfolder per model) or single models. Models load,
/// reload and unload while serving; a request holds its model version with a lease, so an unload or a reload lets the
/// requests in flight finish on the version they started on.
/// </summary>
public sealed class ModelRepository : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly string? _directory;
    private readonly TimeProvider? _time;
    private readonly CancellationTokenSource _stop = new();
    private Task? _poller;
    private volatile bool _stopping;

    /// <summary>Creates an empty repository (single models are added with <see cref="Add"/>).</summary>
    public ModelRepository(ServerMetrics? metrics = null, RepositoryOptions? options = null)
        : this(null, metrics, options, null)
    {
    }

    private ModelRepository(string? directory, ServerMetrics? metrics, RepositoryOptions? options, TimeProvider? time)
    {
        _directory = directory;
        _time = time;
        Metrics = metrics ?? new ServerMetrics();
        Options = options ?? new RepositoryOptions();
    }

    /// <summary>The metrics every model reports to.</summary>
    public ServerMetrics Metrics { get; }

    /// <summary>How models are loaded.</summary>
    public RepositoryOptions Options { get; }

    /// <summary>The repository folder, or null for single models.</summary>
    public string? Directory => _directory;

    /// <summary>The models loaded now, by name.</summary>
    public IReadOnlyCollection<ServedModel> Models =>
        _entries.Values.OrderBy(e => e.Name, StringComparer.Ordinal).Select(e => e.Current).OfType<ServedModel>().ToList();

    /// <summary>
    /// True while the server is not stopping and has something to serve: at least one model loaded and ready (in
    /// explicit mode, also before any is loaded, as Triton). A model that failed to load does not make the server unready;
    /// it is reported in the index with its reason.
    /// </summary>
    public bool IsReady =>
        !_stopping && (Options.Mode == ModelControlMode.Explicit || _entries.Values.Any(e => e.Current?.IsReady == true));

    /// <summary>Opens a repository folder and loads its models as <paramref name="options"/> say.</summary>
    public static ModelRepository LoadDirectory(string directory, RepositoryOptions? options = null, TimeProvider? time = null, ServerMetrics? metrics = null) =>
        OpenAsync(directory, options, time, metrics).GetAwaiter().GetResult();

    /// <summary>Opens a repository folder and loads its models as <paramref name="options"/> say.</summary>
    public static async Task<ModelRepository> OpenAsync(string directory, RepositoryOptions? options = null, TimeProvider? time = null, ServerMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!System.IO.Directory.Exists(directory))
        {
            throw new BatchwiseException($"Model repository '{directory}' not found", "Pass a folder with one subfolder per model, each holding model.onnx and optionally config.json.");
        }

        var repository = new ModelRepository(Path.GetFullPath(directory), metrics, options, time);
        try
        {
            await repository.LoadStartupModelsAsync().ConfigureAwait(false);
        }
        catch
        {
            await repository.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        if (repository.Options.Mode == ModelControlMode.Poll)
        {
            repository._poller = repository.PollLoopAsync();
        }

        return repository;
    }

    /// <summary>Loads one model from a file path or zoo:NAME and serves it as <paramref name="name"/>; throws when it cannot be loaded.</summary>
    public ServedModel Add(string name, string source, ModelConfig config, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(config);
        var entry = new Entry(name, new SingleModel(source, config));
        if (!_entries.TryAdd(name, entry))
        {
            throw new BatchwiseException($"Two models are named '{name}'", "Give each model its own name.");
        }

        try
        {
            var model = ServedModel.Load(name, ModelSource.Load(source), config, Metrics, time ?? _time, log: Options.Log);
            entry.Serve(model);
            return model;
        }
        catch
        {
            _entries.TryRemove(name, out _);
            throw;
        }
    }

    /// <summary>The loaded model called <paramref name="name"/> at <paramref name="version"/> (empty: the loaded one), or a 404 / 503.</summary>
    public ServedModel Find(string name, string? version = null)
    {
        var model = EntryOf(name).Current ?? throw NotLoaded(EntryOf(name));
        model.CheckVersion(version);
        return model;
    }

    /// <summary>Holds the loaded model for one request (dispose the lease when the response is sent), or a 404 / 503.</summary>
    public ModelLease Acquire(string name, string? version = null)
    {
        var entry = EntryOf(name);
        while (true)
        {
            var model = entry.Current ?? throw NotLoaded(entry);
            model.CheckVersion(version);
            if (model.TryAcquire())
            {
                return new ModelLease(model);
            }

            // Retired between the read and the lease: the entry already holds its replacement, or nothing.
            Thread.Yield();
        }
    }

    /// <summary>True when <paramref name="name"/> is loaded at <paramref name="version"/> (empty: any) and ready.</summary>
    public bool IsModelReady(string name, string? version) =>
        _entries.TryGetValue(name, out var entry) && entry.Current is { } model && (string.IsNullOrEmpty(version) || version == model.Version) && model.IsReady;

    /// <summary>Every model the repository knows, loaded or not, with its state (Triton's repository index).</summary>
    public IReadOnlyList<ModelIndexEntry> Index(bool readyOnly = false)
    {
        var names = new SortedSet<string>(_entries.Keys, StringComparer.Ordinal);
        if (_directory is not null)
        {
            foreach (var folder in ModelFolders())
            {
                names.Add(folder);
            }
        }

        var index = new List<ModelIndexEntry>();
        foreach (var name in names)
        {
            var line = _entries.TryGetValue(name, out var entry)
                ? entry.Describe()
                : new ModelIndexEntry(name, null, "UNAVAILABLE", "not loaded");
            if (!readyOnly || line.State == "READY")
            {
                index.Add(line);
            }
        }

        return index;
    }

    /// <summary>
    /// Loads <paramref name="name"/>, or reloads it when loaded (with <paramref name="config"/> instead of its config file
    /// when given): the old version serves until the new one is ready, then finishes its requests and is released.
    /// Explicit mode only; a failure is a 400 naming it, and the model keeps its previous state.
    /// </summary>
    public async Task LoadAsync(string name, ModelConfig? config = null)
    {
        RequireExplicitControl("load");
        var entry = _entries.GetOrAdd(name, n => new Entry(n, DefinitionFor(n)));
        if (!await entry.LoadAsync(this, config).ConfigureAwait(false))
        {
            throw InferenceError.BadRequest($"failed to load '{name}': {entry.Reason}");
        }
    }

    /// <summary>Unloads <paramref name="name"/>: new requests get 503 at once; those in flight finish first. Explicit mode only.</summary>
    public Task UnloadAsync(string name)
    {
        RequireExplicitControl("unload");
        return EntryOf(name).UnloadAsync(this, "unloaded");
    }

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
        _stopping = true;
        foreach (var e in _entries.Values)
        {
            e.Current?.MarkStopping();
        }
    }

    /// <summary>Stops polling, drains and releases every model.</summary>
    public async ValueTask DisposeAsync()
    {
        _stopping = true;
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_poller is not null)
        {
            await _poller.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        foreach (var e in _entries.Values)
        {
            if (Interlocked.Exchange(ref e.CurrentField, null) is { } model)
            {
                await model.DisposeAsync().ConfigureAwait(false);
            }
        }

        _entries.Clear();
        _stop.Dispose();
    }

    /// <summary>Rescans the folder once (poll mode): loads new models, reloads changed ones, unloads removed ones.</summary>
    internal async Task PollOnceAsync()
    {
        if (_directory is null)
        {
            return;
        }

        var folders = ModelFolders().ToHashSet(StringComparer.Ordinal);
        foreach (var entry in _entries.Values.Where(e => !folders.Contains(e.Name)).ToList())
        {
            await entry.UnloadAsync(this, "removed from the repository").ConfigureAwait(false);
            _entries.TryRemove(entry.Name, out _);
        }

        foreach (var name in folders.Order(StringComparer.Ordinal))
        {
            var entry = _entries.GetOrAdd(name, n => new Entry(n, DefinitionFor(n)));
            var fingerprint = entry.Definition.Fingerprint();
            if (fingerprint != entry.LoadedFingerprint)
            {
                await entry.LoadAsync(this, null).ConfigureAwait(false);
            }
        }
    }

    private async Task PollLoopAsync()
    {
        var time = _time ?? TimeProvider.System;
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(Options.PollInterval, time, _stop.Token).ConfigureAwait(false);
                await PollOnceAsync().ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Options.Log($"model repository: cannot rescan '{_directory}': {e.Message}");
            }
        }
    }

    private async Task LoadStartupModelsAsync()
    {
        var folders = ModelFolders().ToList();
        IEnumerable<string> wanted = Options.Mode == ModelControlMode.Explicit && !Options.StartupModels.Contains("*")
            ? Options.StartupModels
            : folders;
        foreach (var name in wanted.Distinct(StringComparer.Ordinal))
        {
            if (Options.Mode == ModelControlMode.Explicit && !folders.Contains(name, StringComparer.Ordinal))
            {
                throw new BatchwiseException($"--load-model {name}: the repository '{_directory}' has no folder '{name}'", $"Use one of: {string.Join(", ", folders)} (or * for all).");
            }

            var entry = _entries.GetOrAdd(name, n => new Entry(n, DefinitionFor(n)));
            if (!await entry.LoadAsync(this, null).ConfigureAwait(false) && Options.ExitOnError)
            {
                throw new BatchwiseException($"Model '{name}' failed to load: {entry.Reason}", "Fix it, or start without --exit-on-error to serve the other models and report this one in the repository index.");
            }
        }

        if (Options.Mode != ModelControlMode.Explicit && !_entries.Values.Any(e => e.Current is not null))
        {
            throw folders.Count == 0
                ? new BatchwiseException($"Model repository '{_directory}' holds no models", "Put each model in its own subfolder as model.onnx (e.g. DIR/resnet18/model.onnx).")
                : new BatchwiseException($"No model of repository '{_directory}' could be loaded: {string.Join("; ", _entries.Values.Select(e => $"{e.Name}: {e.Reason}"))}", "Fix the models named above.");
        }
    }

    private IEnumerable<string> ModelFolders() =>
        System.IO.Directory.GetDirectories(_directory!)
            .Select(Path.GetFileName)
            .OfType<string>()
            .Where(n => !n.StartsWith('.'))
            .Order(StringComparer.Ordinal);

    private ModelDefinition DefinitionFor(string name)
    {
        if (_directory is null)
        {
            throw InferenceError.BadRequest($"failed to load '{name}': this server serves single models, not a repository folder; this model was never added");
        }

        var folder = Path.Combine(_directory, name);
        if (name.Contains('/', StringComparison.Ordinal) || name.Contains('\\', StringComparison.Ordinal) || name is "." or ".." || !System.IO.Directory.Exists(folder))
        {
            throw InferenceError.BadRequest($"failed to load '{name}': the repository '{_directory}' has no folder '{name}'");
        }

        return new FolderModel(folder);
    }

    private Entry EntryOf(string name) =>
        _entries.TryGetValue(name, out var entry)
            ? entry
            // The served names are not listed: a caller who does not know them has no business learning them from an error.
            : throw InferenceError.NotFound($"Unknown model '{name}'; check the name (model names are case-sensitive)");

    private static InferenceError NotLoaded(Entry entry) =>
        new(503, StatusCode.Unavailable, $"Model '{entry.Name}' is not available ({entry.State}{(entry.Reason.Length > 0 ? ": " + entry.Reason : string.Empty)}); load it again to serve it") { RetryAfterSeconds = 1 };

    private void RequireExplicitControl(string action)
    {
        if (Options.Mode != ModelControlMode.Explicit)
        {
            throw new InferenceError(503, StatusCode.Unavailable, $"explicit model load / unload is not allowed in model control mode '{Options.Mode.ToString().ToLowerInvariant()}'; start the server with --model-control-mode explicit to {action} models");
        }
    }

    /// <summary>Where a model comes from: what to load, and a fingerprint that changes when its files change.</summary>
    private abstract class ModelDefinition
    {
        public abstract ServedModel Load(string name, ModelConfig? config, ServerMetrics metrics, TimeProvider? time, Action<string> log);

        public abstract string Fingerprint();
    }

    private sealed class SingleModel(string source, ModelConfig config) : ModelDefinition
    {
        public override ServedModel Load(string name, ModelConfig? overrideConfig, ServerMetrics metrics, TimeProvider? time, Action<string> log) =>
            ServedModel.Load(name, ModelSource.Load(source), overrideConfig ?? config, metrics, time, log: log);

        public override string Fingerprint() => File.Exists(source) ? $"{File.GetLastWriteTimeUtc(source).Ticks}:{new FileInfo(source).Length}" : source;
    }

    private sealed class FolderModel(string folder) : ModelDefinition
    {
        public override ServedModel Load(string name, ModelConfig? overrideConfig, ServerMetrics metrics, TimeProvider? time, Action<string> log)
        {
            var file = Path.Combine(folder, "model.onnx");
            if (System.IO.Directory.Exists(file))
            {
                throw new BatchwiseException($"'{file}' is a folder, not an ONNX file", "Put the model itself at NAME/model.onnx.");
            }

            if (!File.Exists(file))
            {
                throw new BatchwiseException($"Model folder '{folder}' has no model.onnx", "Put the model at NAME/model.onnx, or remove the folder.");
            }

            var configPath = Path.Combine(folder, ModelConfig.FileName);
            var config = overrideConfig ?? (File.Exists(configPath) ? ModelConfig.Load(configPath) : new ModelConfig());
            return ServedModel.Load(name, ModelSource.Load(file), config, metrics, time, folder, log);
        }

        public override string Fingerprint()
        {
            if (!System.IO.Directory.Exists(folder))
            {
                return string.Empty;
            }

            return string.Join(';', System.IO.Directory.EnumerateFileSystemEntries(folder).Order(StringComparer.Ordinal).Select(p =>
            {
                var info = new FileInfo(p);
                return info.Exists ? $"{Path.GetFileName(p)}:{info.LastWriteTimeUtc.Ticks}:{info.Length}" : Path.GetFileName(p) + "/";
            }));
        }
    }

    /// <summary>One model name: its loaded version (if any), its state, and one load or unload at a time.</summary>
    private sealed class Entry(string name, ModelDefinition definition)
    {
        private readonly SemaphoreSlim _gate = new(1, 1);
        public ServedModel? CurrentField;

        public string Name { get; } = name;

        public ModelDefinition Definition { get; } = definition;

        public ServedModel? Current => Volatile.Read(ref CurrentField);

        public string State { get; private set; } = "UNAVAILABLE";

        public string Reason { get; private set; } = "not loaded";

        public string? LoadedFingerprint { get; private set; }

        public ModelIndexEntry Describe() => new(Name, Current?.Version, State, Reason);

        public void Serve(ServedModel model)
        {
            Volatile.Write(ref CurrentField, model);
            State = "READY";
            Reason = string.Empty;
        }

        /// <summary>Loads (or reloads) the model; false with <see cref="Reason"/> set when it failed.</summary>
        public async Task<bool> LoadAsync(ModelRepository repository, ModelConfig? config)
        {
            await _gate.WaitAsync().ConfigureAwait(false);
            try
            {
                var old = Current;
                if (old is null)
                {
                    State = "LOADING";
                    Reason = string.Empty;
                }

                var fingerprint = Definition.Fingerprint();
                ServedModel fresh;
                try
                {
                    fresh = await Task.Run(() => Definition.Load(Name, config, repository.Metrics, repository._time, repository.Options.Log)).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    var reason = e is BatchwiseException b ? b.OneLine : $"{e.GetType().Name}: {e.Message}";
                    LoadedFingerprint = fingerprint;
                    if (old is null)
                    {
                        State = "UNAVAILABLE";
                        Reason = reason;
                    }
                    else
                    {
                        State = "READY";
                        Reason = $"reload failed, the previous version still serves: {reason}";
                    }

                    repository.Options.Log($"model {Name}: failed to load: {reason}");
                    return false;
                }

                Serve(fresh);
                LoadedFingerprint = fingerprint;
                repository.Options.Log(old is null ? $"model {Name}: loaded (version {fresh.Version})" : $"model {Name}: reloaded (version {fresh.Version}); the previous load finishes its requests");
                if (old is not null)
                {
                    await old.RetireAsync().ConfigureAwait(false);
                }

                return true;
            }
            finally
            {
                _gate.Release();
            }
        }

        public async Task UnloadAsync(ModelRepository repository, string reason)
        {
            await _gate.WaitAsync().ConfigureAwait(false);
            try
            {
                var old = Interlocked.Exchange(ref CurrentField, null);
                LoadedFingerprint = null;
                if (old is null)
                {
                    State = "UNAVAILABLE";
                    Reason = reason;
                    return;
                }

                State = "UNLOADING";
                Reason = reason;
                await old.RetireAsync().ConfigureAwait(false);
                State = "UNAVAILABLE";
                repository.Options.Log($"model {Name}: {reason}");
            }
            finally
            {
                _gate.Release();
            }
        }
    }
}
