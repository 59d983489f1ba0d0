using System.CommandLine;
using Batchwise.Engines;

namespace Batchwise.Cli.Options;

/// <summary>
/// The engine options, declared once (as trtexec declares each option group once) and added to every command that runs
/// a model: bench, explain, compare, conformance, serve and optimize. A flag is therefore spelled, typed and explained
/// the same everywhere; <see cref="Read(ParseResult)"/> turns the group into <see cref="EngineOptions"/>, and each engine refuses,
/// in one line, what it does not support.
/// </summary>
public sealed class EngineOptionGroup
{
    /// <summary>The precisions an engine can be asked for.</summary>
    private static readonly string[] Precisions = ["fp32", "fp16", "int8"];

    /// <summary>
    /// Creates the group; <paramref name="withEngine"/> false leaves out --engine (compare names two engines itself);
    /// <paramref name="defaultEngine"/> is the engine when none is named (build: cuda).
    /// </summary>
    public EngineOptionGroup(bool withEngine = true, string defaultEngine = "ort")
    {
        Engine = withEngine ? new Option<string>("--engine", "-e") { Description = "Engine: ort (ONNX Runtime, CPU) or cuda (Batchwise's CUDA engine, NVIDIA GPUs)", HelpName = "ort|cuda", DefaultValueFactory = _ => defaultEngine } : null;
    }

    /// <summary>--engine: the engine's registered name; null where the command names engines itself.</summary>
    public Option<string>? Engine { get; }

    /// <summary>--device: the GPU ordinal.</summary>
    public Option<int> Device { get; } = CliOption.Integer("--device", "GPU ordinal (cuda, or ort with --ep cuda or tensorrt; on ort's CPU providers a GPU other than 0 is an error); `batchwise devices` lists them", 0, 0);

    /// <summary>--precision: fp32, fp16 or int8.</summary>
    public Option<string> Precision { get; } = CliOption.Choice("--precision", "Arithmetic precision: fp32; fp16 (cuda; an error on ort, which runs a model in the precision it is stored in); or int8: a float model quantized as it loads (QDQ, calibrated as --calibration says), a model already quantized (QDQ) run with its own scales; ort runs it with its int8 kernels, cuda on its int8 path with fp16 for what stays float", "fp32", Precisions);

    /// <summary>--calibration: the data --precision int8 (and optimize --int8) calibrates on; null when not given.</summary>
    public Option<string?> Calibration { get; } = new("--calibration") { Description = $"Calibration data for int8: a folder of .npy samples (float32, shaped like the model input), or random:N (seeded); --precision int8 defaults to {Transforms.Int8Calibration.DefaultData}, real data gives better scales. Ranges are cached (BATCHWISE_CACHE_DIR/int8) by model, data, method and --int8-activations. optimize: for --int8, and a folder is also its verification data", HelpName = "DIR|random:N" };

    /// <summary>--calibration-method: how int8 activation ranges are chosen.</summary>
    public Option<string> CalibrationMethod { get; } = CliOption.Choice("--calibration-method", "How int8 activation ranges are chosen: minmax, percentile (99.99%) or entropy (KL)", "minmax", ["minmax", "percentile", "entropy"]);

    /// <summary>--int8-activations: how int8 activations are scaled (asymmetric or symmetric).</summary>
    public Option<string> Int8Activations { get; } = CliOption.Choice("--int8-activations", "How int8 activations are scaled (--precision int8; optimize: --int8): asymmetric (each activation's range over 255 levels) or symmetric (zero point 128, the larger end over 127, as TensorRT quantizes: half the resolution of a one-sided range, but the cuda engine's padded int8 convolutions read their input as it lies instead of a padded copy)", "asymmetric", ["asymmetric", "symmetric"]);

    /// <summary>--tf32: TF32 tensor cores for fp32.</summary>
    public Option<bool> Tf32 { get; } = new("--tf32") { Description = "Let fp32 use TF32 tensor cores (cuda; explain then predicts with the TF32 GEMM ceiling). An error on ort, which Batchwise does not set TF32 on" };

    /// <summary>--threads: threads inside one operator.</summary>
    public Option<int> Threads { get; } = CliOption.Integer("--threads", "Threads inside one operator, per engine session (ONNX Runtime's intra-op threads); 0 = its default. An error on cuda, which runs operators on the GPU", 0, 0);

    /// <summary>--inter-op-threads: threads across operators.</summary>
    public Option<int> InterOpThreads { get; } = CliOption.Integer("--inter-op-threads", "Threads across operators (ONNX Runtime's inter-op threads); 0 = its default. An error on cuda, which runs operators on the GPU", 0, 0);

    /// <summary>--graph-optimization: ONNX Runtime's graph optimisation level.</summary>
    public Option<string> GraphOptimization { get; } = CliOption.Choice("--graph-optimization", "ONNX Runtime's graph optimisation level. An error on cuda, which plans the graph itself", "all", ["disabled", "basic", "extended", "all"]);

    /// <summary>--ep: ONNX Runtime's execution provider.</summary>
    public Option<string> ExecutionProvider { get; } = CliOption.Choice("--ep", "ONNX Runtime's execution provider (cuda, tensorrt and openvino need their native package installed). An error on cuda", "cpu", ["cpu", "cuda", "tensorrt", "openvino"]);

    /// <summary>--no-cuda-graph: launch kernels one by one.</summary>
    public Option<bool> NoCudaGraph { get; } = new("--no-cuda-graph") { Description = "Launch kernels one by one instead of replaying a CUDA graph (cuda). Only a warning on ort: it never replays CUDA graphs, so the flag asks for what it does anyway" };

    /// <summary>--tactics: how the GPU engine picks its library kernels (timed or heuristic); null when not given.</summary>
    public Option<string?> Tactics { get; } = CliOption.OptionalChoice("--tactics", "How the cuda engine picks cuDNN's convolution algorithms and cuBLASLt's matmul algorithms: timed (the default: each candidate timed inside a captured CUDA graph as the step runs, with its bias, residual and activation, when a plan is built; the winners kept in a timing cache on disk, like TensorRT's builder) or heuristic (the libraries' first choice: no timing, a faster first build). An error on ort, which chooses its kernels itself", ["timed", "heuristic"]);

    /// <summary>--batch-profile: batch sizes with a plan of their own (TensorRT's optimization profiles); null when not given.</summary>
    public Option<int[]?> BatchProfile { get; } = CliOption.IntegerList("--batch-profile", "Batch sizes that get a plan of their own on a GPU engine; a batch in between runs padded to the next (TensorRT's optimization profiles). Default: a plan per batch size (serve: powers of two up to max_batch_size; build: 1,2,4,...,64). An error on ort, which needs no plans", "1,8,32,64", null);

    /// <summary>--exact-plans: a padded batch's own plan built in the background.</summary>
    public Option<bool> ExactPlans { get; } = new("--exact-plans") { Description = "With batch profiles on a GPU engine: a batch that runs padded to a profile also gets its own plan, built in the background and used once ready (no run waits for it), so padding stops costing the padded rows. An error on ort, which needs no plans" };

    /// <summary>--shape-profile: ranges of other dynamic dimensions (raw text; <see cref="Read(ParseResult)"/> parses it).</summary>
    public Option<string[]> ShapeProfile { get; } = new("--shape-profile") { Description = "Range of another dynamic dimension on a GPU engine: " + Engines.ShapeProfile.Syntax + "; a plan per grid shape (serve and build make them ahead), a shape off the grid is refused; repeatable. An error on ort, which needs no plans", HelpName = "PROFILE" };

    // A new engine option joins the group here: one property above, one entry in All, one line in Read and, for each
    // engine that cannot honour it, a rule in EngineOptionRules; every command that runs a model then takes it, spelled
    // and explained the same.

    /// <summary>The options compare applies to its candidate engine alone (the reference runs fp32, as the model says).</summary>
    public IReadOnlySet<Option> CandidateOnly => new HashSet<Option> { Precision, Calibration, CalibrationMethod, Int8Activations, Tf32, Tactics };

    /// <summary>Every option of the group, in help order.</summary>
    public IEnumerable<Option> All =>
        new Option?[] { Engine, Device, Precision, Calibration, CalibrationMethod, Int8Activations, Tf32, Threads, InterOpThreads, GraphOptimization, ExecutionProvider, NoCudaGraph, Tactics, BatchProfile, ExactPlans, ShapeProfile }.OfType<Option>();

    /// <summary>Creates the group and adds it to a command.</summary>
    public static EngineOptionGroup AddTo(Command command, bool withEngine = true, string defaultEngine = "ort")
    {
        ArgumentNullException.ThrowIfNull(command);
        var group = new EngineOptionGroup(withEngine, defaultEngine);
        foreach (var option in group.All)
        {
            command.Options.Add(option);
        }

        return group;
    }

    /// <summary>The engine's name as given (default ort).</summary>
    public string EngineName(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        return Engine is null ? "ort" : parse.GetValue(Engine)!.Trim().ToLowerInvariant();
    }

    /// <summary>The engine named by --engine, from the registry (an unknown name is a one-line error listing the known ones).</summary>
    public IEngine CreateEngine(ParseResult parse) => EngineRegistry.Create(EngineName(parse));

    /// <summary>
    /// The engine options the group's flags say, for the engine named by --engine: an option it cannot honour is a
    /// one-line error, or a warning line on standard error (<see cref="EngineOptionRules"/>).
    /// </summary>
    public EngineOptions Read(ParseResult parse) => Read(parse, [EngineName(parse)], EngineName(parse));

    /// <summary>
    /// The engine options the group's flags say, for several engines (compare's reference and candidate): an option
    /// none of them honours is an error (or a warning, per its rule), one that some ignore a warning naming them.
    /// </summary>
    public EngineOptions Read(ParseResult parse, IReadOnlyList<string> engines, string candidate)
    {
        ArgumentNullException.ThrowIfNull(parse);
        foreach (var warning in EngineOptionRules.Check(this, parse, engines, candidate))
        {
            Commands.CommonOptions.WriteWarning(warning);
        }

        var precision = parse.GetValue(Precision) switch
        {
            "fp16" => Engines.Precision.Fp16,
            "int8" => Engines.Precision.Int8,
            _ => Engines.Precision.Fp32,
        };
        if (precision != Engines.Precision.Int8 && Given(parse).FirstOrDefault(o => o == Calibration || o == CalibrationMethod || o == Int8Activations) is { } stray)
        {
            throw new BatchwiseException($"{stray.Name} applies to --precision int8 only", "Add --precision int8, or drop it.");
        }

        var calibration = precision == Engines.Precision.Int8 ? ReadCalibration(parse) : Transforms.Int8Calibration.Default;

        return new EngineOptions
        {
            DeviceId = parse.GetValue(Device),
            Precision = precision,
            Calibration = calibration,
            AllowTf32 = parse.GetValue(Tf32),
            IntraOpThreads = parse.GetValue(Threads),
            InterOpThreads = parse.GetValue(InterOpThreads),
            GraphOptimization = parse.GetValue(GraphOptimization)!,
            ExecutionProvider = parse.GetValue(ExecutionProvider)!,
            UseCudaGraph = !parse.GetValue(NoCudaGraph),
            Tactics = parse.GetValue(Tactics) switch
            {
                "timed" => TacticSelection.Timed,
                "heuristic" => TacticSelection.Heuristic,
                _ => TacticSelection.EngineDefault,
            },
            BatchProfiles = parse.GetValue(BatchProfile) is { Length: > 0 } profiles ? profiles : [],
            ExactPlans = parse.GetValue(ExactPlans),
            ShapeProfiles = [.. (parse.GetValue(ShapeProfile) ?? []).Select(Engines.ShapeProfile.Parse)],
        };
    }

    /// <summary>--calibration, --calibration-method and --int8-activations as an <see cref="Transforms.Int8Calibration"/> (random:8 when --calibration is not given); the data checked now (a missing folder is an error before any model is read).</summary>
    public Transforms.Int8Calibration ReadCalibration(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        var data = parse.GetValue(Calibration) ?? Transforms.Int8Calibration.DefaultData;
        _ = Transforms.CalibrationData.Parse(data);
        return new Transforms.Int8Calibration(data, Transforms.Int8Calibration.ParseMethod(parse.GetValue(CalibrationMethod)!), Transforms.Int8Calibration.ParseSymmetric(parse.GetValue(Int8Activations)!));
    }

    /// <summary>The options of the group written on the command line (not left at their defaults).</summary>
    public IEnumerable<Option> Given(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        return All.Where(o => parse.GetResult(o) is { Implicit: false });
    }
}
