using System.Collections.Concurrent;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Server.Tests;

/// <summary>An engine whose runs block while the gate is closed; it records the first input value of each run.</summary>
internal sealed class GatedEngine : IEngine
{
    private readonly ManualResetEventSlim _gate = new(true);

    public SemaphoreSlim Started { get; } = new(0);

    public ConcurrentBag<float> Seen { get; } = [];

    public string Name => "gated";

    public void Close() => _gate.Reset();

    public void Open() => _gate.Set();

    public EngineDescription Describe(EngineOptions options) => new(Name, "test", "none", new Dictionary<string, string>());

    public IEngineSession Load(OnnxModel model, EngineOptions options) => new Session(this, model);

    private sealed class Session(GatedEngine engine, OnnxModel model) : IEngineSession
    {
        public IReadOnlyList<TensorSpec> Inputs { get; } = model.Inputs;

        public IReadOnlyList<TensorSpec> Outputs { get; } = model.Outputs;

        public IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken = default)
        {
            var rows = inputs[0].Shape[0];
            engine.Seen.Add(inputs[0].AsSpan<float>()[0]);
            engine.Started.Release();
            engine._gate.Wait(TimeSpan.FromSeconds(30), cancellationToken);
            return [Tensor.Zeros(ElementType.Float, [rows, 10])];
        }

        public IPreparedRun Prepare(IReadOnlyList<Tensor> inputs) => throw new NotSupportedException();

        public void Dispose()
        {
        }
    }
}
