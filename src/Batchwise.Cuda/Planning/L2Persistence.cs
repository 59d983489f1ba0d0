using System.Globalization;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// L2 persistence for a plan's constants (<c>BATCHWISE_L2_PERSIST</c>, an experiment, off by default). At batch 1 a
/// ResNet-50 in half precision reads ~44-51 MB of weights a run through a 50 MB L2, in the same order every run, so the
/// weights may evict each other before the next run reads them. With the setting, part of the L2 is set aside for
/// persisting lines (<c>cuCtxSetLimit(CU_LIMIT_PERSISTING_L2_CACHE_SIZE)</c>) and every kernel of the plan's CUDA graph
/// gets an access-policy window over the plan's constants, its hit ratio the set-aside's share of the window: that share
/// of the weights stays in L2 from one run to the next, the rest and the activations are cached as before. Measured on an
/// H100 (session 51): ResNet-50 b=1 +0.9%, b=8 -13% (the set-aside is cache the activations lose), so it stays off.
/// </summary>
internal static class L2Persistence
{
    /// <summary>The environment variable.</summary>
    public const string Switch = "BATCHWISE_L2_PERSIST";

    /// <summary>BATCHWISE_L2_PERSIST: null (off), <see cref="long.MaxValue"/> (on: the most the device sets aside) or the bytes to set aside.</summary>
    internal static long? SetAsideFromEnvironment => Parse(Environment.GetEnvironmentVariable(Switch));

    /// <summary>BATCHWISE_L2_PERSIST's value: unset, empty, off or 0 is off; on or max is the device's most; a whole number is MiB; anything else is refused with what to write.</summary>
    internal static long? Parse(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "off" or "0" => null,
        "on" or "max" => long.MaxValue,
        var text when long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var mib) && mib is > 0 and < 1 << 20 => mib << 20,
        var other => throw new BatchwiseException($"{Switch} '{other}' is not on, off or a size in MiB", $"Unset it (the L2 caches weights like everything else), or set {Switch}=on (the most L2 the device sets aside for the plan's weights) or a whole number of MiB to set aside."),
    };

    /// <summary>The engine description's line for the setting.</summary>
    internal static string Describe(long? setAside) => setAside switch
    {
        null => $"off (weights cached like activations; {Switch}=on|MiB keeps a share of them in L2 from run to run)",
        long.MaxValue => $"on ({Switch}): the device's largest L2 set-aside for persisting lines, an access-policy window over the plan's constants on every kernel of its CUDA graph",
        var bytes => string.Create(CultureInfo.InvariantCulture, $"{bytes >> 20} MiB ({Switch}) of L2 set aside for persisting lines, an access-policy window over the plan's constants on every kernel of its CUDA graph"),
    };

    /// <summary>Writes what a plan with the setting on keeps in L2 to standard error, once per plan (an experiment's trace), or why a context's graph was given up.</summary>
    internal static void Report(L2Window? window, string? captureProblem = null)
    {
        Console.Error.WriteLine("[l2] " + (captureProblem is not null ? $"the CUDA graph with the window was given up (runs go step by step, without it): {captureProblem}"
            : window?.Describe() ?? "no window: the plan has no constants on the device, or the device sets no L2 aside"));
        Console.Error.Flush();
    }

    /// <summary>
    /// The access-policy window for constants at <paramref name="constants"/> (device address, bytes) with
    /// <paramref name="setAside"/> bytes of L2 for persisting lines and windows of at most <paramref name="maxWindow"/>
    /// bytes: the address range, in one window, that holds the most constant bytes (all of them where their span fits),
    /// and a hit ratio of the set-aside's share of that range (at most 1). Null where there is nothing to keep.
    /// </summary>
    internal static L2Window? Window(IReadOnlyList<(ulong Pointer, long Bytes)> constants, long setAside, long maxWindow)
    {
        var sorted = constants.Where(c => c.Bytes > 0).OrderBy(c => c.Pointer).ToArray();
        if (sorted.Length == 0 || setAside <= 0 || maxWindow <= 0)
        {
            return null;
        }

        // Two pointers over the constants in address order: the run [first, last] whose span fits one window and holds
        // the most bytes (a constant larger than a window alone is cut to the window).
        var total = sorted.Sum(c => c.Bytes);
        (int First, int Last, long Held) best = (0, 0, Math.Min(sorted[0].Bytes, maxWindow));
        long held = 0;
        var first = 0;
        for (var last = 0; last < sorted.Length; last++)
        {
            held += sorted[last].Bytes;
            while (first < last && End(sorted[last]) - sorted[first].Pointer > (ulong)maxWindow)
            {
                held -= sorted[first].Bytes;
                first++;
            }

            var inWindow = Math.Min(held, maxWindow);
            if (inWindow > best.Held)
            {
                best = (first, last, inWindow);
            }
        }

        var start = sorted[best.First].Pointer;
        var span = (long)Math.Min(End(sorted[best.Last]) - start, (ulong)maxWindow);
        var hitRatio = (float)Math.Min(1.0, setAside / (double)span);
        return new L2Window(start, span, hitRatio, setAside, best.Held, total);

        static ulong End((ulong Pointer, long Bytes) c) => c.Pointer + (ulong)c.Bytes;
    }
}

/// <summary>
/// An access-policy window: <paramref name="Bytes"/> from <paramref name="Base"/>, a <paramref name="HitRatio"/> share of
/// its lines persisting in the <paramref name="SetAside"/> bytes of L2; it holds <paramref name="ConstantBytes"/> of the
/// plan's <paramref name="TotalConstantBytes"/> bytes of constants.
/// </summary>
internal sealed record L2Window(ulong Base, long Bytes, float HitRatio, long SetAside, long ConstantBytes, long TotalConstantBytes)
{
    /// <summary>One line for a trace: the window, its hit ratio, the set-aside and what of the constants it covers.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture, $"window {Bytes / 1e6:F1} MB at hit ratio {HitRatio:F2} ({SetAside / 1e6:F1} MB of L2 set aside) over {ConstantBytes / 1e6:F1} of the plan's {TotalConstantBytes / 1e6:F1} MB of constants");
}
