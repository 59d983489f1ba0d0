using Batchwise.Cuda.Interop;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>GPU test support: skipping where there is no GPU, comparing against ONNX Runtime, writing reports.</summary>
internal static class Gpu
{
    /// <summary>
    /// True where a GPU must be there (BATCHWISE_REQUIRE_GPU=1, set by bench/device/run.sh): a GPU test then fails
    /// instead of skipping, so a broken library resolver cannot turn the device run into 60 skips and a green exit.
    /// </summary>
    public static bool Required => Environment.GetEnvironmentVariable("BATCHWISE_REQUIRE_GPU") == "1";

    /// <summary>Skips the calling test with the reason when no NVIDIA GPU is usable; fails instead where one is required.</summary>
    public static void Require()
    {
        try
        {
            CudaDriver.Initialize();
        }
        catch (BatchwiseException e)
        {
            SkipOrFail(e.Message);
        }
    }

    /// <summary>
    /// Runs <paramref name="inputs"/> through <paramref name="cuda"/>, checks that a layer of its plan has
    /// <paramref name="route"/> in its name (the route under test was taken), and that every output agrees with ONNX
    /// Runtime fp32 to a cosine of at least <paramref name="cosine"/>; each output's agreement goes to
    /// <paramref name="report"/> as "agreement <paramref name="label"/>".
    /// </summary>
    public static void AgreesWithOrt(OnnxModel model, List<Tensor> inputs, CudaSession cuda, string route, string report, string label, double cosine = 0.9999)
    {
        using var ort = new OrtEngine().Load(model, new EngineOptions());
        var expected = ort.Run(inputs);
        using (var run = cuda.Prepare(inputs))
        {
            run.Run();
            Assert.Contains(Assert.IsAssignableFrom<ILayerProfiling>(run).ProfileLayers(1), l => l.Layer.Contains(route, StringComparison.Ordinal));
        }

        foreach (var r in Compare(cuda.Run(inputs), expected, model.Outputs))
        {
            Report(report, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"| agreement {label} | {r.Name} | max abs {r.MaxAbs:E2} | max rel {r.MaxRel:E2} | cosine {r.Cosine:F7} |"));
            Assert.True(r.Cosine >= cosine, $"{label}/{r.Name}: cosine {r.Cosine}, max abs error {r.MaxAbs}");
        }
    }

    /// <summary>The first device's compute capability as one number (90 for sm_90).</summary>
    public static int ComputeCapability()
    {
        CudaDriver.Initialize();
        var device = CudaDriver.Device(0);
        return (CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) * 10) + CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
    }

    /// <summary>
    /// Compiles each generated kernel as the engine does (NVRTC for this device's compute capability, the engine's prelude)
    /// and returns the report line's prefix (sm_NN, NVRTC version), its registers per thread and its local memory (spills).
    /// </summary>
    public static List<(string Toolchain, int Registers, int LocalBytes)> KernelResources(IEnumerable<Batchwise.Cuda.Kernels.KernelCode> codes)
    {
        CudaDriver.Initialize();
        var device = CudaDriver.Device(0);
        using var context = new PrimaryContext(device);
        context.MakeCurrent();
        var cc = (CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) * 10) + CudaDriver.Attribute(device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        var toolchain = $"sm_{cc}, NVRTC {Nvrtc.Version()}";
        var found = new List<(string, int, int)>();
        foreach (var code in codes)
        {
            using var module = CudaDriver.LoadModule(Nvrtc.CompileToCubin(Batchwise.Cuda.Kernels.KernelSource.Prelude + code.Source.Replace(Batchwise.Cuda.Kernels.KernelSource.Name, "kernel", StringComparison.Ordinal), "kernel.cu", cc));
            var function = CudaDriver.GetFunction(module, "kernel");
            found.Add((toolchain, CudaDriver.FunctionAttribute(function, CudaDriver.CU_FUNC_ATTRIBUTE_NUM_REGS), CudaDriver.FunctionAttribute(function, CudaDriver.CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)));
        }

        return found;
    }

    /// <summary>Skips with the reason, or fails with it where a GPU run is required (<see cref="Required"/>).</summary>
    public static void SkipOrFail(string reason)
    {
        if (Required)
        {
            Assert.Fail($"BATCHWISE_REQUIRE_GPU=1, yet this GPU test cannot run: {reason}");
        }

        Assert.Skip(reason);
    }

    /// <summary>Where device runs write their reports (BATCHWISE_REPORT_DIR), or null.</summary>
    public static string? ReportDirectory => Environment.GetEnvironmentVariable("BATCHWISE_REPORT_DIR") is { Length: > 0 } d ? d : null;

    public static void Report(string file, string line)
    {
        if (ReportDirectory is { } dir)
        {
            Directory.CreateDirectory(dir);
            lock (typeof(Gpu))
            {
                File.AppendAllText(Path.Combine(dir, file), line + Environment.NewLine);
            }
        }
    }

    /// <summary>A measured line, not asserted on: on the console, in the test's diagnostics and in the report file.</summary>
    public static void Publish(string file, string line)
    {
        Console.WriteLine(line);
        TestContext.Current.SendDiagnosticMessage(line);
        Report(file, line);
    }

    public static Tensor RandomInput(TensorSpec spec, long batch, int seed = 1)
    {
        var shape = spec.Shape.Select((d, i) => i == 0 && d.IsDynamic ? batch : d.Value ?? batch).ToArray();
        var rng = new Random(seed + spec.Name.Length);
        var n = (int)Tensor.ElementCountOf(shape);
        return spec.ElementType switch
        {
            ElementType.Float => Tensor.From<float>(ElementType.Float, shape, Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray()),
            ElementType.Int64 when spec.Name.Contains("mask", StringComparison.Ordinal) => Tensor.From<long>(ElementType.Int64, shape, Enumerable.Range(0, n).Select(i => i % shape[^1] < shape[^1] - 2 ? 1L : 0L).ToArray()),
            ElementType.Int64 => Tensor.From<long>(ElementType.Int64, shape, Enumerable.Range(0, n).Select(_ => (long)rng.Next(0, 1000)).ToArray()),
            _ => throw new InvalidOperationException($"No random data for {spec}"),
        };
    }

    /// <summary>Per output: max abs error, that error relative to the reference's largest magnitude, cosine similarity.</summary>
    public static List<(string Name, double MaxAbs, double MaxRel, double Cosine)> Compare(IReadOnlyList<Tensor> actual, IReadOnlyList<Tensor> expected, IReadOnlyList<TensorSpec> specs)
    {
        Assert.Equal(expected.Count, actual.Count);
        var result = new List<(string, double, double, double)>();
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Shape, actual[i].Shape);
            Assert.Equal(expected[i].ElementType, actual[i].ElementType);
            var a = actual[i].ToDoubles();
            var e = expected[i].ToDoubles();
            double maxAbs = 0, scale = 0, dot = 0, na = 0, ne = 0;
            for (var j = 0; j < e.Length; j++)
            {
                maxAbs = Math.Max(maxAbs, Math.Abs(a[j] - e[j]));
                if (double.IsNaN(a[j]) != double.IsNaN(e[j]))
                {
                    maxAbs = double.PositiveInfinity;
                }

                scale = Math.Max(scale, Math.Abs(e[j]));
                dot += a[j] * e[j];
                na += a[j] * a[j];
                ne += e[j] * e[j];
            }

            var cosine = na == 0 && ne == 0 ? 1 : dot / Math.Sqrt(na * ne);
            result.Add((specs[i].Name, maxAbs, scale == 0 ? maxAbs : maxAbs / scale, cosine));
        }

        return result;
    }

    /// <summary>Runs a model through ONNX Runtime (CPU) and the cuda engine on the same inputs.</summary>
    public static List<(string Name, double MaxAbs, double MaxRel, double Cosine)> CompareWithOrt(OnnxModel model, IReadOnlyList<Tensor> inputs, EngineOptions? options = null)
    {
        using var ort = new OrtEngine().Load(model, new EngineOptions());
        using var cuda = new CudaEngine().Load(model, options ?? new EngineOptions());
        var expected = ort.Run(inputs);
        var actual = cuda.Run(inputs);
        return Compare(actual, expected, model.Outputs);
    }
}
