namespace Batchwise.Cuda.Kernels;

/// <summary>
/// The int8 block end's products on Hopper's warpgroup MMA (wgmma.mma_async, sm_90a): four warps multiply their 16-pixel
/// tiles together, A from each warp's registers, B (the channel block's filter) read by the tensor cores straight from
/// shared memory through a matrix descriptor, twice mma.sync's rate and no ldmatrix of the filter a tile.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>
    /// Warps of a block of <see cref="Int8WarpPointwise"/> on warpgroup MMA: <paramref name="warps"/> rounded down to whole
    /// warpgroups (four warps), 0 where not one fits.
    /// </summary>
    public static int Int8WarpGroupWarps(int warps) => warps / 4 * 4;

    /// <summary>
    /// wgmma's pieces for the int8 pointwise kernel (sm_90a; the CPU test runner emulates them from their PTX definitions
    /// under the same names): the fence before a warpgroup's products, the commit and the wait for them, the async proxy's
    /// fence after the filter's cp.async copies, a shared-memory matrix descriptor (no swizzle: 8 x 16-byte core matrices
    /// of 128 contiguous bytes, <c>lbo</c> bytes between core matrices along K, <c>sbo</c> along N), the m64n128k32 s8
    /// product itself (this warp's 16 rows of A in the mma.sync m16n8k32 fragment, D in its m16n8 layout an n8 tile,
    /// accumulated where <c>accumulate</c>, else D = A B), and <c>bw_wgmma_hold</c>, which keeps the sums and the A
    /// fragments where they are until after the wait (the compiler may neither read the one nor reuse the other early).
    /// </summary>
    private static readonly string Int8WgmmaHelper = $$"""
        #ifndef BW_WGMMA_HELPERS
        #define BW_WGMMA_HELPERS
        __device__ __forceinline__ void bw_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
        __device__ __forceinline__ void bw_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
        __device__ __forceinline__ void bw_wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
        __device__ __forceinline__ void bw_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
        __device__ __forceinline__ unsigned long long bw_wgmma_desc(const void* smem, unsigned lbo, unsigned sbo)
        {
            const unsigned a = (unsigned)__cvta_generic_to_shared(smem);
            return (unsigned long long)((a & 0x3FFFFu) >> 4) | ((unsigned long long)((lbo & 0x3FFFFu) >> 4) << 16) | ((unsigned long long)((sbo & 0x3FFFFu) >> 4) << 32);
        }
        __device__ __forceinline__ void bw_wgmma_64n128k32_s8(int (*c)[4], const unsigned* a, unsigned long long desc, int accumulate)
        {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {{{string.Join(", ", Enumerable.Range(0, 64).Select(i => $"%{i}"))}}}, {%64, %65, %66, %67}, %68, p;\n}\n"
                : {{string.Join(", ", Enumerable.Range(0, 64).Select(i => $"\"+r\"(c[{i / 4}][{i % 4}])"))}}
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate));
        }
        template <int KS> __device__ __forceinline__ void bw_wgmma_hold(int (*c)[4], unsigned (*a)[4])
        {
            #pragma unroll
            for (int j = 0; j < 16; j++) {
                #pragma unroll
                for (int e = 0; e < 4; e++) asm volatile("" : "+r"(c[j][e]) :: "memory");
            }
            #pragma unroll
            for (int k = 0; k < KS; k++) {
                #pragma unroll
                for (int e = 0; e < 4; e++) asm volatile("" : "+r"(a[k][e]) :: "memory");
            }
        }
        #endif

        """;

    /// <summary>
    /// Where <see cref="FilterBlockCopies"/> puts filter row <c>row</c>'s 16-byte segment <c>seg</c> (16-bit units) for the
    /// warpgroup products' descriptor: row group g (8 rows) at g x 8C bytes, its segment s at s x 128, row r of it at r x 16.
    /// </summary>
    private static string WarpGroupFilterPlace(long channels) => $"(row >> 3) * {channels * 4} + seg * 64 + (row & 7) * 8";

    /// <summary>
    /// A warp's 16 x 128 tile of int8 products over <paramref name="channels"/> as its quarter of a warpgroup's 64 x 128
    /// (wgmma m64n128k32, k32 steps) into a fresh int acc[16][4], the layout <see cref="WarpRowRequantize"/> reads: its A
    /// fragments from its 16 input rows at <paramref name="rows"/> (ldmatrix, rows <paramref name="pitch"/> 16-bit units
    /// apart), the filter from fs_ (<see cref="WarpGroupFilterPlace"/>'s layout: LBO 128 bytes, SBO 8C). All four
    /// warps of the warpgroup must reach it together.
    /// </summary>
    private static string WarpGroupProducts(string rows, int pitch, long channels) => $$"""
                    int acc[16][4];
                    {
                        #pragma unroll
                        for (int nj = 0; nj < 16; nj++) { acc[nj][0] = 0; acc[nj][1] = 0; acc[nj][2] = 0; acc[nj][3] = 0; }
                        const unsigned short* const at = {{rows}};
                        const int aoff = (lane & 15) * {{pitch}} + (lane >> 4) * 8;
                        unsigned af[{{channels / 32}}][4];
                        #pragma unroll
                        for (int ks = 0; ks < {{channels / 32}}; ks++) bw_ldsm_x4(af[ks], at + aoff + ks * 16);
                        bw_wgmma_fence();
                        #pragma unroll
                        for (int ks = 0; ks < {{channels / 32}}; ks++) bw_wgmma_64n128k32_s8(acc, af[ks], bw_wgmma_desc(fs_ + ks * 128, 128, {{channels * 8}}), ks);
                        bw_wgmma_commit();
                        bw_wgmma_wait0();
                        bw_wgmma_hold<{{channels / 32}}>(acc, af);
                    }
        """;
}
