using System.CommandLine;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>Options and error handling shared by every command.</summary>
public static class CommonOptions
{
    /// <summary>Exit code for a user error (bad input, missing file, unsupported feature).</summary>
    public const int UserError = 2;

    /// <summary>Exit code for an unexpected failure.</summary>
    public const int InternalError = 1;

    /// <summary>--verbose: stack traces on failure, more detail while running.</summary>
    public static readonly Option<bool> Verbose = new("--verbose", "-v")
    {
        Description = "Show stack traces on failure and more detail while running",
        Recursive = true,
    };

    /// <summary>
    /// Sets an action that turns failures into one line on stderr and a non-zero exit code
    /// (the stack trace only with --verbose).
    /// </summary>
    public static void SetGuardedAction(this Command command, Func<ParseResult, CancellationToken, Task<int>> action)
    {
        ArgumentNullException.ThrowIfNull(command);
        command.SetAction(async (parse, ct) =>
        {
            var verbose = parse.GetValue(Verbose);
            try
            {
                return await action(parse, ct).ConfigureAwait(false);
            }
            catch (BatchwiseException e)
            {
                WriteError(e.OneLine);
                if (verbose)
                {
                    Console.Error.WriteLine(e.ToString());
                }

                return UserError;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                WriteError("cancelled");
                return 130;
            }
            catch (Exception e)
            {
                WriteError($"unexpected {e.GetType().Name}: {e.Message}" + (verbose ? string.Empty : " (run with --verbose for the stack trace)"));
                if (verbose)
                {
                    Console.Error.WriteLine(e.ToString());
                }

                return InternalError;
            }
        });
    }

    /// <summary>Sets a synchronous guarded action.</summary>
    public static void SetGuardedAction(this Command command, Func<ParseResult, int> action) =>
        command.SetGuardedAction((parse, _) => Task.FromResult(action(parse)));

    /// <summary>Writes "error: message" on one line to stderr.</summary>
    public static void WriteError(string message) => WriteLine("[red]error:[/]", message);

    /// <summary>Writes "warning: message" on one line to stderr.</summary>
    public static void WriteWarning(string message) => WriteLine("[yellow]warning:[/]", message);

    private static void WriteLine(string label, string message)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

        // Spectre wraps at the console width (80 when redirected); an error stays one line however long it is.
        var text = message.ReplaceLineEndings(" ");
        console.Profile.Width = Math.Max(console.Profile.Width, text.Length + 16);
        console.MarkupLine($"{label} {Markup.Escape(text)}");
    }
}
