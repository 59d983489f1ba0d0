using System.Diagnostics;
using System.Runtime.InteropServices;
using Batchwise.Onnx;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Batchwise.Engines;

/// <summary>The embedded default engine: ONNX Runtime (CPU, or another execution provider the installed package has).</summary>
public sealed class OrtEngine : IEngine
{
    /// <inheritdoc/>
    public string Name => "ort";

    /// <summary>Why <see cref="EngineOptions.IncludeTransfers"/> is refused: ONNX Runtime's runs already start and end in host memory.</summary>
    internal const string TransfersRefusal = "--transfers does not apply to the ort engine: its runs always take inputs from and return outputs to host memory (on the CPU there is nothing to transfer)";

    /// <inheritdoc/>
    public EngineDescription Describe(EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var details = new Dictionary<string, string>
        {
            ["execution_provider"] = options.ExecutionProvider,
            ["intra_op_threads"] = options.IntraOpThreads.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["inter_op_threads"] = options.InterOpThreads.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["intra_op_spinning"] = options.IntraOpSpinning ? "on" : "off",
            ["graph_optimization"] = options.GraphOptimization,
        };
        if (options.Precision == Precision.Int8)
        {
            details["precision"] = options.Calibration.Describe();
        }

        return new EngineDescription(Name, OrtEnv.Instance().GetVersionString(), HostInfo.CpuName, details);
    }

    /// <inheritdoc/>
    public IEngineSession Load(OnnxModel model, EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Precision == Precision.Fp16)
        {
            throw new BatchwiseException("The ort engine runs the model in the precision it is stored in (or int8, quantized as it loads)", "Convert the model with `batchwise optimize MODEL --fp16 -o OUT.onnx`, or use --engine cuda --precision fp16.");
        }

        if (options.Tactics != TacticSelection.EngineDefault)
        {
            throw new BatchwiseException("The ort engine chooses its kernels itself: --tactics is for the cuda engine", "Drop --tactics, or use --engine cuda.");
        }

        if (options.IncludeTransfers)
        {
            throw new BatchwiseException(TransfersRefusal, "Drop --transfers, or use --engine cuda to time host-device copies.");
        }

        if (options.BatchProfiles.Count > 0 || options.ShapeProfiles.Count > 0)
        {
            throw new BatchwiseException("The ort engine runs every shape without building a plan for it: batch and shape profiles are for the cuda engine", "Drop --batch-profile and --shape-profile (or batch_profiles and shape_profiles in config.json), or use --engine cuda.");
        }

        if (model.SavedEngine is { } saved)
        {
            throw new BatchwiseException($"'{saved}' is a saved cuda engine", "Run it with --engine cuda, or give the .onnx model to the ort engine.");
        }

        if (options.Precision == Precision.Int8)
        {
            // Quantized here as `optimize --int8` would (weights in 7 bits where this CPU lacks VNNI); ONNX Runtime then
            // fuses the QDQ pairs into its int8 kernels as for any QDQ model.
            model = Transforms.CalibratedInt8.Quantize(model, options.Calibration, Transforms.Int8Weights.ReduceRangeByDefault);
        }

        var so = CreateSessionOptions(options);
        try
        {
            return new OrtEngineSession(model, new InferenceSession(model.ToBytes(), so));
        }
        catch (OnnxRuntimeException e)
        {
            throw new BatchwiseException($"ONNX Runtime cannot load '{model.Name}': {FirstLine(e.Message)}", "Check the model with onnx.checker, or try --graph-optimization disabled.", e);
        }
        finally
        {
            so.Dispose();
        }
    }

    private static SessionOptions CreateSessionOptions(EngineOptions options)
    {
        var so = new SessionOptions
        {
            IntraOpNumThreads = options.IntraOpThreads,
            InterOpNumThreads = options.InterOpThreads,
            GraphOptimizationLevel = options.GraphOptimization.ToLowerInvariant() switch
            {
                "disabled" or "none" => GraphOptimizationLevel.ORT_DISABLE_ALL,
                "basic" => GraphOptimizationLevel.ORT_ENABLE_BASIC,
                "extended" => GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                "all" => GraphOptimizationLevel.ORT_ENABLE_ALL,
                _ => throw new BatchwiseException($"Unknown graph optimisation level '{options.GraphOptimization}'", "Use disabled, basic, extended or all."),
            },
            ExecutionMode = options.InterOpThreads > 1 ? ExecutionMode.ORT_PARALLEL : ExecutionMode.ORT_SEQUENTIAL,
        };
        try
        {
            if (!options.IntraOpSpinning)
            {
                // Workers block when they run out of work instead of busy-waiting (ORT's own session config keys).
                so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
                so.AddSessionConfigEntry("session.inter_op.allow_spinning", "0");
            }

            switch (options.ExecutionProvider.ToLowerInvariant())
            {
                case "cpu":
                    break;
                case "cuda":
                    so.AppendExecutionProvider_CUDA(options.DeviceId);
                    break;
                case "tensorrt":
                    so.AppendExecutionProvider_Tensorrt(options.DeviceId);
                    break;
                case "openvino":
                    so.AppendExecutionProvider_OpenVINO();
                    break;
                default:
                    throw new BatchwiseException($"Unknown execution provider '{options.ExecutionProvider}'", "Use cpu, cuda, tensorrt or openvino.");
            }
        }
        catch (Exception e) when (e is OnnxRuntimeException or EntryPointNotFoundException or DllNotFoundException)
        {
            so.Dispose();
            var package = options.ExecutionProvider.ToLowerInvariant() switch
            {
                "openvino" => "Intel.ML.OnnxRuntime.OpenVino",
                _ => "Microsoft.ML.OnnxRuntime.Gpu",
            };
            throw new BatchwiseException(
                $"The installed ONNX Runtime has no {options.ExecutionProvider} execution provider ({FirstLine(e.Message)})",
                $"Install the {package} native package in place of Microsoft.ML.OnnxRuntime, or use --engine cuda for Batchwise's own GPU engine.",
                e);
        }

        return so;
    }

    internal static string FirstLine(string s)
    {
        var i = s.IndexOfAny(['\r', '\n']);
        return (i < 0 ? s : s[..i]).Trim();
    }

    internal static TensorElementType ToOrt(ElementType t) => t switch
    {
        ElementType.Float => TensorElementType.Float,
        ElementType.Float16 => TensorElementType.Float16,
        ElementType.BFloat16 => TensorElementType.BFloat16,
        ElementType.Double => TensorElementType.Double,
        ElementType.Int64 => TensorElementType.Int64,
        ElementType.Int32 => TensorElementType.Int32,
        ElementType.Int16 => TensorElementType.Int16,
        ElementType.Int8 => TensorElementType.Int8,
        ElementType.UInt8 => TensorElementType.UInt8,
        ElementType.UInt16 => TensorElementType.UInt16,
        ElementType.UInt32 => TensorElementType.UInt32,
        ElementType.UInt64 => TensorElementType.UInt64,
        ElementType.Bool => TensorElementType.Bool,
        _ => throw new BatchwiseException($"ONNX Runtime tensors of {t} are not supported here", "Use a numeric input type."),
    };
}

/// <summary>An ONNX Runtime inference session.</summary>
internal sealed class OrtEngineSession : IEngineSession, IOutputTargets
{
    private readonly InferenceSession _session;
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;

    public OrtEngineSession(OnnxModel model, InferenceSession session)
    {
        _session = session;
        Inputs = model.Inputs;
        Outputs = model.Outputs;
        _inputNames = Inputs.Select(i => i.Name).ToArray();
        _outputNames = Outputs.Select(o => o.Name).ToArray();
    }

    public IReadOnlyList<TensorSpec> Inputs { get; }

    public IReadOnlyList<TensorSpec> Outputs { get; }

    public IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken = default) => Run(inputs, [], [], cancellationToken);

    /// <summary>
    /// Runs, then copies each of <paramref name="direct"/>'s rows from ONNX Runtime's output memory straight to its target;
    /// an output every row of which went to targets is not copied into a managed array at all.
    /// </summary>
    public IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, IReadOnlyList<OutputRows> direct, bool[] delivered, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(direct);
        ArgumentNullException.ThrowIfNull(delivered);
        CheckInputs(inputs);
        var handles = new GCHandle[inputs.Count];
        var values = new OrtValue[inputs.Count];
        try
        {
            for (var i = 0; i < inputs.Count; i++)
            {
                if (inputs[i].ElementType == ElementType.String)
                {
                    values[i] = StringValue(inputs[i]);
                    continue;
                }

                handles[i] = GCHandle.Alloc(inputs[i].Data, GCHandleType.Pinned);
                values[i] = Wrap(inputs[i], handles[i].AddrOfPinnedObject());
            }

            using var runOptions = new RunOptions();
            using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
            using var outputs = RunCore(runOptions, values);
            if (direct.Count == 0)
            {
                return outputs.Select(ToTensor).ToList();
            }

            var result = new Tensor[outputs.Count];
            for (var o = 0; o < result.Length; o++)
            {
                var value = outputs[o];
                var info = value.GetTensorTypeAndShape();
                var type = (ElementType)(int)info.ElementDataType;
                var written = new List<OutputRows>();
                if (type != ElementType.String)
                {
                    var bytes = value.GetTensorDataAsSpan<byte>();
                    for (var i = 0; i < direct.Count; i++)
                    {
                        var r = direct[i];
                        if (r.Output == o && r.Span(info.Shape, bytes.Length) is { } span && span.Bytes <= r.Target.ByteCount)
                        {
                            r.Target.CopyFrom(bytes.Slice((int)span.Offset, (int)span.Bytes));
                            delivered[i] = true;
                            written.Add(r);
                        }
                    }
                }

                result[o] = DeliveredRowsSource.Delivered(type, info.Shape, written) ?? ToTensor(value);
            }

            return result;
        }
        finally
        {
            foreach (var v in values)
            {
                v?.Dispose();
            }

            foreach (var h in handles)
            {
                if (h.IsAllocated)
                {
                    h.Free();
                }
            }
        }
    }

    public IPreparedRun Prepare(IReadOnlyList<Tensor> inputs)
    {
        CheckInputs(inputs);
        return new OrtPreparedRun(this, inputs);
    }

    internal IDisposableReadOnlyCollection<OrtValue> RunCore(RunOptions runOptions, OrtValue[] values)
    {
        try
        {
            return _session.Run(runOptions, _inputNames, values, _outputNames);
        }
        catch (OnnxRuntimeException e)
        {
            throw new BatchwiseException($"ONNX Runtime failed to run: {OrtEngine.FirstLine(e.Message)}", "Check the input shapes match the model (batchwise bench --verbose shows them).", e);
        }
    }

    internal static OrtValue Wrap(Tensor t, IntPtr data) =>
        OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, OrtEngine.ToOrt(t.ElementType), t.Shape, data, t.Data.LongLength);

    /// <summary>A string tensor copied into ONNX Runtime's own strings (they cannot wrap our bytes).</summary>
    internal static OrtValue StringValue(Tensor t)
    {
        var value = OrtValue.CreateTensorWithEmptyStrings(OrtAllocator.DefaultInstance, t.Shape);
        try
        {
            var elements = t.ReadStrings();
            for (var i = 0; i < elements.Count; i++)
            {
                value.StringTensorSetElementAt(elements[i].AsSpan(), i);
            }

            return value;
        }
        catch
        {
            value.Dispose();
            throw;
        }
    }

    internal static Tensor ToTensor(OrtValue v)
    {
        var info = v.GetTensorTypeAndShape();
        var type = (ElementType)(int)info.ElementDataType;
        if (type == ElementType.String)
        {
            var elements = new byte[info.ElementCount][];
            for (var i = 0; i < elements.Length; i++)
            {
                elements[i] = v.GetStringElementAsSpan(i).ToArray();
            }

            return Tensor.FromStrings(info.Shape, elements);
        }

        var result = Tensor.Zeros(type, info.Shape);
        v.GetTensorDataAsSpan<byte>().CopyTo(result.Data);
        return result;
    }

    private void CheckInputs(IReadOnlyList<Tensor> inputs)
    {
        if (inputs.Count != Inputs.Count)
        {
            throw new BatchwiseException($"The model takes {Inputs.Count} inputs ({string.Join(", ", _inputNames)}); {inputs.Count} given", "Pass one tensor per input.");
        }
    }

    public void Dispose() => _session.Dispose();
}

/// <summary>Fixed inputs copied once into pinned buffers and wrapped as OrtValues, run repeatedly.</summary>
internal sealed class OrtPreparedRun : IPreparedRun
{
    private readonly OrtEngineSession _session;
    private readonly OrtValue[] _values;
    private readonly Tensor[] _pinned;
    private readonly RunOptions _runOptions = new();
    private IReadOnlyList<Tensor> _last = [];
    private IDisposableReadOnlyCollection<OrtValue>? _lastValues;

    public OrtPreparedRun(OrtEngineSession session, IReadOnlyList<Tensor> inputs)
    {
        _session = session;
        _pinned = inputs.Select(t =>
        {
            var copy = Tensor.Zeros(t.ElementType, (long[])t.Shape.Clone());
            t.Data.CopyTo(copy.Data, 0);
            return copy;
        }).ToArray();
        _values = _pinned.Select(t => OrtEngineSession.Wrap(t, Marshal.UnsafeAddrOfPinnedArrayElement(t.Data, 0))).ToArray();
    }

    public double Run()
    {
        var start = Stopwatch.GetTimestamp();
        var outputs = _session.RunCore(_runOptions, _values);
        var elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
        _lastValues?.Dispose();
        _lastValues = outputs;
        _last = [];
        return elapsed;
    }

    public IReadOnlyList<Tensor> ReadOutputs()
    {
        if (_last.Count == 0 && _lastValues is not null)
        {
            _last = _lastValues.Select(OrtEngineSession.ToTensor).ToList();
        }

        return _last;
    }

    public void Dispose()
    {
        _lastValues?.Dispose();
        foreach (var v in _values)
        {
            v.Dispose();
        }

        _runOptions.Dispose();
    }
}
