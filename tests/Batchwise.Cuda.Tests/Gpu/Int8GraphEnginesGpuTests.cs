using System.Globalization;
using System.Text;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>
/// Every cuDNN engine configuration the int8 graph route may choose for three of ResNet-50's convolutions at b=256, timed
/// on the graph the engine builds (<see cref="Int8ConvGraph"/>, zero points as in `optimize --int8`'s model: uint8
/// activations with zero point 0, stored as int8 v - 128, 3x3 inputs padded explicitly), and for the first configuration
/// and the fastest, inputs of three magnitudes (all zeros, uint8 values in [0, 8), full range [0, 255]): whether a layer's
/// time depends on its data, which configuration is fast, and whether the fastest writes what the first writes. It
/// measures, it does not judge speed: it fails only when no configuration runs a layer, or the fastest disagrees with the
/// first by more than one step.
/// </summary>
[Trait("Category", "GPU")]
public sealed class Int8GraphEnginesGpuTests
{
    private const int Batch = 256;

    /// <summary>Seconds of configurations tried per layer before the rest are listed as not tried.</summary>
    private const int LayerSeconds = 120;

    private static readonly (string Name, int C, int K, int H, int Kernel)[] Layers =
    [
        ("1x1 1024->256 14x14", 1024, 256, 14, 1),
        ("1x1 256->64 56x56", 256, 64, 56, 1),
        ("3x3 64->64 56x56 (input padded explicitly)", 64, 64, 56, 3),
    ];

    private static readonly (string Name, Func<Random, sbyte> Stored)[] Inputs =
    [
        ("zeros", _ => -128),
        ("small [0,8)", r => (sbyte)(r.Next(0, 8) - 128)),
        ("full [0,255]", r => (sbyte)(r.Next(0, 256) - 128)),
    ];

    [Fact]
    public void Int8_graph_configurations_timed_at_resnet50_shapes_and_input_magnitudes()
    {
        Gpu.Require();
        using var probe = new CudnnProbe();
        var (stream, handle, start, end) = (probe.Stream, probe.Handle, probe.Start, probe.End);
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"# int8 graph configurations: {CudaDriver.DeviceName(probe.Device)}, cuDNN {Cudnn.Version()}, b={Batch}, {DateTimeOffset.UtcNow:u}");
        text.AppendLine();
        text.AppendLine("Graph: conv (int32 sums) * scale[k] + offset[k] -> int8 (the engine's, relu=0 zero=0 as in the QDQ ResNet-50); CUDA events, best of 3 trials of >= 3 ms.");
        text.AppendLine("Config: index into the route's candidate list (A = heuristics mode A, B = mode B, F = fallback; engine and knobs).");
        text.AppendLine();
        text.AppendLine("| layer | config | source | engine | input | ms |");
        text.AppendLine("|---|---:|---|---|---|---:|");
        var failures = new List<string>();
        foreach (var layer in Layers)
        {
            var pad = layer.Kernel / 2;
            var shape = GraphCompiler.Int8GraphShape([Batch, layer.C, layer.H + (2 * pad), layer.H + (2 * pad)], [layer.K, layer.C, layer.Kernel, layer.Kernel], [Batch, layer.K, layer.H, layer.H], [0, 0], [1, 1], -128, relu: true, -128);
            using var graph = Int8ConvGraph.Describe(handle, shape, Cudnn.CUDNN_DATA_INT32);
            using var buffers = new Buffers(shape, stream);
            var times = new List<(int Index, double Ms)>();
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            for (var i = 0; i < graph.Configs.Count; i++)
            {
                if (System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds > LayerSeconds)
                {
                    // Runtime-compiled engines compile in their finalization: the run stays inside a device call's limit.
                    text.AppendLine(CultureInfo.InvariantCulture, $"| {layer.Name} | {i}-{graph.Configs.Count - 1} | | not tried: {LayerSeconds} s spent on this layer | - | - |");
                    break;
                }

                var (source, tag) = graph.Sources[i];
                if (graph.TryPlan(handle, i, 256L << 20) is { } refused)
                {
                    text.AppendLine(CultureInfo.InvariantCulture, $"| {layer.Name} | {i} | {source} | {tag} | - | refused: {refused} |");
                    continue;
                }

                var ms = Time(graph, handle, buffers, stream, start, end, "full [0,255]");
                text.AppendLine(CultureInfo.InvariantCulture, $"| {layer.Name} | {i} | {source} | {graph.Engine} | full [0,255] | {Cell(ms)} |");
                if (ms is { } t)
                {
                    times.Add((i, t));
                }
            }

            if (times.Count == 0)
            {
                failures.Add($"{layer.Name}: no configuration of {graph.Configs.Count} ran");
                continue;
            }

            var first = times[0].Index;
            var fastest = times.MinBy(t => t.Ms).Index;
            byte[]? firstOut = null;
            foreach (var index in fastest == first ? [first] : new[] { first, fastest })
            {
                Assert.Null(graph.TryPlan(handle, index, 256L << 20));
                foreach (var input in Inputs)
                {
                    var ms = Time(graph, handle, buffers, stream, start, end, input.Name);
                    text.AppendLine(CultureInfo.InvariantCulture, $"| {layer.Name} | {index}{(index == first ? " (first)" : string.Empty)}{(index == fastest ? " (fastest)" : string.Empty)} | {graph.Sources[index].Source} | {graph.Engine} | {input.Name} | {Cell(ms)} |");
                }

                // Full-range input last: its output, first against fastest.
                var output = buffers.Output();
                if (firstOut is null)
                {
                    firstOut = output;
                }
                else
                {
                    var worst = firstOut.Zip(output, (a, b) => Math.Abs((sbyte)a - (sbyte)b)).Max();
                    text.AppendLine(CultureInfo.InvariantCulture, $"| {layer.Name} | {index} vs {first} | | | full [0,255] | largest output difference {worst} steps |");
                    if (worst > 1)
                    {
                        failures.Add($"{layer.Name}: configuration {index} writes outputs up to {worst} steps off configuration {first}");
                    }
                }
            }
        }

        var table = text.ToString();
        TestContext.Current.TestOutputHelper?.WriteLine(table);
        Console.WriteLine(table);
        Gpu.Report("int8-graph-engines.md", table);
        Assert.True(failures.Count == 0, string.Join("; ", failures));
    }

    private static string Cell(double? ms) => ms is { } t ? t.ToString("F4", CultureInfo.InvariantCulture) : "failed";

    private static double? Time(Int8ConvGraph graph, CudnnHandle handle, Buffers buffers, CudaStream stream, CudaEvent start, CudaEvent end, string input)
    {
        buffers.Fill(input);
        try
        {
            using var pack = Cudnn.BackendVariantPackOf(graph.Shape.Uids, buffers.Pointers(graph.Shape.Uids.Length), buffers.Workspace(graph.WorkspaceBytes));
            return EventTiming.Best(stream, start, end, () => graph.Execute(handle, pack)) * 1e3;
        }
        catch (CudaException e) when (!GraphCompiler.IsContextLoss(e))
        {
            return null;
        }
    }

    /// <summary>x, w, scale, offset, y and a workspace for one problem, with the weights and tables of a QDQ layer.</summary>
    private sealed class Buffers : IDisposable
    {
        private readonly Int8ConvGraphShape _shape;
        private readonly CudaStream _stream;
        private readonly DeviceMemory _x, _w, _scale, _offset, _y;
        private readonly Dictionary<string, byte[]> _inputs = new(StringComparer.Ordinal);
        private DeviceMemory? _workspace;

        public Buffers(Int8ConvGraphShape shape, CudaStream stream)
        {
            (_shape, _stream) = (shape, stream);
            var k = (int)shape.W[0];
            var taps = (int)(shape.W[1] * shape.W[2] * shape.W[3]);
            var rng = new Random(11);
            var w = new sbyte[k * taps];
            for (var i = 0; i < w.Length; i++)
            {
                w[i] = (sbyte)rng.Next(-127, 128);
            }

            // Output = m * sum(x_uint8 * w) in uint8 steps, zero point 0 (stored - 128): with x stored as x_uint8 - 128 the
            // offset carries m * 128 * sum(w) - 128. m puts a full-range input's outputs about 30 steps apart.
            var m = (float)(30.0 / (Math.Sqrt(taps) * 147 * 73));
            var offset = new float[k];
            for (var o = 0; o < k; o++)
            {
                long sum = 0;
                for (var t = 0; t < taps; t++)
                {
                    sum += w[(o * taps) + t];
                }

                offset[o] = (m * 128 * sum) - 128;
            }

            _x = CudaDriver.Allocate(Tensor(shape.X));
            _w = Upload(System.Runtime.InteropServices.MemoryMarshal.AsBytes(w.AsSpan()));
            _scale = Upload(System.Runtime.InteropServices.MemoryMarshal.AsBytes(Enumerable.Repeat(m, k).ToArray().AsSpan()));
            _offset = Upload(System.Runtime.InteropServices.MemoryMarshal.AsBytes(offset.AsSpan()));
            _y = CudaDriver.Allocate(Tensor(shape.Y));
        }

        public ulong[] Pointers(int count) => [.. new[] { _x, _w, _scale, _offset, _y }.Take(count).Select(b => b.Pointer)];

        public ulong Workspace(long bytes)
        {
            if (bytes > 0 && (_workspace is null || _workspace.Bytes < bytes))
            {
                _workspace?.Dispose();
                _workspace = CudaDriver.Allocate(bytes);
            }

            return bytes > 0 ? _workspace!.Pointer : 0;
        }

        public void Fill(string input)
        {
            if (!_inputs.TryGetValue(input, out var bytes))
            {
                var rng = new Random(5);
                var make = Inputs.Single(i => i.Name == input).Stored;
                bytes = new byte[Tensor(_shape.X)];
                for (var i = 0; i < bytes.Length; i++)
                {
                    bytes[i] = (byte)make(rng);
                }

                _inputs[input] = bytes;
            }

            CudaDriver.Synchronize(_stream);
            CudaDriver.CopyToDeviceSync(_x.Pointer, bytes);
        }

        public byte[] Output()
        {
            CudaDriver.Synchronize(_stream);
            var y = new byte[Tensor(_shape.Y)];
            CudaDriver.CopyToHostSync(y, _y.Pointer);
            return y;
        }

        public void Dispose()
        {
            foreach (var b in new[] { _x, _w, _scale, _offset, _y, _workspace })
            {
                b?.Dispose();
            }
        }

        private static long Tensor(long[] shape) => shape.Aggregate(1L, (a, d) => a * d);

        private static DeviceMemory Upload(ReadOnlySpan<byte> bytes)
        {
            var b = CudaDriver.Allocate(bytes.Length);
            CudaDriver.CopyToDeviceSync(b.Pointer, bytes);
            return b;
        }
    }
}
