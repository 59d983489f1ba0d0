namespace Batchwise.Cli.Tests;

/// <summary>GPU tests of the CLI: skip without a GPU, fail instead where BATCHWISE_REQUIRE_GPU=1 (the device run).</summary>
internal static class GpuTest
{
    public static void Require()
    {
        try
        {
            Batchwise.Cuda.CudaDevices.List();
        }
        catch (BatchwiseException e)
        {
            if (Environment.GetEnvironmentVariable("BATCHWISE_REQUIRE_GPU") == "1")
            {
                Assert.Fail($"BATCHWISE_REQUIRE_GPU=1, yet this GPU test cannot run: {e.Message}");
            }

            Assert.Skip(e.Message);
        }
    }
}
