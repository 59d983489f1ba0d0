using System.Globalization;
using System.Text;
using Batchwise.Cuda.Planning;
using Batchwise.Onnx;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// How the int8 graph route picks its cuDNN configuration without a GPU: the candidate list (modes A, B and the
/// fallback list, each engine and knob set once), the stored choice's key, the trace line of a timed choice, the trial's
/// data; and what a plan of ResNet-50's QDQ model runs under each convolution's label.
/// </summary>
[Collection(nameof(ProcessEnvironment))]
public sealed class Int8GraphChoiceTests
{
    private static readonly Int8ConvGraphShape Reduction = GraphCompiler.Int8GraphShape([256, 1024, 14, 14], [256, 1024, 1, 1], [256, 256, 14, 14], [0, 0], [1, 1], -128, relu: true, -128);

    [Fact]
    public void Candidates_keep_the_offered_order_and_drop_a_repeated_engine_and_knob_set()
    {
        string?[] tags = ["eng4_k2=1", "eng12_k2=0", "eng4_k2=3", "eng4_k2=1", null, "eng12_k2=0", null, "eng40"];
        Assert.Equal([0, 1, 2, 4, 6, 7], Int8ConvGraph.Candidates(tags));
        Assert.Empty(Int8ConvGraph.Candidates([]));
    }

    [Fact]
    public void A_tag_names_the_engine_and_its_knobs_in_the_order_given()
    {
        Assert.Equal("eng4", Int8ConvGraph.Tag(4, []));
        Assert.Equal("eng12_k2=1_k11=-1", Int8ConvGraph.Tag(12, [(2, 1), (11, -1)]));
    }

    [Fact]
    public void The_stored_choice_of_a_timed_search_is_kept_apart_from_the_first_that_runs()
    {
        var first = GraphCompiler.Int8GraphStoreKey(1, Reduction);
        var timed = GraphCompiler.Int8GraphStoreKey(Int8Layers.DefaultGraphConfigs, Reduction);
        Assert.NotEqual(first, timed);
        Assert.EndsWith("|" + Reduction.Key, timed, StringComparison.Ordinal);

        // Keys of the mode-A-only lists before session 11 ("int8graph|", "int8graph-timed|") index another list.
        Assert.DoesNotContain(new[] { "int8graph|", "int8graph-timed|" }, p => timed.StartsWith(p, StringComparison.Ordinal) || first.StartsWith(p, StringComparison.Ordinal));
    }

    [Fact]
    public void The_configuration_count_defaults_to_eight_and_refuses_what_is_not_a_count()
    {
        Assert.Equal(8, Int8Layers.ParseGraphConfigs(null));
        Assert.Equal(8, Int8Layers.ParseGraphConfigs(" "));
        Assert.Equal(1, Int8Layers.ParseGraphConfigs("1"));
        Assert.Equal(64, Int8Layers.ParseGraphConfigs(" 64 "));
        foreach (var bad in new[] { "0", "65", "all", "-3" })
        {
            var e = Assert.Throws<BatchwiseException>(() => Int8Layers.ParseGraphConfigs(bad));
            Assert.Contains(Int8Layers.GraphConfigsSwitch, e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void The_silu_fusion_is_on_unless_set_off_and_refuses_other_words()
    {
        Assert.True(Int8Layers.ParseSiluFused(null));
        Assert.True(Int8Layers.ParseSiluFused(" Fused "));
        Assert.False(Int8Layers.ParseSiluFused("off"));
        var e = Assert.Throws<BatchwiseException>(() => Int8Layers.ParseSiluFused("on"));
        Assert.Equal($"{Int8Layers.SiluSwitch} 'on' is not fused or off", e.Message);
    }

    [Fact]
    public void The_search_time_per_problem_defaults_to_two_seconds_and_refuses_what_is_not_seconds()
    {
        Assert.Equal(2.0, Int8Layers.ParseGraphSearchSeconds(null));
        Assert.Equal(0.5, Int8Layers.ParseGraphSearchSeconds(" 0.5 "));
        Assert.Equal(600, Int8Layers.ParseGraphSearchSeconds("600"));
        foreach (var bad in new[] { "0", "0.01", "601", "soon", "-1" })
        {
            var e = Assert.Throws<BatchwiseException>(() => Int8Layers.ParseGraphSearchSeconds(bad));
            Assert.Equal($"{Int8Layers.GraphSecondsSwitch} '{bad}' is not a number of seconds from 0.1 to 600", e.Message);
        }
    }

    [Fact]
    public void The_key_of_another_batch_size_replaces_the_batch_of_x_and_y_and_nothing_else()
    {
        var key = GraphCompiler.Int8GraphBatchKey(8, Reduction, 64);
        var own = GraphCompiler.Int8GraphStoreKey(8, Reduction);
        Assert.Equal(own.Replace("x=256x", "x=64x", StringComparison.Ordinal).Replace("y=256x", "y=64x", StringComparison.Ordinal), key);
        Assert.Equal(own, GraphCompiler.Int8GraphBatchKey(8, Reduction, 256));

        // A shape whose channels equal its batch keeps them: only the leading dimension of x and y changes.
        var square = GraphCompiler.Int8GraphShape([64, 64, 56, 56], [64, 64, 1, 1], [64, 64, 56, 56], [0, 0], [1, 1], 0, relu: false, 0);
        Assert.Contains("x=8x64x56x56|w=64x64x1x1|y=8x64x56x56|", GraphCompiler.Int8GraphBatchKey(8, square, 8), StringComparison.Ordinal);
    }

    [Fact]
    public void Known_batches_are_those_stored_for_the_same_problem_and_configuration_count_only()
    {
        var other = GraphCompiler.Int8GraphShape([256, 1024, 14, 14], [512, 1024, 1, 1], [256, 512, 14, 14], [0, 0], [1, 1], -128, relu: true, -128);
        string[] keys =
        [
            GraphCompiler.Int8GraphBatchKey(8, Reduction, 1),
            GraphCompiler.Int8GraphBatchKey(8, Reduction, 256), // its own batch
            GraphCompiler.Int8GraphBatchKey(8, Reduction, 96),
            GraphCompiler.Int8GraphBatchKey(1, Reduction, 32), // the first that runs, not a timed choice
            GraphCompiler.Int8GraphBatchKey(8, other, 16), // another problem
            GraphCompiler.Int8GraphBatchKey(8, Reduction, 1).Replace("relu=1", "relu=0", StringComparison.Ordinal),
            "conv-timed|fp16|x=4x1024x14x14",
            "int8graph-ab8|x=notanumberx1",
        ];
        Assert.Equal(new long[] { 1, 96 }, GraphCompiler.Int8GraphKnownBatches(8, Reduction, keys));
        Assert.Empty(GraphCompiler.Int8GraphKnownBatches(8, Reduction, []));
    }

    [Fact]
    public void A_new_batch_takes_the_nearest_known_batch_by_ratio_and_octave_keeps_to_its_own_octave()
    {
        // Nearest by ratio: 64 is 2x from 32 and 4x from 256; of two as near, the larger.
        Assert.Equal(256L, GraphCompiler.Int8GraphNeighbourBatch(64, [1, 256], Int8GraphChoices.Nearest));
        Assert.Equal(32L, GraphCompiler.Int8GraphNeighbourBatch(64, [1, 32, 256], Int8GraphChoices.Nearest));
        Assert.Equal(128L, GraphCompiler.Int8GraphNeighbourBatch(64, [32, 128], Int8GraphChoices.Nearest));
        Assert.Equal(1L, GraphCompiler.Int8GraphNeighbourBatch(2, [1, 5], Int8GraphChoices.Nearest));
        Assert.Null(GraphCompiler.Int8GraphNeighbourBatch(64, [], Int8GraphChoices.Nearest));
        Assert.Null(GraphCompiler.Int8GraphNeighbourBatch(64, [64], Int8GraphChoices.Nearest));

        // Not from farther than a factor of 4: b=256 searches rather than take b=1's choices (39,213 against 45,333 img/s
        // on ResNet-50's QDQ model, H200, session 25), and takes b=64's.
        Assert.Null(GraphCompiler.Int8GraphNeighbourBatch(256, [1, 8], Int8GraphChoices.Nearest));
        Assert.Equal(64L, GraphCompiler.Int8GraphNeighbourBatch(256, [1, 64], Int8GraphChoices.Nearest));
        Assert.Null(GraphCompiler.Int8GraphNeighbourBatch(1, [5], Int8GraphChoices.Nearest));

        // Octave: 33-64 share one; the first size of a new octave finds none and is searched.
        Assert.Equal(33L, GraphCompiler.Int8GraphNeighbourBatch(48, [33, 65, 256], Int8GraphChoices.Octave));
        Assert.Null(GraphCompiler.Int8GraphNeighbourBatch(64, [1, 256], Int8GraphChoices.Octave));
        Assert.Null(GraphCompiler.Int8GraphNeighbourBatch(32, [33, 64], Int8GraphChoices.Octave));

        // Exact: every batch size searched.
        Assert.Null(GraphCompiler.Int8GraphNeighbourBatch(64, [32, 128], Int8GraphChoices.Exact));
    }

    [Fact]
    public void The_choices_policy_defaults_to_nearest_and_refuses_other_words()
    {
        Assert.Equal(Int8GraphChoices.Nearest, Int8Layers.ParseGraphChoices(null));
        Assert.Equal(Int8GraphChoices.Nearest, Int8Layers.ParseGraphChoices(" "));
        Assert.Equal(Int8GraphChoices.Octave, Int8Layers.ParseGraphChoices(" Octave "));
        Assert.Equal(Int8GraphChoices.Exact, Int8Layers.ParseGraphChoices("exact"));
        var e = Assert.Throws<BatchwiseException>(() => Int8Layers.ParseGraphChoices("closest"));
        Assert.Contains(Int8Layers.GraphChoicesSwitch, e.Message, StringComparison.Ordinal);
        Assert.Contains("'closest'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_plan_search_budget_defaults_to_thirty_seconds_allows_none_and_refuses_what_is_not_seconds()
    {
        Assert.Equal(30.0, Int8Layers.ParseGraphPlanSeconds(null));
        Assert.Equal(0.0, Int8Layers.ParseGraphPlanSeconds("0"));
        Assert.Equal(12.5, Int8Layers.ParseGraphPlanSeconds(" 12.5 "));
        Assert.Equal(3600, Int8Layers.ParseGraphPlanSeconds("3600"));
        foreach (var bad in new[] { "-1", "3601", "half a minute", "NaN" })
        {
            var e = Assert.Throws<BatchwiseException>(() => Int8Layers.ParseGraphPlanSeconds(bad));
            Assert.Equal($"{Int8Layers.GraphPlanSecondsSwitch} '{bad}' is not a number of seconds from 0 to 3600", e.Message);
            Assert.Contains("0 to time none", e.Hint, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void The_trace_says_which_batch_a_choice_came_from_and_counts_the_problems_not_timed()
    {
        const string engine = "engine 40, int32 sums, configuration 3 (B1 eng40_k3=2)";
        Assert.Equal($"Conv 'conv_136': choice of b=256 reused for {Reduction.Key} ({engine}; ran untimed, no search)", GraphCompiler.Int8GraphReuseText("Conv 'conv_136'", Reduction.Key, 256, engine));

        var one = GraphCompiler.Int8GraphUntimedText("Conv 'conv_9'", Reduction.Key, engine, 30, 1);
        Assert.StartsWith($"Conv 'conv_9': plan's int8 search budget of 30 s ({Int8Layers.GraphPlanSecondsSwitch}) spent: first configuration that runs taken untimed for {Reduction.Key}", one, StringComparison.Ordinal);
        Assert.EndsWith("; 1 problem of this plan not timed", one, StringComparison.Ordinal);
        Assert.EndsWith("; 7 problems of this plan not timed", GraphCompiler.Int8GraphUntimedText("Conv 'conv_9'", Reduction.Key, engine, 12.5, 7), StringComparison.Ordinal);
        Assert.Contains("budget of 12.5 s", GraphCompiler.Int8GraphUntimedText("Conv 'conv_9'", Reduction.Key, engine, 12.5, 7), StringComparison.Ordinal);
    }

    [Fact]
    public void The_trace_of_a_timed_choice_lists_each_configuration_with_its_time_and_marks_the_kept_one()
    {
        GraphCompiler.Int8GraphTrial[] trials =
        [
            new(0, "engine 4 (runtime-compiled), int32 sums, configuration 0 (A0 eng4_k2=1)", 0.4712, null),
            new(2, "engine 12, int32 sums, configuration 2 (A2 eng12)", double.NaN, "CUDNN_STATUS_EXECUTION_FAILED"),
            new(3, "engine 40, int32 sums, configuration 3 (B1 eng40_k3=2)", 0.0271, null),
        ];
        var line = GraphCompiler.Int8GraphTimingText("Conv 'conv_136'", Reduction.Key, trials, chosen: 3, offered: 9, seconds: 1.234);
        Assert.StartsWith($"Conv 'conv_136': timed 2 of 9 configurations for {Reduction.Key} in 1.23 s (", line, StringComparison.Ordinal);
        Assert.Contains("(A0 eng4_k2=1): 0.4712 ms", line, StringComparison.Ordinal);
        Assert.Contains("* engine 40, int32 sums, configuration 3 (B1 eng40_k3=2): 0.0271 ms", line, StringComparison.Ordinal);
        Assert.Contains("(A2 eng12): CUDNN_STATUS_EXECUTION_FAILED", line, StringComparison.Ordinal);
        Assert.DoesNotContain("* engine 4 ", line, StringComparison.Ordinal);
    }

    [Fact]
    public void A_timed_trial_runs_on_full_range_bytes_whose_outputs_stay_a_few_steps_from_zero()
    {
        Assert.All(GraphCompiler.Int8TrialFill(timed: false, 1024), v => Assert.Equal(0u, v));

        // A word for every tensor a graph can have (the buffers are filled by uid, from x's on).
        Assert.Equal((int)(Int8ConvGraph.OutScaleUid - Int8ConvGraph.XUid + 1), GraphCompiler.Int8TrialFill(timed: false, 1).Length);
        Assert.Equal((int)(Int8ConvGraph.OutScaleUid - Int8ConvGraph.XUid + 1), GraphCompiler.Int8TrialFill(timed: true, 1).Length);
        foreach (var taps in new long[] { 64 * 9, 256, 1024, 4608 })
        {
            var fill = GraphCompiler.Int8TrialFill(timed: true, taps);
            var x = BitConverter.GetBytes(fill[0]).Select(b => (int)(sbyte)b).ToArray();
            var w = BitConverter.GetBytes(fill[1]).Select(b => (int)(sbyte)b).ToArray();
            Assert.Contains(x, v => v == -128);
            Assert.Contains(x, v => v == 127);
            Assert.Contains(w, v => v == 127);

            // Input channels are multiples of 4, so a tap group of four sees each byte pair once.
            var sum = taps / 4 * x.Zip(w, (a, b) => a * b).Sum();
            var y = sum * BitConverter.UInt32BitsToSingle(fill[2]);
            Assert.InRange(y, -8, -1);
            Assert.Equal(0u, fill[3]);
        }
    }

    /// <summary>
    /// ResNet-50's QDQ model planned for the int8 graph route without a GPU: the steps under each convolution's label, in
    /// plan order (the per-layer profile attributes each step to its label), written to the test output. What runs there
    /// besides the convolution: the explicit pad of a 3x3, and the kernel that makes a residual block's output int8
    /// channels-last for the next block's first convolution.
    /// </summary>
    [Fact]
    public void Under_a_convolution_label_of_resnet50_int8_runs_its_pad_and_each_residual_block_output_is_computed_once()
    {
        var plan = PlanResnet50Int8(residual: "off");
        var text = new StringBuilder();
        foreach (var g in plan.Steps.GroupBy(s => s.Node))
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"{g.Key}: {string.Join(", ", g.Select(Describe))}");
        }

        TestContext.Current.TestOutputHelper?.WriteLine(text.ToString());
        Console.WriteLine(text.ToString());

        // Every convolution but the float stem is an int8 graph step; a 3x3's label holds its explicit pad.
        var convs = plan.Steps.GroupBy(s => s.Node).Where(g => g.Key.StartsWith("Conv", StringComparison.Ordinal) && g.Key != "Conv 'conv'").ToList();
        Assert.Equal(52, convs.Count);
        Assert.All(convs, g => Assert.Single(g.OfType<Int8GraphConvStep>()));
        Assert.All(convs.Where(g => g.OfType<Int8GraphConvStep>().Single().Graph.Shape.W[2] == 3), g => Assert.Equal(2, g.Count()));

        // A residual block's output is computed once, from its two int8 inputs, and read from then on: no kernel reads
        // more than two int8 activations (before session 11's fix the block outputs of a stage were recomputed in each
        // later block's kernel, one more input per block, under the label of the next block's first convolution).
        Assert.All(plan.Steps.OfType<KernelStep>(), k => Assert.True(Int8Inputs(k.Source) <= 2, $"{k.Node} reads {Int8Inputs(k.Source)} int8 activations"));
        Assert.All(convs, g => Assert.DoesNotContain(g.OfType<KernelStep>(), k => Int8Inputs(k.Source) > 1));
    }

    /// <summary>
    /// With BATCHWISE_INT8_RESIDUAL=fused each of ResNet-50's 16 residual blocks ends in its last convolution's graph (or
    /// its projection shortcut's, whichever is planned second): the Add, ReLU and QuantizeLinear that a separate kernel ran
    /// under the next DequantizeLinear's label are in the chain, the residual is one more tensor of the graph and part of
    /// its key, and that label's kernel is gone. Unset, the plan is today's.
    /// </summary>
    [Fact]
    public void Fused_residuals_move_each_resnet50_block_output_into_its_last_convolution_graph()
    {
        var plain = PlanResnet50Int8(residual: "off");
        var fused = PlanResnet50Int8(residual: "fused");
        static List<Int8GraphConvStep> Graphs(ExecutionPlan p) => [.. p.Steps.OfType<Int8GraphConvStep>()];
        static int DequantizeKernels(ExecutionPlan p) => p.Steps.Count(s => s is KernelStep && s.Node.StartsWith("DequantizeLinear", StringComparison.Ordinal));
        Assert.DoesNotContain(Graphs(plain), g => g.Graph.Shape.Residual);
        var withResidual = Graphs(fused).Where(g => g.Graph.Shape.Residual).ToList();
        Assert.Equal(16, withResidual.Count);
        Assert.Equal(Graphs(plain).Count, Graphs(fused).Count);

        // Unfused, each block's output is a kernel reading the two int8 activations it adds: under the next block's
        // DequantizeLinear label (15), the last under the pooling's. Fused, none is left; the stem's conversion stays.
        static int Adds(ExecutionPlan p) => p.Steps.OfType<KernelStep>().Count(k => Int8Inputs(k.Source) == 2);
        Assert.Equal(16, Adds(plain));
        Assert.Equal(0, Adds(fused));
        Assert.Equal(15, DequantizeKernels(plain) - DequantizeKernels(fused));
        Assert.DoesNotContain(fused.Steps, s => s is KernelStep && s.Node.StartsWith("DequantizeLinear 'relu_", StringComparison.Ordinal));
        foreach (var g in withResidual)
        {
            var shape = g.Graph.Shape;
            Assert.Equal(1, shape.W[2]); // a block's last convolution or its projection: 1x1
            Assert.Contains("+ residual * rscale[k]", shape.Chain, StringComparison.Ordinal);
            Assert.Contains("|residual=", shape.Key, StringComparison.Ordinal);
            Assert.Equal([Int8ConvGraph.ResidualUid, Int8ConvGraph.ResidualScaleUid], shape.Uids[^2..]);
            Assert.Equal(shape.Uids.Length, g.Buffers.Length);

            // The residual is read where it lies: an int8 activation of the output's size, not a copy made for it here.
            Assert.DoesNotContain(fused.Steps, s => s.Node == g.Node && s is KernelStep);
        }

        // The unfused plan's keys have no residual part (choices and timings stored before stay valid).
        Assert.All(Graphs(plain), g => Assert.DoesNotContain("residual", g.Graph.Shape.Key, StringComparison.Ordinal));
        Assert.Equal(Graphs(plain).Count(g => !g.Graph.Shape.Residual) - 16, Graphs(fused).Count(g => !g.Graph.Shape.Residual));
    }

    [Fact]
    public void Symmetric_activations_let_the_padded_convolutions_read_their_input_as_it_lies()
    {
        // Asymmetric: the ReLU outputs' zero point 0 is stored as -128, so each padded 3x3 reads a copy padded with it.
        // Symmetric (zero point 128, stored as 0): cuDNN's own zero padding is the real zero; no copy, ReLUs in the graphs.
        bool Padded(ExecutionPlan plan) => plan.Int8Layers.Values.Any(how => how.Contains("input padded explicitly", StringComparison.Ordinal));
        Assert.Equal(16, PlanResnet50Int8("fused").Int8Layers.Values.Count(how => how.Contains("input padded explicitly", StringComparison.Ordinal)));
        var symmetric = PlanResnet50Int8("fused", symmetric: true);
        Assert.False(Padded(symmetric));
        Assert.Equal(52, symmetric.Int8Layers.Values.Count(how => how.StartsWith("int8", StringComparison.Ordinal)));
        Assert.DoesNotContain(symmetric.Steps, s => s.Node.StartsWith("Relu", StringComparison.Ordinal) || s.Node.Contains("'relu", StringComparison.Ordinal)); // each in its convolution's step
    }

    /// <summary>ResNet-50's QDQ model at 64x64 planned for the int8 graph route without a GPU (BATCHWISE_INT8_RESIDUAL as given).</summary>
    private static ExecutionPlan PlanResnet50Int8(string? residual, bool symmetric = false)
    {
        var model = ModelZoo.Build("zoo:resnet50?size=64");
        foreach (var t in new IModelTransform[] { new ConstantFolding(), new BatchNormFolding(), new DeadNodeRemoval(), new Int8Quantization(CalibrationData.Parse("random:1")) { SymmetricActivations = symmetric } })
        {
            t.Apply(model);
        }

        var saved = (Environment.GetEnvironmentVariable(Int8Layers.Switch), Environment.GetEnvironmentVariable(Int8Layers.GraphSwitch), Environment.GetEnvironmentVariable(Int8Layers.ResidualSwitch));
        try
        {
            Environment.SetEnvironmentVariable(Int8Layers.Switch, "conv");
            Environment.SetEnvironmentVariable(Int8Layers.GraphSwitch, "on");
            Environment.SetEnvironmentVariable(Int8Layers.ResidualSwitch, residual);
            var target = new NoGpuTarget(Engines.Precision.Fp16, hostMatmuls: true) { PlansConvolutionsWithoutLibrary = true };
            return target.Compile(model, [Engines.Tensor.From<float>(ElementType.Float, [8, 3, 64, 64], new float[8 * 3 * 64 * 64])]);
        }
        finally
        {
            Environment.SetEnvironmentVariable(Int8Layers.Switch, saved.Item1);
            Environment.SetEnvironmentVariable(Int8Layers.GraphSwitch, saved.Item2);
            Environment.SetEnvironmentVariable(Int8Layers.ResidualSwitch, saved.Item3);
        }
    }

    private static int Int8Inputs(string source) =>
        System.Text.RegularExpressions.Regex.Count(source, @"const (signed|unsigned) char\* __restrict__ p\d");

    private static string Describe(PlanStep s) => s switch
    {
        Int8GraphConvStep g => $"int8 graph conv {g.Graph.Shape.Key}",
        KernelStep k => $"kernel reading {Int8Inputs(k.Source)} int8 activations ({k.Source.Length} chars of source)",
        _ => s.GetType().Name,
    };
}
