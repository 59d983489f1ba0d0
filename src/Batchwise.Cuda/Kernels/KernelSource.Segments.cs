namespace Batchwise.Cuda.Kernels;

/// <summary>
/// The segment copy: one launch copies every segment of a table (source address, destination address, bytes), as a
/// staged run gathers a merged batch's rows read in place into its input and scatters its output rows to where they are
/// written, instead of one copy operation per row.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Threads per block of <see cref="CopySegments"/> (the kernel assumes this many).</summary>
    public const int SegmentThreads = 256;

    /// <summary>Bytes of a segment one block copies: four 16-byte loads per thread.</summary>
    public const int SegmentBlockBytes = SegmentThreads * 16 * 4;

    /// <summary>64-bit words per table entry: source, destination, bytes, the segment's first block.</summary>
    public const int SegmentEntryWords = 4;

    /// <summary>
    /// The segment copy over a table of <paramref name="count"/> entries (the source is the same for every count). Block b
    /// finds its segment by binary search on the entries' first blocks; a segment whose source and destination share
    /// their address modulo 16 copies in 16-byte vectors (its unaligned head and tail bytes by its first block), any other
    /// byte by byte.
    /// </summary>
    public static KernelCode CopySegments(int count)
    {
        var w = new KernelWriter(small: false);
        var n = w.I32("count", count);
        var perBlock = KernelWriter.Lit(SegmentBlockBytes / 16);
        var threads = KernelWriter.Lit(SegmentThreads);
        w.Body.Append($$"""
                const u64 block = blockIdx.x;
                int lo = 0, hi = {{n}} - 1;
                while (lo < hi) {
                    const int mid = (lo + hi + 1) >> 1;
                    if (table[mid * 4 + 3] <= block) lo = mid; else hi = mid - 1;
                }
                const u64* s = table + lo * 4;
                const u64 from = s[0], to = s[1], bytes = s[2], part = block - s[3];
                const unsigned char* src = (const unsigned char*)from;
                unsigned char* dst = (unsigned char*)to;
                if (((from ^ to) & 15) == 0) {
                    const u64 align = (16 - (to & 15)) & 15;
                    const u64 head = align < bytes ? align : bytes;
                    const u64 vectors = (bytes - head) >> 4;
                    const uint4* vs = (const uint4*)(src + head);
                    uint4* vd = (uint4*)(dst + head);
                    const u64 first = part * {{perBlock}};
                    uint4 r[4];
                    #pragma unroll
                    for (int k = 0; k < 4; k++) {
                        const u64 v = first + threadIdx.x + (u64)k * {{threads}};
                        if (v < vectors) r[k] = vs[v];
                    }
                    #pragma unroll
                    for (int k = 0; k < 4; k++) {
                        const u64 v = first + threadIdx.x + (u64)k * {{threads}};
                        if (v < vectors) vd[v] = r[k];
                    }
                    if (part == 0) {
                        const u64 tail = bytes - head - (vectors << 4);
                        if (threadIdx.x < head) dst[threadIdx.x] = src[threadIdx.x];
                        if (threadIdx.x < tail) dst[bytes - tail + threadIdx.x] = src[bytes - tail + threadIdx.x];
                    }
                } else {
                    const u64 first = part * {{KernelWriter.Lit(SegmentBlockBytes)}};
                    const u64 end = first + {{KernelWriter.Lit(SegmentBlockBytes)}} < bytes ? first + {{KernelWriter.Lit(SegmentBlockBytes)}} : bytes;
                    for (u64 i = first + threadIdx.x; i < end; i += {{threads}}) dst[i] = src[i];
                }

            """);
        return w.Build("const u64* table, " + KernelWriter.ArgsParameter);
    }
}
