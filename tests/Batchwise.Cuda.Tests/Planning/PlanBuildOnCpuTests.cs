using System.Diagnostics;
using System.Globalization;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A detector's plans for new batch sizes built on the CPU as a session builds them (session constants, cuDNN and
/// cuBLASLt left out): the graph phase of issue 11's plan builds, checked and timed without a GPU.
/// </summary>
public sealed class PlanBuildOnCpuTests
{
    /// <summary>A target that keeps session constants and choices as a cuda session does, and plans library calls as problems alone.</summary>
    internal sealed class SessionLikeTarget : IPlanTarget
    {
        private readonly SessionConstants _constants = new();

        public Precision Precision => Precision.Fp16;

        public int ComputeCapability => 90;

        public bool AllowTf32 => false;

        public bool PlansMatmulsWithoutLibrary => true;

        public bool PlansConvolutionsWithoutLibrary => true;

        public TacticStore Choices { get; } = new();

        public CudnnHandle PlanningCudnn => throw new InvalidOperationException(NoGpuTarget.NoLibraries);

        public CublasLtHandle PlanningCublasLt => throw new InvalidOperationException(NoGpuTarget.NoLibraries);

        /// <summary>Off as before; a session's default (auto) where a test wants the own kernels a session plans.</summary>
        public SplitKConvChoice SplitKConvolutions { get; init; } = SplitKConvChoice.Off;

        public StemConvChoice StemConvolutions { get; init; } = StemConvChoice.Cudnn;

        public int Multiprocessors => 132;

        public int MaxSharedBytesPerBlock => 227 * 1024;

        /// <summary>Library as before; a session's default (auto: the own kernel for one row) where a test wants it.</summary>
        public SmallMatmulChoice SmallMatmuls { get; init; } = SmallMatmulChoice.Library;

        public T Derive<T>(string recipe, IReadOnlyList<HostTensor?> sources, Func<T> make)
            where T : class => _constants.Derive(recipe, sources, make);

        public Dictionary<string, HostTensor> Initializers(OnnxModel model) => _constants.AddInitializers(model.Graph.Initializer, defer: false);
    }

    [Fact]
    public void Yolov8n_plans_for_new_batch_sizes_have_the_first_plans_structure_at_their_own_sizes()
    {
        var model = ModelZoo.Build("zoo:yolov8n?size=320");
        var target = new SessionLikeTarget();
        var initializers = target.Initializers(model);
        var facts = new GraphFacts(model);
        var hostInputs = GraphCompiler.HostValueInputs(model);
        (ExecutionPlan Plan, double Ms) Build(long batch)
        {
            var started = Stopwatch.GetTimestamp();
            var plan = new GraphCompiler(model, target, facts).Compile([Tensor.Zeros(ElementType.Float, [batch, 3, 320, 320])], initializers, hostInputs);
            return (plan, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }

        var (first, firstMs) = Build(1);
        var convs = first.Steps.OfType<ConvProblemStep>().ToList();
        Assert.InRange(convs.Count, 30, 80); // YOLOv8n's cuDNN convolutions (~64, 40 once its 1x1s run as cuBLASLt GEMMs)
        var times = new List<string>();
        // The zoo's YOLOv8n has its head's anchors as constants of one image size: new shapes are new batch sizes.
        foreach (var batch in new long[] { 2, 3, 5, 6, 7, 8, 12 })
        {
            var (plan, ms) = Build(batch);
            times.Add(string.Create(CultureInfo.InvariantCulture, $"b={batch} {ms:F1}"));
            Assert.Equal(first.Steps.Select(s => s.GetType().Name + " " + s.Node), plan.Steps.Select(s => s.GetType().Name + " " + s.Node));
            var later = plan.Steps.OfType<ConvProblemStep>().ToList();
            Assert.All(later, c => Assert.Equal(batch, c.Problem.X[0]));
            Assert.Equal(convs.Select(c => c.Problem.W), later.Select(c => c.Problem.W));
            Assert.Equal(convs.Select(c => c.Problem.Y[2..]), later.Select(c => c.Problem.Y[2..]));
        }

        TestContext.Current.SendDiagnosticMessage(string.Create(CultureInfo.InvariantCulture, $"yolov8n fp16 plans on the CPU (no libraries): first {firstMs:F1} ms; later {string.Join(", ", times)} ms"));
    }

    /// <summary>
    /// ResNet-50 in fp16 under a session's defaults: at b=1 the classifier is the own small-row kernel, which writes the
    /// float32 logits itself, so the plan ends at it (one kernel a run fewer, of 56); at b=2 (cuBLASLt) a conversion
    /// kernel to the declared float32 output follows as before.
    /// </summary>
    [Fact]
    public void Resnet50_fp16_at_batch_one_ends_at_its_classifier_which_writes_the_float32_logits()
    {
        var model = ModelZoo.Build("zoo:resnet50");
        var target = new SessionLikeTarget { SmallMatmuls = SmallMatmulChoice.Auto };
        var initializers = target.Initializers(model);
        var facts = new GraphFacts(model);
        ExecutionPlan Plan(long batch) => new GraphCompiler(model, target, facts).Compile([Tensor.Zeros(ElementType.Float, [batch, 3, 224, 224])], initializers, GraphCompiler.HostValueInputs(model));

        var one = Plan(1);
        Assert.EndsWith("(own small-row product)", one.Steps[^1].Node, StringComparison.Ordinal);
        Assert.Contains("float* __restrict__ y", Assert.IsType<KernelStep>(one.Steps[^1]).Source, StringComparison.Ordinal);
        Assert.Equal(ElementType.Float, one.Outputs[0].Type);
        var two = Plan(2);
        Assert.StartsWith("output ", two.Steps[^1].Node, StringComparison.Ordinal);
        Assert.Equal(two.Steps.Count, one.Steps.Count + 1);
    }

    /// <summary>
    /// ShapeGpuTests (session 38, H100) saw YOLOv8n at 128x128 compile 8 kernels for its plan at b=33 after b=2..16: its
    /// smallest layers run on the own split-K kernel up to b=16 and on cuDNN from there, and the SiLU after each was a
    /// chain over the kernel's biased output in one regime and over cuDNN's raw sum plus the bias in the other. The own
    /// kernel now leaves the bias to such a chain, so both regimes' chains are one kernel: b=33's plan has no generated
    /// kernel the earlier plans lack (the split-K kernels themselves only where a batch first reaches them).
    /// </summary>
    [Fact]
    public void Yolov8n_plans_on_both_sides_of_the_split_k_threshold_share_their_generated_kernels()
    {
        var model = ModelZoo.Build("zoo:yolov8n?size=128");
        var target = new SessionLikeTarget { SplitKConvolutions = SplitKConvChoice.Auto, StemConvolutions = StemConvChoice.Own };
        var initializers = target.Initializers(model);
        var facts = new GraphFacts(model);
        var hostInputs = GraphCompiler.HostValueInputs(model);
        List<KernelStep> Kernels(long batch) =>
            [.. new GraphCompiler(model, target, facts).Compile([Tensor.Zeros(ElementType.Float, [batch, 3, 128, 128])], initializers, hostInputs).Steps.OfType<KernelStep>()];

        static int SplitK(List<KernelStep> kernels) => kernels.Count(k => k.Node.Contains("own split-K kernel", StringComparison.Ordinal));
        var first = Kernels(2);
        var early = first.Concat(new[] { 3L, 7, 16 }.SelectMany(Kernels)).ToList();
        var late = Kernels(33);
        Assert.InRange(SplitK(late), 0, SplitK(first) - 1); // layers that left the split-K kernel for cuDNN at b=33
        var known = early.Select(k => k.Source).ToHashSet(StringComparer.Ordinal);
        Assert.All(late, k => Assert.True(known.Contains(k.Source), $"b=33's kernel for {k.Node} is none of b=2..16's"));
    }
}
