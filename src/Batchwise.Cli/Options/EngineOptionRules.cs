using System.CommandLine;

namespace Batchwise.Cli.Options;

/// <summary>
/// Which engine cannot honour which option of the <see cref="EngineOptionGroup"/>, in one table: an option written on
/// the command line for an engine that would not use it is never dropped silently. It is a one-line error naming the
/// option and the engine; or, where the flag asks for what the engine does anyway, a one-line warning and the run goes on.
/// </summary>
public static class EngineOptionRules
{
    /// <summary>Whether a rule stops the command or only warns.</summary>
    public enum Severity
    {
        /// <summary>The engine cannot do what the flag asks: the command stops (exit code 2).</summary>
        Error,

        /// <summary>The engine already does what the flag asks: a warning line, and the run goes on.</summary>
        Warning,
    }

    /// <summary>One option that one engine does not honour.</summary>
    /// <param name="Option">The option, from the group.</param>
    /// <param name="Engine">The engine's registered name.</param>
    /// <param name="Severity">Error or warning.</param>
    /// <param name="Why">Why the engine does not honour it, after "OPTION does not apply to the ENGINE engine: ".</param>
    /// <param name="Fix">What to do instead (errors only).</param>
    /// <param name="Applies">Whether the rule applies to the value given (null: whatever the value).</param>
    public sealed record Rule(Option Option, string Engine, Severity Severity, string Why, string Fix, Func<ParseResult, bool>? Applies = null);

    /// <summary>The rules for a group's options.</summary>
    public static IReadOnlyList<Rule> For(EngineOptionGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        return
        [
            // ort: the GPU engine's options.
            new(group.Device, "ort", Severity.Error, "its cpu and openvino execution providers run on this machine's CPU, not a GPU", "Drop --device, or use --ep cuda or --engine cuda to run on a GPU.",
                parse => parse.GetValue(group.Device) != 0 && parse.GetValue(group.ExecutionProvider) is "cpu" or "openvino"),
            new(group.Precision, "ort", Severity.Error, "it runs the model in the precision it is stored in (or int8, quantized as it loads)", "Convert the model with `batchwise optimize MODEL --fp16 -o OUT.onnx`, or use --engine cuda --precision fp16.",
                parse => parse.GetValue(group.Precision) == "fp16"),
            new(group.Tf32, "ort", Severity.Error, "Batchwise does not set TF32 on ONNX Runtime (on the CPU there is none)", "Drop --tf32, or use --engine cuda.", parse => parse.GetValue(group.Tf32)),
            new(group.NoCudaGraph, "ort", Severity.Warning, "it never replays CUDA graphs, so its kernels are launched one by one already", string.Empty, parse => parse.GetValue(group.NoCudaGraph)),
            new(group.Tactics, "ort", Severity.Error, "ONNX Runtime chooses its kernels itself", "Drop --tactics, or use --engine cuda."),
            new(group.BatchProfile, "ort", Severity.Error, "it runs every batch size without building a plan for it", "Drop --batch-profile, or use --engine cuda."),
            new(group.ExactPlans, "ort", Severity.Error, "it runs every batch size at its own size, padding none", "Drop --exact-plans, or use --engine cuda --batch-profile ...", parse => parse.GetValue(group.ExactPlans)),
            new(group.ShapeProfile, "ort", Severity.Error, "it runs every shape without building a plan for it", "Drop --shape-profile, or use --engine cuda."),

            // cuda: ONNX Runtime's options.
            new(group.Threads, "cuda", Severity.Error, "it is ONNX Runtime's intra-op thread count, and the cuda engine runs operators on the GPU", "Drop --threads, or use --engine ort."),
            new(group.InterOpThreads, "cuda", Severity.Error, "it is ONNX Runtime's inter-op thread count, and the cuda engine runs operators on the GPU", "Drop --inter-op-threads, or use --engine ort."),
            new(group.GraphOptimization, "cuda", Severity.Error, "it is ONNX Runtime's graph optimisation level, and the cuda engine plans the graph itself", "Drop --graph-optimization, or use --engine ort."),
            new(group.ExecutionProvider, "cuda", Severity.Error, "it picks ONNX Runtime's execution provider", "Drop --ep, or use --engine ort --ep cuda for ONNX Runtime on a GPU."),
        ];
    }

    /// <summary>
    /// Checks the options written on the command line against the engines they go to: an option that no target engine
    /// honours is an error (or a warning, per its rule); one that some honour and others not (compare's two engines) is a
    /// warning naming the engine that ignores it. Returns the warning lines; throws the first error.
    /// </summary>
    /// <param name="group">The group.</param>
    /// <param name="parse">The parsed command line.</param>
    /// <param name="engines">The engines every option goes to.</param>
    /// <param name="candidate">The engine <see cref="EngineOptionGroup.CandidateOnly"/> options go to alone.</param>
    public static IReadOnlyList<string> Check(EngineOptionGroup group, ParseResult parse, IReadOnlyList<string> engines, string candidate)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(parse);
        ArgumentNullException.ThrowIfNull(engines);
        var warnings = new List<string>();
        var rules = For(group);
        foreach (var option in group.Given(parse))
        {
            var targets = group.CandidateOnly.Contains(option) ? [candidate] : engines.Distinct(StringComparer.Ordinal).ToList();
            var refusing = targets
                .Select(engine => rules.FirstOrDefault(r => r.Option == option && r.Engine == engine && (r.Applies is null || r.Applies(parse))))
                .OfType<Rule>()
                .ToList();
            if (refusing.Count == 0)
            {
                continue;
            }

            var flag = Written(option, parse);
            var first = refusing[0];
            var sentence = $"{flag} does not apply to the {first.Engine} engine: {first.Why}";
            if (refusing.Count < targets.Count)
            {
                var users = string.Join(" and ", targets.Except(refusing.Select(r => r.Engine)));
                warnings.Add($"{sentence}; it applies to the {users} engine only");
            }
            else if (first.Severity == Severity.Warning)
            {
                warnings.Add($"{sentence}; ignored");
            }
            else
            {
                throw new BatchwiseException(sentence, first.Fix);
            }
        }

        return warnings;
    }

    /// <summary>The option as written: a flag alone, or with its value where the value is what the rule is about.</summary>
    private static string Written(Option option, ParseResult parse)
    {
        var tokens = parse.GetResult(option)?.Tokens;
        return option.Arity.MaximumNumberOfValues == 0 || tokens is not { Count: > 0 } ? option.Name : $"{option.Name} {tokens[^1].Value}";
    }
}
