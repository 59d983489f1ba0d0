using System.Runtime.InteropServices;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Tests.Planning;

namespace Batchwise.Cuda.Tests.Kernels;

/// <summary>The segment copy (<see cref="KernelSource.CopySegments"/>) run on the CPU through g++ (<see cref="CpuKernelRunner"/>).</summary>
public sealed unsafe class CopySegmentsOnCpuTests
{
    [Fact]
    public void One_launch_copies_every_segment_whatever_its_alignment_and_touches_nothing_else()
    {
        CpuKernelRunner.Require();
        const int size = 1 << 17;
        var source = (byte*)NativeMemory.AlignedAlloc(size, 64);
        var target = (byte*)NativeMemory.AlignedAlloc(size, 64);
        try
        {
            var random = new Random(12);
            random.NextBytes(new Span<byte>(source, size));
            new Span<byte>(target, size).Fill(0xEE);

            // (source offset, destination offset, bytes): sharing 16-byte alignment with a head and a tail over three
            // blocks; not sharing it (byte by byte) over two blocks; shorter than the head; aligned exactly; one byte.
            (int From, int To, int Bytes)[] segments =
            [
                (3, 19, (2 * KernelSource.SegmentBlockBytes) + 37),
                (40_001, 40_008, KernelSource.SegmentBlockBytes + 100),
                (70_007, 70_023, 5),
                (80_000, 80_032, 4096),
                (90_000, 90_001, 1),
            ];
            var table = new ulong[segments.Length * KernelSource.SegmentEntryWords];
            var (count, blocks) = (0, 0L);
            foreach (var (from, to, bytes) in segments)
            {
                RowCopies.Add(table, ref count, ref blocks, (ulong)(source + from), (ulong)(target + to), bytes);
            }

            fixed (ulong* entries = table)
            {
                CpuKernelRunner.Run(KernelSource.CopySegments(count), [(IntPtr)entries], blocks * KernelSource.SegmentThreads, KernelSource.SegmentThreads);
            }

            var expected = new byte[size];
            expected.AsSpan().Fill(0xEE);
            foreach (var (from, to, bytes) in segments)
            {
                new ReadOnlySpan<byte>(source + from, bytes).CopyTo(expected.AsSpan(to));
            }

            var actual = new ReadOnlySpan<byte>(target, size);
            var wrong = actual.CommonPrefixLength(expected);
            Assert.True(wrong == size, $"byte {wrong} differs: {(wrong < size ? actual[wrong] : 0)} where {(wrong < size ? expected[wrong] : 0)} was expected");
        }
        finally
        {
            NativeMemory.AlignedFree(source);
            NativeMemory.AlignedFree(target);
        }
    }
}
