namespace Batchwise.Server.Tests;

/// <summary>Waiting for server-side state the tests cannot be told about directly (it changes after a response is sent).</summary>
internal static class ServerState
{
    /// <summary>Waits until <paramref name="condition"/> holds, failing after 10 s.</summary>
    public static async Task Until(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not reached within 10 s");
            await Task.Delay(5, TestContext.Current.CancellationToken);
        }
    }
}
