using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Independent branches on two streams (<see cref="StepLanes"/>, <see cref="BranchOrder"/>), planned without a GPU: which
/// steps go beside which, and that the memory plan never hands two steps that may run at once the same bytes.
/// </summary>
public sealed class StepLanesTests
{
    private static ExecutionPlan Plan(string model, long batch, bool branches, Precision precision = Precision.Fp16)
    {
        var m = ModelZoo.Build(model);
        var inputs = m.Inputs.Select(i => Tensor.Zeros(i.ElementType, i.Shape.Select((d, k) => k == 0 ? batch : d.Value ?? 1L).ToArray())).ToList();
        return new NoGpuTarget(precision, hostMatmuls: true) { PlansConvolutionsWithoutLibrary = true, ConcurrentBranches = branches }.Compile(m, inputs);
    }

    [Fact]
    public void Each_resnet_downsample_convolution_runs_beside_its_blocks_first_convolutions()
    {
        var plan = Plan("zoo:resnet50", 1, branches: true);
        var lanes = Assert.IsType<StepLanes>(plan.Lanes);
        var (lo, hi) = lanes.ConcurrentRanges();

        // The four shortcut convolutions (the convolutions whose output is a later step's residual and that read the
        // block's input) are planned before the block's first convolution and run beside it.
        var shortcuts = Enumerable.Range(0, plan.Steps.Count).Where(i => IsShortcut(plan, i)).ToList();
        Assert.Equal(4, shortcuts.Count);
        foreach (var s in shortcuts)
        {
            Assert.True(lo[s] <= s + 1 && hi[s] >= s + 2, $"{plan.Steps[s].Node} (step {s}) runs beside steps {lo[s]}..{hi[s]}, not the block's first two convolutions");
        }

        // The shortcut's bias went into the block's last product (its residual is the shortcut's raw output): no step was added.
        Assert.Equal(Plan("zoo:resnet50", 1, branches: false).Steps.Count, plan.Steps.Count);
    }

    /// <summary>A convolution reading the same input as the next step, whose output a later step takes as its residual.</summary>
    private static bool IsShortcut(ExecutionPlan plan, int i)
    {
        if (plan.Steps[i] is not (ConvProblemStep or MatmulStep) || i + 1 >= plan.Steps.Count)
        {
            return false;
        }

        var output = StepLanes.Writes(plan.Steps[i]).Single();
        var input = plan.Steps[i] is MatmulStep ? plan.Steps[i].Buffers[1] : plan.Steps[i].Buffers[0];
        var next = plan.Steps[i + 1];
        var readsSame = next is MatmulStep ? next.Buffers[1] == input : next.Buffers[0] == input;
        var asResidual = plan.Steps.Skip(i + 1).Any(s => (s is MatmulStep && s.Buffers[4] == output) || (s is ConvProblemStep && s.Buffers[4] == output));
        return readsSame && asResidual;
    }

    [Fact]
    public void Without_branches_the_graph_order_stays_and_every_step_runs_on_one_stream()
    {
        var plan = Plan("zoo:resnet50", 1, branches: false);
        Assert.Null(plan.Lanes);
        Assert.DoesNotContain(Enumerable.Range(0, plan.Steps.Count), i => IsShortcut(plan, i));
    }

    [Theory]
    [InlineData("zoo:resnet50", 1)]
    [InlineData("zoo:resnet50", 8)]
    [InlineData("zoo:resnet18", 4)]
    [InlineData("zoo:bert", 1)]
    [InlineData("zoo:bert", 4)]
    public void Steps_that_may_run_at_once_never_share_bytes_one_of_them_writes(string model, long batch)
    {
        var plan = Plan(model, batch, branches: true);
        var lanes = Assert.IsType<StepLanes>(plan.Lanes);
        Assert.True(lanes.SideSteps > 0);
        var pairs = 0;
        for (var i = 0; i < plan.Steps.Count; i++)
        {
            for (var j = i + 1; j < plan.Steps.Count; j++)
            {
                if (!lanes.MayRunTogether(i, j))
                {
                    continue;
                }

                pairs++;
                foreach (var a in Arena(plan, i))
                {
                    foreach (var b in Arena(plan, j))
                    {
                        var meet = plan.Buffers[a].Offset < plan.Buffers[b].Offset + plan.Buffers[b].Bytes && plan.Buffers[b].Offset < plan.Buffers[a].Offset + plan.Buffers[a].Bytes;
                        var written = StepLanes.Writes(plan.Steps[i]).Contains(a) || StepLanes.Writes(plan.Steps[j]).Contains(b);
                        Assert.False(meet && (a != b || written), $"{plan.Steps[i].Node} (step {i}, buffer {a}) and {plan.Steps[j].Node} (step {j}, buffer {b}) may run at once on overlapping bytes");
                    }
                }
            }
        }

        Assert.True(pairs > 0, "no two steps run at once: the test checks nothing");

        // The ranges the memory plan widens lifetimes over are exactly those of the pairs above.
        var (lo, hi) = lanes.ConcurrentRanges();
        for (var i = 0; i < plan.Steps.Count; i++)
        {
            var beside = Enumerable.Range(0, plan.Steps.Count).Where(j => lanes.MayRunTogether(i, j)).ToList();
            Assert.Equal(beside.Count == 0 ? (int.MaxValue, -1) : (beside[0], beside[^1]), (lo[i], hi[i]));
        }
    }

    private static IEnumerable<int> Arena(ExecutionPlan plan, int step) => plan.Steps[step].Buffers.Where(b => b >= 0 && plan.Buffers[b].IsArena).Distinct();

    [Fact]
    public void A_wait_orders_the_side_lane_after_the_step_it_reads_from()
    {
        var plan = Plan("zoo:resnet50", 1, branches: true);
        var lanes = plan.Lanes!;
        var waits = 0;
        for (var i = 0; i < plan.Steps.Count; i++)
        {
            var w = lanes.WaitFor[i];
            if (w >= 0)
            {
                waits++;
                Assert.True(lanes.Signals[w], $"step {i} waits for step {w}, which records no event");
                Assert.NotEqual(lanes.Lane[i], lanes.Lane[w]);
                Assert.False(lanes.MayRunTogether(i, w), $"step {i} runs beside step {w} it waits for");
            }
        }

        Assert.True(waits >= 8, $"{waits} waits: each of the four blocks forks and joins once");
    }
}
