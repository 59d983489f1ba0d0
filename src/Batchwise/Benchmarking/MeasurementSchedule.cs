namespace Batchwise.Benchmarking;

/// <summary>Where a point's measurement stands.</summary>
public enum MeasurementStage
{
    /// <summary>Runs are made and discarded until the warm-up time has passed and every thread has run once.</summary>
    WarmingUp,

    /// <summary>Measurement windows follow one another until the stopping rule says enough.</summary>
    Measuring,

    /// <summary>The point is measured; <see cref="MeasurementSchedule.Finish"/> says why it stopped.</summary>
    Finished,
}

/// <summary>What the driver of a point does after an observation.</summary>
public enum ScheduleStep
{
    /// <summary>Keep the threads running and observe again later (the stage or window is not over).</summary>
    Continue,

    /// <summary>The stage or window just ended: its last run's end and the run count start the next window.</summary>
    StartWindow,

    /// <summary>Stop the threads: the point is measured.</summary>
    Stop,
}

/// <summary>Why a point's measurement stopped.</summary>
public enum FinishReason
{
    /// <summary>The last three windows' throughputs agree within the tolerance (perf_analyzer's rule).</summary>
    Stable,

    /// <summary>The window limit was reached without agreement: the point is reported unstable.</summary>
    WindowLimit,

    /// <summary>The sweep's time budget ran out after at least three windows: the point is reported as measured so far.</summary>
    TimeBudget,
}

/// <summary>What the driver saw since the current stage or window began.</summary>
/// <param name="Elapsed">Time since the warm-up or the current window began.</param>
/// <param name="Runs">Runs completed (all threads) since then.</param>
/// <param name="EveryThreadRan">Whether every thread has completed at least one run since the point began.</param>
/// <param name="OverBudget">Whether the sweep's time budget is spent (<see cref="MeasurementSchedule.IsOverBudget"/>).</param>
/// <param name="ToLastRun">
/// Time from the window's start to the end of the last of its <paramref name="Runs"/> (null: taken as <paramref name="Elapsed"/>).
/// A closed window spans exactly this, from one run's end to another's, so it holds whole runs: a window that ends at an
/// arbitrary instant counts the run in flight as nothing, and where a run is a large part of a window (77 ms runs in
/// 100 ms windows) three windows held 3 runs or 4 by chance, a rate 25% apart that every window repeated.
/// </param>
public readonly record struct ScheduleObservation(TimeSpan Elapsed, long Runs, bool EveryThreadRan, bool OverBudget, TimeSpan? ToLastRun = null);

/// <summary>One closed measurement window as the schedule judged it.</summary>
/// <param name="Seconds">Its length: from the run's end that began it to its last run's end.</param>
/// <param name="Runs">Runs completed in it.</param>
public readonly record struct ScheduleWindow(double Seconds, long Runs)
{
    /// <summary>Runs per second (proportional to samples per second at a fixed batch size, which is all stability compares).</summary>
    public double Rate => Runs / Seconds;
}

/// <summary>
/// bench's measurement policy for one point, as a pure state machine in the manner of BenchmarkDotNet's engine stages:
/// warm-up (until <see cref="BenchmarkOptions.Warmup"/> has passed and every thread has run once), then windows of
/// <see cref="BenchmarkOptions.Window"/> (each lasting until at least one run ends in it, and measured from one run's
/// end to another's: <see cref="ScheduleObservation.ToLastRun"/>) until the last three agree
/// within <see cref="BenchmarkOptions.StabilityTolerance"/>, or <see cref="BenchmarkOptions.MaxWindows"/> windows have
/// passed, or the sweep's time budget is spent after three windows. It owns no thread and reads no clock: the driver
/// (bench's coordinator thread) feeds it <see cref="ScheduleObservation"/>s and does what <see cref="Observe"/> says.
/// </summary>
public sealed class MeasurementSchedule
{
    /// <summary>Windows the stability rule compares, and the fewest a point is reported from.</summary>
    public const int JudgedWindows = 3;

    private readonly List<ScheduleWindow> _windows = [];

    /// <summary>Creates the schedule of one point under the sweep's options.</summary>
    public MeasurementSchedule(BenchmarkOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Warmup = options.Warmup;
        Window = options.Window;
        Tolerance = options.StabilityTolerance;
        MaxWindows = options.MaxWindows;
    }

    /// <summary>The least warm-up time.</summary>
    public TimeSpan Warmup { get; }

    /// <summary>The least length of a window.</summary>
    public TimeSpan Window { get; }

    /// <summary>The stability tolerance (a fraction of the mean).</summary>
    public double Tolerance { get; }

    /// <summary>Windows at most.</summary>
    public int MaxWindows { get; }

    /// <summary>The current stage.</summary>
    public MeasurementStage Stage { get; private set; } = MeasurementStage.WarmingUp;

    /// <summary>Why the point stopped, once <see cref="Stage"/> is <see cref="MeasurementStage.Finished"/>.</summary>
    public FinishReason? Finish { get; private set; }

    /// <summary>Runs completed during warm-up (all threads), known once measuring begins.</summary>
    public long WarmupRuns { get; private set; }

    /// <summary>Every window closed so far, in order.</summary>
    public IReadOnlyList<ScheduleWindow> Windows => _windows;

    /// <summary>
    /// Whether a sweep may start another point: the first always runs (there is nothing to report otherwise); after it,
    /// none starts once <paramref name="elapsed"/> has reached the budget (null: no budget).
    /// </summary>
    public static bool MayStartPoint(int pointsMeasured, TimeSpan elapsed, TimeSpan? budget) =>
        pointsMeasured == 0 || !IsOverBudget(elapsed, budget);

    /// <summary>Whether the sweep's time budget is spent (null: there is none).</summary>
    public static bool IsOverBudget(TimeSpan elapsed, TimeSpan? budget) => budget is { } b && elapsed >= b;

    /// <summary>Takes what the driver saw since the current stage or window began and says what to do next.</summary>
    public ScheduleStep Observe(ScheduleObservation observation)
    {
        switch (Stage)
        {
            case MeasurementStage.WarmingUp:
                if (observation.Elapsed < Warmup || !observation.EveryThreadRan)
                {
                    return ScheduleStep.Continue;
                }

                WarmupRuns = observation.Runs;
                Stage = MeasurementStage.Measuring;
                return ScheduleStep.StartWindow;

            case MeasurementStage.Measuring:
                // A window lasts its length and until a run has ended in it: a run longer than the window is not a zero.
                if (observation.Elapsed < Window || observation.Runs <= 0)
                {
                    return ScheduleStep.Continue;
                }

                _windows.Add(new ScheduleWindow((observation.ToLastRun is { } span && span > TimeSpan.Zero ? span : observation.Elapsed).TotalSeconds, observation.Runs));
                Finish = IsStable() ? FinishReason.Stable
                    : _windows.Count >= MaxWindows ? FinishReason.WindowLimit
                    : _windows.Count >= JudgedWindows && observation.OverBudget ? FinishReason.TimeBudget
                    : null;
                if (Finish is null)
                {
                    return ScheduleStep.StartWindow;
                }

                Stage = MeasurementStage.Finished;
                return ScheduleStep.Stop;

            default:
                throw new InvalidOperationException("The point is already measured; a new point needs a new schedule.");
        }
    }

    /// <summary>Whether the last three windows agree (the verdict reported with the point).</summary>
    public bool IsStable() => Statistics.IsStable(_windows.Select(w => w.Rate).ToList(), Tolerance, JudgedWindows);
}
