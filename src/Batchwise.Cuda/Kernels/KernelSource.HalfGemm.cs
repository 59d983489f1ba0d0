namespace Batchwise.Cuda.Kernels;

/// <summary>
/// The engine's own fp16 matrix product on Hopper's warpgroup MMA (sm_90a) with its bias and GELU's erf form in the
/// epilogue: Y = gelu(X W + b), X [M, K] and W^T [N, K] row-major, both read by TMA tensor copies, one fp16 write of Y
/// and no pass after it. Written for the MLP's first product of BERT / ViT at b=64, where cuBLASLt's
/// product and the GELU pass in place take ~101 us (8192 x 3072 x 768, H100) and the pass moves the 50 MB result twice.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Rows of a block's tile of <see cref="HalfGemm"/> (two warpgroups of 64).</summary>
    public const int HalfGemmTileM = 128;

    /// <summary>Columns of a block's tile (wgmma m64n256k16: one instruction a warpgroup a k16 step).</summary>
    public const int HalfGemmTileN = 256;

    /// <summary>K of a stage: 64 halves, one 128-byte row, the 128-byte swizzle's atom.</summary>
    public const int HalfGemmTileK = 64;

    /// <summary>Stages of copies in shared memory: one ring the producer fills across a block's tiles.</summary>
    public const int HalfGemmStages = 4;

    /// <summary>Threads of a block: the producer warpgroup (the copies) and two consumer warpgroups (64 rows each).</summary>
    public const int HalfGemmBlock = 384;

    /// <summary>Bytes of one stage: the A tile (128 x 64 halves) then the B tile (256 x 64), each row one 128-byte row.</summary>
    private const int HalfGemmStageBytes = (HalfGemmTileM + HalfGemmTileN) * HalfGemmTileK * 2;

    /// <summary>Bytes of a consumer warp's epilogue buffer: 16 rows of 64 halves, each row padded to 144 bytes so the
    /// warp's half2 writes of eight rows fall on 32 different banks.</summary>
    private const int HalfGemmEpilogueRow = 144;

    private const int HalfGemmEpilogueWarpBytes = 16 * HalfGemmEpilogueRow;

    /// <summary>
    /// Dynamic shared memory of a block (215,104 bytes: one block an SM): the stages, a full and an empty mbarrier a
    /// stage, the eight consumer warps' epilogue buffers.
    /// </summary>
    public const int HalfGemmSharedBytes = (HalfGemmStages * HalfGemmStageBytes) + (2 * HalfGemmStages * 8) + (8 * HalfGemmEpilogueWarpBytes);

    /// <summary>
    /// Whether <see cref="HalfGemm"/> takes an M x N x K product: rows, N in whole 256-column tiles, K in whole 64s, and
    /// every index within 32 bits (rows times N or K).
    /// </summary>
    public static bool HalfGemmTakes(long m, long n, long k) =>
        m >= 1 && n >= HalfGemmTileN && n % HalfGemmTileN == 0 && k >= HalfGemmTileK && k % HalfGemmTileK == 0
        && (m + HalfGemmTileM) * Math.Max(n, k) < int.MaxValue && n * k < int.MaxValue;

    /// <summary>Tiles of an M x N product (row tiles of 128 times column tiles of 256).</summary>
    public static long HalfGemmTiles(long m, long n) => (m + HalfGemmTileM - 1) / HalfGemmTileM * (n / HalfGemmTileN);

    /// <summary>Blocks of a launch: one a multiprocessor (each walks its share of the tiles), fewer where there are fewer tiles.</summary>
    public static int HalfGemmBlocks(long m, long n, int multiprocessors) => (int)Math.Min(HalfGemmTiles(m, n), Math.Max(1, multiprocessors));

    /// <summary>
    /// wgmma's fp16 pieces, the mbarriers and the TMA tensor copy (sm_90a; the CPU test runner emulates them from their PTX
    /// definitions under the same names): a
    /// K-major matrix descriptor with the 128-byte swizzle (8-row groups 1,024 bytes apart; the start advanced 32 bytes a
    /// k16 step), the m64n256k16 product with fp32 sums, both operands from shared memory (D = A B, or D += A B where
    /// <c>accumulate</c>), a wait leaving the latest group in flight, a hold that keeps the sums in their registers across
    /// the asynchronous products (as cutlass's operand fence); a tensor copy of a box of a map (a kernel parameter) into
    /// shared memory that completes its bytes on an mbarrier, which one arrival announces beforehand (expect_tx).
    /// </summary>
    private static readonly string HalfWgmmaHelper = $$"""
        #ifndef BW_WGMMA_F16_HELPERS
        #define BW_WGMMA_F16_HELPERS
        __device__ __forceinline__ unsigned long long bw_wgmma_desc_sw128(const void* smem)
        {
            const unsigned a = (unsigned)__cvta_generic_to_shared(smem);
            return (unsigned long long)((a & 0x3FFFFu) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) | (1ull << 62);
        }
        __device__ __forceinline__ void bw_wgmma_64n256k16_f16(float* d, unsigned long long da, unsigned long long db, int accumulate)
        {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {{{string.Join(", ", Enumerable.Range(0, 128).Select(i => $"%{i}"))}}}, %128, %129, p, 1, 1, 0, 0;\n}\n"
                : {{string.Join(", ", Enumerable.Range(0, 128).Select(i => $"\"+f\"(d[{i}])"))}}
                : "l"(da), "l"(db), "r"(accumulate));
        }
        __device__ __forceinline__ void bw_wgmma_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); }
        __device__ __forceinline__ void bw_hold_f32x128(float* d)
        {
            #pragma unroll
            for (int i = 0; i < 128; i++) asm volatile("" : "+f"(d[i]) :: "memory");
        }
        #endif
        #ifndef BW_MBARRIER_HELPERS
        #define BW_MBARRIER_HELPERS
        __device__ __forceinline__ unsigned bw_smem_address(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
        __device__ __forceinline__ void bw_mbar_init(unsigned long long* b, unsigned count) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bw_smem_address(b)), "r"(count) : "memory"); }
        __device__ __forceinline__ void bw_mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
        __device__ __forceinline__ void bw_mbar_arrive(unsigned long long* b) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(bw_smem_address(b)) : "memory"); }
        __device__ __forceinline__ void bw_mbar_wait(unsigned long long* b, unsigned parity)
        {
            asm volatile("{\n.reg .pred P;\nBW_MBAR_WAIT:\nmbarrier.try_wait.parity.shared::cta.b64 P, [%0], %1;\n@!P bra BW_MBAR_WAIT;\n}\n" :: "r"(bw_smem_address(b)), "r"(parity) : "memory");
        }
        #endif
        #ifndef BW_TMA_HELPERS
        #define BW_TMA_HELPERS
        struct __align__(64) bw_tensor_map { unsigned long long opaque[16]; }; // CUtensorMap, encoded by the host per context
        __device__ __forceinline__ void bw_tma_prefetch(const bw_tensor_map* m) { asm volatile("prefetch.tensormap [%0];" :: "l"(m) : "memory"); }
        __device__ __forceinline__ void bw_mbar_expect_tx(unsigned long long* b, unsigned bytes) { asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bw_smem_address(b)), "r"(bytes) : "memory"); }
        __device__ __forceinline__ void bw_tma_load_2d(void* dst, const bw_tensor_map* m, int column, int row, unsigned long long* b)
        {
            asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
                :: "r"(bw_smem_address(dst)), "l"(m), "r"(column), "r"(row), "r"(bw_smem_address(b)) : "memory");
        }
        #endif

        """;

    /// <summary>
    /// Y = gelu(X W + bias) (GELU's erf form, <c>bw_gelu_as</c>), fp16 in and out, fp32 sums: M x N x K with X [M, K] and
    /// W^T [N, K] row-major (buffers 1 and 2, each read through its TMA tensor map: <see cref="KernelCode.TensorMaps"/>),
    /// bias [N] (half), Y [M, N] row-major. Persistent and warp-specialized (the probe's gemm8, sessions 53-54): a grid of
    /// at most one block a multiprocessor (<see cref="HalfGemmBlocks"/>) walks the 128 x 256 tiles (tile = block + i x
    /// grid, column tiles fastest, so the blocks running together share A's rows in L2). One thread of warpgroup 0 copies
    /// every 64-wide k step of every tile of the block into one ring of four stages: A's 128 x 64 box and W^T's two 128 x
    /// 64 boxes by tensor copies in the 128-byte swizzle (the layout the wgmma descriptors read; rows past M read as
    /// zeros), their 48 KB counted in bytes on the stage's full mbarrier; it waits for a stage's empty mbarrier before
    /// refilling it and never for an epilogue, so the next tile's first stages land while the consumers finish the last.
    /// Warpgroups 1 and 2 multiply their 64 rows (wgmma m64n256k16, both operands from shared memory, one group in
    /// flight), release each stage once the products reading it are done, then apply the bias and the GELU to the fp32
    /// sums and write the tile through shared memory: a warp puts 64 columns of its 16 rows in its own padded buffer, then
    /// stores whole 128-byte rows (direct half2 stores, 16 bytes a row a warp instruction, cost ~35 of 98 us at 8192 x
    /// 3072 x 768 on an H100). Session 55's probe of this program (H100): 82.8 us there against cuBLASLt + bias 67.0 and
    /// its GELU pass 105.0 in all; 92.2 with erff's GELU. A deferred epilogue (each tile's GELU and stores in shares
    /// during the next tile's k steps, three stages, setmaxnreg) was slower in every form (95.9; 96.2 with this GELU).
    /// </summary>
    public static KernelCode HalfGemm(long m, long n, long k)
    {
        if (!HalfGemmTakes(m, n, k))
        {
            throw new ArgumentException("fp16 warpgroup product: N in 256s, K in 64s, indices within 32 bits");
        }

        var w = new KernelWriter(small: true);
        var (rows, cols, depth) = (w.I32("m", (int)m), w.I32("n", (int)n), w.I32("k", (int)k));
        var columnTiles = w.I32("column_tiles", (int)(n / HalfGemmTileN));
        const int BM = HalfGemmTileM, BN = HalfGemmTileN, BK = HalfGemmTileK, Sb = HalfGemmStageBytes;
        const int Er = HalfGemmEpilogueRow, S = HalfGemmStages;
        w.Body.Append($$"""
                {{HalfGemmPrologue("    ")}}
                const int M = {{rows}}, N = {{cols}}, K = {{depth}}, KB = K / {{BK}}, NT = {{columnTiles}}, tiles = NT * ((M + {{BM - 1}}) / {{BM}});
                {{HalfGemmBarrierInit("    ")}}

                if (wg == 0) {
                    // The producer (one thread): k step kb of a tile into stage (its running count) % {{S}} once the consumers released it.
                    if (tid == 0) {
                        int it = 0;
                        for (int tile = (int)blockIdx.x; tile < tiles; tile += (int)gridDim.x) {
                            const int m0 = (tile / NT) * {{BM}}, n0 = (tile % NT) * {{BN}};
                            for (int kb = 0; kb < KB; kb++, it++) {
                                {{HalfGemmStageCopies("                    ")}}
                            }
                        }
                    }
                    return;
                }

                // The consumers: warpgroup cw's 64 rows of each tile; this warp's epilogue buffer.
                const int cw = wg - 1, u = tid & 127, warp = u >> 5, lane = u & 31, g = lane >> 2;
                unsigned char* const eb = sm_ + {{(S * Sb) + (2 * S * 8)}} + (cw * 4 + warp) * {{HalfGemmEpilogueWarpBytes}};
                int it = 0;
                for (int tile = (int)blockIdx.x; tile < tiles; tile += (int)gridDim.x) {
                    const int m0 = (tile / NT) * {{BM}}, n0 = (tile % NT) * {{BN}};
                    float d[{{BN / 2}}];
                    #pragma unroll
                    for (int i = 0; i < {{BN / 2}}; i++) d[i] = 0.f;
                    for (int kb = 0; kb < KB; kb++, it++) {
                        {{HalfGemmStageProducts("            ")}}
                    }
                    bw_wgmma_wait0();
                    bw_hold_f32x128(d);
                    if (u == 0) bw_mbar_arrive(empty + (it - 1) % {{S}});

                    // Bias and GELU on the fp32 sums (this thread's rows g and g + 8 of its warp's 16, columns 2t and 2t + 1
                    // of each n8 tile), 64 columns at a time through the warp's buffer, then whole 128-byte rows of Y.
                    const int row0 = m0 + cw * 64 + warp * 16;
                    #pragma unroll
                    for (int c = 0; c < {{BN / 64}}; c++) {
                        #pragma unroll
                        for (int jj = 0; jj < 8; jj++) {
                            const int j = c * 8 + jj, cl = jj * 8 + (lane & 3) * 2, col = n0 + c * 64 + cl;
                            const float b0 = (float)bias[col], b1 = (float)bias[col + 1];
                            *(unsigned*)(eb + g * {{Er}} + cl * 2) = bw_pack_half2(bw_gelu_as(d[4 * j] + b0), bw_gelu_as(d[4 * j + 1] + b1));
                            *(unsigned*)(eb + (g + 8) * {{Er}} + cl * 2) = bw_pack_half2(bw_gelu_as(d[4 * j + 2] + b0), bw_gelu_as(d[4 * j + 3] + b1));
                        }
                        {{HalfGemmStoreWarpRows("            ")}}
                    }
                }

            """);
        var code = w.Build($"bw_half* __restrict__ y, const bw_half* __restrict__ x, const bw_half* __restrict__ wt, const bw_half* __restrict__ bias, const __grid_constant__ bw_tensor_map map_x, const __grid_constant__ bw_tensor_map map_w, {KernelWriter.ArgsParameter}");
        var source = code.Source.Replace("extern \"C\" __global__ void ", $"extern \"C\" __global__ void __launch_bounds__({HalfGemmBlock}, 1) ", StringComparison.Ordinal);
        HalfTensorMap[] maps = [new(1, m, k, BM, BK), new(2, n, k, BN / 2, BK)];
        return code with
        {
            Source = AttentionHelpers + Int8WgmmaHelper + HalfWgmmaHelper + HalfGemmGeluHelper + source,
            SharedBytes = HalfGemmSharedBytes,
            TensorMaps = maps,
        };
    }

    /// <summary>
    /// The producer's step (the body of its loop over k steps kb, its running count <c>it</c>): once the consumers have
    /// released stage it % <see cref="HalfGemmStages"/>, A's 128 x 64 box at row m0 and W^T's two 128 x 64 boxes
    /// at row n0 copied into it, their bytes counted on its full mbarrier. Lines indented by <paramref name="indent"/>.
    /// </summary>
    private static string HalfGemmStageCopies(string indent)
    {
        const int BK = HalfGemmTileK, Ab = HalfGemmTileM * BK * 2, S = HalfGemmStages, BN = HalfGemmTileN, Sb = HalfGemmStageBytes;
        return Indented(indent, $$"""
            const int s = it % {{S}};
            if (it >= {{S}}) bw_mbar_wait(empty + s, ((it / {{S}}) & 1) ^ 1);
            unsigned char* const st = sm_ + s * {{Sb}};
            bw_mbar_expect_tx(full + s, {{Sb}});
            bw_tma_load_2d(st, &map_x, kb * {{BK}}, m0, full + s);
            bw_tma_load_2d(st + {{Ab}}, &map_w, kb * {{BK}}, n0, full + s);
            bw_tma_load_2d(st + {{Ab + (BN / 2 * BK * 2)}}, &map_w, kb * {{BK}}, n0 + {{BN / 2}}, full + s);
            """);
    }

    /// <summary>
    /// A consumer warpgroup's step (the body of its loop over k steps kb, its running count <c>it</c>): once stage
    /// it % <see cref="HalfGemmStages"/> has landed, its 64 rows (warpgroup cw) times the stage's 256 columns (wgmma n256)
    /// added to the sums d, one group of products left in flight, and the stage before released. Lines indented by
    /// <paramref name="indent"/>.
    /// </summary>
    private static string HalfGemmStageProducts(string indent)
    {
        const int BK = HalfGemmTileK, Ab = HalfGemmTileM * BK * 2, S = HalfGemmStages, Sb = HalfGemmStageBytes;
        const string hold = "bw_hold_f32x128";
        return Indented(indent, $$"""
            const int s = it % {{S}};
            bw_mbar_wait(full + s, (it / {{S}}) & 1);
            bw_fence_proxy_async();
            unsigned char* const st = sm_ + s * {{Sb}};
            bw_wgmma_fence();
            {{hold}}(d);
            #pragma unroll
            for (int ks = 0; ks < {{BK / 16}}; ks++)
                bw_wgmma_64n256k16_f16(d, bw_wgmma_desc_sw128(st + cw * 8192 + ks * 32), bw_wgmma_desc_sw128(st + {{Ab}} + ks * 32), (kb | ks) != 0);
            bw_wgmma_commit();
            bw_wgmma_wait1();
            {{hold}}(d);
            // The products of the step before are done: its stage may be refilled.
            if (kb > 0 && u == 0) bw_mbar_arrive(empty + (it - 1) % {{S}});
            """);
    }

    /// <summary>
    /// A kernel's start: its dynamic shared memory (1,024-byte aligned for the 128-byte swizzle) of stages, the stages'
    /// full and empty mbarriers after them, the thread and its warpgroup.
    /// </summary>
    private static string HalfGemmPrologue(string indent) => Indented(indent, $$"""
        extern __shared__ __align__(1024) unsigned short bw_dynamic_shared_sw128[]; // its own name: other kernels of the program declare theirs 16-byte aligned
        unsigned char* const sm_ = (unsigned char*)bw_dynamic_shared_sw128;
        unsigned long long* const full = (unsigned long long*)(sm_ + {{HalfGemmStages * HalfGemmStageBytes}});
        unsigned long long* const empty = full + {{HalfGemmStages}};
        const int tid = (int)threadIdx.x, wg = tid >> 7;
        """);

    /// <summary>Thread 0 prefetches the two tensor maps and sets up the stages' mbarriers (one arrival full, the two consumers' empty); then the block's barrier.</summary>
    private static string HalfGemmBarrierInit(string indent) => Indented(indent, $$"""
        if (tid == 0) {
            bw_tma_prefetch(&map_x);
            bw_tma_prefetch(&map_w);
            for (int s = 0; s < {{HalfGemmStages}}; s++) { bw_mbar_init(full + s, 1); bw_mbar_init(empty + s, 2); }
            bw_mbar_init_fence();
        }
        __syncthreads();
        """);

    /// <summary>
    /// A consumer warp's 16 rows x 64 columns (column block c of its tile), left in its padded epilogue buffer, written to
    /// Y [M, N] at rows row0.. and columns n0 + 64c.. as whole 128-byte rows (16-byte stores, rows past M skipped), between
    /// the warp's barriers that keep the buffer's writes and its next use apart. Lines indented by <paramref name="indent"/>.
    /// </summary>
    private static string HalfGemmStoreWarpRows(string indent) => Indented(indent, $$"""
        __syncwarp();
        #pragma unroll
        for (int q = 0; q < 4; q++) {
            const int rr = q * 4 + (lane >> 3), ch = lane & 7;
            if (row0 + rr < M) *(uint4*)(y + (size_t)(row0 + rr) * N + n0 + c * 64 + ch * 8) = *(const uint4*)(eb + rr * {{HalfGemmEpilogueRow}} + ch * 16);
        }
        __syncwarp();
        """);

    /// <summary>Each line of <paramref name="text"/> after the first indented by <paramref name="indent"/> (the first goes where the caller puts it).</summary>
    private static string Indented(string indent, string text) => text.ReplaceLineEndings("\n" + indent);

    /// <summary>
    /// The kernel's GELU: x Phi(x), Phi from erfc(|x| / sqrt 2) by Abramowitz &amp; Stegun 7.1.26 (|error| &lt;= 1.5e-7; a
    /// reciprocal, four fused multiply-adds and an exp2, no branch), written as 0.5 erfc so the negative tail has no
    /// cancellation (1 + erf(x) loses the digits of a small Phi to fp32's 6e-8 at 1; Phi = 1 - 0.5 erfc above 0). About
    /// 15 instructions against erff's ~25: session 55's probe of this kernel took 82.8 us with it at 8192 x 3072 x 768
    /// against 92.2 with erff (H100), the GELU being the part the tensor cores wait for.
    /// </summary>
    internal const string HalfGemmGeluHelper = """
        #ifndef BW_RCP_APPROX
        #define BW_RCP_APPROX
        __device__ __forceinline__ float bw_rcp(float x) { float y; asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }
        #endif
        #ifndef BW_GELU_AS
        #define BW_GELU_AS
        __device__ __forceinline__ float bw_gelu_as(float x)
        {
            const float z = fabsf(x) * 0.70710678118654752f;
            const float t = bw_rcp(fmaf(0.3275911f, z, 1.f));
            float p = fmaf(0.5307027145f, t, -0.7265760135f); // A&S's a5..a1, halved: p t e = 0.5 erfc(z)
            p = fmaf(p, t, 0.7107068705f);
            p = fmaf(p, t, -0.142248368f);
            p = fmaf(p, t, 0.127414796f);
            const float q = p * t * bw_exp2(-z * z * 1.4426950408889634f);
            return x * (x >= 0.f ? 1.f - q : q);
        }
        #endif

        """;
}
