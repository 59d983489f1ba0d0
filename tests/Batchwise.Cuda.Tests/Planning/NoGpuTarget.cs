using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A plan target for graphs without convolutions: planning them needs no GPU. Matrix products throw
/// <see cref="NoLibraries"/>, or with <paramref name="hostMatmuls"/> are planned without cuBLASLt for the CPU runner.
/// </summary>
internal sealed class NoGpuTarget(Precision precision = Precision.Fp32, bool hostMatmuls = false) : IPlanTarget
{
    /// <summary>What a library query throws here: the plan needs cuDNN or cuBLASLt.</summary>
    public const string NoLibraries = "no GPU in this test";

    public Precision Precision => precision;

    public int ComputeCapability { get; init; } = 90;

    public bool AllowTf32 => false;

    public bool PlansMatmulsWithoutLibrary => hostMatmuls;

    public GroupedConvChoice GroupedConvolutions { get; init; } = GroupedConvChoice.Auto;

    public PointwiseConvChoice PointwiseConvolutions { get; init; } = PointwiseConvChoice.Gemm;

    public SmallMatmulChoice SmallMatmuls { get; init; } = SmallMatmulChoice.Library;

    public StemConvChoice StemConvolutions { get; init; } = StemConvChoice.Cudnn;

    public SplitKConvChoice SplitKConvolutions { get; init; } = SplitKConvChoice.Off;

    public bool SplitKProjections { get; init; }

    public StemPoolChoice StemPools { get; init; } = StemPoolChoice.Off;

    public int StemSplits { get; init; } = 1;

    public bool DepthwiseActivations { get; init; } = true;

    public Int8ConvChoice Int8Convolutions { get; init; } = Int8ConvChoice.Library;

    public Int8GemmChoice Int8Gemms { get; init; } = Int8GemmChoice.Cublaslt;

    public int Int8PointwiseStages { get; init; } = Batchwise.Cuda.Kernels.KernelSource.Int8PointwiseStages;

    public int Int8PointwiseResidentBlocks { get; init; } = Batchwise.Cuda.Kernels.KernelSource.Int8PointwiseResidentBlocks;

    public bool Int8PointwiseWide { get; init; } = true;

    public bool Int8PointwiseWarps { get; init; }

    public bool Int8WarpGroups { get; init; }

    public bool Int8Projections { get; init; }

    public int Int8ChainLeastWarps { get; init; }

    public int Int8PointwiseMostWarps { get; init; } = 8;

    public Int8WarpTile Int8PointwiseTile { get; init; }

    public bool Int8 { get; init; }

    public int Multiprocessors { get; init; } = 132;

    /// <summary>2 to 8 splits (small test layers split on a device of few SMs); sessions default to <see cref="SplitKShape.Default"/>.</summary>
    public SplitKShape SplitKConvShape { get; init; } = SplitKShape.Default with { FewestSplits = 2 };

    /// <summary>sm_90's opt-in limit (227 KB), as an H100 or H200 reports it.</summary>
    public int MaxSharedBytesPerBlock { get; init; } = 227 * 1024;

    public bool PlansConvolutionsWithoutLibrary { get; init; }

    public bool ConcurrentBranches { get; init; }

    public GeluChoice Gelu { get; init; } = GeluChoice.Exact;

    public int GeluChunks { get; init; } = 1;

    public bool GeluProductOwn { get; init; }

    public int GeluProductMinTiles { get; init; }

    public AttentionChoice Attention { get; init; } = AttentionChoice.Own;

    public bool AttentionSequenceLengths { get; init; } = true;

    public int AttentionRows { get; init; } = KernelSource.AttentionRows;

    public bool ProgrammaticLaunch { get; init; }

    public CudnnHandle PlanningCudnn => throw new InvalidOperationException(NoLibraries);

    public CublasLtHandle PlanningCublasLt => throw new InvalidOperationException(NoLibraries);

    /// <summary>A plan of <paramref name="model"/> for <paramref name="inputs"/> on this target, its initializers as given.</summary>
    public ExecutionPlan Compile(OnnxModel model, IReadOnlyList<Tensor> inputs) =>
        new GraphCompiler(model, this).Compile(inputs, model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t)), GraphCompiler.HostValueInputs(model));
}
