using System.CommandLine;
using System.Reflection;
using Batchwise.Cli.Options;

namespace Batchwise.Cli.Tests.Options;

/// <summary>One way to say each thing: every command's options, enumerated from the real command tree.</summary>
public sealed class OptionConsistencyTests
{
    /// <summary>
    /// Flags known to differ, each with the reason and who removes it. Empty is the goal; a new entry needs a reason.
    /// </summary>
    private static readonly Dictionary<(string Command, string Flag), string> KnownDifferences = [];

    private static readonly string[] EngineCommands = ["bench", "build", "explain", "compare", "conformance", "serve", "optimize"];

    private static readonly string[] ReportingCommands = ["bench", "explain", "compare", "conformance", "optimize", "load", "devices"];

    /// <summary>Commands whose options the checks below must reach (the tree may hold more; it must hold these).</summary>
    private static readonly string[] MustEnumerate = ["zoo", "devices", "bench", "build", "explain", "compare", "conformance", "optimize", "serve", "load"];

    [Fact]
    public void The_enumeration_reaches_every_command_and_every_option_of_each()
    {
        var enumerated = AllOptions().GroupBy(x => x.Command).ToDictionary(g => g.Key, g => g.Select(x => x.Option.Name).ToHashSet(StringComparer.Ordinal), StringComparer.Ordinal);
        var root = Program.CreateRoot();
        Assert.All(MustEnumerate, name => Assert.Contains(root.Subcommands, c => c.Name == name));

        void Check(Command command, string path)
        {
            var own = command.Options.Where(o => o is not System.CommandLine.Help.HelpOption and not VersionOption).Select(o => o.Name).ToList();
            if (own.Count > 0)
            {
                Assert.True(enumerated.TryGetValue(path, out var seen), $"'{path}' was not enumerated");
                Assert.All(own, name => Assert.True(seen!.Contains(name), $"'{path} {name}' was not enumerated"));
            }

            foreach (var sub in command.Subcommands)
            {
                Check(sub, path.Length == 0 ? sub.Name : path + " " + sub.Name);
            }
        }

        Check(root, string.Empty);

        // The commands other helpers extend most are really read, with their own options.
        Assert.Contains("--http-port", enumerated["serve"]);
        Assert.Contains("--request-rate", enumerated["load"]);
        Assert.Contains("--output", enumerated["build"]);
        Assert.Contains("--filter", enumerated["conformance"]);
    }

    [Fact]
    public void Every_shared_option_is_on_every_command_with_its_one_name_type_help_name_aliases_and_help()
    {
        var canonical = SharedDeclarations().ToList();
        Assert.Contains(canonical, o => o.Name == "--engine");
        Assert.Contains(canonical, o => o.Name == "--batch-sizes");
        Assert.Contains(canonical, o => o.Name == "--json");
        var problems = new List<string>();
        var uses = 0;
        foreach (var (command, option) in AllOptions())
        {
            if (canonical.FirstOrDefault(c => c.Name == option.Name) is { } shared)
            {
                uses++;
                Compare(problems, $"{command} {option.Name}", shared, option);
            }
            else if (canonical.FirstOrDefault(c => c.Description == option.Description) is { } renamed)
            {
                // The same meaning (the same help) under another name: a flag that drifted.
                problems.Add($"{command} {option.Name}: says what {renamed.Name} says but is named differently");
            }
        }

        Assert.True(uses > canonical.Count, $"only {uses} uses of {canonical.Count} shared options were found");
        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [Fact]
    public void A_short_alias_means_the_same_long_flag_on_every_command()
    {
        // A flag's list form and its single form are one concept with one letter: -b is --batch-sizes where a command
        // sweeps and --batch-size where it runs one batch; -e is --engines on compare and --engine elsewhere.
        static string Concept(string name) => name.EndsWith('s') ? name[..^1] : name;
        var problems = AllOptions()
            .SelectMany(x => x.Option.Aliases.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).Select(a => (Alias: a, x.Command, x.Option.Name)))
            .GroupBy(x => x.Alias)
            .Where(g => g.Select(x => Concept(x.Name)).Distinct().Count() > 1)
            .Select(g => $"{g.Key}: {string.Join(", ", g.Select(x => $"{x.Command} {x.Name}"))}")
            .ToList();
        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [Fact]
    public void The_same_flag_has_the_same_aliases_type_help_name_and_help_on_every_command()
    {
        var byName = AllOptions()
            .Where(x => !KnownDifferences.ContainsKey((x.Command, x.Option.Name)))
            .GroupBy(x => x.Option.Name)
            .Where(g => g.Count() > 1);
        var problems = new List<string>();
        foreach (var group in byName)
        {
            var first = group.First();
            foreach (var other in group.Skip(1))
            {
                void Check(string what, string? a, string? b)
                {
                    if (!string.Equals(a, b, StringComparison.Ordinal))
                    {
                        problems.Add($"{group.Key}: {what} differs between {first.Command} ('{a}') and {other.Command} ('{b}')");
                    }
                }

                Check("type", first.Option.ValueType.Name, other.Option.ValueType.Name);
                Check("help", first.Option.Description, other.Option.Description);
                Check("help name", first.Option.HelpName, other.Option.HelpName);
                Check("aliases", string.Join(' ', first.Option.Aliases.Order(StringComparer.Ordinal)), string.Join(' ', other.Option.Aliases.Order(StringComparer.Ordinal)));
            }
        }

        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [Fact]
    public void Every_command_that_runs_a_model_takes_the_whole_engine_group()
    {
        var group = new EngineOptionGroup().All.Select(o => o.Name).ToList();
        // engine, device, precision, calibration, calibration method, int8 activations, tf32, threads, inter-op threads,
        // graph optimization, ep, cuda graph, tactics, batch profiles, exact plans and shape profiles
        Assert.Equal(16, group.Count);
        foreach (var name in EngineCommands)
        {
            var options = Command(name).Options.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);

            // compare names its two engines with --engines; the rest of the group is the same.
            var expected = name == "compare" ? group.Where(g => g != "--engine") : group;
            Assert.All(expected, flag => Assert.True(options.Contains(flag), $"{name} lacks {flag}"));
        }
    }

    [Fact]
    public void Every_command_that_reports_takes_json_and_csv_files_or_standard_output()
    {
        foreach (var name in ReportingCommands)
        {
            var options = Command(name).Options.ToDictionary(o => o.Name, StringComparer.Ordinal);
            foreach (var flag in new[] { "--json", "--csv" })
            {
                Assert.True(options.TryGetValue(flag, out var option), $"{name} lacks {flag}");
                Assert.Equal(typeof(string), option.ValueType);
                Assert.Equal("FILE|-", option.HelpName);
            }
        }
    }

    [Fact]
    public void Every_option_has_help()
    {
        var silent = AllOptions().Where(x => string.IsNullOrWhiteSpace(x.Option.Description)).Select(x => $"{x.Command} {x.Option.Name}").ToList();
        Assert.True(silent.Count == 0, string.Join(", ", silent));
    }

    [Fact]
    public void Every_size_option_is_a_size_in_the_one_convention()
    {
        var sizes = AllOptions().Where(x => x.Option.Name.EndsWith("-size", StringComparison.Ordinal) && !x.Option.Name.Contains("batch", StringComparison.Ordinal) && !x.Option.Name.Contains("body", StringComparison.Ordinal) && !x.Option.Name.Contains("queue", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(sizes);
        Assert.All(sizes, x => Assert.Equal(typeof(Batchwise.Analysis.InputSize), x.Option.ValueType));
    }

    [Fact]
    public async Task Help_and_errors_call_the_program_batchwise()
    {
        var (_, help, _) = await CliRunner.RunAsync("bench", "--help");
        Assert.Contains("batchwise bench <model> [options]", help, StringComparison.Ordinal);
        Assert.DoesNotContain("Batchwise.Cli", help, StringComparison.Ordinal);

        var (code, _, err) = await CliRunner.RunAsync("explain", "zoo:mlp", "--top", "x");
        Assert.Equal(2, code);
        Assert.Contains("Run `batchwise explain --help`", err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("bench", "--intra-op-threads", "--threads")]
    [InlineData("load", "--stability", "--stability-tolerance")]
    [InlineData("optimize", "--bench-seconds", "--duration")]
    [InlineData("optimize", "--verify-batch-sizes", "--batch-sizes")]
    public async Task A_renamed_flag_is_one_line_naming_its_replacement(string command, string old, string replacement)
    {
        string[] args = command switch
        {
            "load" => ["load", "127.0.0.1:1", "-m", "x", old, "10"],
            "optimize" => ["optimize", "zoo:mlp", "-o", "x.onnx", old, "1"],
            _ => [command, "zoo:mlp", old, "1"],
        };
        var (code, _, err) = await CliRunner.RunAsync(args);
        Assert.Equal(2, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains($"{old} is now {replacement}", err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("devices")]
    [InlineData("load", "127.0.0.1:1", "-m", "x", "-c", "1")]
    public async Task A_report_flag_without_a_file_says_to_write_a_file_or_a_dash(params string[] args)
    {
        var (code, _, err) = await CliRunner.RunAsync([.. args, "--json"]);
        Assert.Equal(2, code);
        Assert.Contains("--json needs a destination: --json FILE, or --json - for standard output", err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--duration", "3", 3.0)]
    [InlineData("--duration", "500ms", 0.5)]
    [InlineData("--duration", "2m", 120.0)]
    [InlineData("--duration", "00:00:03", 3.0)] // as help shows the default
    public void Durations_read_seconds_units_and_the_form_help_shows(string flag, string text, double seconds)
    {
        var bench = Command("bench");
        var option = (Option<TimeSpan>)bench.Options.Single(o => o.Name == flag);
        var parse = bench.Parse(["zoo:mlp", flag, text]);
        Assert.Empty(parse.Errors);
        Assert.Equal(seconds, parse.GetValue(option).TotalSeconds, 9);
    }

    [Theory]
    [InlineData("224", 224, 224)]
    [InlineData("480x640", 480, 640)]
    [InlineData("1600X1008", 1600, 1008)]
    public void Sizes_are_height_first(string text, int height, int width)
    {
        Assert.True(Batchwise.Analysis.InputSize.TryParse(text, out var size));
        Assert.Equal((height, width), (size.Height, size.Width));
        Assert.Equal(size, Batchwise.Analysis.InputSize.Parse(size.ToString())); // reports write sizes the way they are read
    }

    [Theory]
    [InlineData("640x")]
    [InlineData("0x10")]
    [InlineData("1x2x3")]
    [InlineData("big")]
    public void A_size_not_in_the_convention_is_an_error_that_teaches_it(string text)
    {
        var e = Assert.Throws<BatchwiseException>(() => Batchwise.Analysis.InputSize.Parse(text));
        Assert.Contains("HEIGHTxWIDTH, height first", e.OneLine, StringComparison.Ordinal);
    }

    private static Command Command(string name) => Program.CreateRoot().Subcommands.Single(c => c.Name == name);

    /// <summary>Options declared once for several commands: <see cref="SharedOptions"/>, the engine group and the report options.</summary>
    private static IEnumerable<Option> SharedDeclarations()
    {
        foreach (var factory in typeof(SharedOptions).GetMethods(BindingFlags.Public | BindingFlags.Static).Where(m => typeof(Option).IsAssignableFrom(m.ReturnType)))
        {
            var arguments = factory.GetParameters().Select(p => p.ParameterType.IsValueType ? Activator.CreateInstance(p.ParameterType) : null).ToArray();
            yield return (Option)factory.Invoke(null, arguments)!;
        }

        foreach (var option in new EngineOptionGroup().All)
        {
            yield return option;
        }

        var reporting = new Command("reporting");
        ReportOptions.AddTo(reporting, withHtml: true);
        foreach (var option in reporting.Options)
        {
            yield return option;
        }
    }

    private static void Compare(List<string> problems, string where, Option shared, Option used)
    {
        void Check(string what, string? expected, string? actual)
        {
            if (!string.Equals(expected, actual, StringComparison.Ordinal))
            {
                problems.Add($"{where}: {what} is '{actual}', the shared declaration says '{expected}'");
            }
        }

        Check("type", shared.ValueType.Name, used.ValueType.Name);
        Check("help", shared.Description, used.Description);
        Check("help name", shared.HelpName, used.HelpName);
        Check("aliases", string.Join(' ', shared.Aliases.Order(StringComparer.Ordinal)), string.Join(' ', used.Aliases.Order(StringComparer.Ordinal)));
    }

    private static List<(string Command, Option Option)> AllOptions()
    {
        var result = new List<(string, Option)>();
        void Walk(Command command, string path)
        {
            foreach (var option in command.Options.Where(o => o is not System.CommandLine.Help.HelpOption and not VersionOption))
            {
                result.Add((path, option));
            }

            foreach (var sub in command.Subcommands)
            {
                Walk(sub, path.Length == 0 ? sub.Name : path + " " + sub.Name);
            }
        }

        Walk(Program.CreateRoot(), string.Empty);
        return result;
    }
}
