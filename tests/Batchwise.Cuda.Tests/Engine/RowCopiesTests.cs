using Batchwise.Cuda.Kernels;

namespace Batchwise.Cuda.Tests.Engine;

/// <summary>How a staged run orders a buffer's in-place rows, and the segment table its one-launch copy reads.</summary>
public sealed class RowCopiesTests
{
    private static DirectRows Device(long offset, long bytes, ulong pointer) => new(offset, bytes, 0, pointer);

    private static DirectRows Host(long offset, long bytes, nint pointer) => new(offset, bytes, pointer, 0);

    private static DirectRows Gap(long offset, long bytes) => new(offset, bytes, 0, 0);

    private static List<DirectRows> PiecesOf(long total, params DirectRows[] rows)
    {
        var pieces = new List<DirectRows>();
        RowCopies.Pieces([.. rows], total, pieces);
        return pieces;
    }

    [Fact]
    public void Pieces_are_rows_in_offset_order_with_the_gaps_before_between_and_after_them()
    {
        var pieces = PiecesOf(100, Device(60, 20, 0x3000), Host(10, 20, 0x1000), Device(30, 10, 0x2000));
        Assert.Equal([Gap(0, 10), Host(10, 20, 0x1000), Device(30, 10, 0x2000), Gap(40, 20), Device(60, 20, 0x3000), Gap(80, 20)], pieces);
        Assert.True(pieces[0].IsGap);
        Assert.False(pieces[1].IsGap || pieces[1].OnDevice);
        Assert.True(pieces[2].OnDevice);
    }

    [Fact]
    public void Adjacent_rows_that_fill_the_buffer_leave_no_gap()
    {
        var pieces = PiecesOf(30, Device(10, 10, 0x2000), Device(0, 10, 0x1000), Device(20, 10, 0x3000));
        Assert.Equal([Device(0, 10, 0x1000), Device(10, 10, 0x2000), Device(20, 10, 0x3000)], pieces);
        Assert.True(RowCopies.ByKernel(pieces));
        Assert.Equal(3, RowCopies.DeviceRows(pieces));
    }

    [Fact]
    public void Overlapping_rows_are_kept_in_order_with_no_gap_inside_and_are_left_to_copies()
    {
        var pieces = PiecesOf(50, Device(20, 20, 0x2000), Device(0, 30, 0x1000));
        Assert.Equal([Device(0, 30, 0x1000), Device(20, 20, 0x2000), Gap(40, 10)], pieces);
        Assert.False(RowCopies.ByKernel(pieces), "one launch would race on the overlap; copies in order decide it");
    }

    [Fact]
    public void The_kernel_takes_a_buffer_only_with_two_device_rows_or_more()
    {
        Assert.False(RowCopies.ByKernel(PiecesOf(40, Device(0, 10, 0x1000), Host(10, 10, 0x2000))));
        Assert.False(RowCopies.ByKernel(PiecesOf(40, Device(0, 10, 0x1000), Device(10, 0, 0x2000))), "a row of no bytes is no copy");
        Assert.True(RowCopies.ByKernel(PiecesOf(40, Device(0, 10, 0x1000), Host(10, 10, 0x2000), Device(30, 10, 0x3000))));
    }

    [Fact]
    public void Table_entries_hold_source_destination_bytes_and_first_block_and_skip_empty_segments()
    {
        var table = new ulong[3 * KernelSource.SegmentEntryWords];
        var (count, blocks) = (0, 0L);
        var big = (2L * KernelSource.SegmentBlockBytes) + 1;
        RowCopies.Add(table, ref count, ref blocks, 0x1000, 0x9000, big);
        RowCopies.Add(table, ref count, ref blocks, 0x2000, 0xA000, 0);
        RowCopies.Add(table, ref count, ref blocks, 0x3000, 0xB000, 5);
        Assert.Equal(2, count);
        Assert.Equal(4, blocks);
        Assert.Equal([0x1000UL, 0x9000, (ulong)big, 0, 0x3000, 0xB000, 5, 3], table[..8]);
        Assert.Equal(1, RowCopies.BlocksOf(1));
        Assert.Equal(1, RowCopies.BlocksOf(KernelSource.SegmentBlockBytes));
        Assert.Equal(2, RowCopies.BlocksOf(KernelSource.SegmentBlockBytes + 1));
    }

    [Fact]
    public void BATCHWISE_GATHER_is_kernel_by_default_copies_when_asked_and_refused_otherwise_naming_both()
    {
        Assert.True(RowCopies.GatherByKernel(null));
        Assert.True(RowCopies.GatherByKernel(""));
        Assert.True(RowCopies.GatherByKernel(" Kernel "));
        Assert.False(RowCopies.GatherByKernel("copies"));
        var e = Assert.Throws<BatchwiseException>(() => RowCopies.GatherByKernel("fast"));
        Assert.Contains("kernel or copies", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_smallest_in_place_host_row_is_32_KB_unless_set_and_a_bad_setting_is_refused()
    {
        Assert.Equal(32768, RowCopies.HostRowBytes(null));
        Assert.Equal(32768, RowCopies.HostRowBytes(" "));
        Assert.Equal(0, RowCopies.HostRowBytes("0"));
        Assert.Equal(4096, RowCopies.HostRowBytes(" 4096 "));
        foreach (var bad in new[] { "-1", "4k", "1e6" })
        {
            var e = Assert.Throws<BatchwiseException>(() => RowCopies.HostRowBytes(bad));
            Assert.Contains($"BATCHWISE_HOST_ROW_BYTES '{bad}' is not a byte count", e.Message, StringComparison.Ordinal);
        }
    }
}
