using Batchwise.Onnx;
using Batchwise.Transforms;

namespace Batchwise.Tests.Transforms;

public sealed class PrecisionTransformTests
{
    [Theory]
    [MemberData(nameof(TransformTestModels.All), MemberType = typeof(TransformTestModels))]
    public void Fp16_stays_within_cosine_0_999_of_fp32_and_halves_the_weights(string spec)
    {
        var (original, result) = TransformTestModels.CleanedUp(spec);
        var bytesBefore = result.Proto.CalculateSize();
        new Fp16Conversion().Apply(result);

        Assert.True(result.Proto.CalculateSize() < bytesBefore * 0.6, "float16 weights should halve the file");
        Assert.All(result.Inputs.Where(i => i.ElementType.IsFloatingPoint()), i => Assert.Equal(ElementType.Float, i.ElementType));
        Assert.All(result.Outputs, o => Assert.Equal(ElementType.Float, o.ElementType));
        foreach (var a in Verification.Compare(original, result))
        {
            Assert.True(a.Cosine >= 0.999, $"{a.Output}: cosine {a.Cosine}");
        }
    }

    [Fact]
    public void Fp16_keeps_softmax_and_layernorm_in_float32_with_casts()
    {
        var (_, result) = TransformTestModels.CleanedUp(TransformTestModels.Bert);
        new Fp16Conversion().Apply(result);
        var types = ModelProbe.Run(result, SeededInputs.Create(result, 1));
        foreach (var node in result.Graph.Node.Where(n => n.OpType is "Softmax" or "LayerNormalization"))
        {
            Assert.Equal(ElementType.Float, types[node.Output[0]].ElementType);
        }

        var matmul = result.Graph.Node.First(n => n.OpType == "MatMul");
        Assert.Equal(ElementType.Float16, types[matmul.Output[0]].ElementType);
        Assert.Contains(result.Graph.Node, n => n.OpType == "Cast");
    }

    [Fact]
    public void Fp16_finds_by_loading_which_ops_ort_cpu_runs_in_float32_and_can_keep_them_there()
    {
        var (original, result) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        var plain = OnnxModel.FromProto(result.Proto.Clone(), "plain");
        var summary = new Fp16Conversion().Apply(plain);
        var demoted = Fp16Conversion.OrtCpuFloat32Ops(plain);
        Assert.Contains(demoted.Count == 0 ? "has float16 kernels for all" : "no float16 kernel for " + string.Join(", ", demoted), summary, StringComparison.Ordinal);

        new Fp16Conversion { MatchOrtCpuKernels = true }.Apply(result);
        Assert.Empty(Fp16Conversion.OrtCpuFloat32Ops(result));
        Assert.True(Verification.Compare(original, result)[0].Cosine >= 0.999);
    }

    [Fact]
    public void Fp16_without_keep_io_gives_float16_inputs_and_outputs()
    {
        var (original, result) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        new Fp16Conversion { KeepIoFp32 = false }.Apply(result);
        Assert.True(Verification.Compare(original, result)[0].Cosine >= 0.999);
        Assert.Equal(ElementType.Float16, result.Inputs[0].ElementType);
        Assert.Equal(ElementType.Float16, result.Outputs[0].ElementType);
        var y = TransformTestModels.RunFirstOutput(result);
        Assert.Equal(ElementType.Float16, y.ElementType);
    }

    [Theory]
    [MemberData(nameof(TransformTestModels.Classifiers), MemberType = typeof(TransformTestModels))]
    public void Int8_with_random_calibration_stays_within_cosine_0_98_on_classifiers(string spec)
    {
        var (original, result) = TransformTestModels.CleanedUp(spec);
        new Int8Quantization(CalibrationData.Parse("random:4")).Apply(result);

        Assert.True(TransformTestModels.Count(result, "QuantizeLinear") > 10);
        Assert.Contains(result.Graph.Initializer, t => (ElementType)t.DataType == ElementType.Int8 && t.Dims.Count == 4);
        var a = Assert.Single(Verification.Compare(original, result));
        Assert.True(a.Cosine >= 0.98, $"cosine {a.Cosine}");
    }

    [Fact]
    public void Int8_absorbs_relus_and_quantizes_residual_adds_so_ort_can_fuse_them()
    {
        var (original, result) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        new Int8Quantization(CalibrationData.Parse("random:2")).Apply(result);

        Assert.Equal(0, TransformTestModels.Count(result, "Relu"));
        var producers = Batchwise.Transforms.GraphSurgery.Producers(result.Graph);
        var adds = result.Graph.Node.Where(n => n.OpType == "Add").ToList();
        Assert.Equal(8, adds.Count);
        Assert.All(adds, a => Assert.All(a.Input, i => Assert.Equal("DequantizeLinear", producers[i].OpType)));
        Assert.True(Verification.Compare(original, result)[0].Cosine >= 0.98);
    }

    [Fact]
    public void Int8_symmetric_activations_keep_their_relus_and_zero_points_at_128()
    {
        var (original, result) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        var relus = TransformTestModels.Count(result, "Relu");
        new Int8Quantization(CalibrationData.Parse("random:2")) { SymmetricActivations = true }.Apply(result);

        // Zero point 128 would not saturate negatives to zero: every Relu stays, its output quantized (Conv -> Relu -> Q).
        Assert.Equal(relus, TransformTestModels.Count(result, "Relu"));
        var consumers = Batchwise.Transforms.GraphSurgery.Consumers(result.Graph);
        Assert.All(result.Graph.Node.Where(n => n.OpType == "Relu"), r => Assert.Equal(["QuantizeLinear"], consumers[r.Output[0]].Select(c => c.OpType)));
        var zeros = result.Graph.Initializer.Where(t => t.Name.EndsWith("_zero_point", StringComparison.Ordinal) && t.DataType == (int)ElementType.UInt8).ToList();
        Assert.NotEmpty(zeros);
        Assert.All(zeros, z => Assert.Equal([128], z.RawData.ToByteArray()));
        Assert.True(Verification.Compare(original, result)[0].Cosine >= 0.98);
    }

    [Theory]
    [InlineData(CalibrationMethod.Percentile)]
    [InlineData(CalibrationMethod.Entropy)]
    public void Int8_calibration_methods_produce_running_models_with_narrower_ranges(CalibrationMethod method)
    {
        var (original, minmax) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        var clipped = OnnxModel.FromProto(minmax.Proto.Clone(), "clipped");
        new Int8Quantization(CalibrationData.Parse("random:2")).Apply(minmax);
        new Int8Quantization(CalibrationData.Parse("random:2"), method).Apply(clipped);

        // Activation scales are the scalar float initializers; clipping outliers can only narrow each range.
        static double[] Scales(OnnxModel m) => m.Graph.Initializer.Where(t => t.Dims.Count == 0 && t.Name.EndsWith("_scale", StringComparison.Ordinal)).OrderBy(t => t.Name, StringComparer.Ordinal).Select(t => (double)t.ToFloats()[0]).ToArray();
        var (narrow, wide) = (Scales(clipped), Scales(minmax));
        Assert.Equal(wide.Length, narrow.Length);
        Assert.All(narrow.Zip(wide), p => Assert.True(p.First <= p.Second * 1.0001, $"{p.First} > {p.Second}"));
        Assert.True(narrow.Sum() < wide.Sum() * 0.99, $"{method}: sum of scales {narrow.Sum()} vs minmax {wide.Sum()}");
        var a = Assert.Single(Verification.Compare(original, clipped));
        Assert.True(a.Cosine > 0.9, $"cosine {a.Cosine}");
    }

    [Fact]
    public void Int8_static_runs_on_the_detector()
    {
        var (original, result) = TransformTestModels.CleanedUp("zoo:yolov8n?size=64");
        new Int8Quantization(CalibrationData.Parse("random:2")).Apply(result);
        var a = Assert.Single(Verification.Compare(original, result));
        Assert.True(a.Cosine > 0.95, $"cosine {a.Cosine}");

        // Every part of each C2f's Split is quantized (one half feeds a convolution, the other only a Concat), as ONNX
        // Runtime's quantizer quantizes every output of a Split.
        var consumers = Batchwise.Transforms.GraphSurgery.Consumers(result.Graph);
        var splits = result.Graph.Node.Where(n => n.OpType == "Split" && n.Output.Any(o => consumers[o].Any(c => c.OpType == "QuantizeLinear"))).ToList();
        Assert.Equal(8, splits.Count); // the C2f blocks' (the head's Split of boxes and classes feeds nothing quantized)
        Assert.All(splits.SelectMany(n => n.Output), o => Assert.Equal(["QuantizeLinear"], consumers[o].Select(c => c.OpType)));
    }

    [Theory]
    [InlineData(TransformTestModels.Bert)]
    [InlineData("zoo:mlp")]
    public void Int8_dynamic_turns_matmuls_into_matmulinteger_and_agrees(string spec)
    {
        var (original, result) = TransformTestModels.CleanedUp(spec);
        new Int8DynamicQuantization().Apply(result);
        Assert.True(TransformTestModels.Count(result, "MatMulInteger") > 0);
        Assert.Equal(0, TransformTestModels.Count(result, "Gemm"));
        var a = Assert.Single(Verification.Compare(original, result));
        Assert.True(a.Cosine >= 0.99, $"cosine {a.Cosine}");
    }

    [Fact]
    public void Int8_dynamic_refuses_a_model_without_matmuls()
    {
        var (_, result) = TransformTestModels.CleanedUp("zoo:yolov8n?size=64");
        var e = Assert.Throws<BatchwiseException>(() => new Int8DynamicQuantization().Apply(result));
        Assert.Contains("no MatMul or Gemm", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Calibration_rejects_a_missing_folder_and_a_bad_count()
    {
        Assert.Contains("not found", Assert.Throws<BatchwiseException>(() => CalibrationData.Parse("/no/such/folder")).Message, StringComparison.Ordinal);
        Assert.Throws<BatchwiseException>(() => CalibrationData.Parse("random:0"));
        Assert.Throws<BatchwiseException>(() => CalibrationData.Parse("random:x"));
    }

    [Fact]
    public void Calibration_reads_npy_samples_from_a_folder()
    {
        var dir = Directory.CreateTempSubdirectory("bw-calib-");
        try
        {
            var rng = new Random(5);
            for (var i = 0; i < 2; i++)
            {
                WriteNpy(Path.Combine(dir.FullName, $"{i}.npy"), [3, 64, 64], Enumerable.Range(0, 3 * 64 * 64).Select(_ => (float)rng.NextDouble()).ToArray());
            }

            var (original, result) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
            var data = CalibrationData.Parse(dir.FullName);
            var samples = data.Samples(result).ToList();
            Assert.Equal(2, samples.Count);
            Assert.Equal([1L, 3, 64, 64], samples[0][0].Shape);
            new Int8Quantization(data).Apply(result);
            Assert.True(Verification.Compare(original, result)[0].Cosine > 0.9);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData(false, 127)]
    [InlineData(true, 63)]
    public void Int8_weights_use_the_full_or_the_reduced_range(bool reduceRange, int levels)
    {
        var (_, result) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        new Int8Quantization(CalibrationData.Parse("random:1")) { ReduceRange = reduceRange }.Apply(result);
        var weights = result.Graph.Initializer.Where(t => (ElementType)t.DataType == ElementType.Int8 && t.Dims.Count == 4).ToList();
        Assert.NotEmpty(weights);

        // Each output channel's largest weight lands on the top level; nothing goes past it.
        var magnitudes = weights.Select(w => w.RawData.Span.ToArray().Max(b => Math.Abs((int)(sbyte)b))).ToList();
        Assert.All(magnitudes, m => Assert.Equal(levels, m));
    }

    internal static void WriteNpy(string path, long[] shape, float[] values)
    {
        var header = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({string.Join(", ", shape)},), }}";
        var total = 10 + header.Length + 1;
        header = header.PadRight(header.Length + ((64 - (total % 64)) % 64)) + "\n";
        using var stream = File.Create(path);
        stream.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0]);
        stream.Write(BitConverter.GetBytes((ushort)header.Length));
        stream.Write(System.Text.Encoding.ASCII.GetBytes(header));
        stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
    }
    [Fact]
    public void Int8_reads_float16_weights_through_their_casts()
    {
        var (original, result) = TransformTestModels.CleanedUp("zoo:resnet18?size=64");
        var casts = StoreWeightsAsFloat16(result);
        var summary = new Int8Quantization(CalibrationData.Parse("random:2")).Apply(result);

        var convs = TransformTestModels.Count(original, "Conv");
        Assert.StartsWith($"{convs + 1} nodes quantized", summary, StringComparison.Ordinal); // every Conv and the Gemm
        Assert.Contains(result.Graph.Initializer, t => (ElementType)t.DataType == ElementType.Int8 && t.Dims.Count == 4);
        Assert.True(result.Graph.Node.Count(n => n.OpType == "Cast") < casts, "the Casts of quantized weights should be gone");
        Assert.True(Verification.Compare(original, result)[0].Cosine >= 0.98);
    }

    [Fact]
    public void Int8_dynamic_reads_float16_weights_through_their_casts()
    {
        var (original, result) = TransformTestModels.CleanedUp(TransformTestModels.Bert);
        StoreWeightsAsFloat16(result);
        var summary = new Int8DynamicQuantization().Apply(result);

        Assert.StartsWith($"{TransformTestModels.Count(original, "MatMul") - 4} MatMul/Gemm nodes", summary, StringComparison.Ordinal); // all but the two attention MatMuls (Q.K, P.V) of each of the 2 layers
        Assert.True(Verification.Compare(original, result)[0].Cosine >= 0.99);
    }

    // Rewrites a float32 model as fp16-weight exports store it: every float32 weight (rank >= 1) becomes a float16
    // initializer read through a Cast to float32. Returns how many Casts it added.
    private static int StoreWeightsAsFloat16(OnnxModel model)
    {
        var graph = model.Graph;
        var casts = new List<global::Onnx.NodeProto>();
        foreach (var t in graph.Initializer.Where(t => (ElementType)t.DataType == ElementType.Float && t.Dims.Count > 0).ToList())
        {
            var values = t.ToFloats();
            var half = new global::Onnx.TensorProto { Name = t.Name + "_fp16", DataType = (int)ElementType.Float16 };
            half.Dims.AddRange(t.Dims);
            half.RawData = Google.Protobuf.ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(Array.ConvertAll(values, v => (Half)v).AsSpan()));
            graph.Initializer.Remove(t);
            graph.Initializer.Add(half);
            var cast = new global::Onnx.NodeProto { OpType = "Cast", Name = t.Name + "_cast" };
            cast.Input.Add(half.Name);
            cast.Output.Add(t.Name);
            cast.Attribute.Add(new global::Onnx.AttributeProto { Name = "to", Type = global::Onnx.AttributeProto.Types.AttributeType.Int, I = (long)ElementType.Float });
            casts.Add(cast);
        }

        for (var i = casts.Count - 1; i >= 0; i--)
        {
            graph.Node.Insert(0, casts[i]);
        }

        model.Validate();
        return casts.Count;
    }
}
