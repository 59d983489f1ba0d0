using Batchwise.Benchmarking;

namespace Batchwise.Tests.Benchmarking;

/// <summary>bench's measurement policy alone: fed observations by hand, no thread and no clock.</summary>
public sealed class MeasurementScheduleTests
{
    // Warm-up 1 s, windows of 1 s (duration 3 s), tolerance 10%, at most 6 windows.
    private static readonly BenchmarkOptions Options = new()
    {
        Warmup = TimeSpan.FromSeconds(1),
        Duration = TimeSpan.FromSeconds(3),
        StabilityTolerance = 0.1,
        MaxWindows = 6,
    };

    [Fact]
    public void Warm_up_ends_once_its_time_has_passed_and_every_thread_has_run()
    {
        var schedule = new MeasurementSchedule(Options);

        Assert.Equal(ScheduleStep.Continue, schedule.Observe(new(TimeSpan.FromSeconds(0.5), 40, EveryThreadRan: true, OverBudget: false)));
        Assert.Equal(ScheduleStep.Continue, schedule.Observe(new(TimeSpan.FromSeconds(2), 90, EveryThreadRan: false, OverBudget: false)));
        Assert.Equal(MeasurementStage.WarmingUp, schedule.Stage);

        Assert.Equal(ScheduleStep.StartWindow, schedule.Observe(new(TimeSpan.FromSeconds(2.5), 95, EveryThreadRan: true, OverBudget: false)));
        Assert.Equal(MeasurementStage.Measuring, schedule.Stage);
        Assert.Equal(95, schedule.WarmupRuns);
        Assert.Empty(schedule.Windows);
    }

    [Fact]
    public void A_window_spans_from_a_runs_end_to_its_last_runs_end_not_to_the_instant_it_was_observed()
    {
        var schedule = new MeasurementSchedule(Options);
        schedule.Observe(new(TimeSpan.FromSeconds(2), 10, EveryThreadRan: true, OverBudget: false));

        // Observed 1.2 s in, its last run ended at 0.9 s: the window is 0.9 s of 3 runs, not 1.2 s.
        Assert.Equal(ScheduleStep.StartWindow, schedule.Observe(new(TimeSpan.FromSeconds(1.2), 3, EveryThreadRan: true, OverBudget: false, ToLastRun: TimeSpan.FromSeconds(0.9))));
        Assert.Equal(0.9, schedule.Windows[0].Seconds, 9);
        Assert.Equal(3 / 0.9, schedule.Windows[0].Rate, 9);
    }

    [Fact]
    public void A_zero_warm_up_still_waits_for_every_thread_to_run_once()
    {
        var schedule = new MeasurementSchedule(Options with { Warmup = TimeSpan.Zero });
        Assert.Equal(ScheduleStep.Continue, schedule.Observe(new(TimeSpan.Zero, 0, EveryThreadRan: false, OverBudget: false)));
        Assert.Equal(ScheduleStep.StartWindow, schedule.Observe(new(TimeSpan.FromMilliseconds(3), 2, EveryThreadRan: true, OverBudget: false)));
    }

    [Fact]
    public void A_window_lasts_its_length_and_until_a_run_has_ended_in_it()
    {
        var schedule = Measuring();

        Assert.Equal(ScheduleStep.Continue, schedule.Observe(Window(0.9, 100)));
        Assert.Equal(ScheduleStep.Continue, schedule.Observe(Window(4.0, 0))); // one run longer than the window: not a zero window
        Assert.Empty(schedule.Windows);
        Assert.Equal(ScheduleStep.StartWindow, schedule.Observe(Window(5.0, 1)));
        Assert.Equal(new ScheduleWindow(5.0, 1), Assert.Single(schedule.Windows));
    }

    [Fact]
    public void Stability_is_reached_when_three_windows_agree_and_not_before()
    {
        var schedule = Measuring();

        Assert.Equal(ScheduleStep.StartWindow, schedule.Observe(Window(1.0, 100)));
        Assert.Equal(ScheduleStep.StartWindow, schedule.Observe(Window(1.0, 104))); // two windows agree: not yet judged
        Assert.Equal(ScheduleStep.Stop, schedule.Observe(Window(1.0, 97)));

        Assert.Equal(MeasurementStage.Finished, schedule.Stage);
        Assert.Equal(FinishReason.Stable, schedule.Finish);
        Assert.True(schedule.IsStable());
        Assert.Equal(3, schedule.Windows.Count);
    }

    [Fact]
    public void Windows_of_different_lengths_are_compared_by_rate_not_by_count()
    {
        var schedule = Measuring();

        // 100 runs in 1 s, 150 in 1.5 s and 200 in 2 s are all 100 runs/s.
        schedule.Observe(Window(1.0, 100));
        schedule.Observe(Window(1.5, 150));
        Assert.Equal(ScheduleStep.Stop, schedule.Observe(Window(2.0, 200)));
        Assert.Equal(FinishReason.Stable, schedule.Finish);
    }

    [Fact]
    public void A_noisy_series_runs_to_the_window_limit_and_is_reported_unstable()
    {
        var schedule = Measuring();
        long[] noisy = [100, 150, 80, 140, 60];
        foreach (var runs in noisy)
        {
            Assert.Equal(ScheduleStep.StartWindow, schedule.Observe(Window(1.0, runs)));
        }

        Assert.Equal(ScheduleStep.Stop, schedule.Observe(Window(1.0, 130)));
        Assert.Equal(FinishReason.WindowLimit, schedule.Finish);
        Assert.False(schedule.IsStable());
        Assert.Equal(6, schedule.Windows.Count);
    }

    [Fact]
    public void A_noisy_start_that_settles_is_stable_on_its_last_three_windows()
    {
        var schedule = Measuring();
        schedule.Observe(Window(1.0, 40));  // still warming caches
        schedule.Observe(Window(1.0, 180));
        schedule.Observe(Window(1.0, 101)); // 40, 180, 101: spread too wide
        Assert.Equal(MeasurementStage.Measuring, schedule.Stage);
        schedule.Observe(Window(1.0, 99));  // 180, 101, 99: still too wide

        Assert.Equal(ScheduleStep.Stop, schedule.Observe(Window(1.0, 100))); // 101, 99, 100
        Assert.Equal(FinishReason.Stable, schedule.Finish);
        Assert.Equal(5, schedule.Windows.Count);
    }

    [Fact]
    public void A_spent_budget_ends_an_unstable_point_after_three_windows_not_before()
    {
        var schedule = Measuring();

        Assert.Equal(ScheduleStep.StartWindow, schedule.Observe(Window(1.0, 100, overBudget: true)));
        Assert.Equal(ScheduleStep.StartWindow, schedule.Observe(Window(1.0, 150, overBudget: true)));
        Assert.Equal(ScheduleStep.Stop, schedule.Observe(Window(1.0, 60, overBudget: true)));

        Assert.Equal(FinishReason.TimeBudget, schedule.Finish);
        Assert.False(schedule.IsStable());
    }

    [Fact]
    public void A_stable_point_is_stable_even_when_the_budget_is_spent()
    {
        var schedule = Measuring();
        schedule.Observe(Window(1.0, 100, overBudget: true));
        schedule.Observe(Window(1.0, 100, overBudget: true));
        schedule.Observe(Window(1.0, 100, overBudget: true));
        Assert.Equal(FinishReason.Stable, schedule.Finish);
    }

    [Fact]
    public void The_sweep_starts_its_first_point_whatever_the_budget_and_no_point_after_it_is_spent()
    {
        var budget = TimeSpan.FromSeconds(10);
        Assert.True(MeasurementSchedule.MayStartPoint(0, TimeSpan.FromSeconds(60), budget));
        Assert.True(MeasurementSchedule.MayStartPoint(3, TimeSpan.FromSeconds(9.9), budget));
        Assert.False(MeasurementSchedule.MayStartPoint(3, TimeSpan.FromSeconds(10), budget));
        Assert.True(MeasurementSchedule.MayStartPoint(3, TimeSpan.FromHours(5), budget: null));
        Assert.False(MeasurementSchedule.IsOverBudget(TimeSpan.FromHours(5), budget: null));
    }

    [Fact]
    public void A_finished_schedule_refuses_more_observations()
    {
        var schedule = Measuring();
        for (var i = 0; i < 3; i++)
        {
            schedule.Observe(Window(1.0, 100));
        }

        Assert.Throws<InvalidOperationException>(() => schedule.Observe(Window(1.0, 100)));
    }

    [Fact]
    public void Options_a_schedule_cannot_follow_are_refused()
    {
        Assert.Throws<BatchwiseException>(() => new MeasurementSchedule(Options with { MaxWindows = 2 }));
        Assert.Throws<BatchwiseException>(() => new MeasurementSchedule(Options with { StabilityTolerance = 0 }));
    }

    private static MeasurementSchedule Measuring()
    {
        var schedule = new MeasurementSchedule(Options);
        Assert.Equal(ScheduleStep.StartWindow, schedule.Observe(new(TimeSpan.FromSeconds(1), 10, EveryThreadRan: true, OverBudget: false)));
        return schedule;
    }

    private static ScheduleObservation Window(double seconds, long runs, bool overBudget = false) =>
        new(TimeSpan.FromSeconds(seconds), runs, EveryThreadRan: true, overBudget);
}
