using System.Runtime.InteropServices;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Tests.Planning;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Kernels;

/// <summary>
/// The in-place GELU pass over half-precision products (<c>bw_gelu_half</c>: erfc from a Chebyshev fit, relative error under 1.2e-7)
/// against the same pass with erff, run on the CPU through g++ over every half in [-12, 12].
/// </summary>
public sealed unsafe class GeluHalfOnCpuTests
{
    [Fact]
    public void The_half_precision_gelu_rounds_to_the_erff_result_or_its_neighbour_at_every_half()
    {
        CpuKernelRunner.Require();
        var values = new List<ushort>();
        for (var bits = 0; bits <= ushort.MaxValue; bits++)
        {
            var h = BitConverter.UInt16BitsToHalf((ushort)bits);
            if (Half.IsFinite(h) && Math.Abs((double)h) <= 12)
            {
                values.Add((ushort)bits);
            }
        }

        while (values.Count % 8 != 0)
        {
            values.Add(0); // whole 16-byte vectors
        }

        ushort[] Run(string expression)
        {
            var y = (ushort*)NativeMemory.AlignedAlloc((nuint)(values.Count * 2), 64);
            try
            {
                CollectionsMarshal.AsSpan(values).CopyTo(new Span<ushort>(y, values.Count));
                CpuKernelRunner.Run(KernelSource.UnaryInPlace(ElementType.Float16, expression, values.Count), [(IntPtr)y], KernelSource.UnaryInPlaceThreads(ElementType.Float16, values.Count), KernelSource.BlockSize);
                return new Span<ushort>(y, values.Count).ToArray();
            }
            finally
            {
                NativeMemory.AlignedFree(y);
            }
        }

        // Against GELU computed in double and rounded once to half; erff's pass beside it. erff's 1 + erf(x / sqrt 2)
        // cancels in the negative tail (x < -3: a few halves apart), the erfc form does not.
        var (fast, viaErff) = (Run("bw_gelu_half(x0)"), Run("bw_gelu(x0)"));
        var (same, sameErff, worst) = (0, 0, 0);
        for (var i = 0; i < values.Count; i++)
        {
            var x = (double)BitConverter.UInt16BitsToHalf(values[i]);
            var expected = BitConverter.HalfToUInt16Bits((Half)(x * 0.5 * Erfc(-x / Math.Sqrt(2))));
            var apart = Apart(fast[i], expected);
            worst = Math.Max(worst, apart);
            same += apart == 0 ? 1 : 0;
            sameErff += Apart(viaErff[i], expected) == 0 ? 1 : 0;
            Assert.True(apart <= 1, $"x = {x}: {BitConverter.UInt16BitsToHalf(fast[i])} against {BitConverter.UInt16BitsToHalf(expected)}");
        }

        Assert.True(same >= 0.99 * values.Count && same >= sameErff, $"{same} of {values.Count} correctly rounded (erff's pass: {sameErff}; worst {worst} apart)");
    }

    /// <summary>How many halves apart two halves' bit patterns are (of one sign, halves are ordered as their bits).</summary>
    private static int Apart(ushort a, ushort b)
    {
        static int Ordered(ushort h) => (h & 0x8000) != 0 ? -(h & 0x7fff) : h;
        return Math.Abs(Ordered(a) - Ordered(b));
    }

    /// <summary>erfc in double: erf's Taylor series below 2, Laplace's continued fraction from 2 (both to about 1e-14).</summary>
    internal static double Erfc(double z)
    {
        if (z < 0)
        {
            return 2 - Erfc(-z);
        }

        if (z < 2)
        {
            double sum = 0, term = z;
            for (var n = 0; n < 80; n++)
            {
                sum += term / ((2 * n) + 1);
                term *= -z * z / (n + 1);
            }

            return 1 - (2 / Math.Sqrt(Math.PI) * sum);
        }

        var fraction = z;
        for (var n = 120; n >= 1; n--)
        {
            fraction = z + (n / 2.0 / fraction);
        }

        return Math.Exp(-z * z) / (Math.Sqrt(Math.PI) * fraction);
    }
}
