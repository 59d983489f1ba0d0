using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Tests.Operators;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Every registry operator case the cuda engine lowers, planned without a GPU in float32 and float16 and its kernels run
/// on the CPU (<see cref="CpuKernelRunner"/>), against ONNX Runtime: the planner's shapes, strides and index arithmetic
/// and each generator's semantics, checked where there is no GPU. Plans with cuDNN or cuBLASLt steps skip here; the GPU
/// tests run them.
/// </summary>
public sealed class PlanOnCpuTests
{
    /// <summary>A case ready to run: its reference outputs and its plans (or why it does not run here).</summary>
    private sealed record Prepared(OnnxModel Model, List<Tensor> Inputs, IReadOnlyList<Tensor> Expected, bool FloatInputs, string? Skip, List<(Precision Precision, ExecutionPlan Plan)> Plans, string? Error = null);

    private static readonly Lazy<Dictionary<string, Prepared>> All = new(PrepareAll);

    public static TheoryData<string> Cases => [.. OperatorCaseModels.Lowered];

    /// <summary>Plans every case at both precisions, then compiles all their kernels in one g++ run.</summary>
    private static Dictionary<string, Prepared> PrepareAll()
    {
        var all = new Dictionary<string, Prepared>(StringComparer.Ordinal);
        foreach (var name in OperatorCaseModels.Lowered)
        {
            var (model, inputs, expected) = OperatorCaseModels.Build(name);
            var floatInputs = model.Inputs.Any(i => i.ElementType.IsFloatingPoint());
            try
            {
                if (OperatorCaseModels.Refusal(model) is { } refusal)
                {
                    all[name] = new(model, inputs, expected, floatInputs, refusal, []);
                    continue;
                }
            }
            catch (BatchwiseException e)
            {
                all[name] = new(model, inputs, expected, floatInputs, null, [], "refused at load: " + e.Message);
                continue;
            }

            var plans = new List<(Precision, ExecutionPlan)>();
            string? skip = null;
            foreach (var precision in new[] { Precision.Fp32, Precision.Fp16 })
            {
                try
                {
                    var init = model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t));
                    plans.Add((precision, new GraphCompiler(model, new NoGpuTarget(precision)).Compile(inputs, init, GraphCompiler.HostValueInputs(model))));
                }
                catch (Exception e) when (OperatorCaseModels.NeedsLibraries(e))
                {
                    skip = $"{OperatorCases.All[name].OpType} plans with cuDNN or cuBLASLt";
                    break;
                }
                catch (BatchwiseException e)
                {
                    skip = null;
                    all[name] = new(model, inputs, expected, floatInputs, null, [], $"planning ({precision}) failed: {e.Message}");
                    break;
                }
            }

            all.TryAdd(name, new(model, inputs, expected, floatInputs, skip, skip is null ? plans : []));
        }

        if (CpuKernelRunner.Unavailable is null)
        {
            CpuKernelRunner.Prepare(all.Values.SelectMany(p => p.Plans.Select(x => x.Plan)));
        }

        return all;
    }

    public static TheoryData<string> Layout1Cases => [.. OperatorCases.RecurrentLayout1.Keys];

    /// <summary>Recurrent layers in layout 1 ([batch, seq, ...]; ONNX Runtime's CPU kernels refuse it), against the registry's host reference.</summary>
    [Theory]
    [MemberData(nameof(Layout1Cases))]
    public void Recurrent_layout_1_kernels_run_on_the_cpu_agree_with_the_host_reference(string name)
    {
        CpuKernelRunner.Require();

        var (model, inputs, expected) = OperatorCaseModels.BuildLayout1(name);
        OperatorSupport.Validate(model);
        foreach (var precision in new[] { Precision.Fp32, Precision.Fp16 })
        {
            var init = model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t));
            var plan = new GraphCompiler(model, new NoGpuTarget(precision)).Compile(inputs, init, GraphCompiler.HostValueInputs(model));
            var actual = CpuKernelRunner.Run(plan, inputs);
            var difference = OperatorCaseModels.Difference(actual, expected, precision == Precision.Fp16 ? 2e-2 : 1e-4);
            Assert.True(difference is null, $"{name} ({precision}): {difference}");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Planned_kernels_run_on_the_cpu_agree_with_onnx_runtime(string name)
    {
        if (CpuKernelRunner.Unavailable is { } why)
        {
            // CI installs g++ (.ci/run) and promises it: there a missing compiler fails rather than skips.
            Assert.False(Environment.GetEnvironmentVariable("BATCHWISE_REQUIRE_TEST_TOOLS") == "1", $"BATCHWISE_REQUIRE_TEST_TOOLS=1, yet {why}");
            Assert.Skip(why);
        }

        var c = All.Value[name];
        Assert.True(c.Error is null, $"{name}: {c.Error}");
        if (c.Skip is not null)
        {
            Assert.Skip(c.Skip);
        }

        foreach (var (precision, plan) in c.Plans)
        {
            var actual = CpuKernelRunner.Run(plan, c.Inputs, CpuKernelRunner.Continuation(c.Model, new NoGpuTarget(precision), c.Inputs));
            var half = precision == Precision.Fp16;
            var quantized = c.Expected.Any(t => t.ElementType is ElementType.UInt8 or ElementType.Int8);
            var difference = OperatorCaseModels.Difference(actual, c.Expected, half ? 2e-2 : 1e-4, integerSlack: quantized ? 1 : 0, compareIntegers: !half || !c.FloatInputs);
            Assert.True(difference is null, $"{name} ({precision}): {difference}");
        }
    }
}
