using System.CommandLine;

namespace Batchwise.Cli.Options;

/// <summary>
/// Options that several commands take besides the engine group, declared once: each factory gives a command its own
/// instance with the one name, type and help text (only the default may differ by command).
/// </summary>
public static class SharedOptions
{
    /// <summary>--batch-sizes, -b: the batch sizes a sweep measures (null default: the command picks).</summary>
    public static Option<int[]?> BatchSizes(int[]? defaultValue) =>
        CliOption.IntegerList("--batch-sizes", "Batch sizes to measure, comma-separated", "1,2,4,8", defaultValue, "-b");

    /// <summary>--batch-size, -b: one batch size.</summary>
    public static Option<int> BatchSize() =>
        CliOption.Integer("--batch-size", "Batch size of each run or request (fills a dynamic first dimension)", 1, 1, "-b");

    /// <summary>--max-batch-size: the largest batch.</summary>
    public static Option<int?> MaxBatchSize() =>
        CliOption.OptionalInteger("--max-batch-size", "Largest batch size: the end of bench's default sweep (default 256); the largest merged batch serve runs (default 32 for a model with a dynamic batch axis, else 0)", int.MinValue); // the range is the library's to say

    /// <summary>--concurrency, -c: how many runs or requests are in flight at once.</summary>
    public static Option<int[]?> Concurrency(int[]? defaultValue) =>
        CliOption.IntegerList("--concurrency", "Runs or requests in flight at once, each from its own thread or client; comma-separated for a sweep", "1,2,4", defaultValue, "-c");

    /// <summary>--duration, -d: measurement time per point.</summary>
    public static Option<TimeSpan> Duration(TimeSpan defaultValue) =>
        CliOption.Duration("--duration", "Measurement time per point, in three windows of a third each (more if they disagree)", defaultValue, allowZero: false, "-d");

    /// <summary>--warmup: time run and discarded before each point.</summary>
    public static Option<TimeSpan> Warmup(TimeSpan defaultValue) =>
        CliOption.Duration("--warmup", "Warm-up before each point, run and discarded (every thread or client runs at least once)", defaultValue, allowZero: true);

    /// <summary>--stability-tolerance: when windows agree.</summary>
    public static Option<double> StabilityTolerance() =>
        CliOption.Fraction("--stability-tolerance", "A point is stable when three consecutive windows' throughputs (and, for load, median latencies) lie within this share of their mean", 0.1);

    /// <summary>--seed: the seed of random inputs.</summary>
    public static Option<int> Seed() => CliOption.Integer("--seed", "Seed of the random inputs", int.MinValue, 0);

    /// <summary>--shape: sizes of dynamic dimensions.</summary>
    public static Option<string[]> Shape() => new("--shape")
    {
        Description = "Size of another dynamic dimension: SYMBOL=SIZE (seq=128) or INPUT:DIMS with `batch` for the batch axis (input_ids:batch,128); repeatable",
        HelpName = "SPEC",
    };

    /// <summary>--input: real data for an input.</summary>
    public static Option<string[]> Input() => new("--input")
    {
        Description = "Real data for an input from a .npy file: NAME=FILE.npy (one sample, or [k, ...] samples repeated along the batch); repeatable",
        HelpName = "NAME=FILE",
    };

    /// <summary>--rtol: relative tolerance.</summary>
    public static Option<double> Rtol(double defaultValue) =>
        CliOption.Number("--rtol", "Relative tolerance: an output passes when |a-b| <= atol + rtol*|b| everywhere (b the reference)", defaultValue);

    /// <summary>--atol: absolute tolerance.</summary>
    public static Option<double> Atol(double defaultValue) =>
        CliOption.Number("--atol", "Absolute tolerance (see --rtol)", defaultValue);

    /// <summary>--recalibrate: measure the device's ceilings again.</summary>
    public static Option<bool> Recalibrate() => new("--recalibrate") { Description = "Measure the device's ceilings again instead of reading them from the cache" };

    /// <summary>--output, -o: where a command writes the model it makes.</summary>
    public static Option<string> Output() => new("--output", "-o") { Description = "Where to write what the command makes: an .onnx file (optimize, zoo export), a saved engine .bwengine (build) that bench, serve and compare take where they take a model", Required = true, HelpName = "FILE" };

    /// <summary>--input-size: an input size in the one convention.</summary>
    public static Option<Analysis.InputSize?> InputSize() =>
        CliOption.Size("--input-size", $"Input size: {Analysis.InputSize.Convention} (e.g. 224 or 480x640); a sequence length for token inputs");
}
