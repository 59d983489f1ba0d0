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
}
