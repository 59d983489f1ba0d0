using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Runs a plan's generated kernels on the CPU: each kernel's CUDA C source is compiled as C++ by g++ against a host
/// prelude (half and bfloat16 through the compiler's own types, thread and block indices as globals) and called once
/// per thread of its launch, in order; matrix products planned without cuBLASLt (<see cref="IPlanTarget.PlansMatmulsWithoutLibrary"/>)
/// run as reference loops; plans with other library steps (cuDNN, cuBLASLt) cannot run. This checks the planner's index
/// arithmetic and each generator's semantics on a machine without a GPU; the GPU tests check the real thing. Kernels
/// whose threads cooperate (warp shuffles, shared memory, barriers) run a block at a time with one host thread per
/// CUDA thread, barriers and warp exchanges through pthreads; the attention kernel's warp-level instructions (mma.sync,
/// ldmatrix, cp.async) are emulated from their PTX definitions, cp.async landing only at its wait.
/// </summary>
internal static partial class CpuKernelRunner
{
    /// <summary>
    /// Skips the calling test where no C++ compiler can run the kernels (a failure instead with
    /// BATCHWISE_REQUIRE_TEST_TOOLS=1, as CI sets it).
    /// </summary>
    public static void Require()
    {
        if (Unavailable is { } why)
        {
            Assert.False(Environment.GetEnvironmentVariable("BATCHWISE_REQUIRE_TEST_TOOLS") == "1", $"BATCHWISE_REQUIRE_TEST_TOOLS=1, yet {why}");
            Assert.Skip(why);
        }
    }

    private const string HostPrelude = """
        #include <cmath>
        #include <cstring>
        #include <cstdint>
        #include <cstdlib>
        #include <pthread.h>
        #include <cstdio>
        #include <ctime>
        using std::isnan; using std::isinf;
        typedef long long i64;
        typedef unsigned long long u64;
        struct bw_dim3 { unsigned x, y, z; };
        static thread_local bw_dim3 threadIdx, blockIdx;
        static bw_dim3 blockDim, gridDim;
        #define __global__
        #define __device__
        #define __forceinline__ inline
        #define __align__(n) __attribute__((aligned(n)))
        #define __shared__ static
        static unsigned char* bw_dynamic_smem; // a launch's dynamic shared memory (extern __shared__), set by its launcher
        struct uint4 { unsigned x, y, z, w; };
        struct uint2 { unsigned x, y; };
        struct float4 { float x, y, z, w; };
        struct float2 { float x, y; };
        static inline float2 make_float2(float x, float y) { return float2{x, y}; }
        static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
        struct int2 { int x, y; };
        struct int4 { int x, y, z, w; };
        static inline int2 make_int2(int x, int y) { return int2{x, y}; }
        static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

        // Thread-block clusters, emulated: blocks run one at a time here, so a cluster kernel's grid runs twice (its
        // launcher sets the phase): every block's products into its partial tile (kept per block, not in the shared
        // memory the next block reuses), then every block's reduction over its cluster's tiles. The barrier is the
        // pass between them.
        #define BW_CLUSTER_HELPERS
        #define __cluster_dims__(x, y, z)
        #define __launch_bounds__(...)
        static int bw_cluster_phase;
        static float* bw_cluster_partials;
        static const unsigned bw_cluster_tile_floats = BW_CLUSTER_TILE_FLOATS; // KernelSource.SplitKPartialFloats, defined before the prelude
        static inline bool bw_cluster_computes() { return bw_cluster_phase == 1; }
        static inline bool bw_cluster_reduces() { return bw_cluster_phase == 2; }
        static inline void bw_cluster_sync() {}
        static inline float* bw_cluster_tile(float*) { return bw_cluster_partials + (size_t)blockIdx.x * bw_cluster_tile_floats; }
        static inline const float* bw_cluster_peer(const float* mine, unsigned self, unsigned rank) { return mine + ((long)rank - (long)self) * (long)bw_cluster_tile_floats; }

        // A barrier a thread can leave (a returned thread no longer holds the others up).
        struct bw_barrier { pthread_mutex_t m; pthread_cond_t c; int expected, count; unsigned long generation; };
        static void bw_barrier_init(bw_barrier* b, int n) { pthread_mutex_init(&b->m, 0); pthread_cond_init(&b->c, 0); b->expected = n; b->count = 0; b->generation = 0; }
        static void bw_barrier_release(bw_barrier* b) { b->count = 0; b->generation++; pthread_cond_broadcast(&b->c); }
        static void bw_barrier_wait(bw_barrier* b) { pthread_mutex_lock(&b->m); unsigned long g = b->generation; if (++b->count >= b->expected) bw_barrier_release(b); else while (g == b->generation) pthread_cond_wait(&b->c, &b->m); pthread_mutex_unlock(&b->m); }
        static void bw_barrier_leave(bw_barrier* b) { pthread_mutex_lock(&b->m); b->expected--; if (b->count > 0 && b->count >= b->expected) bw_barrier_release(b); pthread_mutex_unlock(&b->m); }
        // The barriers of a block's groups of `size` threads (warps, pairs of warps, warpgroups), at most `most`: each expects
        // its group's threads, the last group those left over.
        static void bw_barrier_init_groups(bw_barrier* b, unsigned most, unsigned size, unsigned threads)
        {
            for (unsigned g = 0; g < (threads + size - 1) / size && g < most; g++) bw_barrier_init(&b[g], (int)(threads - g * size < size ? threads - g * size : size));
        }
        static bw_barrier bw_block_barrier;
        static bw_barrier bw_warp_barrier[32];
        // A warpgroup's barrier: wgmma's fence, commit and wait are .sync.aligned (the warpgroup's 128 threads reach them
        // together), and here each thread multiplies on its own, so its wait holds it until the others' products are done
        // (one thread may otherwise release a stage the rest of its warpgroup still reads).
        static bw_barrier bw_warpgroup_barrier[8];
        // A pair of warps' named barrier (bar.sync id, 64), emulated: one a pair.
        #define BW_PAIR_HELPERS
        static bw_barrier bw_pair_barrier[16];
        static inline void bw_pair_sync(int pair) { bw_barrier_wait(&bw_pair_barrier[pair]); }
        static unsigned long long bw_exchange[32][32];
        static inline void __syncthreads() { bw_barrier_wait(&bw_block_barrier); }
        // The block's OR of a value: every thread adds to a shared word between two barriers, the last read after them.
        static int bw_block_or, bw_block_or_result;
        static inline int __syncthreads_or(int v)
        {
            bw_barrier_wait(&bw_block_barrier);
            if (v) __atomic_fetch_or(&bw_block_or, 1, __ATOMIC_SEQ_CST);
            bw_barrier_wait(&bw_block_barrier);
            if (threadIdx.x == 0) { bw_block_or_result = bw_block_or; bw_block_or = 0; }
            bw_barrier_wait(&bw_block_barrier);
            return bw_block_or_result;
        }
        static inline void __syncwarp(unsigned = 0xffffffffu) { bw_barrier_wait(&bw_warp_barrier[threadIdx.x >> 5]); }
        template <class T> static inline T __shfl_xor_sync(unsigned, T v, int o)
        {
            const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
            std::memcpy(&bw_exchange[warp][lane], &v, sizeof(T));
            bw_barrier_wait(&bw_warp_barrier[warp]);
            T r;
            std::memcpy(&r, &bw_exchange[warp][lane ^ o], sizeof(T));
            bw_barrier_wait(&bw_warp_barrier[warp]);
            return r;
        }

        // The attention kernel's warp-level pieces, emulated. The tensor-core product: the warp's fragments go through a
        // table (one barrier to publish, one before the table is reused) and each thread sums its four outputs from the
        // PTX fragment layout.
        #define BW_ATTENTION_HELPERS
        static unsigned bw_mma_frag[32][32][6];
        static inline float bw_h(unsigned v, int hi) { unsigned short b = hi ? (unsigned short)(v >> 16) : (unsigned short)(v & 0xffffu); _Float16 h; std::memcpy(&h, &b, 2); return (float)h; }
        static inline unsigned bw_pack_half2(float lo, float hi)
        {
            _Float16 l = (_Float16)lo, u = (_Float16)hi; unsigned short a, b;
            std::memcpy(&a, &l, 2); std::memcpy(&b, &u, 2);
            return (unsigned)a | ((unsigned)b << 16);
        }
        // A product's operands published to the warp's table (then every thread reads the fragments it needs).
        static inline void bw_mma_publish(const unsigned* a, unsigned b0, unsigned b1)
        {
            const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
            unsigned* mine = bw_mma_frag[warp][lane];
            mine[0] = a[0]; mine[1] = a[1]; mine[2] = a[2]; mine[3] = a[3]; mine[4] = b0; mine[5] = b1;
            bw_barrier_wait(&bw_warp_barrier[warp]);
        }
        static inline void bw_mma_16816(float* c, const unsigned* a, unsigned b0, unsigned b1)
        {
            const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
            bw_mma_publish(a, b0, b1);
            for (int i = 0; i < 4; i++) {
                const int r = (int)g + ((i & 2) ? 8 : 0), n = 2 * (int)t + (i & 1);
                float sum = c[i];
                for (int k = 0; k < 16; k++) {
                    const unsigned* fa = bw_mma_frag[warp][(r & 7) * 4 + ((k & 7) >> 1)];
                    const unsigned* fb = bw_mma_frag[warp][n * 4 + ((k & 7) >> 1)];
                    sum += bw_h(fa[(r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k & 1) * bw_h(fb[4 + (k >= 8 ? 1 : 0)], k & 1);
                }
                c[i] = sum;
            }
            bw_barrier_wait(&bw_warp_barrier[warp]);
        }

        // The int8 product (mma.sync m16n8k32 .s8, int32 sums), emulated as the half one: fragment registers hold four
        // bytes where they hold two halves (A: row g (+ 8 in a1, a3), k 4t..4t+3 (+ 16 in a2, a3); B: column g, k 4t..4t+3
        // in b0, + 16 in b1).
        #define BW_INT8_MMA_HELPERS
        static inline int bw_s8(unsigned v, int byte) { return (int)(signed char)(v >> (8 * byte)); }
        static inline void bw_mma_16832_s8(int* c, const unsigned* a, unsigned b0, unsigned b1)
        {
            const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
            bw_mma_publish(a, b0, b1);
            for (int i = 0; i < 4; i++) {
                const int r = (int)g + ((i & 2) ? 8 : 0), n = 2 * (int)t + (i & 1);
                int sum = c[i];
                for (int k = 0; k < 32; k++) {
                    const unsigned* fa = bw_mma_frag[warp][(r & 7) * 4 + ((k & 15) >> 2)];
                    const unsigned* fb = bw_mma_frag[warp][n * 4 + ((k & 15) >> 2)];
                    sum += bw_s8(fa[(r >= 8 ? 1 : 0) + (k >= 16 ? 2 : 0)], k & 3) * bw_s8(fb[4 + (k >= 16 ? 1 : 0)], k & 3);
                }
                c[i] = sum;
            }
            bw_barrier_wait(&bw_warp_barrier[warp]);
        }

        // Warpgroup MMA (wgmma.mma_async m64n128k32 .s8, sm_90a), emulated: fences and commit are nothing here (the
        // product is done when it returns), a wait is the warpgroup's barrier; a descriptor keeps its LBO and SBO in the PTX
        // bit fields and its address, which a host pointer does not fit, beside it; each thread sums its D fragment (the
        // m16n8 layout an n8 tile) from its warp's A fragments (as mma.sync m16n8k32's) and B read through the descriptor:
        // core matrices of 8 rows x 16 bytes, row r of core matrix (n / 8, k / 16) at n / 8 x SBO + k / 16 x LBO + r x 16.
        #define BW_WGMMA_HELPERS
        static void bw_fault(const char* what, const void* p);
        static thread_local const unsigned char* bw_wgmma_address;
        static inline void bw_wgmma_fence() {}
        static inline void bw_wgmma_commit() {}
        static inline void bw_wgmma_wait0() { bw_barrier_wait(&bw_warpgroup_barrier[threadIdx.x >> 7]); }
        static inline void bw_fence_proxy_async() {}
        static inline unsigned long long bw_wgmma_desc(const void* smem, unsigned lbo, unsigned sbo)
        {
            bw_wgmma_address = (const unsigned char*)smem;
            if (((uintptr_t)smem & 15) != 0) bw_fault("wgmma descriptor", smem);
            return ((unsigned long long)((lbo & 0x3FFFFu) >> 4) << 16) | ((unsigned long long)((sbo & 0x3FFFFu) >> 4) << 32);
        }
        static inline void bw_wgmma_64n128k32_s8(int (*c)[4], const unsigned* a, unsigned long long desc, int accumulate)
        {
            const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
            const unsigned lbo = (unsigned)((desc >> 16) & 0x3FFFu) << 4, sbo = (unsigned)((desc >> 32) & 0x3FFFu) << 4;
            const unsigned char* const b = bw_wgmma_address;
            bw_mma_publish(a, 0, 0);
            for (int j = 0; j < 16; j++) {
                for (int i = 0; i < 4; i++) {
                    const int r = (int)g + ((i & 2) ? 8 : 0), n = 8 * j + 2 * (int)t + (i & 1);
                    int sum = 0;
                    for (int k = 0; k < 32; k++) {
                        const unsigned* fa = bw_mma_frag[warp][(r & 7) * 4 + ((k & 15) >> 2)];
                        sum += bw_s8(fa[(r >= 8 ? 1 : 0) + (k >= 16 ? 2 : 0)], k & 3) * (int)(signed char)b[(n >> 3) * sbo + (k >> 4) * lbo + (n & 7) * 16 + (k & 15)];
                    }
                    c[j][i] = accumulate ? c[j][i] + sum : sum;
                }
            }
            bw_barrier_wait(&bw_warp_barrier[warp]);
        }
        template <int KS> static inline void bw_wgmma_hold(int (*)[4], unsigned (*)[4]) {}

        // The fp16 warpgroup product (wgmma.mma_async m64n256k16 .f32.f16.f16, both operands from shared memory, K-major,
        // 128-byte swizzle), emulated: a descriptor carries a slot of a small per-thread table holding its host address;
        // each thread sums its D fragment (the m16n8 layout an n8 tile: rows warp x 16 + g (+ 8), columns 8j + 2t (+ 1))
        // over k 0..15, element (row, k) of an operand read at the swizzled address: the logical row-group x 1024 + (row
        // & 7) x 128 + k x 2 from the descriptor's start, its 16-byte chunk bits [4, 7) XOR-ed with bits [7, 10) (the
        // shared-memory buffer is 1,024-byte aligned, as the GPU's is).
        #define BW_WGMMA_F16_HELPERS
        static thread_local const unsigned char* bw_wgmma_f16_slots[4];
        static thread_local unsigned bw_wgmma_f16_next;
        static inline unsigned long long bw_wgmma_desc_sw128(const void* smem)
        {
            if (((uintptr_t)smem & 15) != 0) bw_fault("wgmma descriptor", smem);
            const unsigned slot = bw_wgmma_f16_next++ & 3u;
            bw_wgmma_f16_slots[slot] = (const unsigned char*)smem;
            return (unsigned long long)slot | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) | (1ull << 62);
        }
        static inline float bw_wgmma_f16_at(unsigned long long desc, int row, int k)
        {
            const uintptr_t logical = (uintptr_t)bw_wgmma_f16_slots[desc & 3u] + (uintptr_t)((row >> 3) * 1024 + (row & 7) * 128 + k * 2);
            const uintptr_t at = logical ^ (((logical >> 7) & 7u) << 4);
            _Float16 h; std::memcpy(&h, (const void*)at, 2);
            return (float)h;
        }
        template <int N> static inline void bw_wgmma_64nk16_f16(float* d, unsigned long long da, unsigned long long db, int accumulate)
        {
            const int lane = (int)(threadIdx.x & 31), warp = (int)((threadIdx.x >> 5) & 3), g = lane >> 2, t = lane & 3;
            for (int j = 0; j < N / 8; j++) {
                for (int i = 0; i < 4; i++) {
                    const int r = warp * 16 + g + ((i & 2) ? 8 : 0), n = 8 * j + 2 * t + (i & 1);
                    float sum = 0.f;
                    for (int k = 0; k < 16; k++) sum += bw_wgmma_f16_at(da, r, k) * bw_wgmma_f16_at(db, n, k);
                    d[4 * j + i] = accumulate ? d[4 * j + i] + sum : sum;
                }
            }
        }
        static inline void bw_wgmma_64n256k16_f16(float* d, unsigned long long da, unsigned long long db, int accumulate) { bw_wgmma_64nk16_f16<256>(d, da, db, accumulate); }
        static inline void bw_wgmma_wait1() { bw_barrier_wait(&bw_warpgroup_barrier[threadIdx.x >> 7]); }
        static inline void bw_hold_f32x128(float*) {}

        // mbarriers (init, arrive, arrive.expect_tx, try_wait.parity), emulated: a table of the block's barriers by
        // shared-memory address (the expected count, the arrivals still pending, the transaction bytes still due and the
        // phase), one lock and one condition for all. A phase completes, advancing and waking the waiters, once its
        // arrivals are in and its bytes have landed; a wait for parity P returns once the phase with that parity has
        // completed (the current phase's parity differs).
        #define BW_MBARRIER_HELPERS
        struct bw_mbar_state { const void* at; unsigned expected, pending, phase; long long bytes; };
        static bw_mbar_state bw_mbars[64];
        static int bw_mbar_count;
        static pthread_mutex_t bw_mbar_lock = PTHREAD_MUTEX_INITIALIZER;
        static pthread_cond_t bw_mbar_changed = PTHREAD_COND_INITIALIZER;
        static bw_mbar_state* bw_mbar_lookup(const void* b)
        {
            for (int i = 0; i < bw_mbar_count; i++) if (bw_mbars[i].at == b) return &bw_mbars[i];
            return 0;
        }
        static bw_mbar_state* bw_mbar_find(const void* b)
        {
            if (bw_mbar_state* const s = bw_mbar_lookup(b)) return s;
            fprintf(stderr, "emulated mbarrier at %p used before its init\n", b);
            abort();
        }
        static inline void bw_mbar_init(unsigned long long* b, unsigned count)
        {
            pthread_mutex_lock(&bw_mbar_lock);
            bw_mbar_state* s = bw_mbar_lookup(b);
            if (!s) { if (bw_mbar_count == 64) { fprintf(stderr, "emulated mbarriers: more than 64 in a block\n"); abort(); } s = &bw_mbars[bw_mbar_count++]; }
            *s = bw_mbar_state{b, count, count, 0, 0};
            pthread_mutex_unlock(&bw_mbar_lock);
        }
        static inline void bw_mbar_init_fence() {}
        static inline void bw_mbar_update(unsigned long long* b, unsigned arrivals, long long bytes) // bytes: expected (+) or landed (-)
        {
            pthread_mutex_lock(&bw_mbar_lock);
            bw_mbar_state* const s = bw_mbar_find(b);
            s->pending -= arrivals;
            s->bytes += bytes;
            if (s->pending == 0 && s->bytes == 0) { s->phase++; s->pending = s->expected; pthread_cond_broadcast(&bw_mbar_changed); }
            pthread_mutex_unlock(&bw_mbar_lock);
        }
        static inline void bw_mbar_arrive(unsigned long long* b) { bw_mbar_update(b, 1, 0); }
        static inline void bw_mbar_expect_tx(unsigned long long* b, unsigned bytes) { bw_mbar_update(b, 1, bytes); }
        static inline void bw_mbar_wait(unsigned long long* b, unsigned parity)
        {
            pthread_mutex_lock(&bw_mbar_lock);
            bw_mbar_state* const s = bw_mbar_find(b);
            while ((s->phase & 1u) == (parity & 1u)) pthread_cond_wait(&bw_mbar_changed, &bw_mbar_lock);
            pthread_mutex_unlock(&bw_mbar_lock);
        }

        // The stem kernel's max.f16x2 (a half maximum per 16-bit lane), emulated.
        #define BW_STEM_HELPERS
        static inline unsigned bw_hmax2(unsigned a, unsigned b)
        {
            const float lo = fmaxf(bw_h(a, 0), bw_h(b, 0)), hi = fmaxf(bw_h(a, 1), bw_h(b, 1));
            return bw_pack_half2(lo, hi);
        }

        // A fault in how the kernel uses ldmatrix or cp.async (an address not 16-byte aligned, too many copies in flight):
        // reported once and the destination poisoned with NaN halves, so the output cannot match.
        static void bw_fault(const char* what, const void* p)
        {
            static bool said = false;
            if (!said) { said = true; fprintf(stderr, "emulated %s: address %p is not valid for it\n", what, p); }
        }

        // ldmatrix.x4 (and .trans), emulated: each lane publishes the shared-memory row it names (lanes 8i..8i+7 name
        // matrix i's rows), then each thread takes its fragment of every matrix as the PTX layout gives it: row g,
        // columns 2t and 2t + 1, or for .trans column g, rows 2t and 2t + 1.
        static const unsigned short* bw_ldsm_rows[32][32];
        static inline void bw_ldsm(unsigned* r, const unsigned short* row, bool trans)
        {
            const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
            bw_ldsm_rows[warp][lane] = row;
            bw_barrier_wait(&bw_warp_barrier[warp]);
            bool bad = false;
            for (int i = 0; i < 32; i++) bad |= ((uintptr_t)bw_ldsm_rows[warp][i] & 15) != 0;
            for (int i = 0; i < 4; i++) {
                const unsigned short* const* m = &bw_ldsm_rows[warp][i * 8];
                const unsigned lo = trans ? m[2 * t][g] : m[g][2 * t], hi = trans ? m[2 * t + 1][g] : m[g][2 * t + 1];
                r[i] = bad ? 0x7e007e00u : lo | (hi << 16);
            }
            if (bad) bw_fault(trans ? "ldmatrix.trans" : "ldmatrix", row);
            bw_barrier_wait(&bw_warp_barrier[warp]);
        }
        static inline void bw_ldsm_x4(unsigned* r, const unsigned short* row) { bw_ldsm(r, row, false); }
        static inline void bw_ldsm_x4_trans(unsigned* r, const unsigned short* row) { bw_ldsm(r, row, true); }

        // cp.async, emulated per thread: a copy is queued with its commit group and lands (16 bytes, or zeros when not
        // valid) only when a wait_group lets its group complete, so a read before the wait (or, across threads, before
        // the barrier after it) sees the stage's old contents and the output goes wrong.
        struct bw_copy { unsigned short* dst; const unsigned short* src; bool valid; int group; };
        static thread_local bw_copy bw_copies[256];
        static thread_local int bw_copy_count, bw_group;
        static inline void bw_cp_async16(unsigned short* dst, const unsigned short* src, bool valid)
        {
            if (((uintptr_t)dst & 15) != 0 || (valid && ((uintptr_t)src & 15) != 0) || bw_copy_count == 256) {
                bw_fault("cp.async", valid ? (const void*)src : (const void*)dst);
                for (int i = 0; i < 8; i++) dst[i] = 0x7e00;
                return;
            }
            bw_copies[bw_copy_count++] = bw_copy{dst, src, valid, bw_group};
        }
        static inline void bw_cp_async_commit() { bw_group++; }
        template <int N> static inline void bw_cp_async_wait()
        {
            int kept = 0;
            for (int i = 0; i < bw_copy_count; i++) {
                const bw_copy& c = bw_copies[i];
                if (c.group < bw_group - N) { if (c.valid) std::memcpy(c.dst, c.src, 16); else std::memset(c.dst, 0, 16); }
                else bw_copies[kept++] = c;
            }
            bw_copy_count = kept;
        }

        // TMA tensor copies (cp.async.bulk.tensor.2d into shared memory, completing bytes on an mbarrier), emulated: the
        // map is the runner's own (what the test fills for a kernel's __grid_constant__ parameter: the matrix's address,
        // rows, columns, the box), the copy lands at once, each element (row, column) of the box at the box row's 128 bytes
        // with its 16-byte chunk bits [4, 7) XOR-ed with the address bits [7, 10) (the 128-byte swizzle), zeros past the
        // matrix, then its bytes complete on the barrier.
        #define BW_TMA_HELPERS
        #define __grid_constant__
        struct bw_tensor_map { const unsigned char* base; long long rows, columns; int box_rows, box_columns; unsigned char rest[96]; };
        static inline void bw_tma_prefetch(const bw_tensor_map*) {}
        static inline void bw_tma_load_2d(void* dst, const bw_tensor_map* m, int column, int row, unsigned long long* b)
        {
            if (((uintptr_t)dst & 127) != 0 || m->box_columns * 2 != 128) bw_fault("tensor copy (128-byte swizzle: 128-byte rows, 128-byte aligned)", dst);
            for (int r = 0; r < m->box_rows; r++) {
                for (int c = 0; c < m->box_columns; c++) {
                    const long long gr = (long long)row + r, gc = (long long)column + c;
                    const uintptr_t logical = (uintptr_t)dst + (uintptr_t)(r * 128 + c * 2);
                    void* const at = (void*)(logical ^ (((logical >> 7) & 7u) << 4));
                    if (gr >= 0 && gr < m->rows && gc >= 0 && gc < m->columns) std::memcpy(at, m->base + (gr * m->columns + gc) * 2, 2);
                    else std::memset(at, 0, 2);
                }
            }
            bw_mbar_update(b, 0, -(long long)m->box_rows * m->box_columns * 2);
        }

        static inline float bw_exp2(float x) { return exp2f(x); }
        #define BW_RCP_APPROX
        static inline float bw_rcp(float x) { return 1.f / x; }

        static inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
        static inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
        static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((u64)a * b) >> 32); }
        static inline int __dp4a(int a, int b, int c) {
            for (int i = 0; i < 4; i++) c += (int)(signed char)(a >> (8 * i)) * (int)(signed char)(b >> (8 * i));
            return c;
        }
        static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
            const u64 v = ((u64)y << 32) | x; unsigned r = 0;
            for (int i = 0; i < 4; i++) r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
            return r;
        }
        static inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
        struct bw_half {
            _Float16 h;
            bw_half() {}
            bw_half(float f) : h((_Float16)f) {}
            bw_half(double f) : h((_Float16)(float)f) {}
            bw_half(int v) : h((_Float16)(float)v) {}
            operator float() const { return (float)h; }
        };
        struct bw_bf16 {
            unsigned short bits;
            bw_bf16() {}
            bw_bf16(float f) { unsigned u = __float_as_uint(f); bits = (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((u >> 16) | 0x40u) : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16); }
            bw_bf16(double f) : bw_bf16((float)f) {}
            bw_bf16(int v) : bw_bf16((float)v) {}
            operator float() const { return __uint_as_float((unsigned)bits << 16); }
        };
        static inline void bw_pdl_enter() {}
        """ + KernelSource.MathHelpers + """
        // Runs one block's threads at once (barriers and warp exchanges between them); a thread that returns leaves both.
        // The host threads are a pool kept from block to block (creating a thread per CUDA thread of every block cost
        // more than the kernels): worker i runs CUDA thread i of each block, and leaves after two idle seconds (a
        // library's kernels are done), so loaded libraries do not keep threads.
        struct bw_thread { void (*kernel)(void**, unsigned, unsigned); void** p; unsigned block, thread; };
        struct bw_worker { pthread_cond_t wake; bw_thread work; int state; bool made; }; // state: 0 none, 1 idle, 2 work given
        static bw_worker bw_workers[1024];
        static pthread_mutex_t bw_pool_lock = PTHREAD_MUTEX_INITIALIZER;
        static pthread_cond_t bw_pool_done = PTHREAD_COND_INITIALIZER;
        static int bw_pool_running;
        static void* bw_worker_main(void* arg)
        {
            bw_worker* w = (bw_worker*)arg;
            pthread_mutex_lock(&bw_pool_lock);
            for (;;) {
                while (w->state != 2) {
                    timespec until; clock_gettime(CLOCK_REALTIME, &until); until.tv_sec += 2;
                    if (pthread_cond_timedwait(&w->wake, &bw_pool_lock, &until) != 0 && w->state != 2) {
                        w->state = 0;
                        pthread_mutex_unlock(&bw_pool_lock);
                        return 0;
                    }
                }
                const bw_thread t = w->work;
                w->state = 1;
                pthread_mutex_unlock(&bw_pool_lock);
                bw_copy_count = 0; bw_group = 0; // this CUDA thread's emulated cp.async state starts empty
                t.kernel(t.p, t.block, t.thread);
                bw_barrier_leave(&bw_block_barrier);
                bw_barrier_leave(&bw_warp_barrier[t.thread >> 5]);
                bw_barrier_leave(&bw_warpgroup_barrier[t.thread >> 7]);
                bw_barrier_leave(&bw_pair_barrier[t.thread >> 6]);
                pthread_mutex_lock(&bw_pool_lock);
                if (--bw_pool_running == 0) pthread_cond_signal(&bw_pool_done);
            }
        }

        static void bw_run_block(void (*kernel)(void**, unsigned, unsigned), void** p, unsigned block, unsigned threads)
        {
            bw_barrier_init(&bw_block_barrier, (int)threads);
            bw_barrier_init_groups(bw_warp_barrier, 32, 32, threads);
            bw_barrier_init_groups(bw_warpgroup_barrier, 8, 128, threads);
            bw_barrier_init_groups(bw_pair_barrier, 16, 64, threads);
            bw_mbar_count = 0; // a block's mbarriers are its own (blocks run one at a time)
            pthread_mutex_lock(&bw_pool_lock);
            bw_pool_running = (int)threads;
            for (unsigned t = 0; t < threads; t++) {
                bw_worker* w = &bw_workers[t];
                if (!w->made) { pthread_cond_init(&w->wake, 0); w->made = true; }
                w->work = bw_thread{kernel, p, block, t};
                if (w->state == 0) {
                    w->state = 2;
                    pthread_t id;
                    pthread_attr_t attr; pthread_attr_init(&attr); pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                    pthread_create(&id, &attr, bw_worker_main, w);
                    pthread_attr_destroy(&attr);
                } else {
                    w->state = 2;
                    pthread_cond_signal(&w->wake);
                }
            }
            while (bw_pool_running > 0) pthread_cond_wait(&bw_pool_done, &bw_pool_lock);
            pthread_mutex_unlock(&bw_pool_lock);
        }

        """;

    private delegate void Launch(IntPtr[] parameters, long threads, int block, IntPtr dynamicShared);

    /// <summary>Bytes after a launch's dynamic shared memory that must come back unchanged (a kernel that wrote past its launch's size fails).</summary>
    private const int SharedGuardBytes = 4096;

    /// <summary>Why g++ cannot run kernels here, or null when it can.</summary>
    public static string? Unavailable { get; } = Probe();

    private static string? Probe()
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("g++", "--version") { RedirectStandardOutput = true, RedirectStandardError = true });
            p!.WaitForExit();
            return p.ExitCode == 0 ? null : "g++ --version failed";
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return "g++ not found (" + e.Message + "); install it (apt-get install g++) to run generated kernels on the CPU";
        }
    }

    /// <summary>Why a plan cannot run on the CPU (a library step), or null.</summary>
    public static string? CannotRun(ExecutionPlan plan) =>
        plan.Steps.FirstOrDefault(s => s is not (KernelStep or MatmulStep or Int8GemmStep { Sums: not null } or CudnnAttentionStep)) is { } step ? $"{step.Node} is a {step.GetType().Name}" : null;

    /// <summary>True for kernels whose threads exchange values (warp shuffles, shared memory, barriers): those run a block's threads at once.</summary>
    private static bool Cooperates(string source) =>
        new[] { "__shfl", "__syncthreads", "__syncwarp", "__shared__", "bw_warp_", "bw_block_" }.Any(t => source.Contains(t, StringComparison.Ordinal));

    private static readonly Dictionary<string, Launch> Compiled = new(StringComparer.Ordinal);
    private static readonly List<IntPtr> Libraries = [];
    private static readonly Lock Gate = new();

    /// <summary>
    /// Compiles every kernel of <paramref name="plans"/> not compiled yet, in one g++ run (a compiler start per kernel
    /// would cost more than the tests).
    /// </summary>
    public static void Prepare(IEnumerable<ExecutionPlan> plans) => Prepare(plans.SelectMany(p => p.Steps.OfType<KernelStep>()).Select(k => k.Source));

    /// <summary>
    /// Runs one kernel outside a plan (the segment copy) over <paramref name="threads"/> threads in blocks of
    /// <paramref name="block"/>: its pointer parameters are <paramref name="pointers"/>, then its argument block.
    /// </summary>
    public static void Run(KernelCode code, IReadOnlyList<IntPtr> pointers, long threads, int block)
    {
        Prepare([code.Source]);
        var args = Marshal.AllocHGlobal(Math.Max(8, code.Args.Length));
        try
        {
            Marshal.Copy(code.Args, 0, args, code.Args.Length);
            lock (Gate)
            {
                Compiled[code.Source]([.. pointers, args], threads, block, IntPtr.Zero); // the segment copy has no dynamic shared memory
            }
        }
        finally
        {
            Marshal.FreeHGlobal(args);
        }
    }

    private static void Prepare(IEnumerable<string> sources)
    {
        lock (Gate)
        {
            var missing = sources.Where(s => !Compiled.ContainsKey(s)).Distinct(StringComparer.Ordinal).ToList();
            if (missing.Count == 0)
            {
                return;
            }

            var dir = Directory.CreateTempSubdirectory("bw-cpu-kernels-");
            try
            {
                var first = Compiled.Count;
                var source = new StringBuilder($"#define BW_CLUSTER_TILE_FLOATS {KernelSource.SplitKPartialFloats}\n").Append(HostPrelude).Append(KernelSource.QuantizeHelper);
                for (var i = 0; i < missing.Count; i++)
                {
                    var name = "bw_k" + (first + i);
                    var text = DynamicShared().Replace(missing[i].Replace(KernelSource.Name, name, StringComparison.Ordinal), "$1* const $2 = ($1*)bw_dynamic_smem;");
                    source.Append(text).Append('\n').Append(Launcher(name, text)).Append('\n');
                }

                var cpp = Path.Combine(dir.FullName, "kernels.cpp");
                var lib = Path.Combine(dir.FullName, "kernels.so");
                File.WriteAllText(cpp, source.ToString());
                using (var p = Process.Start(new ProcessStartInfo("g++", $"-std=c++17 -O0 -shared -fPIC -pthread -w -o \"{lib}\" \"{cpp}\"") { RedirectStandardError = true, RedirectStandardOutput = true })!)
                {
                    var errors = p.StandardError.ReadToEnd();
                    p.WaitForExit();
                    if (p.ExitCode != 0)
                    {
                        throw new InvalidOperationException("g++ failed on generated kernels: " + errors);
                    }
                }

                var handle = NativeLibrary.Load(lib);
                Libraries.Add(handle);
                for (var i = 0; i < missing.Count; i++)
                {
                    Compiled[missing[i]] = Marshal.GetDelegateForFunctionPointer<Launch>(NativeLibrary.GetExport(handle, "launch_bw_k" + (first + i)));
                }
            }
            finally
            {
                dir.Delete(recursive: true);
            }
        }
    }

    /// <summary>
    /// Runs the plan on <paramref name="inputs"/> (host-valued inputs are already in the plan) and returns its outputs. A
    /// plan that stops at a data-dependent node's count (NonZero) goes on as the session does: the count is read from
    /// the arena, <paramref name="continueWith"/> gives the plan for the rest at that count, and it resumes on the same
    /// arena (grown, its contents kept, when the new plan needs more).
    /// </summary>
    public static List<Tensor> Run(ExecutionPlan plan, IReadOnlyList<Tensor> inputs, Func<ExecutionPlan, long, ExecutionPlan>? continueWith = null)
    {
        if (CannotRun(plan) is { } why)
        {
            throw new InvalidOperationException("cannot run on the CPU: " + why);
        }

        var arenaBytes = Math.Max(1, plan.Memory.ArenaBytes);
        var arena = Marshal.AllocHGlobal((IntPtr)arenaBytes);
        var constants = new List<IntPtr>();
        try
        {
            var pointers = Pointers(plan, arena, constants);
            for (var i = 0; i < inputs.Count; i++)
            {
                if (plan.InputBuffers[i] >= 0)
                {
                    Marshal.Copy(inputs[i].Data, 0, pointers[plan.InputBuffers[i]], inputs[i].Data.Length);
                }
            }

            RunSteps(plan, pointers);
            while (plan.StopsForCount)
            {
                var count = Marshal.ReadInt64(pointers[plan.CountBuffer]);
                var next = (continueWith ?? throw new InvalidOperationException($"the plan stops at {plan.SyncNodes[^1]} for its count, and nothing continues it"))(plan, count);
                if (CannotRun(next) is { } nextWhy)
                {
                    throw new InvalidOperationException("cannot run on the CPU: " + nextWhy);
                }

                if (next.Memory.ArenaBytes > arenaBytes)
                {
                    // The segments run so far stay where they are: the new plan keeps their offsets.
                    var grown = Marshal.AllocHGlobal((IntPtr)next.Memory.ArenaBytes);
                    unsafe
                    {
                        Buffer.MemoryCopy((void*)arena, (void*)grown, next.Memory.ArenaBytes, arenaBytes);
                    }

                    Marshal.FreeHGlobal(arena);
                    (arena, arenaBytes) = (grown, next.Memory.ArenaBytes);
                }

                plan = next;
                pointers = Pointers(plan, arena, constants);
                RunSteps(plan, pointers);
            }

            return plan.Outputs.Select(o =>
            {
                if (o.Constant is not null)
                {
                    return o.Constant.ToTensor();
                }

                var data = new byte[Tensor.ElementCountOf(o.Shape) * o.Type.SizeOf()];
                Marshal.Copy(pointers[o.Buffer], data, 0, data.Length);
                return new Tensor(o.Type, o.Shape, data);
            }).ToList();
        }
        finally
        {
            Marshal.FreeHGlobal(arena);
            constants.ForEach(Marshal.FreeHGlobal);
        }
    }

    /// <summary>
    /// What the session does when a plan stops at a data-dependent node: the plan for the rest, compiled with the counts
    /// read so far and the plan that stopped as its parent.
    /// </summary>
    public static Func<ExecutionPlan, long, ExecutionPlan> Continuation(OnnxModel model, IPlanTarget target, IReadOnlyList<Tensor> inputs)
    {
        var init = model.Graph.Initializer.ToDictionary(t => t.Name, t => HostTensor.FromProto(t));
        return (parent, count) => new GraphCompiler(model, target).Compile(inputs, init, GraphCompiler.HostValueInputs(model), [.. parent.Counts, count], parent);
    }

    /// <summary>Each buffer's address: in the arena, or a constant's own copy (added to <paramref name="constants"/> to free).</summary>
    private static IntPtr[] Pointers(ExecutionPlan plan, IntPtr arena, List<IntPtr> constants)
    {
        var pointers = new IntPtr[plan.Buffers.Count];
        foreach (var b in plan.Buffers)
        {
            if (b.IsArena)
            {
                pointers[b.Id] = arena + (IntPtr)b.Offset;
                continue;
            }

            var t = b.Constant!;
            var bytes = (b.StorageType == t.Type ? t : t.CastTo(b.StorageType)).ToBytes();
            var p = Marshal.AllocHGlobal(Math.Max(1, bytes.Length));
            Marshal.Copy(bytes, 0, p, bytes.Length);
            constants.Add(p);
            pointers[b.Id] = p;
        }

        return pointers;
    }

    /// <summary>Runs the plan's kernels from its first step (a later segment's plan starts where its parent stopped).</summary>
    private static unsafe void RunSteps(ExecutionPlan plan, IntPtr[] pointers)
    {
        Prepare([plan]);
        var steps = plan.Steps.Skip(plan.FirstStep).ToList();
        lock (Gate)
        {
            // Kernels share the runner's globals (thread indices, barriers): one launch at a time.
            foreach (var step in steps)
            {
                if (step is MatmulStep product)
                {
                    RunMatmul(product, pointers);
                    continue;
                }

                if (step is CudnnAttentionStep attention)
                {
                    RunCudnnAttention(attention, pointers);
                    continue;
                }

                if (step is Int8GemmStep { Sums: { } sums })
                {
                    RunInt8Sums(sums, pointers[step.Buffers[0]], pointers[step.Buffers[1]], pointers[step.Buffers[2]]);
                    continue;
                }

                var k = (KernelStep)step;
                var args = Marshal.AllocHGlobal(Math.Max(8, k.Args.Length));
                var maps = k.TensorMaps.Select(m => TensorMap(m, pointers[k.Buffers[m.Buffer]])).ToList();
                var shared = DynamicSharedMemory(k);
                try
                {
                    Marshal.Copy(k.Args, 0, args, k.Args.Length);
                    var parameters = k.Buffers.Select(id => id < 0 ? IntPtr.Zero : pointers[id]).Concat(maps).Append(args).ToArray();
                    Compiled[k.Source](parameters, (long)k.Grid * k.Block, k.Block, shared);
                    CheckSharedGuard(k, shared);
                }
                finally
                {
                    Marshal.FreeHGlobal(args);
                    maps.ForEach(Marshal.FreeHGlobal);
                    if (shared != IntPtr.Zero)
                    {
                        NativeMemory.AlignedFree((void*)shared);
                    }
                }
            }
        }
    }

    /// <summary>The runner's own tensor map (the prelude's <c>bw_tensor_map</c>) of <paramref name="map"/> over the buffer at <paramref name="address"/>, 128 bytes to free.</summary>
    private static IntPtr TensorMap(HalfTensorMap map, IntPtr address)
    {
        var p = Marshal.AllocHGlobal(128);
        Marshal.WriteIntPtr(p, 0, address);
        Marshal.WriteInt64(p, 8, map.Rows);
        Marshal.WriteInt64(p, 16, map.Columns);
        Marshal.WriteInt32(p, 24, map.BoxRows);
        Marshal.WriteInt32(p, 28, map.BoxColumns);
        return p;
    }

    /// <summary>
    /// The dynamic shared memory of a launch as the GPU would give it: <see cref="KernelStep.SharedBytes"/> (NaN halves
    /// before the kernel writes them) and a guard after it, or null where the step has none. A kernel that declares extern
    /// shared memory launched without any fails, as it would fail on the GPU.
    /// </summary>
    private static unsafe IntPtr DynamicSharedMemory(KernelStep k)
    {
        var declares = DynamicShared().IsMatch(k.Source);
        if (declares != k.SharedBytes > 0)
        {
            throw new InvalidOperationException($"{k.Node}: the kernel {(declares ? "declares" : "does not declare")} dynamic shared memory, launched with {k.SharedBytes} bytes of it");
        }

        if (!declares)
        {
            return IntPtr.Zero;
        }

        var p = NativeMemory.AlignedAlloc((nuint)(k.SharedBytes + SharedGuardBytes), 1024); // as the GPU aligns it: the 128-byte swizzle's 1,024-byte atoms
        new Span<byte>(p, k.SharedBytes + SharedGuardBytes).Fill(0xff);
        return (IntPtr)p;
    }

    private static unsafe void CheckSharedGuard(KernelStep k, IntPtr shared)
    {
        if (shared != IntPtr.Zero && new ReadOnlySpan<byte>((byte*)shared + k.SharedBytes, SharedGuardBytes).ContainsAnyExcept((byte)0xff))
        {
            throw new InvalidOperationException($"{k.Node}: the kernel wrote past the {k.SharedBytes} bytes of dynamic shared memory it was launched with");
        }
    }

    /// <summary>
    /// A matrix product by its definition (<see cref="MatmulProblem"/>): Y = alpha op(A) op(B) + beta C + bias (then GELU), summed in
    /// double, each element rounded once to the plan's type, as cuBLASLt's fp32-accumulating kernels round.
    /// </summary>
    private static unsafe void RunMatmul(MatmulStep step, IntPtr[] pointers)
    {
        var p = step.Problem;
        var half = p.Type == ElementType.Float16;
        double Read(IntPtr at, long i) => half ? (double)((Half*)at)[i] : ((float*)at)[i];
        var (b, a, d) = (pointers[step.Buffers[0]], pointers[step.Buffers[1]] + (nint)step.RowOffsets.Activations, pointers[step.Buffers[2]] + (nint)step.RowOffsets.Output);
        var bias = step.Buffers[3] >= 0 ? pointers[step.Buffers[3]] : IntPtr.Zero;
        var c = step.Buffers[4] >= 0 ? pointers[step.Buffers[4]] + (nint)step.RowOffsets.Output : d;
        for (var t = 0; t < p.Batch; t++)
        {
            for (var i = 0; i < p.M; i++)
            {
                for (var j = 0; j < p.N; j++)
                {
                    var sum = 0.0;
                    for (var k = 0; k < p.K; k++)
                    {
                        var x = Read(a, (t * p.StrideA) + (p.TransA ? (k * p.Lda) + i : (i * p.Lda) + k));
                        var w = Read(b, (t * p.StrideB) + (p.TransB ? (j * p.Ldb) + k : (k * p.Ldb) + j));
                        sum += x * w;
                    }

                    var at = (((long)t * p.M) + i) * p.N + j;
                    var value = (p.Alpha * sum) + (p.Beta != 0 ? p.Beta * Read(c, at) : 0) + (bias != IntPtr.Zero ? Read(bias, j) : 0);
                    if (p.TanhGelu)
                    {
                        value = 0.5 * value * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (value + (0.044715 * value * value * value))));
                    }

                    if (p.Relu)
                    {
                        value = Math.Max(0, value);
                    }

                    if (half)
                    {
                        ((Half*)d)[at] = (Half)value;
                    }
                    else
                    {
                        ((float*)d)[at] = (float)value;
                    }
                }
            }
        }
    }

    /// <summary>
    /// cuDNN's fused attention by its definition (<see cref="CudnnAttentionShape"/>): O = softmax(Q K^T scale + bias) V per
    /// (batch, head, row), in double from the half operands (Q, K, V at their shape's strides, each pointer already at its
    /// offset; the bias [batch, keys], or [batch, rows, keys] where the shape says per row, or null), returned dense in (batch, head, row, column) order; a row whose every score
    /// is -inf gives NaN, as cuDNN's softmax does. With <paramref name="lengths"/> (the shape's sequence lengths: queries,
    /// then keys, a batch item each) only the first keys of each item count, and an item with none (or a row past its
    /// query length) gives NaN: what the engine's own kernel must then overwrite.
    /// </summary>
    internal static unsafe double[] CudnnAttentionReference(CudnnAttentionShape s, Half* q, Half* k, Half* v, Half* bias, int* lengths = null)
    {
        var o = new double[(long)s.Batch * s.Heads * s.Rows * s.HeadDim];
        var scores = new double[s.Keys];
        for (var b = 0; b < s.Batch; b++)
        {
            for (var h = 0; h < s.Heads; h++)
            {
                for (var r = 0; r < s.Rows; r++)
                {
                    var max = double.NegativeInfinity;
                    for (var j = 0; j < s.Keys; j++)
                    {
                        var dot = 0.0;
                        for (var c = 0; c < s.HeadDim; c++)
                        {
                            dot += (double)q[(b * s.Q[0]) + (h * s.Q[1]) + (r * s.Q[2]) + (c * s.Q[3])] * (double)k[(b * s.K[0]) + (h * s.K[1]) + (j * s.K[2]) + (c * s.K[3])];
                        }

                        scores[j] = (dot * s.Scale) + (bias is null ? 0 : (double)bias[((((long)b * (s.BiasPerRow ? s.Rows : 1)) + (s.BiasPerRow ? r : 0)) * s.Keys) + j]);
                        if (lengths is not null && (j >= lengths[s.Batch + b] || r >= lengths[b]))
                        {
                            scores[j] = double.NegativeInfinity;
                        }

                        max = Math.Max(max, scores[j]);
                    }

                    var sum = 0.0;
                    for (var j = 0; j < s.Keys; j++)
                    {
                        scores[j] = Math.Exp(scores[j] - max);
                        sum += scores[j];
                    }

                    for (var c = 0; c < s.HeadDim; c++)
                    {
                        var value = 0.0;
                        for (var j = 0; j < s.Keys; j++)
                        {
                            value += scores[j] / sum * (double)v[(b * s.V[0]) + (h * s.V[1]) + (j * s.V[2]) + (c * s.V[3])];
                        }

                        o[((((long)b * s.Heads) + h) * s.Rows + r) * s.HeadDim + c] = value;
                    }
                }
            }
        }

        return o;
    }

    /// <summary>A <see cref="CudnnAttentionStep"/> on the CPU: <see cref="CudnnAttentionReference"/> written to O at its strides, rounded once to half.</summary>
    private static unsafe void RunCudnnAttention(CudnnAttentionStep step, IntPtr[] pointers)
    {
        var s = step.Shape;
        var o = (Half*)pointers[step.Buffers[0]];
        var values = CudnnAttentionReference(s, (Half*)pointers[step.Buffers[1]] + s.Offsets[0], (Half*)pointers[step.Buffers[2]] + s.Offsets[1], (Half*)pointers[step.Buffers[3]] + s.Offsets[2], s.Bias ? (Half*)pointers[step.Buffers[4]] : null, s.SequenceLengths ? (int*)pointers[step.Buffers[4]] : null);
        var i = 0;
        for (var b = 0; b < s.Batch; b++)
        {
            for (var h = 0; h < s.Heads; h++)
            {
                for (var r = 0; r < s.Rows; r++)
                {
                    for (var c = 0; c < s.HeadDim; c++)
                    {
                        o[(b * s.O[0]) + (h * s.O[1]) + (r * s.O[2]) + (c * s.O[3])] = (Half)values[i++];
                    }
                }
            }
        }
    }

    /// <summary>cuBLASLt's exact int8 product as an int32-sum <see cref="Int8GemmStep"/> asks it: D [rows, columns] = B [rows, inner] · A [columns, inner]^T.</summary>
    private static unsafe void RunInt8Sums((long Rows, long Inner, long Columns) size, IntPtr a, IntPtr b, IntPtr d)
    {
        var weights = (sbyte*)a;
        var operand = (sbyte*)b;
        var sums = (int*)d;
        for (long r = 0; r < size.Rows; r++)
        {
            for (long c = 0; c < size.Columns; c++)
            {
                var sum = 0;
                for (long k = 0; k < size.Inner; k++)
                {
                    sum += operand[(r * size.Inner) + k] * weights[(c * size.Inner) + k];
                }

                sums[(r * size.Columns) + c] = sum;
            }
        }
    }

    /// <summary>A C function that calls the kernel once per thread of its launch, its parameters cast from an array of pointers.</summary>
    private static string Launcher(string name, string source)
    {
        var open = source.IndexOf($" {name}(", StringComparison.Ordinal) + name.Length + 2;
        var close = source.IndexOf(")\n{", open, StringComparison.Ordinal);
        var parameters = source[open..close].Split(", ");
        var call = new StringBuilder();
        for (var j = 0; j < parameters.Length; j++)
        {
            var type = ParameterName().Replace(parameters[j], string.Empty);
            if (j > 0)
            {
                call.Append(", ");
            }

            // The argument block and tensor maps by value, the buffers as pointers.
            var byValue = j == parameters.Length - 1 || type.Contains("__grid_constant__", StringComparison.Ordinal);
            call.Append(byValue ? $"*({type.Replace("const ", string.Empty, StringComparison.Ordinal).Replace("__grid_constant__ ", string.Empty, StringComparison.Ordinal)}*)p[{j}]" : $"({type})p[{j}]");
        }

        if (Cooperates(source[close..]))
        {
            // A cluster kernel's grid runs twice, every block's products before every block's reduction (the prelude's
            // emulated clusters), over partial tiles kept per block.
            var blocks = $"for (long long b = 0; b < gridDim.x; b++) bw_run_block(thread_{name}, p, (unsigned)b, (unsigned)block);";
            var run = !source.Contains("bw_cluster_tile(", StringComparison.Ordinal) ? blocks : $$"""
                bw_cluster_partials = (float*)calloc((size_t)gridDim.x * bw_cluster_tile_floats, sizeof(float));
                    for (bw_cluster_phase = 1; bw_cluster_phase <= 2; bw_cluster_phase++) {{blocks}}
                    free(bw_cluster_partials);
                """;
            return $$"""
                static void thread_{{name}}(void** p, unsigned block, unsigned thread) { blockIdx.x = block; threadIdx.x = thread; {{name}}({{call}}); }
                extern "C" void launch_{{name}}(void** p, long long threads, int block, unsigned char* shared)
                {
                    blockDim.x = block; gridDim.x = (unsigned)((threads + block - 1) / block); bw_dynamic_smem = shared;
                    {{run}}
                }
                """;
        }

        return $$"""
            extern "C" void launch_{{name}}(void** p, long long threads, int block, unsigned char* shared)
            {
                // Whole blocks, as a launch of (threads + block - 1) / block blocks runs them (kernels guard their own ends).
                blockDim.x = block; gridDim.x = (unsigned)((threads + block - 1) / block);
                for (long long t = 0; t < (long long)gridDim.x * block; t++) { blockIdx.x = (unsigned)(t / block); threadIdx.x = (unsigned)(t % block); {{name}}({{call}}); }
            }
            """;
    }

    [GeneratedRegex(@"\s*\b\w+$")]
    private static partial Regex ParameterName();

    /// <summary>A kernel's dynamic shared memory declaration: its element type and name.</summary>
    [GeneratedRegex(@"extern __shared__ __align__\(\d+\) ([\w ]+?) (\w+)\[\];")]
    private static partial Regex DynamicShared();
}
