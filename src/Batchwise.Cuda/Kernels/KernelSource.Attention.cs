using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>Fused scaled-dot-product attention on tensor cores (half precision, float accumulation).</summary>
internal static partial class KernelSource
{
    /// <summary>Query rows per block of <see cref="Attention"/> by default (<see cref="AttentionWideRows"/> where asked for and the head allows).</summary>
    public const int AttentionRows = 64;

    /// <summary>
    /// The wider block of <see cref="Attention"/>: 128 query rows, eight warps, so one block reads a (batch, head)'s keys
    /// and values once where the sequence is at most 128 long (two 64-row blocks read them twice). Only for padded heads
    /// up to 80, whose two key-and-value stages hold the 128-row query and output tiles.
    /// </summary>
    public const int AttentionWideRows = 128;

    /// <summary>Threads of a block of <see cref="Attention"/> with <paramref name="rows"/> query rows: a warp per 16.</summary>
    public static int AttentionThreadsPerBlock(int rows) => rows * 2;

    /// <summary>Whether <see cref="Attention"/> takes <paramref name="rows"/> query rows a block at this padded head width.</summary>
    public static bool AttentionTakesRows(int rows, int paddedHead) => rows == AttentionRows || (rows == AttentionWideRows && paddedHead <= 80);

    /// <summary>The widest head (query/key and value width) <see cref="Attention"/> takes.</summary>
    public const int AttentionMaxHead = 128;

    /// <summary>
    /// Keys per tile of <see cref="Attention"/> for a padded head width: 64, or 32 above 80 so that two stages of key and
    /// value tiles stay within the 48 KB of static shared memory a block may have.
    /// </summary>
    public static int AttentionKeyTile(int paddedHead) => paddedHead <= 80 ? 64 : 32;

    /// <summary>
    /// The warp-level pieces the attention kernel is built from: one m16n8k16 tensor-core product (half inputs, float
    /// accumulators; sm_80 and later), the packing of two floats into a half pair, ldmatrix (four 8x8 half matrices from
    /// shared memory into fragments, plain or transposed) and cp.async (16-byte global-to-shared copies that complete at
    /// a later wait, zero-filled when the source is out of range). Guarded, so a program with several attention kernels
    /// defines them once; the CPU test runner defines its own emulation first.
    /// </summary>
    private const string AttentionHelpers = """
        #ifndef BW_ATTENTION_HELPERS
        #define BW_ATTENTION_HELPERS
        __device__ __forceinline__ void bw_mma_16816(float* c, const unsigned* a, unsigned b0, unsigned b1)
        {
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        }
        __device__ __forceinline__ unsigned bw_pack_half2(float lo, float hi)
        {
            unsigned r;
            asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
            return r;
        }
        __device__ __forceinline__ void bw_ldsm_x4(unsigned* r, const unsigned short* row)
        {
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"((unsigned)__cvta_generic_to_shared(row)) : "memory");
        }
        __device__ __forceinline__ void bw_ldsm_x4_trans(unsigned* r, const unsigned short* row)
        {
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"((unsigned)__cvta_generic_to_shared(row)) : "memory");
        }
        __device__ __forceinline__ void bw_cp_async16(unsigned short* dst, const unsigned short* src, bool valid)
        {
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
                :: "r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src), "r"(valid ? 16 : 0) : "memory");
        }
        __device__ __forceinline__ void bw_cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
        template <int N> __device__ __forceinline__ void bw_cp_async_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
        __device__ __forceinline__ float bw_exp2(float x) { float y; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }
        #endif

        """;

    /// <summary>
    /// O = softmax(scale * Q K^T + mask) V for every (batch, head), without writing the scores, FlashAttention-2 style:
    /// one block per 64 query rows (or <paramref name="rows"/> = 128: <see cref="AttentionWideRows"/>) of one (batch, head), each warp 16 rows whose Q fragments stay in registers; key and
    /// value tiles stream through two shared-memory stages by cp.async (tile j + 1's copies are in flight while tile j is
    /// computed) and reach the tensor cores (mma.sync m16n8k16, half inputs, float accumulation) through ldmatrix, the
    /// values transposed by ldmatrix.trans; shared rows are padded by 16 bytes, so the eight rows of each 8x8 matrix fall
    /// in distinct banks. The softmax is online (running maximum and sum per row, exp2 with the scale and log2(e) folded
    /// in, row maxima and sums across a row's four threads by shuffles), and the probabilities stay in registers as the
    /// A operand of the PV product. Q is [.., Sq, D], K is read as (key, d) through its strides, V is [.., Sk, Dv], the
    /// mask (optional, added after the scale) broadcasts to [.., Sq, Sk]; every operand has (batch, head, row, column)
    /// strides, 0 where it broadcasts. Operands contiguous along the head with 16-byte aligned rows take the cp.async
    /// path; any other layout (a K read through [.., D, Sk] strides) is loaded element by element, correct but slower
    /// (the planner copies K^T into [.., Sk, D] first where it can). Q, K and V start <paramref name="offsets"/> elements
    /// into their buffers (strided views of one buffer, as a packed QKV projection split by views; 0 when null). O has
    /// (batch, head, row) strides <paramref name="outStrides"/> and is contiguous along Dv: [batch, heads, Sq, Dv] when
    /// null, or e.g. [batch, Sq, heads, Dv] (the layout a following Transpose(0, 2, 1, 3) and Reshape want). A row whose
    /// every score is -inf gives NaN, as a softmax over it does; with <paramref name="zeroEmptyRows"/> (torch's SDPA safe
    /// softmax, Where(IsNaN(p), 0, p)) a row whose sum is not positive (every score -inf, or a NaN among them) gives zeros.
    /// A boolean mask (<paramref name="booleanMask"/>: bytes, not halves) adds WhenTrue where it is true and WhenFalse
    /// where it is false (torch's SDPA export: Where(mask, 0, -inf)), read as it is. The source depends only on
    /// <paramref name="paddedHead"/> (the head width rounded up to 16) and those two choices.
    /// With <paramref name="quantize"/> (a QuantizeLinear that alone reads O, through views: its scale, zero point and
    /// type), O is written as that QuantizeLinear's bytes stored as int8, each the float16
    /// value the kernel would have written, quantized (rint(v / s) + z, saturated, less the shift): the same bytes as
    /// writing O and quantizing it after.
    /// With <paramref name="onlyFlagged"/> (after cuDNN's attention took a padding mask as sequence lengths) the kernel
    /// computes only the batch items the lengths kernel flagged (<see cref="AttentionSequenceLengths"/>'s third array,
    /// read through an extra pointer), its blocks looping over the tiles of a grid of any size
    /// (<see cref="AttentionFlaggedThreads"/>).
    /// </summary>
    public static KernelCode Attention(int paddedHead, long batch, long heads, long sq, long sk, long d, long dv, double scale, long[] qStrides, long[] kStrides, long[] vStrides, long[]? maskStrides, long[]? offsets = null, long[]? outStrides = null, bool zeroEmptyRows = false, (double WhenTrue, double WhenFalse)? booleanMask = null, (double Scale, double Zero, ElementType Type)? quantize = null, int rows = AttentionRows, bool onlyFlagged = false)
    {
        if (paddedHead % 16 != 0 || paddedHead < 16 || paddedHead > AttentionMaxHead)
        {
            throw new ArgumentOutOfRangeException(nameof(paddedHead), "a multiple of 16 up to 128");
        }

        if (!AttentionTakesRows(rows, paddedHead))
        {
            throw new ArgumentOutOfRangeException(nameof(rows), $"{AttentionRows} query rows a block, or {AttentionWideRows} for padded heads up to 80");
        }

        var block = AttentionThreadsPerBlock(rows);

        var w = new KernelWriter(small: false);
        var heads_ = w.I64("heads", heads);
        var tiles = w.I64("tiles", (sq + rows - 1) / rows);
        var total = w.I64("blocks", batch * heads * ((sq + rows - 1) / rows));
        var queries = w.I64("sq", sq);
        var keys = w.I64("sk", sk);
        var width = w.I64("d", d);
        var vwidth = w.I64("dv", dv);
        var scaled = w.Float("scale_log2e", scale * 1.4426950408889634);
        var items = onlyFlagged ? w.I64("items", batch) : null;
        string[] Strides(string name, long[] s) => [w.I64(name + "_sb", s[0]), w.I64(name + "_sh", s[1]), w.I64(name + "_sr", s[2]), w.I64(name + "_sc", s[3])];
        var qs = Strides("q", qStrides);
        var ks = Strides("k", kStrides);
        var vs = Strides("v", vStrides);
        var ms = Strides("m", maskStrides ?? [0, 0, 0, 0]);
        var (maskType, maskTerm) = booleanMask is var (whenTrue, whenFalse)
            ? ("unsigned char", $"(mp[r * mr + key * mc] ? {w.Float("m_true", whenTrue * 1.4426950408889634)} : {w.Float("m_false", whenFalse * 1.4426950408889634)})")
            : ("bw_half", "(float)mp[r * mr + key * mc] * LOG2E");
        var (qo, ko, vo) = (w.I64("q_off", offsets?[0] ?? 0), w.I64("k_off", offsets?[1] ?? 0), w.I64("v_off", offsets?[2] ?? 0));
        var os = outStrides ?? [heads * sq * dv, sq * dv, dv];
        var (osb, osh, osr) = (w.I64("o_sb", os[0]), w.I64("o_sh", os[1]), w.I64("o_sr", os[2]));
        var dp = paddedHead;
        var bn = AttentionKeyTile(dp);
        const int sub = 32;

        // Shared memory, in halves: two stages of [key tile | value tile], each [bn][dp + 8] ([key][d]). The query tile
        // [rows][dp + 8] is staged in stage 1 before the loop, the output tile in stage 0 after it (both fit: rows <= 2 bn).
        var qp = dp + 8;
        var kTile = bn * (dp + 8);
        var stage = 2 * kTile;

        // An output pair: the accumulators over the row's sum; zeros for a row whose sum is not positive where empty
        // rows give zeros (the accumulators may hold NaN then, so they are not multiplied).
        string Normalized(string a, string b, string inverse, string sum) => zeroEmptyRows
            ? $"{sum} > 0.f ? bw_pack_half2(acc[n][{a}] * {inverse}, acc[n][{b}] * {inverse}) : 0u"
            : $"bw_pack_half2(acc[n][{a}] * {inverse}, acc[n][{b}] * {inverse})";

        // A loop over n 16-byte chunks, i running over the block's threads: a fixed count per thread, unrolled.
        string Chunks(int n) => n % block == 0
            ? $"for (int u = 0; u < {n / block}; u++) {{ const int i = tid + u * {block};"
            : $"for (int u = 0; u < {(n + block - 1) / block}; u++) {{ const int i = tid + u * {block}; if (i >= {n}) break;";
        var body = $$"""
                __shared__ __align__(16) unsigned short sm[2][{{stage}}];
                const float NEG_INF = __uint_as_float(0xff800000u);
                const float LOG2E = 1.4426950408889634f;
                const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
                q += {{qo}}; k += {{ko}}; v += {{vo}};
                {{(onlyFlagged ? FlaggedLoop(items!, total) : $"const i64 blk = blockIdx.x;\n                if (blk >= {total}) return;")}}
                const i64 bh = blk / {{tiles}};
                const i64 tile = blk - bh * {{tiles}};
                const i64 b = bh / {{heads_}}, h = bh - b * {{heads_}};
                {{(onlyFlagged ? $"if (only[2 * {items} + b] == 0) continue; // an item cuDNN computed (AttentionSequenceLengths)" : string.Empty)}}
                const unsigned short* qg = (const unsigned short*)q + b * {{qs[0]}} + h * {{qs[1]}};
                const unsigned short* kg = (const unsigned short*)k + b * {{ks[0]}} + h * {{ks[1]}};
                const unsigned short* vg = (const unsigned short*)v + b * {{vs[0]}} + h * {{vs[1]}};
                const {{maskType}}* mp = mask ? mask + b * {{ms[0]}} + h * {{ms[1]}} : mask;
                const int row0 = (int)(tile * {{rows}}), wrow = warp * 16;
                // Offsets inside one (batch, head) slice fit 32 bits (the planner checks).
                const int nq = (int){{queries}}, nk = (int){{keys}}, kd = (int){{width}}, vd = (int){{vwidth}};
                const int qr = (int){{qs[2]}}, qc = (int){{qs[3]}}, kr = (int){{ks[2]}}, kc = (int){{ks[3]}}, vr = (int){{vs[2]}}, vc = (int){{vs[3]}};
                const int mr = (int){{ms[2]}}, mc = (int){{ms[3]}};

                // Which operands take the cp.async path: contiguous along the head, 16-byte aligned rows and slices, a width
                // that is a multiple of 8 (whole 16-byte chunks).
                const bool qfast = qc == 1 && (qr & 7) == 0 && (kd & 7) == 0 && ({{qs[0]}} & 7) == 0 && ({{qs[1]}} & 7) == 0 && ((unsigned long long)q & 15) == 0;
                const bool kaligned = ({{ks[0]}} & 7) == 0 && ({{ks[1]}} & 7) == 0 && ((unsigned long long)k & 15) == 0;
                const bool kfast = kaligned && kc == 1 && (kr & 7) == 0 && (kd & 7) == 0;
                const bool vfast = vc == 1 && (vr & 7) == 0 && (vd & 7) == 0 && ({{vs[0]}} & 7) == 0 && ({{vs[1]}} & 7) == 0 && ((unsigned long long)v & 15) == 0;

                // The query tile into stage 1 as [row][d], zero past the ends.
                unsigned short* const qsm = &sm[1][0];
                if (qfast) {
                    #pragma unroll
                    {{Chunks(rows * dp / 8)}}
                        const int r = i / {{dp / 8}}, c = (i - r * {{dp / 8}}) * 8;
                        const bool in = row0 + r < nq && c < kd;
                        bw_cp_async16(qsm + r * {{qp}} + c, in ? qg + (row0 + r) * qr + c : qg, in);
                    }
                } else {
                    for (int i = tid; i < {{rows * dp}}; i += {{block}}) {
                        const int r = i / {{dp}}, c = i - r * {{dp}};
                        qsm[r * {{qp}} + c] = row0 + r < nq && c < kd ? qg[(row0 + r) * qr + c * qc] : (unsigned short)0;
                    }
                }

                // Key and value tile j into stage s, zero past the ends: cp.async where the layout allows (completing at a
                // later wait), else loads and stores now (walking the operand's contiguous axis, so the loads coalesce).
                auto load = [&](int j, int s) {
                    const int k0 = j * {{bn}};
                    unsigned short* const kt = &sm[s][0];
                    unsigned short* const vt = &sm[s][{{kTile}}];
                    if (kfast) {
                        #pragma unroll
                        {{Chunks(bn * dp / 8)}}
                            const int r = i / {{dp / 8}}, c = (i - r * {{dp / 8}}) * 8;
                            const bool in = k0 + r < nk && c < kd;
                            bw_cp_async16(kt + r * {{dp + 8}} + c, in ? kg + (k0 + r) * kr + c : kg, in);
                        }
                    } else if (kr == 1) {
                        for (int i = tid; i < {{bn * dp}}; i += {{block}}) {
                            const int c = i / {{bn}}, r = i - c * {{bn}};
                            kt[r * {{dp + 8}} + c] = k0 + r < nk && c < kd ? kg[(k0 + r) + c * kc] : (unsigned short)0;
                        }
                    } else {
                        for (int i = tid; i < {{bn * dp}}; i += {{block}}) {
                            const int r = i / {{dp}}, c = i - r * {{dp}};
                            kt[r * {{dp + 8}} + c] = k0 + r < nk && c < kd ? kg[(k0 + r) * kr + c * kc] : (unsigned short)0;
                        }
                    }
                    if (vfast) {
                        #pragma unroll
                        {{Chunks(bn * dp / 8)}}
                            const int r = i / {{dp / 8}}, c = (i - r * {{dp / 8}}) * 8;
                            const bool in = k0 + r < nk && c < vd;
                            bw_cp_async16(vt + r * {{dp + 8}} + c, in ? vg + (k0 + r) * vr + c : vg, in);
                        }
                    } else if (vr == 1) {
                        for (int i = tid; i < {{bn * dp}}; i += {{block}}) {
                            const int c = i / {{bn}}, r = i - c * {{bn}};
                            vt[r * {{dp + 8}} + c] = k0 + r < nk && c < vd ? vg[(k0 + r) + c * vc] : (unsigned short)0;
                        }
                    } else {
                        for (int i = tid; i < {{bn * dp}}; i += {{block}}) {
                            const int r = i / {{dp}}, c = i - r * {{dp}};
                            vt[r * {{dp + 8}} + c] = k0 + r < nk && c < vd ? vg[(k0 + r) * vr + c * vc] : (unsigned short)0;
                        }
                    }
                };

                const int ntiles = (nk + {{bn - 1}}) / {{bn}};
                load(0, 0);
                bw_cp_async_commit();
                bw_cp_async_wait<0>();
                __syncthreads();

                // This warp's 16 query rows as A fragments, loaded once: matrices (rows 0-7 | 8-15) x (columns 0-7 | 8-15).
                unsigned qf[{{dp / 16}}][4];
                #pragma unroll
                for (int kk = 0; kk < {{dp / 16}}; kk++) bw_ldsm_x4(qf[kk], qsm + (wrow + (lane & 15)) * {{qp}} + kk * 16 + (lane >> 4) * 8);
                __syncthreads();

                float acc[{{dp / 8}}][4];
                #pragma unroll
                for (int n = 0; n < {{dp / 8}}; n++) { acc[n][0] = 0.f; acc[n][1] = 0.f; acc[n][2] = 0.f; acc[n][3] = 0.f; }
                float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.f, l1 = 0.f;
                for (int j = 0; j < ntiles; j++) {
                    // Tile j + 1's copies go out before tile j's math; tile j's (the group before) are waited for.
                    if (j + 1 < ntiles) load(j + 1, (j + 1) & 1);
                    bw_cp_async_commit();
                    bw_cp_async_wait<1>();
                    __syncthreads();
                    const unsigned short* const kt = &sm[j & 1][0];
                    const unsigned short* const vt = &sm[j & 1][{{kTile}}];
                    const int k0 = j * {{bn}};

                    // The tile in sub-tiles of {{sub}} keys (fewer live scores); none past the last key.
                    #pragma unroll 1
                    for (int ks0 = 0; ks0 < {{bn}}; ks0 += {{sub}}) {
                        const int kb = k0 + ks0;
                        if (kb >= nk) break;

                        // Scores of {{sub}} keys: {{sub / 8}} 16x8 tiles per warp. One ldmatrix.x4 gives both B fragments of two key tiles.
                        float s[{{sub / 8}}][4];
                        #pragma unroll
                        for (int np = 0; np < {{sub / 16}}; np++) {
                            #pragma unroll
                            for (int i = 0; i < 4; i++) { s[2 * np][i] = 0.f; s[2 * np + 1][i] = 0.f; }
                            #pragma unroll
                            for (int kk = 0; kk < {{dp / 16}}; kk++) {
                                unsigned f[4];
                                bw_ldsm_x4(f, kt + (ks0 + np * 16 + (lane & 7) + (lane >> 4) * 8) * {{dp + 8}} + kk * 16 + ((lane >> 3) & 1) * 8);
                                bw_mma_16816(s[2 * np], qf[kk], f[0], f[1]);
                                bw_mma_16816(s[2 * np + 1], qf[kk], f[2], f[3]);
                            }
                        }

                        // In the log2 domain; keys past the end are -inf, the mask (if any) is added.
                        float x0 = NEG_INF, x1 = NEG_INF;
                        if (mp || kb + {{sub}} > nk) {
                            #pragma unroll
                            for (int nb = 0; nb < {{sub / 8}}; nb++) {
                                #pragma unroll
                                for (int i = 0; i < 4; i++) {
                                    const int key = kb + nb * 8 + 2 * t + (i & 1);
                                    const int r = row0 + wrow + g + ((i & 2) ? 8 : 0);
                                    float val = s[nb][i] * {{scaled}};
                                    if (key >= nk) val = NEG_INF;
                                    else if (mp && r < nq) val += {{maskTerm}};
                                    s[nb][i] = val;
                                }
                            }
                        } else {
                            #pragma unroll
                            for (int nb = 0; nb < {{sub / 8}}; nb++) {
                                #pragma unroll
                                for (int i = 0; i < 4; i++) s[nb][i] *= {{scaled}};
                            }
                        }
                        #pragma unroll
                        for (int nb = 0; nb < {{sub / 8}}; nb++) {
                            x0 = fmaxf(x0, fmaxf(s[nb][0], s[nb][1]));
                            x1 = fmaxf(x1, fmaxf(s[nb][2], s[nb][3]));
                        }

                        // A row's four threads agree on its maximum; earlier sums and outputs are rescaled to it.
                        x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 1)); x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 2));
                        x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 1)); x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 2));
                        const float n0 = fmaxf(m0, x0), n1 = fmaxf(m1, x1);
                        const float z0 = n0 == NEG_INF ? 0.f : n0, z1 = n1 == NEG_INF ? 0.f : n1;
                        const float c0 = bw_exp2(m0 - z0), c1 = bw_exp2(m1 - z1);
                        m0 = n0; m1 = n1;
                        l0 *= c0; l1 *= c1;
                        #pragma unroll
                        for (int n = 0; n < {{dp / 8}}; n++) { acc[n][0] *= c0; acc[n][1] *= c0; acc[n][2] *= c1; acc[n][3] *= c1; }

                        // Probabilities as A fragments: the accumulators of key tiles 2kk and 2kk + 1 are the 16x16 tile kk.
                        unsigned pa[{{sub / 16}}][4];
                        #pragma unroll
                        for (int nb = 0; nb < {{sub / 8}}; nb++) {
                            const float p0 = bw_exp2(s[nb][0] - z0), p1 = bw_exp2(s[nb][1] - z0);
                            const float p2 = bw_exp2(s[nb][2] - z1), p3 = bw_exp2(s[nb][3] - z1);
                            l0 += p0 + p1; l1 += p2 + p3;
                            pa[nb >> 1][(nb & 1) ? 2 : 0] = bw_pack_half2(p0, p1);
                            pa[nb >> 1][(nb & 1) ? 3 : 1] = bw_pack_half2(p2, p3);
                        }

                        // PV: values [key][d] through ldmatrix.trans, B fragments of two 8-wide column tiles per load.
                        #pragma unroll
                        for (int kk = 0; kk < {{sub / 16}}; kk++) {
                            #pragma unroll
                            for (int np = 0; np < {{dp / 16}}; np++) {
                                unsigned f[4];
                                bw_ldsm_x4_trans(f, vt + (ks0 + kk * 16 + (lane & 15)) * {{dp + 8}} + np * 16 + (lane >> 4) * 8);
                                bw_mma_16816(acc[2 * np], pa[kk], f[0], f[1]);
                                bw_mma_16816(acc[2 * np + 1], pa[kk], f[2], f[3]);
                            }
                        }
                    }
                    // Everyone is done with stage j & 1 before tile j + 2's copies are issued into it.
                    __syncthreads();
                }

                l0 += __shfl_xor_sync(0xffffffffu, l0, 1); l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
                l1 += __shfl_xor_sync(0xffffffffu, l1, 1); l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
                const float nan = __uint_as_float(0x7fc00000u);
                const float i0 = l0 > 0.f ? 1.f / l0 : nan, i1 = l1 > 0.f ? 1.f / l1 : nan;

                // The output tile through stage 0 as [row][d], then out in whole 16-byte chunks where the width allows: the
                // block's rows are one contiguous run of O.
                unsigned short* const osm = &sm[0][0];
                #pragma unroll
                for (int n = 0; n < {{dp / 8}}; n++) {
                    *(unsigned*)&osm[(wrow + g) * {{qp}} + n * 8 + 2 * t] = {{Normalized("0", "1", "i0", "l0")}};
                    *(unsigned*)&osm[(wrow + g + 8) * {{qp}} + n * 8 + 2 * t] = {{Normalized("2", "3", "i1", "l1")}};
                }
                __syncthreads();
                const int nrows = nq - row0 < {{rows}} ? nq - row0 : {{rows}}, orow = (int){{osr}};
                {{(quantize is null ? $$"""
                unsigned short* const og = (unsigned short*)o + b * {{osb}} + h * {{osh}} + row0 * {{osr}};
                if ((vd & 7) == 0 && (orow & 7) == 0 && ((unsigned long long)og & 15) == 0) {
                    for (int i = tid; i < nrows * (vd >> 3); i += {{block}}) {
                        const int r = i / (vd >> 3), c = (i - r * (vd >> 3)) * 8;
                        *(uint4*)(og + r * orow + c) = *(const uint4*)(osm + r * {{qp}} + c);
                    }
                } else {
                    for (int i = tid; i < nrows * vd; i += {{block}}) {
                        const int r = i / vd, c = i - r * vd;
                        og[r * orow + c] = osm[r * {{qp}} + c];
                    }
                }
""" : QuantizedAttentionStore(w, quantize.Value, osb, osh, osr, qp, block))}}

            """;

        // The flagged form's loop (a grid of a few blocks an SM, not one a tile: most tiles are skipped) ends after every
        // thread is done with a tile's shared stages.
        w.Body.Append(body).Append(onlyFlagged ? "    __syncthreads();\n    }\n" : string.Empty);
        var code = w.Build($"bw_half* __restrict__ o, const bw_half* __restrict__ q, const bw_half* __restrict__ k, const bw_half* __restrict__ v, const {maskType}* __restrict__ mask, {(onlyFlagged ? "const int* __restrict__ only, " : string.Empty)}{KernelWriter.ArgsParameter}");
        return code with { Source = AttentionHelpers + code.Source };
    }

    /// <summary>
    /// <see cref="Attention"/>'s store of a block's output tile (float16 in shared memory as [row][d]) as a QuantizeLinear's
    /// bytes: each value rint(v / s) + z, saturated to the stored type's range, less the shift, one byte a thread a step
    /// (consecutive threads, consecutive bytes of a row).
    /// </summary>
    private static string QuantizedAttentionStore(KernelWriter w, (double Scale, double Zero, ElementType Type) q, string osb, string osh, string osr, int qp, int block)
    {
        return $$"""
                signed char* const og = (signed char*)o + b * {{osb}} + h * {{osh}} + row0 * {{osr}};
                for (int i = tid; i < nrows * vd; i += {{block}}) {
                    const int r = i / vd, c = i - r * vd;
                    const float value = (float)*(const bw_half*)(osm + r * {{qp}} + c);
                    og[r * orow + c] = {{StoredQuantized(w, "value", q)}};
                }
""";
    }

    /// <summary>Threads to launch <see cref="Attention"/> with: a block per <paramref name="rows"/> query rows of each (batch, head).</summary>
    public static long AttentionThreads(long batch, long heads, long sq, int rows = AttentionRows) => batch * heads * ((sq + rows - 1) / rows) * AttentionThreadsPerBlock(rows);

    /// <summary>
    /// The flagged form's loop head: the block reads every item's flag at once (a thread an item, in rounds of the block)
    /// and returns unless one is set, so a run with no flagged item (every mask a kept prefix) costs the launch and one
    /// load round, not one dependent load a tile; then its tiles, the grid's blocks striding over them.
    /// </summary>
    private static string FlaggedLoop(string items, string total) => $$"""
        int flagged = 0;
                for (i64 i = tid; i < {{items}}; i += blockDim.x) flagged |= only[2 * {{items}} + i];
                if (!__syncthreads_or(flagged)) return; // no item flagged: cuDNN computed them all
                for (i64 blk = blockIdx.x; blk < {{total}}; blk += gridDim.x) { // the grid's blocks loop over its tiles
        """;

    /// <summary>
    /// Threads of <see cref="Attention"/>'s flagged form: at most four blocks a multiprocessor (the unflagged kernel's
    /// occupancy, so every item flagged runs about as fast as the whole block would), fewer where there are fewer tiles.
    /// </summary>
    public static long AttentionFlaggedThreads(long batch, long heads, long sq, int rows, int multiprocessors) =>
        Math.Min(AttentionThreads(batch, heads, sq, rows), 4L * multiprocessors * AttentionThreadsPerBlock(rows));
}
