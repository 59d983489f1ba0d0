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

    /// <summary>
    /// BATCHWISE_SMEM_CARVEOUT: null (unset: the driver's choice for each generated kernel) or the percentage of the
    /// unified L1 / shared memory every generated kernel prefers as shared memory (0-100, <c>max</c> = 100). cuDNN's and
    /// cuBLASLt's large kernels run at the largest carve-out; a generated kernel between two of them that prefers another
    /// makes the SM change its split at each boundary, and blocks of two kernels with different splits cannot share an
    /// SM while one ends and the next begins.
    /// </summary>
    internal static int? SharedCarveoutFromEnvironment => ParseSharedCarveout(Environment.GetEnvironmentVariable("BATCHWISE_SMEM_CARVEOUT"));

    /// <summary>BATCHWISE_SMEM_CARVEOUT's value: unset, empty or default is null; max is 100; a whole number 0-100 is itself; anything else is refused with what to write.</summary>
    internal static int? ParseSharedCarveout(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "default" => null,
        "max" => 100,
        var text when int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var percent) && percent <= 100 => percent,
        var other => throw new BatchwiseException($"BATCHWISE_SMEM_CARVEOUT '{other}' is not a percentage", "Unset it (the driver picks each generated kernel's shared memory split), or set it to max or a whole number 0-100 (the share of L1 every generated kernel prefers as shared memory)."),
    };
}
