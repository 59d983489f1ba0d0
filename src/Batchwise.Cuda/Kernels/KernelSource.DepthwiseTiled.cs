using System.Text;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>
/// The shape of a <see cref="KernelSource.DepthwiseTiled"/> block: <paramref name="Lanes"/> threads across a group of
/// Lanes x <paramref name="Vector"/> channels, <paramref name="ThreadsHigh"/> x <paramref name="ThreadsWide"/> threads
/// over the output tile, each computing <see cref="KernelSource.DepthwiseTileRows"/> rows by
/// <see cref="KernelSource.DepthwiseOutputsPerThread"/> columns; the input tile with its halo is
/// <paramref name="InRows"/> x <paramref name="InCols"/> pixels.
/// </summary>
internal sealed record DepthwiseTile(int Lanes, int Vector, int ThreadsHigh, int ThreadsWide, int InRows, int InCols, int SharedBytes)
{
    /// <summary>Threads of a block.</summary>
    public int Block => Lanes * ThreadsHigh * ThreadsWide;

    /// <summary>Output rows of a block's tile.</summary>
    public int TileHeight => ThreadsHigh * KernelSource.DepthwiseTileRows;

    /// <summary>Output columns of a block's tile.</summary>
    public int TileWidth => ThreadsWide * KernelSource.DepthwiseOutputsPerThread;

    /// <summary>Channels of a block's group.</summary>
    public int GroupChannels => Lanes * Vector;
}

/// <summary>
/// What a tiled depthwise kernel does with the sum's first QuantizeLinear when more follows it (Q -> DQ -> Clip -> Q):
/// <paramref name="First"/> (over z, the float sum plus bias) is that QuantizeLinear as a float of its integer range
/// from <paramref name="Low"/>; <paramref name="Rest"/> (over qv, that value) the nodes after it up to the stored
/// output, which the kernel evaluates once for each of the 256 values into a table every output then reads.
/// </summary>
internal sealed record QuantizedOutputTable(string First, int Low, string Rest);

internal static partial class KernelSource
{
    /// <summary>Output rows one thread of <see cref="DepthwiseTiled"/> computes (the input rows between them are read once for both).</summary>
    public const int DepthwiseTileRows = 2;

    /// <summary>Threads a <see cref="DepthwiseTiled"/> block aims for.</summary>
    private const int DepthwiseTileThreads = 256;

    /// <summary>
    /// The block shape of <see cref="DepthwiseTiled"/> for a channels-last depthwise layer, or null where none fits
    /// (fewer than 4 lanes of channels, or no tile within the 48 KB of static shared memory): such a layer keeps
    /// <see cref="Depthwise"/>. Lanes: the largest divisor of C / vector up to 32. The tile is about 256 threads
    /// (no wider or higher than the output needs); it shrinks, height first, until the input tile (as float, with its
    /// halo), the group's filter and the tables fit.
    /// </summary>
    public static DepthwiseTile? DepthwiseTiling(int vector, long channels, long[] outSpatial, long[] kernel, long[] strides, long[] dilations)
    {
        if (channels % vector != 0 || kernel.Length != 2)
        {
            return null;
        }

        var vectors = channels / vector;
        var lanes = (int)Enumerable.Range(1, 32).Where(l => vectors % l == 0).Max();
        if (lanes < 4)
        {
            return null;
        }

        var (p, r) = (DepthwiseOutputsPerThread, DepthwiseTileRows);
        var wide = (int)Math.Min(Math.Max(1, (outSpatial[1] + p - 1) / p), 4);
        var high = (int)Math.Min(Math.Max(1, (outSpatial[0] + r - 1) / r), Math.Max(1, DepthwiseTileThreads / (lanes * wide)));
        while (true)
        {
            var inRows = (int)((((high * r) - 1) * strides[0]) + ((kernel[0] - 1) * dilations[0]) + 1);
            var inCols = (int)((((wide * p) - 1) * strides[1]) + ((kernel[1] - 1) * dilations[1]) + 1);
            var group = lanes * vector;
            var shared = (4L * inRows * inCols * group) + (4L * kernel[0] * kernel[1] * group) + (4 * 256) + 256;
            if (shared <= Planning.KernelCache.StaticSharedBytes)
            {
                return new DepthwiseTile(lanes, vector, high, wide, inRows, inCols, (int)shared);
            }

            if (high > 1)
            {
                high /= 2;
            }
            else if (wide > 1)
            {
                wide /= 2;
            }
            else
            {
                return null;
            }
        }
    }

    /// <summary>Blocks of <see cref="DepthwiseTiled"/>: a block per image, output tile and channel group.</summary>
    public static long DepthwiseTiledBlocks(DepthwiseTile tile, long batch, long channels, long[] outSpatial) =>
        batch * ((outSpatial[0] + tile.TileHeight - 1) / tile.TileHeight) * ((outSpatial[1] + tile.TileWidth - 1) / tile.TileWidth) * (channels / tile.GroupChannels);

    /// <summary>
    /// A channels-last depthwise 2-d convolution (x [N, H, W, C], filter [kh, kw, C]) that stages its input once: a block
    /// takes one image's output tile over one group of channels, loads the input tile with its halo into shared memory
    /// as float (each element read from memory once, through the input chain or its table once, zero outside the
    /// input) with the group's filter, then each thread computes <see cref="DepthwiseTileRows"/> x
    /// <see cref="DepthwiseOutputsPerThread"/> outputs of its lane's channels from shared memory at offsets fixed in the
    /// kernel (no bounds checks or address arithmetic per tap; the input rows two output rows share are read once).
    /// Accumulation is in float, as <see cref="Depthwise"/>. With <paramref name="fusion"/> as <see cref="Depthwise"/>,
    /// and with <paramref name="table"/> the output's chain after its first QuantizeLinear read from a table of its
    /// 256 values.
    /// </summary>
    public static KernelCode DepthwiseTiled(ElementType type, DepthwiseTile tile, long batch, long channels, long[] inSpatial, long[] outSpatial, long[] kernel, long[] strides, long[] dilations, long[] padsBegin, DepthwiseFusion? fusion = null, QuantizedOutputTable? table = null)
    {
        if (table is not null && fusion?.OutExpression is null)
        {
            throw new ArgumentException("depthwise: an output table goes with an output expression", nameof(table));
        }

        var t = CType(type);
        var inType = fusion?.InType ?? type;
        var outType = fusion?.OutType ?? type;
        var (tx, ty) = (CType(inType), CType(outType));
        var (v, lanes) = (tile.Vector, tile.Lanes);
        var (p, r) = (DepthwiseOutputsPerThread, DepthwiseTileRows);
        var (kh, kw) = (kernel[0], kernel[1]);
        var (sh, sw) = (strides[0], strides[1]);
        var (dh, dw) = (dilations[0], dilations[1]);
        var group = tile.GroupChannels;
        var span = ((p - 1) * sw) + ((kw - 1) * dw) + 1; // input columns of one thread's outputs in a row
        var rowsRead = ((r - 1) * sh) + ((kh - 1) * dh) + 1; // input rows of one thread's outputs
        var tilesHigh = (outSpatial[0] + tile.TileHeight - 1) / tile.TileHeight;
        var tilesWide = (outSpatial[1] + tile.TileWidth - 1) / tile.TileWidth;
        var count = batch * channels * Math.Max(inSpatial[0] * inSpatial[1], outSpatial[0] * outSpatial[1]);
        var blocks = DepthwiseTiledBlocks(tile, batch, channels, outSpatial);
        var w = new KernelWriter(KernelWriter.Fits32(count) && KernelWriter.Fits32(blocks));
        var ix = w.Idx;
        var b = w.Body;
        var nBlocks = w.Size("blocks", blocks);
        var wideDiv = w.Div("tiles_wide", tilesWide);
        var highDiv = w.Div("tiles_high", tilesHigh);
        var ih = w.I32("ih", checked((int)inSpatial[0]));
        var iw = w.I32("iw", checked((int)inSpatial[1]));
        var oh = w.I32("oh", checked((int)outSpatial[0]));
        var ow = w.I32("ow", checked((int)outSpatial[1]));
        var ph = w.I32("ph", checked((int)padsBegin[0]));
        var pw = w.I32("pw", checked((int)padsBegin[1]));
        var c = w.Size("c", channels);
        string L(long value) => KernelWriter.Lit(value);
        var (vecType, inVecType, outVecType, floatVec) = (Name + "_vec", Name + "_xvec", Name + "_yvec", Name + "_fvec");
        var inputTable = fusion?.InStatements is not null && inType.SizeOf() == 1;

        b.Append("    __shared__ __align__(16) float tile_in[").Append(L((long)tile.InRows * tile.InCols * group)).Append("];\n");
        b.Append("    __shared__ __align__(16) float tile_w[").Append(L(kh * kw * group)).Append("];\n");
        if (inputTable)
        {
            // An 8-bit input has 256 values: its chain runs once for each (a QDQ chain divides and rounds).
            b.Append("    __shared__ float lut[256];\n");
            b.Append("    for (int j = threadIdx.x; j < 256; j += blockDim.x) {\n");
            b.Append("        const ").Append(CType(ComputeType(inType))).Append(" xe = (").Append(tx).Append(")j;\n");
            AppendStatements(b, fusion!.InStatements, "        ");
            b.Append("        lut[j] = (float)(").Append(fusion.InResult).Append(");\n    }\n");
        }

        if (table is not null)
        {
            // The output's chain after its first QuantizeLinear, once for each of that value's 256 integers.
            b.Append("    __shared__ ").Append(ty).Append(" lut_out[256];\n");
            b.Append("    for (int j = threadIdx.x; j < 256; j += blockDim.x) {\n");
            b.Append("        const float qv = (float)(j + ").Append(L(table.Low)).Append(");\n");
            b.Append("        lut_out[j] = (").Append(ty).Append(")(").Append(table.Rest).Append(");\n    }\n");
        }

        // The block: its channel group, output tile and image (blockIdx.x = ((img * tiles_high + by) * tiles_wide + bx) * groups + g).
        b.Append("    if ((").Append(ix).Append(")blockIdx.x >= ").Append(nBlocks).Append(") return;\n");
        b.Append("    ").Append(ix).Append(" r_ = blockIdx.x;\n");
        b.Append("    const ").Append(ix).Append(" g = r_ % ").Append(L(channels / group)).Append("; r_ /= ").Append(L(channels / group)).Append(";\n");
        b.Append("    ").Append(w.Peel(wideDiv, "r_", "bx")).Append('\n');
        b.Append("    ").Append(w.Peel(highDiv, "r_", "by")).Append('\n');
        b.Append("    const ").Append(ix).Append(" img = r_;\n");
        b.Append("    const int oy0 = (int)by * ").Append(L(tile.TileHeight)).Append(", ox0 = (int)bx * ").Append(L(tile.TileWidth)).Append(";\n");
        b.Append("    const int iy0 = oy0 * ").Append(L(sh)).Append(" - ").Append(ph).Append(", ix0 = ox0 * ").Append(L(sw)).Append(" - ").Append(pw).Append(";\n");
        b.Append("    const ").Append(ix).Append(" cbase = g * ").Append(L(group)).Append(";\n");

        // The group's filter as float: tile_w[tap * group + channel].
        b.Append("    for (int e = threadIdx.x; e < ").Append(L(kh * kw * lanes)).Append("; e += ").Append(L(tile.Block)).Append(") {\n");
        b.Append("        const int tap = e / ").Append(L(lanes)).Append(", l = e % ").Append(L(lanes)).Append(";\n");
        b.Append("        const ").Append(vecType).Append(" f = *(const ").Append(vecType).Append("*)(wt + (").Append(ix).Append(")tap * ").Append(c).Append(" + cbase + l * ").Append(L(v)).Append(");\n");
        b.Append("        #pragma unroll\n        for (int u = 0; u < ").Append(L(v)).Append("; u++) tile_w[tap * ").Append(L(group)).Append(" + l * ").Append(L(v)).Append(" + u] = (float)f.v[u];\n    }\n");
        if (inputTable || table is not null)
        {
            b.Append("    __syncthreads();\n");
        }

        // The input tile with its halo as float: tile_in[(row * in_cols + col) * group + channel], zero outside the input.
        b.Append("    const ").Append(tx).Append("* xb = x + img * (").Append(ix).Append(")").Append(ih).Append(" * (").Append(ix).Append(")").Append(iw).Append(" * ").Append(c).Append(" + cbase;\n");
        b.Append("    #pragma unroll 4\n");
        b.Append("    for (int idx = threadIdx.x; idx < ").Append(L((long)tile.InRows * tile.InCols * lanes)).Append("; idx += ").Append(L(tile.Block)).Append(") {\n");
        b.Append("        const int l = idx % ").Append(L(lanes)).Append(", pix = idx / ").Append(L(lanes)).Append(";\n");
        b.Append("        const int yy = iy0 + pix / ").Append(L(tile.InCols)).Append(", xx = ix0 + pix % ").Append(L(tile.InCols)).Append(";\n");
        b.Append("        ").Append(floatVec).Append(" s;\n");
        b.Append("        if (yy >= 0 && yy < ").Append(ih).Append(" && xx >= 0 && xx < ").Append(iw).Append(") {\n");
        b.Append("            const ").Append(inVecType).Append(" e = *(const ").Append(inVecType).Append("*)(xb + ((").Append(ix).Append(")yy * (").Append(ix).Append(")").Append(iw).Append(" + (").Append(ix).Append(")xx) * ").Append(c).Append(" + l * ").Append(L(v)).Append(");\n");
        b.Append("            #pragma unroll\n            for (int u = 0; u < ").Append(L(v)).Append("; u++) {\n");
        if (inputTable)
        {
            b.Append("                s.v[u] = lut[(unsigned char)e.v[u]];\n");
        }
        else if (fusion?.InStatements is not null)
        {
            b.Append("                const ").Append(CType(ComputeType(inType))).Append(" xe = e.v[u];\n");
            AppendStatements(b, fusion.InStatements, "                ");
            b.Append("                s.v[u] = (float)(").Append(fusion.InResult).Append(");\n");
        }
        else
        {
            b.Append("                s.v[u] = (float)e.v[u];\n");
        }

        b.Append("            }\n        } else {\n");
        b.Append("            #pragma unroll\n            for (int u = 0; u < ").Append(L(v)).Append("; u++) s.v[u] = 0.f;\n        }\n");
        b.Append("        *(").Append(floatVec).Append("*)(tile_in + pix * ").Append(L(group)).Append(" + l * ").Append(L(v)).Append(") = s;\n    }\n");
        b.Append("    __syncthreads();\n");

        // The thread's outputs: rows ty*R.., columns tx*P.., channels of lane l; every read below is at a fixed offset.
        b.Append("    const int l = threadIdx.x % ").Append(L(lanes)).Append(", sp = threadIdx.x / ").Append(L(lanes)).Append(";\n");
        b.Append("    const int tx = sp % ").Append(L(tile.ThreadsWide)).Append(", ty = sp / ").Append(L(tile.ThreadsWide)).Append(";\n");
        b.Append("    const float* sb = tile_in + ((ty * ").Append(L(r * sh)).Append(") * ").Append(L(tile.InCols)).Append(" + tx * ").Append(L(p * sw)).Append(") * ").Append(L(group)).Append(" + l * ").Append(L(v)).Append(";\n");
        b.Append("    const float* wb = tile_w + l * ").Append(L(v)).Append(";\n");
        b.Append("    float acc[").Append(L(r)).Append("][").Append(L(p)).Append("][").Append(L(v)).Append("];\n");
        b.Append("    #pragma unroll\n    for (int q = 0; q < ").Append(L(r * p * v)).Append("; q++) acc[q / ").Append(L(p * v)).Append("][(q / ").Append(L(v)).Append(") % ").Append(L(p)).Append("][q % ").Append(L(v)).Append("] = 0.f;\n");
        b.Append("    #pragma unroll\n    for (int dy = 0; dy < ").Append(L(rowsRead)).Append("; dy++) {\n");
        b.Append("        ").Append(floatVec).Append(" row[").Append(L(span)).Append("];\n");
        b.Append("        #pragma unroll\n        for (int s = 0; s < ").Append(L(span)).Append("; s++) row[s] = *(const ").Append(floatVec).Append("*)(sb + (dy * ").Append(L(tile.InCols)).Append(" + s) * ").Append(L(group)).Append(");\n");
        b.Append("        #pragma unroll\n        for (int o = 0; o < ").Append(L(r)).Append("; o++) {\n");
        b.Append("            const int k = dy - o * ").Append(L(sh)).Append(";\n");
        b.Append("            if (k < 0 || k % ").Append(L(dh)).Append(" != 0 || k / ").Append(L(dh)).Append(" >= ").Append(L(kh)).Append(") continue;\n");
        b.Append("            #pragma unroll\n            for (int kj = 0; kj < ").Append(L(kw)).Append("; kj++) {\n");
        b.Append("                const ").Append(floatVec).Append(" f = *(const ").Append(floatVec).Append("*)(wb + ((k / ").Append(L(dh)).Append(") * ").Append(L(kw)).Append(" + kj) * ").Append(L(group)).Append(");\n");
        b.Append("                #pragma unroll\n                for (int q = 0; q < ").Append(L(p)).Append("; q++) {\n");
        b.Append("                    #pragma unroll\n                    for (int u = 0; u < ").Append(L(v)).Append("; u++) acc[o][q][u] += row[q * ").Append(L(sw)).Append(" + kj * ").Append(L(dw)).Append("].v[u] * f.v[u];\n");
        b.Append("                }\n            }\n        }\n    }\n");

        // Outputs: y [N, OH, OW, C], V channels a store.
        b.Append("    ").Append(ty).Append("* yb = y + img * (").Append(ix).Append(")").Append(oh).Append(" * (").Append(ix).Append(")").Append(ow).Append(" * ").Append(c).Append(" + cbase + l * ").Append(L(v)).Append(";\n");
        if (fusion is { Bias: true })
        {
            b.Append("    float bv[").Append(L(v)).Append("];\n");
            b.Append("    #pragma unroll\n    for (int u = 0; u < ").Append(L(v)).Append("; u++) bv[u] = (float)bias[cbase + l * ").Append(L(v)).Append(" + u];\n");
        }

        b.Append("    #pragma unroll\n    for (int o = 0; o < ").Append(L(r)).Append("; o++) {\n");
        b.Append("        const int oy = oy0 + ty * ").Append(L(r)).Append(" + o;\n");
        b.Append("        if (oy >= ").Append(oh).Append(") break;\n");
        b.Append("        #pragma unroll\n        for (int q = 0; q < ").Append(L(p)).Append("; q++) {\n");
        b.Append("            const int ox = ox0 + tx * ").Append(L(p)).Append(" + q;\n");
        b.Append("            if (ox >= ").Append(ow).Append(") break;\n");
        b.Append("            ").Append(outVecType).Append(" res;\n");
        b.Append("            #pragma unroll\n            for (int u = 0; u < ").Append(L(v)).Append("; u++) {\n");
        if (fusion is { OutExpression: { } expression })
        {
            b.Append("                const float z = acc[o][q][u]").Append(fusion.Bias ? " + bv[u]" : string.Empty).Append(";\n");
            if (table is not null)
            {
                b.Append("                res.v[u] = lut_out[(int)(").Append(table.First).Append(") - ").Append(L(table.Low)).Append("];\n");
            }
            else
            {
                b.Append("                res.v[u] = (").Append(ty).Append(")(").Append(expression).Append(");\n");
            }
        }
        else
        {
            b.Append("                res.v[u] = (").Append(ty).Append(")acc[o][q][u];\n");
        }

        b.Append("            }\n");
        b.Append("            *(").Append(outVecType).Append("*)(yb + ((").Append(ix).Append(")oy * (").Append(ix).Append(")").Append(ow).Append(" + (").Append(ix).Append(")ox) * ").Append(c).Append(") = res;\n");
        b.Append("        }\n    }\n");

        var biasParameter = fusion is { Bias: true } ? $"const {t}* __restrict__ bias, " : string.Empty;
        var code = w.Build($"{ty}* __restrict__ y, const {tx}* __restrict__ x, const {t}* __restrict__ wt, {biasParameter}{KernelWriter.ArgsParameter}");
        var vec = new StringBuilder();
        foreach (var (name, elementType) in new[] { (vecType, type), (inVecType, inType), (outVecType, outType), (floatVec, ElementType.Float) })
        {
            vec.Append("struct __align__(").Append(L(v * elementType.SizeOf())).Append(") ").Append(name).Append(" { ").Append(CType(elementType)).Append(" v[").Append(L(v)).Append("]; };\n");
        }

        return code with { Source = vec.Append(code.Source).ToString() };
    }
}
