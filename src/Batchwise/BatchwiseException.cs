namespace Batchwise;

/// <summary>A failure the user can act on: what went wrong and how to fix it.</summary>
public class BatchwiseException : Exception
{
    /// <summary>Creates a user-facing failure with a message and a hint.</summary>
    public BatchwiseException(string message, string? hint = null, Exception? inner = null)
        : base(message, inner)
    {
        Hint = hint;
    }

    /// <summary>What the user can do about it (one sentence), if anything.</summary>
    public string? Hint { get; }

    /// <summary>The message and the hint on one line, as the CLI prints them.</summary>
    public string OneLine => Hint is null ? Message : $"{Message.TrimEnd('.')}. {Hint}";
}
