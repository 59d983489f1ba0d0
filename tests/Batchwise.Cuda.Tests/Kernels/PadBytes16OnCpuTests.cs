using System.Runtime.InteropServices;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Tests.Planning;

namespace Batchwise.Cuda.Tests.Kernels;

/// <summary>The 16-bytes-per-thread constant pad (<see cref="KernelSource.PadBytes16"/>) run on the CPU through g++.</summary>
public sealed unsafe class PadBytes16OnCpuTests
{
    [Theory]
    [InlineData(2, 5, 7, 64, 1, 1)]
    [InlineData(1, 6, 6, 32, 1, 1)]
    [InlineData(3, 4, 9, 16, 2, 0)]
    public void An_int8_channels_last_input_is_copied_inside_and_filled_with_the_stored_zero_around(int n, int h, int w, int c, int padH, int padW)
    {
        CpuKernelRunner.Require();
        long[] inShape = [n, h, w, c], outShape = [n, h + (2 * padH), w + (2 * padW), c], pads = [0, padH, padW, 0];
        Assert.True(KernelSource.CanPadBytes16(inShape, outShape, pads));
        var inBytes = n * h * w * c;
        var outBytes = n * outShape[1] * outShape[2] * c;
        var x = (byte*)NativeMemory.AlignedAlloc((nuint)inBytes, 64);
        var y = (byte*)NativeMemory.AlignedAlloc((nuint)outBytes, 64);
        try
        {
            new Random(5).NextBytes(new Span<byte>(x, inBytes));
            new Span<byte>(y, (int)outBytes).Fill(0x11);
            const byte fill = 0x80; // a uint8 zero point of 0 stored as int8 -128
            CpuKernelRunner.Run(KernelSource.PadBytes16(inShape, outShape, pads, fill), [(IntPtr)y, (IntPtr)x], outBytes / 16, 256);

            var expected = new byte[outBytes];
            for (var b = 0; b < n; b++)
            {
                for (var i = 0; i < outShape[1]; i++)
                {
                    for (var j = 0; j < outShape[2]; j++)
                    {
                        var (si, sj) = (i - padH, j - padW);
                        var inside = si >= 0 && si < h && sj >= 0 && sj < w;
                        for (var k = 0; k < c; k++)
                        {
                            expected[(((b * outShape[1]) + i) * outShape[2] + j) * c + k] = inside ? x[(((b * h) + si) * w + sj) * c + k] : fill;
                        }
                    }
                }
            }

            var actual = new ReadOnlySpan<byte>(y, (int)outBytes);
            var same = actual.CommonPrefixLength(expected);
            Assert.True(same == outBytes, $"byte {same} differs: {(same < outBytes ? actual[same] : 0)} where {(same < outBytes ? expected[same] : 0)} was expected");
        }
        finally
        {
            NativeMemory.AlignedFree(x);
            NativeMemory.AlignedFree(y);
        }
    }

    [Fact]
    public void Only_an_unpadded_last_axis_of_whole_16_byte_groups_takes_the_wide_pad()
    {
        Assert.False(KernelSource.CanPadBytes16([1, 4, 4, 24], [1, 6, 6, 24], [0, 1, 1, 0]));
        Assert.False(KernelSource.CanPadBytes16([1, 4, 4, 32], [1, 6, 6, 48], [0, 1, 1, 8]));
        Assert.False(KernelSource.CanPadBytes16([1, 4, 4, 32], [1, 6, 6, 32], [0, 1, 1]));
        Assert.True(KernelSource.CanPadBytes16([1, 4, 4, 32], [1, 6, 6, 32], [0, 1, 1, 0]));
    }
}
