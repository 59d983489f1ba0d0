namespace Batchwise.Tests;

/// <summary>
/// Tests that need a tool or data from the system (chromium, libonnx-testdata): they skip on a developer machine without
/// it, and fail where CI promised it (BATCHWISE_REQUIRE_TEST_TOOLS=1, set by .ci/run after installing them).
/// </summary>
internal static class TestTools
{
    public static void Require(bool present, string reason)
    {
        if (present)
        {
            return;
        }

        if (Environment.GetEnvironmentVariable("BATCHWISE_REQUIRE_TEST_TOOLS") == "1")
        {
            Assert.Fail($"BATCHWISE_REQUIRE_TEST_TOOLS=1, yet {reason}");
        }

        Assert.Skip(reason);
    }
}
