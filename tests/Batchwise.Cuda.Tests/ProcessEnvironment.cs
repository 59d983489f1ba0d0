namespace Batchwise.Cuda.Tests;

/// <summary>
/// Tests that set the process's environment variables (BATCHWISE_INT8 and the other switches the planner reads) run
/// alone: another class planning at the same moment would read their settings (session 36's CI: a chained int8 plan in
/// Int8ConvOnCpuTests lost its chain while Int8GraphChoiceTests had BATCHWISE_INT8=conv set).
/// </summary>
[CollectionDefinition(nameof(ProcessEnvironment), DisableParallelization = true)]
public sealed class ProcessEnvironment;
