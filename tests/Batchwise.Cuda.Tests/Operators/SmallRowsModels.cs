using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Operators;

/// <summary>
/// One matrix product of few rows, x [M, K] by a weight of K x N, as classifier heads are exported: "gemm" (Gemm,
/// transB 1, the weight [N, K] a constant and a bias of N), "gemm-b-input" (the same with the weight a second input),
/// "gemm-c" (Gemm with alpha 0.7, beta 0.5 and C a second input [M, N], no bias), "matmul" (MatMul by a constant
/// [K, N], Add of a bias), "matmul-relu" (the same, then Relu) or "matmul-residual" (MatMul, Add of a bias, Add of a second input [M, N]).
/// </summary>
internal sealed record SmallRowsCase(string Kind, long M, long K, long N)
{
    /// <summary>The product's output, the output ONNX Runtime and the engines are compared on.</summary>
    public OnnxModel Model()
    {
        var g = new GraphBuilder("small-rows", seed: 5);
        var x = g.Input("x", ElementType.Float, M, K);
        var scale = MathF.Sqrt(3f / K);
        var y = Kind switch
        {
            "gemm" => g.Node("Gemm", [x, g.Weight("w", [N, K], scale), g.Weight("b", [N], 0.5f)], GraphBuilder.Attr("transB", 1L)),
            "gemm-b-input" => g.Node("Gemm", [x, g.Input("w", ElementType.Float, N, K), g.Weight("b", [N], 0.5f)], GraphBuilder.Attr("transB", 1L)),
            "gemm-c" => g.Node("Gemm", [x, g.Weight("w", [N, K], scale), g.Input("c", ElementType.Float, M, N)], GraphBuilder.Attr("transB", 1L), GraphBuilder.Attr("alpha", 0.7f), GraphBuilder.Attr("beta", 0.5f)),
            "matmul" => g.Node("Add", [g.Node("MatMul", [x, g.Weight("w", [K, N], scale)]), g.Weight("b", [N], 0.5f)]),
            "matmul-relu" => g.Node("Relu", [g.Node("Add", [g.Node("MatMul", [x, g.Weight("w", [K, N], scale)]), g.Weight("b", [N], 0.5f)])]),
            "matmul-residual" => g.Node("Add", [g.Node("Add", [g.Node("MatMul", [x, g.Weight("w", [K, N], scale)]), g.Weight("b", [N], 0.5f)]), g.Input("z", ElementType.Float, M, N)]),
            _ => throw new ArgumentException("unknown small-rows case " + Kind),
        };
        g.Output(g.Rename(y, "y"), ElementType.Float, M, N);
        return g.Build("small-rows");
    }

    /// <summary>Inputs in [-1, 1) from a cheap hash: x, then the weight (gemm-b-input), C (gemm-c) or the residual (matmul-residual).</summary>
    public List<Tensor> Inputs(int seed)
    {
        List<Tensor> inputs = [PointwiseConvModels.Filled([M, K], seed)];
        switch (Kind)
        {
            case "gemm-b-input":
                inputs.Add(PointwiseConvModels.Filled([N, K], seed + 17));
                break;
            case "gemm-c" or "matmul-residual":
                inputs.Add(PointwiseConvModels.Filled([M, N], seed + 17));
                break;
        }

        return inputs;
    }
}

/// <summary>Products of few rows: small ones the CPU runs (both load paths: K a multiple of the 16-byte vector, and not; K past one sweep of the warp), and classifier heads for the GPU.</summary>
internal static class SmallRowsModels
{
    public static IReadOnlyDictionary<string, SmallRowsCase> Small { get; } = new Dictionary<string, SmallRowsCase>(StringComparer.Ordinal)
    {
        ["gemm-m1-k64-n40"] = new("gemm", 1, 64, 40),
        ["gemm-m5-k37-n24"] = new("gemm", 5, 37, 24),
        ["gemm-m2-k520-n24"] = new("gemm", 2, 520, 24),
        ["gemm-b-input-m2-k24-n8"] = new("gemm-b-input", 2, 24, 8),
        ["gemm-c-m4-k40-n12"] = new("gemm-c", 4, 40, 12),
        ["matmul-relu-m3-k48-n20"] = new("matmul-relu", 3, 48, 20),
        ["matmul-residual-m8-k300-n16"] = new("matmul-residual", 8, 300, 16),
    };

    /// <summary>Classifier heads: ResNet-50's (2,048 to 1,000) at 1 and 8 rows, and a ViT-B's (768 to 1,000) as a MatMul with its bias.</summary>
    public static IReadOnlyDictionary<string, SmallRowsCase> Heads { get; } = new Dictionary<string, SmallRowsCase>(StringComparer.Ordinal)
    {
        ["resnet50-fc-m1"] = new("gemm", 1, 2048, 1000),
        ["resnet50-fc-m8"] = new("gemm", 8, 2048, 1000),
        ["vit-head-m1"] = new("matmul", 1, 768, 1000),
    };
}
