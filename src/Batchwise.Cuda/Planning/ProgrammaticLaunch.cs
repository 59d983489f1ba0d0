namespace Batchwise.Cuda.Planning;

/// <summary>
/// Programmatic dependent launch (sm_90): a plan's generated kernels launched with the attribute, so the GPU schedules
/// each while the kernel before it finishes, and each waits for that kernel in its first statement
/// (<see cref="Kernels.KernelWriter.PdlEnter"/>). At batch 1 a plan is a chain of short kernels whose launch gaps are a
/// large part of its time (ResNet-50 fp16: 56 kernels in ~300 us on an H200); cuDNN's and cuBLASLt's kernels keep
/// their ordinary launches, so only the boundaries into generated kernels can overlap.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>BATCHWISE_PDL: off (the default until measured on a GPU) or on.</summary>
    internal static bool ProgrammaticLaunchFromEnvironment => ParseProgrammaticLaunch(Environment.GetEnvironmentVariable("BATCHWISE_PDL"));

    /// <summary>BATCHWISE_PDL's value: unset, empty, off or 0 is off; on or 1 is on; anything else is refused with what to write.</summary>
    internal static bool ParseProgrammaticLaunch(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "off" or "0" => false,
        "on" or "1" => true,
        var other => throw new BatchwiseException($"BATCHWISE_PDL '{other}' is not on or off", "Unset it (each kernel launched after the one before it has ended) or set BATCHWISE_PDL=on (generated kernels overlap the end of the kernel before them on sm_90 GPUs)."),
    };
}
