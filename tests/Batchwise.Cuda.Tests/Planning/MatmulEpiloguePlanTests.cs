using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A transformer's MLP and projections: the bias Add and the residual Add after a matrix product run in cuBLASLt's
/// epilogue (bias vector, C with beta 1), a Gemm's bias is never broadcast into Y first, and GELU's cube is a product,
/// not powf. Planned without a GPU (matrix products as reference loops on the CPU runner) against ONNX Runtime.
/// </summary>
public sealed class MatmulEpiloguePlanTests
{
    private static ExecutionPlan Compile(Precision precision, OnnxModel model, IReadOnlyList<Tensor> inputs, GeluChoice gelu = GeluChoice.Exact)
    {
        return new NoGpuTarget(precision, hostMatmuls: true) { Gelu = gelu }.Compile(model, inputs);
    }

    private static string Constant(GraphBuilder g, string name, float value) => g.Initializer(name, [], [value]);

    private static string ConstantNode(GraphBuilder g, string name, float value)
    {
        var t = new global::Onnx.TensorProto { Name = name, DataType = (int)global::Onnx.TensorProto.Types.DataType.Float };
        t.FloatData.Add(value);
        return g.Node("Constant", [], GraphBuilder.Attr("value", t));
    }

    /// <summary>
    /// timm's ViT block MLP at a small size: LayerNorm, fc1 + bias, erf GELU as exported (Div, Erf, Add, Mul, Mul), fc2 +
    /// bias, the residual Add; <paramref name="tokens"/> of width <paramref name="width"/>, weights scaled by 1/sqrt(fan-in).
    /// </summary>
    internal static OnnxModel VitMlp(long batch, long tokens, long width, long hidden)
    {
        var g = new GraphBuilder("vit_mlp", 3);
        var x = g.Input("x", ElementType.Float, batch, tokens, width);
        var norm = g.Node("LayerNormalization", [x, g.Uniform("ln_g", [width], 0.5f, 1.5f), g.Weight("ln_b", [width], 0.1f)], GraphBuilder.Attr("axis", -1L), GraphBuilder.Attr("epsilon", 1e-6f));
        var h = g.Node("Add", [g.Node("MatMul", [norm, g.Weight("w1", [width, hidden], 1 / MathF.Sqrt(width))]), g.Weight("b1", [hidden], 0.5f)]);
        var gelu = g.Node("Mul", [g.Node("Mul", [h, g.Node("Add", [g.Node("Erf", [g.Node("Div", [h, Constant(g, "sqrt2", MathF.Sqrt(2f))])]), Constant(g, "one", 1f)])]), Constant(g, "half", 0.5f)]);
        var fc2 = g.Node("Add", [g.Weight("b2", [width], 0.5f), g.Node("MatMul", [gelu, g.Weight("w2", [hidden, width], 1 / MathF.Sqrt(hidden))])]);
        g.Output(g.Rename(g.Node("Add", [x, fc2]), "y"), ElementType.Float, batch, tokens, width);
        return g.Build("vit_mlp", 17);
    }

    /// <summary>
    /// GPT-2's MLP as Hugging Face exports it: [B, S, C] reshaped to [B*S, C], Gemm (transB, bias C of N), gelu_new (0.5 x
    /// (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) with Pow 3), Gemm with bias, reshaped back to [B, S, C], the residual Add.
    /// </summary>
    internal static OnnxModel Gpt2Mlp(long batch, long seq, long width, long hidden)
    {
        var g = new GraphBuilder("gpt2_mlp", 5);
        var x = g.Input("x", ElementType.Float, batch, seq, width);
        var rows = g.Node("Reshape", [x, g.Int64s("rows", [-1, width])]);
        var h = g.Node("Gemm", [rows, g.Weight("w1", [hidden, width], 1 / MathF.Sqrt(width)), g.Weight("b1", [hidden], 0.5f)], GraphBuilder.Attr("transB", 1L));
        var cube = g.Node("Pow", [h, Constant(g, "three", 3f)]);
        var inner = g.Node("Mul", [g.Node("Add", [h, g.Node("Mul", [cube, Constant(g, "c", 0.044715f)])]), Constant(g, "k", MathF.Sqrt(2f / MathF.PI))]);
        var gelu = g.Node("Mul", [g.Node("Mul", [h, Constant(g, "half", 0.5f)]), g.Node("Add", [g.Node("Tanh", [inner]), Constant(g, "one", 1f)])]);
        var y = g.Node("Gemm", [gelu, g.Weight("w2", [hidden, width], 1 / MathF.Sqrt(hidden)), g.Weight("b2", [1, width], 0.5f)]);
        var back = g.Node("Reshape", [y, g.Int64s("back", [batch, seq, width])]);
        g.Output(g.Rename(g.Node("Add", [back, x]), "y"), ElementType.Float, batch, seq, width);
        return g.Build("gpt2_mlp", 17);
    }

    /// <summary>One projection with its bias and residual: y = x W + b + r, x [rows, k], r [rows, n] (ViT-S's fc2 alone at k 1536, n 384).</summary>
    internal static OnnxModel Projection(long rows, long k, long n)
    {
        var g = new GraphBuilder("projection", 7);
        var x = g.Input("x", ElementType.Float, rows, k);
        var r = g.Input("r", ElementType.Float, rows, n);
        var p = g.Node("Add", [g.Node("MatMul", [x, g.Weight("w", [k, n], 1 / MathF.Sqrt(k))]), g.Weight("b", [n], 0.5f)]);
        g.Output(g.Rename(g.Node("Add", [p, r]), "y"), ElementType.Float, rows, n);
        return g.Build("projection", 17);
    }

    internal static List<Tensor> Inputs(OnnxModel model, int seed)
    {
        var rng = new Random(seed);
        return [.. model.Inputs.Select(spec =>
        {
            var shape = spec.Shape.Select(d => d.Value!.Value).ToArray();
            return Tensor.From<float>(ElementType.Float, shape, [.. Enumerable.Range(0, (int)Tensor.ElementCountOf(shape)).Select(_ => (float)((rng.NextDouble() * 4) - 2))]);
        })];
    }

    private static void AgreesWithOnnxRuntime(OnnxModel model, IReadOnlyList<Tensor> inputs, params Precision[] precisions) =>
        AgreesWithOnnxRuntime(model, inputs, GeluChoice.Exact, precisions);

    private static void AgreesWithOnnxRuntime(OnnxModel model, IReadOnlyList<Tensor> inputs, GeluChoice gelu, params Precision[] precisions)
    {
        CpuKernelRunner.Require();
        var expected = DataDependentPlanTests.OnOnnxRuntime(model, [.. inputs]);
        var plans = precisions.Select(p => (Precision: p, Plan: Compile(p, model, inputs, gelu))).ToList();
        CpuKernelRunner.Prepare(plans.Select(p => p.Plan)); // one g++ run for both
        foreach (var (precision, plan) in plans)
        {
            var actual = CpuKernelRunner.Run(plan, inputs);
            var difference = OperatorCaseModels.Difference(actual, expected, precision == Precision.Fp16 ? 2e-2 : 1e-4);
            Assert.True(difference is null, $"{model.Graph.Name} ({precision}): {difference}");
        }
    }

    private static List<MatmulStep> Products(ExecutionPlan plan) => [.. plan.Steps.OfType<MatmulStep>()];

    [Theory]
    [InlineData(Precision.Fp32)]
    [InlineData(Precision.Fp16)]
    public void Vit_mlp_bias_and_residual_adds_run_in_the_products_epilogues(Precision precision)
    {
        var model = VitMlp(2, 13, 24, 72);
        var plan = Compile(precision, model, Inputs(model, 1));

        var (fc1, fc2) = (Products(plan)[0], Products(plan)[1]);
        Assert.Equal(2, Products(plan).Count);
        Assert.True(fc1.Buffers[3] >= 0 && fc1.Buffers[4] < 0, "fc1: a bias epilogue, no C");
        Assert.True(fc2.Buffers[3] >= 0 && fc2.Buffers[4] >= 0 && fc2.Beta == 1, "fc2: a bias epilogue and the residual as C with beta 1");
        var entered = precision == Precision.Fp32 ? plan.InputBuffers[0] : plan.Steps.OfType<KernelStep>().First(k => k.Node == "input x").Buffers[0];
        Assert.Equal(entered, fc2.Buffers[4]);

        // LayerNorm, the GELU chain (its bias taken by fc1): the only kernels; the Adds after fc2 are gone.
        Assert.Equal(2, plan.Steps.OfType<KernelStep>().Count(k => !k.Node.StartsWith("input", StringComparison.Ordinal) && !k.Node.StartsWith("output", StringComparison.Ordinal)));
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("Add", StringComparison.Ordinal));
    }

    [Fact]
    public void Vit_mlp_with_epilogues_matches_onnx_runtime()
    {
        var model = VitMlp(2, 13, 24, 72);
        AgreesWithOnnxRuntime(model, Inputs(model, 2), Precision.Fp32, Precision.Fp16);
    }

    [Theory]
    [InlineData(Precision.Fp32)]
    [InlineData(Precision.Fp16)]
    public void Gpt2_mlp_gemm_biases_are_epilogues_and_the_cube_is_a_product(Precision precision)
    {
        var model = Gpt2Mlp(3, 13, 16, 64);
        var plan = Compile(precision, model, Inputs(model, 3));

        var products = Products(plan);
        Assert.Equal(2, products.Count);
        Assert.All(products, p => Assert.True(p.Buffers[3] >= 0, $"{p.Node}: no bias epilogue"));
        Assert.True(products[0].Problem.TanhGelu && !products[1].Problem.TanhGelu, "gelu_new's eight nodes are the first Gemm's GELU epilogue");
        Assert.True(products[1].Buffers[4] >= 0 && products[1].Beta == 1, "the residual Add after the second Gemm (and its Reshape) is its C");

        // No kernel besides the precision conversions: no bias broadcast copies, no GELU chain, no Add.
        Assert.DoesNotContain(plan.Steps.OfType<KernelStep>(), k => !k.Node.StartsWith("input", StringComparison.Ordinal) && !k.Node.StartsWith("output", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("op", false, true)]
    [InlineData("chain", false, true)]
    [InlineData("chain", true, false)]
    [InlineData("erf", false, false)]
    public void Gelu_tanh_is_taken_only_where_its_nodes_are_read_by_the_chain_alone_and_the_erf_form_never(string activation, bool cubeAlsoOutput, bool taken)
    {
        static OnnxModel Model(string activation, bool cubeAlsoOutput)
        {
            var g = new GraphBuilder("gelu_" + activation, 9);
            var x = g.Input("x", ElementType.Float, 5L, 8L);
            var h = g.Node("Add", [g.Node("MatMul", [x, g.Weight("w", [8, 12], 0.5f)]), g.Weight("b", [12], 0.5f)]);
            string y, cube = string.Empty;
            if (activation == "op")
            {
                y = g.Node("Gelu", [h], GraphBuilder.Attr("approximate", "tanh"));
            }
            else if (activation == "erf")
            {
                y = g.Node("Gelu", [h]);
            }
            else
            {
                cube = g.Node("Mul", [g.Node("Mul", [h, h]), h]);
                var inner = g.Node("Mul", [Constant(g, "k", MathF.Sqrt(2f / MathF.PI)), g.Node("Add", [h, g.Node("Mul", [Constant(g, "c", 0.044715f), cube])])]);
                y = g.Node("Mul", [h, g.Node("Mul", [Constant(g, "half", 0.5f), g.Node("Add", [Constant(g, "one", 1f), g.Node("Tanh", [inner])])])]);
            }

            g.Output(g.Rename(y, "y"), ElementType.Float, 5L, 12L);
            if (cubeAlsoOutput)
            {
                g.Output(g.Rename(cube, "cube"), ElementType.Float, 5L, 12L);
            }

            return g.Build("gelu", 20);
        }

        var model = Model(activation, cubeAlsoOutput);
        var inputs = Inputs(model, 9);
        var product = Assert.Single(Products(Compile(Precision.Fp32, model, inputs)));
        Assert.Equal(taken, product.Problem.TanhGelu);
        Assert.True(product.Buffers[3] >= 0, "the bias is an epilogue either way");
        AgreesWithOnnxRuntime(model, inputs, Precision.Fp32, Precision.Fp16);
    }

    /// <summary>
    /// GELU's erf form after a product with its bias, as exporters spell it: the Gelu operator (opset 20); torch.onnx's
    /// nn.GELU (Div by sqrt 2, Erf, Add 1, Mul by x, Mul by 0.5); Hugging Face's x * 0.5 * (1 + erf(x / sqrt 2)) (the
    /// half taken first); and a Mul by 1/sqrt 2 instead of the Div.
    /// </summary>
    internal static OnnxModel ErfGelu(string form, long rows = 5, long k = 8, long n = 16)
    {
        var g = new GraphBuilder("erf_gelu_" + form, 9);
        var x = g.Input("x", ElementType.Float, rows, k);
        var h = g.Node("Add", [g.Node("MatMul", [x, g.Weight("w", [k, n], 0.5f)]), g.Weight("b", [n], 0.5f)]);
        var y = form switch
        {
            "op" => g.Node("Gelu", [h]),
            "torch" => g.Node("Mul", [g.Node("Mul", [h, g.Node("Add", [g.Node("Erf", [g.Node("Div", [h, Constant(g, "sqrt2", MathF.Sqrt(2f))])]), Constant(g, "one", 1f)])]), Constant(g, "half", 0.5f)]),
            "hf" => g.Node("Mul", [g.Node("Mul", [h, Constant(g, "half", 0.5f)]), g.Node("Add", [Constant(g, "one", 1f), g.Node("Erf", [g.Node("Div", [h, Constant(g, "sqrt2", MathF.Sqrt(2f))])])])]),
            "mul" => g.Node("Mul", [h, g.Node("Mul", [Constant(g, "half", 0.5f), g.Node("Add", [g.Node("Erf", [g.Node("Mul", [h, Constant(g, "rsqrt2", 1 / MathF.Sqrt(2f))])]), Constant(g, "one", 1f)])])]),
            // torch.onnx's own spelling in a real export (timm's ViT-S): each scalar a Constant node right before its use.
            "torch-constant-nodes" => g.Node("Mul", [g.Node("Mul", [h, g.Node("Add", [g.Node("Erf", [g.Node("Div", [h, ConstantNode(g, "sqrt2", MathF.Sqrt(2f))])]), ConstantNode(g, "one", 1f)])]), ConstantNode(g, "half", 0.5f)]),
            _ => throw new ArgumentOutOfRangeException(nameof(form)),
        };
        g.Output(g.Rename(y, "y"), ElementType.Float, rows, n);
        return g.Build("erf_gelu", form == "op" ? 20 : 17);
    }

    private static List<KernelStep> Kernels(ExecutionPlan plan) =>
        [.. plan.Steps.OfType<KernelStep>().Where(k => !k.Node.StartsWith("input", StringComparison.Ordinal) && !k.Node.StartsWith("output", StringComparison.Ordinal))];

    [Theory]
    [InlineData("op", Precision.Fp32)]
    [InlineData("op", Precision.Fp16)]
    [InlineData("torch", Precision.Fp32)]
    [InlineData("torch", Precision.Fp16)]
    [InlineData("hf", Precision.Fp32)]
    [InlineData("hf", Precision.Fp16)]
    [InlineData("mul", Precision.Fp16)]
    [InlineData("torch-constant-nodes", Precision.Fp16)]
    public void Erf_gelu_runs_in_place_behind_its_product_in_every_exported_form(string form, Precision precision)
    {
        var model = ErfGelu(form);
        var inputs = Inputs(model, 12);
        var plan = Compile(precision, model, inputs);

        var product = Assert.Single(Products(plan));
        Assert.False(product.Problem.TanhGelu, "exact: no tanh epilogue");
        Assert.True(product.Buffers[3] >= 0, "the bias is an epilogue");
        var gelu = Assert.Single(Kernels(plan));
        Assert.EndsWith("+ GELU (erf, in place)", gelu.Node, StringComparison.Ordinal);
        Assert.Equal([product.Buffers[2]], gelu.Buffers);
        Assert.Same(product, plan.Steps[plan.Steps.ToList().IndexOf(gelu) - 1]);
        AgreesWithOnnxRuntime(model, inputs, Precision.Fp32, Precision.Fp16);
    }

    /// <summary>
    /// BATCHWISE_GELU_CHUNKS: the product and its erf GELU pass in row chunks, each chunk's product (its rows of X in, of Y
    /// out, by byte offsets) right before the pass over those rows; the values are the whole plan's exactly. Rows that do
    /// not divide into chunks of at least 256 stay whole.
    /// </summary>
    [Theory]
    [InlineData(Precision.Fp16)]
    [InlineData(Precision.Fp32)]
    public void Erf_gelu_chunks_run_the_product_and_its_pass_chunk_by_chunk_with_the_whole_plans_values(Precision precision)
    {
        var model = ErfGelu("torch", rows: 1024, k: 128, n: 128);
        var inputs = Inputs(model, 15);
        var whole = Compile(precision, model, inputs);
        var chunked = new NoGpuTarget(precision, hostMatmuls: true) { GeluChunks = 4 }.Compile(model, inputs);

        var products = Products(chunked);
        var size = precision == Precision.Fp16 ? 2L : 4L;
        long[] offsets = [0, 256 * 128 * size, 512 * 128 * size, 768 * 128 * size];
        Assert.Equal(offsets, products.Select(p => p.RowOffsets.Activations));
        Assert.Equal(offsets, products.Select(p => p.RowOffsets.Output));
        Assert.All(products, p => Assert.Equal(256, p.Problem.M));
        var passes = Kernels(chunked).Where(k => k.Node.EndsWith("+ GELU (erf, in place)", StringComparison.Ordinal)).ToList();
        Assert.Equal(4, passes.Count);
        var steps = chunked.Steps.ToList();
        Assert.All(products.Zip(passes), pair => Assert.Same(pair.First, steps[steps.IndexOf(pair.Second) - 1]));

        CpuKernelRunner.Require();
        Assert.Equal(CpuKernelRunner.Run(whole, inputs)[0].ToDoubles(), CpuKernelRunner.Run(chunked, inputs)[0].ToDoubles());
        Assert.Single(Products(new NoGpuTarget(precision, hostMatmuls: true) { GeluChunks = 3 }.Compile(model, inputs)));
        Assert.Single(Products(new NoGpuTarget(precision, hostMatmuls: true) { GeluChunks = 8 }.Compile(model, inputs)));
    }

    [Theory]
    [InlineData("tanh", Precision.Fp16, "tanh epilogue")]
    [InlineData("tanh", Precision.Fp32, "in place")]
    [InlineData("front-to-back", Precision.Fp32, "in place")]
    [InlineData("front-to-back", Precision.Fp16, "in place")]
    [InlineData("chain", Precision.Fp16, "chain")]
    [InlineData("chain", Precision.Fp32, "chain")]
    public void Erf_gelu_choice_picks_the_tanh_epilogue_in_fp16_only_or_leaves_the_chain(string gelu, Precision precision, string expected)
    {
        var choice = gelu switch { "tanh" => GeluChoice.Tanh, "chain" => GeluChoice.Chain, _ => GeluChoice.ExactFrontToBack };
        var model = VitMlp(2, 13, 24, 72);
        var inputs = Inputs(model, 13);
        var plan = Compile(precision, model, inputs, choice);

        var fc1 = Products(plan)[0];
        Assert.Equal(expected == "tanh epilogue", fc1.Problem.TanhGelu);
        Assert.Equal(expected == "in place", Kernels(plan).Any(k => k.Node.EndsWith("+ GELU (erf, in place)", StringComparison.Ordinal)));

        // LayerNorm, and the exported nodes' fused kernel where the chain is left as it is.
        Assert.Equal(expected == "tanh epilogue" ? 1 : 2, Kernels(plan).Count);
        CpuKernelRunner.Require();
        var actual = CpuKernelRunner.Run(plan, inputs);
        var difference = OperatorCaseModels.Difference(actual, DataDependentPlanTests.OnOnnxRuntime(model, [.. inputs]), precision == Precision.Fp16 ? 2e-2 : 1e-4);
        Assert.True(difference is null, $"{choice} ({precision}): {difference}");
    }

    [Fact]
    public void Erf_gelu_is_not_taken_where_a_chain_value_is_read_elsewhere()
    {
        var g = new GraphBuilder("erf_gelu_shared", 9);
        var x = g.Input("x", ElementType.Float, 5L, 8L);
        var h = g.Node("Add", [g.Node("MatMul", [x, g.Weight("w", [8, 16], 0.5f)]), g.Weight("b", [16], 0.5f)]);
        var erf = g.Node("Erf", [g.Node("Div", [h, Constant(g, "sqrt2", MathF.Sqrt(2f))])]);
        var y = g.Node("Mul", [g.Node("Mul", [h, g.Node("Add", [erf, Constant(g, "one", 1f)])]), Constant(g, "half", 0.5f)]);
        g.Output(g.Rename(y, "y"), ElementType.Float, 5L, 16L);
        g.Output(g.Rename(erf, "erf"), ElementType.Float, 5L, 16L);
        var model = g.Build("erf_gelu_shared", 17);
        var inputs = Inputs(model, 14);

        var plan = Compile(Precision.Fp16, model, inputs);
        Assert.DoesNotContain(Kernels(plan), k => k.Node.Contains("GELU", StringComparison.Ordinal));
        AgreesWithOnnxRuntime(model, inputs, Precision.Fp32, Precision.Fp16);
    }

    [Fact]
    public void Gpt2_mlp_with_epilogues_matches_onnx_runtime()
    {
        var model = Gpt2Mlp(3, 13, 16, 64);
        AgreesWithOnnxRuntime(model, Inputs(model, 4), Precision.Fp32, Precision.Fp16);
    }

    [Fact]
    public void A_projection_is_one_product_with_bias_and_residual_and_matches_onnx_runtime()
    {
        var model = Projection(21, 40, 24);
        var inputs = Inputs(model, 8);
        var plan = Compile(Precision.Fp32, model, inputs);
        var product = Assert.IsType<MatmulStep>(Assert.Single(plan.Steps));
        Assert.Equal(plan.InputBuffers[1], product.Buffers[4]);
        AgreesWithOnnxRuntime(model, inputs, Precision.Fp32, Precision.Fp16);
    }

    [Fact]
    public void A_product_also_read_elsewhere_keeps_its_adds_and_matches_onnx_runtime()
    {
        // The MatMul's result is a graph output too: the bias Add cannot be taken into it. The biased value is read
        // twice (residual Add and a Relu output): the residual cannot be taken either.
        var g = new GraphBuilder("shared_product", 5);
        var x = g.Input("x", ElementType.Float, 3L, 7L, 10L);
        var p = g.Node("MatMul", [x, g.Weight("w", [10, 10], 0.3f)]);
        var biased = g.Node("Add", [p, g.Weight("b", [10], 0.5f)]);
        var res = g.Node("Add", [g.Node("MatMul", [biased, g.Weight("w2", [10, 10], 0.3f)]), biased]);
        g.Output(g.Rename(p, "p"), ElementType.Float, 3L, 7L, 10L);
        g.Output(g.Rename(res, "y"), ElementType.Float, 3L, 7L, 10L);
        g.Output(g.Rename(g.Node("Relu", [biased]), "r"), ElementType.Float, 3L, 7L, 10L);
        var model = g.Build("shared_product", 17);
        var inputs = Inputs(model, 5);

        var products = Products(Compile(Precision.Fp32, model, inputs));
        Assert.True(products[0].Buffers[3] < 0 && products[0].Buffers[4] < 0, "the first product has consumers besides the bias Add");
        Assert.True(products[1].Buffers[3] < 0 && products[1].Buffers[4] >= 0, "the second product's residual Add is its C (the residual itself is read elsewhere: fine)");
        AgreesWithOnnxRuntime(model, inputs, Precision.Fp32, Precision.Fp16);
    }

    [Fact]
    public void A_gemm_reads_a_full_c_in_place_and_a_broadcast_c_other_than_a_bias_is_copied()
    {
        var g = new GraphBuilder("gemm_c", 5);
        var a = g.Input("a", ElementType.Float, 6L, 5L);
        var c = g.Input("c", ElementType.Float, 6L, 4L);
        var full = g.Node("Gemm", [a, g.Weight("w", [5, 4], 0.3f), c], GraphBuilder.Attr("beta", 0.5f), GraphBuilder.Attr("alpha", 2f));
        var column = g.Node("Gemm", [a, g.Weight("w2", [5, 4], 0.3f), g.Weight("col", [6, 1], 0.5f)]);
        var scaledBias = g.Node("Gemm", [a, g.Weight("w3", [5, 4], 0.3f), g.Weight("bias", [4], 0.5f)], GraphBuilder.Attr("beta", 3f));
        g.Output(g.Rename(full, "full"), ElementType.Float, 6L, 4L);
        g.Output(g.Rename(column, "column"), ElementType.Float, 6L, 4L);
        g.Output(g.Rename(scaledBias, "scaled"), ElementType.Float, 6L, 4L);
        var model = g.Build("gemm_c", 17);
        var inputs = Inputs(model, 6);

        var plan = Compile(Precision.Fp32, model, inputs);
        var products = Products(plan);
        Assert.Equal(plan.InputBuffers[1], products[0].Buffers[4]);
        Assert.Equal(0.5f, products[0].Beta);
        Assert.True(products[1].Buffers[3] < 0 && products[1].Buffers[4] < 0 && products[1].Beta == 1, "a [M, 1] C is broadcast into Y, then beta 1");
        Assert.True(products[2].Buffers[3] < 0 && products[2].Beta == 3, "a bias scaled by beta 3 is broadcast into Y, not an epilogue");
        Assert.Equal(2, plan.Steps.OfType<KernelStep>().Count(k => k.Node.StartsWith("Gemm", StringComparison.Ordinal)));
        AgreesWithOnnxRuntime(model, inputs, Precision.Fp32, Precision.Fp16);
    }

    [Theory]
    [InlineData(2f, false)]
    [InlineData(3f, false)]
    [InlineData(1.5f, true)]
    public void Pow_by_two_or_three_is_a_product_and_other_exponents_call_powf(float exponent, bool powf)
    {
        var g = new GraphBuilder("pow", 5);
        var x = g.Input("x", ElementType.Float, 4L, 9L);
        g.Output(g.Rename(g.Node("Pow", [g.Node("Abs", [x]), Constant(g, "e", exponent)]), "y"), ElementType.Float, 4L, 9L);
        var model = g.Build("pow", 17);
        var inputs = Inputs(model, 7);

        var plan = Compile(Precision.Fp32, model, inputs);
        var kernel = Assert.Single(plan.Steps.OfType<KernelStep>());
        Assert.Equal(powf, kernel.Source.Contains("powf", StringComparison.Ordinal));
        AgreesWithOnnxRuntime(model, inputs, Precision.Fp32, Precision.Fp16);
    }
}
