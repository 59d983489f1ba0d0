using System.Globalization;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Who runs a QDQ model's residual block ends (an int8 1x1 convolution, its residual Add, ReLU and QuantizeLinear).</summary>
internal enum Int8BlockEndChoice
{
    /// <summary>The own pointwise kernel where it takes the layer, else cuDNN's graph: the form measured through session 36.</summary>
    Own,

    /// <summary>cuBLASLt's int8 GEMM with the residual as its C (beta a host scalar) wherever it runs the layer and the own kernel computes no projection shortcut or next reduction in it.</summary>
    Cublaslt,
}

/// <summary>
/// A residual block's int8 1x1 end as one cuBLASLt call: D = saturate(round(ReLU(alpha[k] (X . W^T) + beta R + bias[k]))),
/// with R the residual's int8 bytes read as C and beta its scale over the output's (its zero point's share in the bias).
/// cuBLASLt's Hopper int8 kernels (warpgroup MMA) against the own mma.sync kernel and cuDNN's graph engines.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>
    /// BATCHWISE_INT8_BLOCK_END: own (or unset: the own pointwise kernel or cuDNN's graph, as measured through session 36)
    /// or cublaslt (cuBLASLt's int8 GEMM with the residual in its epilogue where it runs the layer).
    /// </summary>
    internal static Int8BlockEndChoice Int8BlockEndsFromEnvironment => ParseInt8BlockEnds(Environment.GetEnvironmentVariable("BATCHWISE_INT8_BLOCK_END"));

    /// <summary>own (or unset) or cublaslt; a BatchwiseException for anything else.</summary>
    internal static Int8BlockEndChoice ParseInt8BlockEnds(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "own" => Int8BlockEndChoice.Own,
        "cublaslt" => Int8BlockEndChoice.Cublaslt,
        var other => throw new BatchwiseException($"BATCHWISE_INT8_BLOCK_END '{other}' is not own or cublaslt", "Unset it (the own pointwise kernel or cuDNN's graph for residual block ends) or set BATCHWISE_INT8_BLOCK_END=cublaslt (cuBLASLt's int8 GEMM with the residual in its epilogue)."),
    };

    /// <summary>
    /// Emits <paramref name="layer"/> (an unstrided, unpadded 1x1 int8 convolution <paramref name="w"/> of
    /// <paramref name="xq"/>) as a cuBLASLt block end and returns how it runs, where the target asks for that, the layer
    /// ends a residual block that cuBLASLt's epilogue can finish (ReLU at a zero point of 0, or the int8 floor), and
    /// cuBLASLt runs it; returns null having emitted nothing otherwise (the caller's routes take it).
    /// </summary>
    private string? TryLowerCublasLtBlockEnd(Int8Layer layer, PlanValue xq, HostTensor w, HostTensor wScale, HostTensor? bias, (double Scale, double Zero) x, long[] kernel, long[] strides, long[] pads, long[] yShape)
    {
        if (_target.Int8BlockEnds != Int8BlockEndChoice.Cublaslt || _target.PlansMatmulsWithoutLibrary || Int8Layers.ResidualSetting == false
            || layer is not { Relu: null, Clamp: null, Between: null, Depthwise: false, Quantize: { } q } || kernel.Any(v => v != 1) || strides.Any(v => v != 1) || pads.Any(v => v != 0)
            || FindInt8Residual(q, yShape) is not { } f)
        {
            return null;
        }

        // A projection shortcut set aside for the own kernel, or a reduction it would chain: the own kernel keeps the layer.
        var (n, c, k) = (xq.Shape[0], xq.Shape[1], w.Shape[0]);
        if (_deferredShortcuts.ContainsKey(f.Residual.Int8.Buffer) || FindChainedReduction(f.Quantize, StoredShift(f.YType), yShape, c, 0) is not null)
        {
            return null;
        }

        var epilogue = Int8GemmEpilogue(f.Relu is not null, f.StoredYZero);
        var pixels = n * yShape[2] * yShape[3];
        if (epilogue < 0 || pixels > int.MaxValue)
        {
            return null;
        }

        var input = Int8Input(xq);
        var zero = x.Zero - input.Shift;
        long[] spatial = [xq.Shape[2], xq.Shape[3]];
        var recipe = Int8ConvRecipe(x.Scale, zero, f.YScale, f.StoredYZero, spatial, strides, pads);
        var (krsc, _, _, perPixel, alpha, gemmBias) = Int8ConvConstants(recipe, w, wScale, bias, x.Scale, zero, f.YScale, f.StoredYZero, spatial, spatial, kernel, strides, pads);
        var beta = f.ResidualScale / f.YScale;
        if (perPixel || !float.IsFinite((float)beta))
        {
            return null;
        }

        var gemm = ChooseInt8Gemm(pixels, c, k, epilogue, out var refusal, (float)beta);
        if (gemm is null)
        {
            Int8Layers.Trace($"{_node}: cuBLASLt refused the block end ({refusal})");
            return null;
        }

        // The residual's zero point as stored, in output steps: beta (shift - z_r), once per channel in the bias.
        var residualOffset = (f.Residual.Shift - f.ResidualZero) * beta;
        var vector = gemmBias.Constant!;
        var withResidual = residualOffset == 0 ? vector : _target.Derive(string.Create(CultureInfo.InvariantCulture, $"{recipe}:cublaslt-residual:{residualOffset:R}"), [w, wScale, bias],
            () => HostTensor.CreateInts(ElementType.Int32, [vector.Count], i => BitConverter.SingleToInt32Bits((float)(BitConverter.Int32BitsToSingle((int)vector[i]) + residualOffset))));
        var y = NewValue(ElementType.Int8, yShape, true, "int8 activation " + f.Quantize.Output[0]);
        var how = $"int8 (cuBLASLt, residual Add{(f.Relu is not null ? " and ReLU" : string.Empty)} fused)";
        _node += $" ({how})";
        Emit(new Int8GemmStep(_node, Dev(krsc), Dev(input.Int8), y.Buffer, Dev(alpha), Dev(new PlanValue(withResidual.Type, withResidual.Shape, withResidual)), gemm.Desc, gemm.A, gemm.B, gemm.D, gemm.Algo, (Dev(f.Residual.Int8), (float)beta)));
        ReserveWorkspace((long)gemm.Algo.WorkspaceSize);
        PublishInt8Conv(f.Quantize, layer.Relu, [.. f.Folded], y, yShape, StoredShift(f.YType));
        return how;
    }
}
