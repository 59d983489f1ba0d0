using System.Runtime.InteropServices;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Programmatic dependent launch (BATCHWISE_PDL), planned without a GPU: every generated kernel waits for the kernel
/// before it in its first statement (so launching it early is safe), a plan launches so only where its target asks on
/// sm_90, the switch reads on and off and refuses the rest, and cuLaunchKernelEx's structs are laid out as cuda.h has
/// them (ProgrammaticLaunchGpuTests runs it).
/// </summary>
public sealed class ProgrammaticLaunchTests
{
    private static ExecutionPlan Plan(bool programmatic, int computeCapability = 90, bool projections = false)
    {
        var m = ModelZoo.Build("zoo:resnet50?size=64");
        var inputs = m.Inputs.Select(i => Tensor.Zeros(i.ElementType, i.Shape.Select((d, k) => k == 0 ? 1L : d.Value ?? 1L).ToArray())).ToList();
        return new NoGpuTarget(Precision.Fp16, hostMatmuls: true)
        {
            PlansConvolutionsWithoutLibrary = true,
            SplitKConvolutions = SplitKConvChoice.Every,
            SplitKProjections = projections,
            ProgrammaticLaunch = programmatic,
            ComputeCapability = computeCapability,
        }.Compile(m, inputs);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)] // the projection shortcuts in their block ends' kernels (a second input's filter before the wait too)
    public void Every_generated_kernel_waits_for_the_kernel_before_it_before_anything_else(bool projections)
    {
        var plan = Plan(programmatic: true, projections: projections);
        Assert.Equal(projections ? 4 : 0, plan.Steps.Count(s => s.Node.Contains("its projection shortcut computed in it", StringComparison.Ordinal)));
        var kernels = plan.Steps.OfType<KernelStep>().ToList();
        Assert.True(kernels.Count >= 10, $"{kernels.Count} generated kernels in ResNet-50's fp16 plan with the split-K kernel on every convolution");
        var splitK = 0;
        foreach (var k in kernels)
        {
            var body = k.Source.IndexOf(")\n{\n", k.Source.IndexOf("__global__", StringComparison.Ordinal), StringComparison.Ordinal) + 4;
            if (k.Node.Contains("own split-K kernel", StringComparison.Ordinal))
            {
                // The split-K kernel fetches its filter's first stages (a constant) first: between its copy routines'
                // definitions and the call, filter copies only; the branch that computes nothing calls it too.
                splitK++;
                var src = k.Source[body..];
                var enter = src.IndexOf("bw_pdl_enter();", StringComparison.Ordinal);
                var definitions = src.IndexOf("auto load = ", StringComparison.Ordinal);
                Assert.True(definitions > 0 && definitions < enter, $"{k.Node}: bw_pdl_enter comes before the copy routines");
                var before = src[src.IndexOf('\n', definitions)..enter];
                Assert.Contains("loadFilter(kc0 + s, s)", before, StringComparison.Ordinal);
                Assert.DoesNotContain("loadInput(", before, StringComparison.Ordinal);
                Assert.DoesNotContain("load(", before.Replace("loadFilter(", string.Empty, StringComparison.Ordinal), StringComparison.Ordinal);
                Assert.Matches(@"\}\s*else\s*\{\s*bw_pdl_enter\(\);", src);
                continue;
            }

            Assert.True(k.Source.AsSpan(body).StartsWith(KernelWriter.PdlEnter), $"{k.Node}: the kernel's body does not begin with bw_pdl_enter: {k.Source.AsSpan(body, Math.Min(120, k.Source.Length - body))}");
        }

        Assert.True(splitK >= 10, $"{splitK} convolutions on the split-K kernel");
        Assert.All(kernels, k => Assert.True(k.WaitsForPrerequisite && k.LaunchesProgrammatically(plan.ProgrammaticLaunch), k.Node));

        // A kernel written without the wait is never launched programmatically, whatever the plan says.
        var bare = new KernelStep("bare", new KernelCode("extern \"C\" __global__ void KERNEL_NAME(float* y) { y[0] = 1.f; }", []), 32, 32, [0]);
        Assert.False(bare.WaitsForPrerequisite);
        Assert.False(bare.LaunchesProgrammatically(planProgrammatic: true));

        Assert.Contains("griddepcontrol.wait", KernelSource.Prelude, StringComparison.Ordinal);
        Assert.True(KernelSource.Prelude.IndexOf("griddepcontrol.wait", StringComparison.Ordinal) < KernelSource.Prelude.IndexOf("griddepcontrol.launch_dependents", StringComparison.Ordinal), "the kernel after may be scheduled only once this one's wait has returned");
    }

    [Fact]
    public void A_kernel_that_places_the_wait_itself_must_have_it()
    {
        var w = new KernelWriter(small: true) { PlacesPdlEnter = true };
        w.Body.Append("    y[0] = 1.f;\n");
        Assert.Throws<InvalidOperationException>(() => w.Build($"float* y, {KernelWriter.ArgsParameter}"));
    }

    [Fact]
    public void A_plan_launches_programmatically_only_where_its_target_asks_and_the_device_is_sm_90()
    {
        Assert.True(Plan(programmatic: true).ProgrammaticLaunch);
        Assert.False(Plan(programmatic: false).ProgrammaticLaunch);
        Assert.False(Plan(programmatic: true, computeCapability: 80).ProgrammaticLaunch);
    }

    [Theory]
    [InlineData(null, false)]
    [InlineData("", false)]
    [InlineData("off", false)]
    [InlineData(" OFF ", false)]
    [InlineData("0", false)]
    [InlineData("on", true)]
    [InlineData("On", true)]
    [InlineData("1", true)]
    public void The_switch_reads_on_and_off(string? value, bool expected) => Assert.Equal(expected, GraphCompiler.ParseProgrammaticLaunch(value));

    [Fact]
    public void The_switch_refuses_anything_else_saying_what_to_write()
    {
        var e = Assert.Throws<BatchwiseException>(() => GraphCompiler.ParseProgrammaticLaunch("yes"));
        Assert.Contains("BATCHWISE_PDL 'yes' is not on or off", e.Message, StringComparison.Ordinal);
        Assert.Contains("BATCHWISE_PDL=on", e.Hint, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData("default", null)]
    [InlineData(" MAX ", 100)]
    [InlineData("0", 0)]
    [InlineData("64", 64)]
    [InlineData("100", 100)]
    public void The_carveout_reads_default_max_and_percentages(string? value, int? expected) => Assert.Equal(expected, GraphCompiler.ParseSharedCarveout(value));

    [Theory]
    [InlineData("101")]
    [InlineData("-5")]
    [InlineData("half")]
    public void The_carveout_refuses_anything_else_saying_what_to_write(string value)
    {
        var e = Assert.Throws<BatchwiseException>(() => GraphCompiler.ParseSharedCarveout(value));
        Assert.Contains($"BATCHWISE_SMEM_CARVEOUT '{value}' is not a percentage", e.Message, StringComparison.Ordinal);
        Assert.Contains("max or a whole number 0-100", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Launch_structs_are_laid_out_as_cuda_h_has_them()
    {
        // CUlaunchAttribute: an enum padded to 8 bytes, then a 64-byte union; CUlaunchConfig: seven unsigned ints, the
        // stream at 32, the attribute array at 40, their count at 48, 56 bytes in all.
        Assert.Equal(72, Marshal.SizeOf<LaunchAttribute>());
        Assert.Equal(8, (int)Marshal.OffsetOf<LaunchAttribute>(nameof(LaunchAttribute.Value)));
        Assert.Equal(56, Marshal.SizeOf<LaunchConfig>());
        Assert.Equal(24, (int)Marshal.OffsetOf<LaunchConfig>(nameof(LaunchConfig.SharedBytes)));
        Assert.Equal(32, (int)Marshal.OffsetOf<LaunchConfig>(nameof(LaunchConfig.Stream)));
        Assert.Equal(40, (int)Marshal.OffsetOf<LaunchConfig>(nameof(LaunchConfig.Attributes)));
        Assert.Equal(48, (int)Marshal.OffsetOf<LaunchConfig>(nameof(LaunchConfig.AttributeCount)));
    }
}
