namespace Batchwise.Server;

/// <summary>
/// .NET's sockets on Linux and macOS hand each completed receive and send from their epoll/kqueue thread to the thread
/// pool, one hop per operation; with <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1</c> the continuation runs on the
/// event thread itself, and the runtime then keeps one event thread per core. The runtime reads the variable once, when
/// the process makes its first asynchronous socket operation: <see cref="TryPreferInline"/> works only before that.
/// </summary>
public static class InlineSocketCompletions
{
    /// <summary>The runtime's variable.</summary>
    public const string Variable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>
    /// Sets the variable to 1 for this process unless its environment already sets it (a user's 0 is kept). True when the
    /// variable is 1 afterwards; whether the runtime reads it depends on no socket having been used yet.
    /// </summary>
    public static bool TryPreferInline()
    {
        var given = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrEmpty(given))
        {
            Environment.SetEnvironmentVariable(Variable, "1");
            return true;
        }

        return given == "1";
    }
}
