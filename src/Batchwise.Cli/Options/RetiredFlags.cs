using System.CommandLine;
using System.CommandLine.Parsing;

namespace Batchwise.Cli.Options;

/// <summary>
/// Flags that were renamed when every command took the same option groups: each is one line naming its replacement,
/// not an "unrecognized argument" error. A flag that lost its value-less form (--json) is told how to write it now.
/// </summary>
public static class RetiredFlags
{
    /// <summary>(command, old flag) → the sentence that replaces it.</summary>
    public static readonly IReadOnlyDictionary<(string Command, string Flag), string> Table = new Dictionary<(string, string), string>
    {
        [("bench", "--intra-op-threads")] = "bench --intra-op-threads is now --threads (the same flag on every command)",
        [("load", "--stability")] = "load --stability is now --stability-tolerance, a share: 0.1 or 10% (it was a bare percentage)",
        [("optimize", "--bench-seconds")] = "optimize --bench-seconds is now --duration (e.g. --duration 1s)",
        [("optimize", "--verify-batch-sizes")] = "optimize --verify-batch-sizes is now --batch-sizes (-b)",
    };

    /// <summary>A one-line explanation of the parse's first error, where a retired flag or a missing value caused it; else null.</summary>
    public static string? Explain(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        var command = parse.CommandResult.Command.Name;
        foreach (var token in parse.UnmatchedTokens)
        {
            var flag = token.Split('=', 2)[0];
            if (Table.TryGetValue((command, flag), out var replacement))
            {
                return replacement;
            }
        }

        if (parse.Errors.Count > 0 && parse.Errors[0].SymbolResult is OptionResult { Tokens.Count: 0 } missing && missing.Option.Arity.MinimumNumberOfValues > 0)
        {
            var o = missing.Option;
            return o.HelpName == "FILE|-"
                ? $"{o.Name} needs a destination: {o.Name} FILE, or {o.Name} - for standard output"
                : $"{o.Name} needs a value: {o.Name} {o.HelpName ?? "VALUE"}";
        }

        return null;
    }
}
