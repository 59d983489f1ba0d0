namespace Batchwise.Server.Tests;

/// <summary>The load generator and serve --inline-io ask the runtime for inline socket completions, unless the user said otherwise.</summary>
public sealed class InlineSocketCompletionsTests
{
    [Fact]
    public void Sets_the_variable_when_the_environment_leaves_it_unset_and_keeps_what_the_user_set()
    {
        var original = Environment.GetEnvironmentVariable(InlineSocketCompletions.Variable);
        try
        {
            Environment.SetEnvironmentVariable(InlineSocketCompletions.Variable, null);
            Assert.True(InlineSocketCompletions.TryPreferInline());
            Assert.Equal("1", Environment.GetEnvironmentVariable(InlineSocketCompletions.Variable));

            Environment.SetEnvironmentVariable(InlineSocketCompletions.Variable, "0");
            Assert.False(InlineSocketCompletions.TryPreferInline());
            Assert.Equal("0", Environment.GetEnvironmentVariable(InlineSocketCompletions.Variable));

            Environment.SetEnvironmentVariable(InlineSocketCompletions.Variable, "1");
            Assert.True(InlineSocketCompletions.TryPreferInline());
        }
        finally
        {
            Environment.SetEnvironmentVariable(InlineSocketCompletions.Variable, original);
        }
    }
}
