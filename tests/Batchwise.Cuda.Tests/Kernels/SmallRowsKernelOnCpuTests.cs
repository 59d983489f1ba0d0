using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Tests.Planning;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Kernels;

/// <summary>
/// The small-row product (<see cref="KernelSource.SmallRows"/>) alone on the CPU through g++, in float32 against a
/// product in double: A and W read at row pitches wider than K, alpha, beta C, the bias and ReLU in cuBLASLt's order.
/// </summary>
public sealed unsafe class SmallRowsKernelOnCpuTests
{
    [Theory]
    [InlineData(7, 13, 72, 80, 76, 4)] // 16-byte loads
    [InlineData(3, 9, 45, 50, 47, 1)] // K odd: one element a load
    [InlineData(1, 5, 300, 300, 300, 4)] // K past one sweep of the warp
    public void Rows_with_alpha_beta_c_bias_and_relu_match_a_reference_product(int m, int n, int k, int lda, int ldw, int vector)
    {
        CpuKernelRunner.Require();
        Assert.Equal(vector, KernelSource.SmallRowsVector(ElementType.Float, k, lda, ldw));
        var random = new Random(7);
        float[] Values(int count) => [.. Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() * 2) - 1))];
        var (a, w, c, bias) = (Values(m * lda), Values(n * ldw), Values(m * n), Values(n));
        const float alpha = 0.8f, beta = 0.6f;
        var y = new float[m * n];
        fixed (float* yp = y, ap = a, wp = w, bp = bias, cp = c)
        {
            CpuKernelRunner.Run(KernelSource.SmallRows(ElementType.Float, bias: true, residual: true, relu: true, m, n, k, lda, ldw, alpha, beta), [(IntPtr)yp, (IntPtr)ap, (IntPtr)wp, (IntPtr)bp, (IntPtr)cp], KernelSource.SmallRowsThreads(n), KernelSource.SmallRowsBlock);
        }

        var negatives = 0;
        for (var r = 0; r < m; r++)
        {
            for (var j = 0; j < n; j++)
            {
                double sum = 0;
                for (var i = 0; i < k; i++)
                {
                    sum += (double)a[(r * lda) + i] * w[(j * ldw) + i];
                }

                var expected = Math.Max(0, (alpha * sum) + (beta * c[(r * n) + j]) + bias[j]);
                negatives += expected == 0 ? 1 : 0;
                Assert.True(Math.Abs(y[(r * n) + j] - expected) <= 1e-4 * Math.Max(1, Math.Abs(expected)), $"y[{r}, {j}] = {y[(r * n) + j]}, expected {expected}");
            }
        }

        Assert.True(negatives > 0, "some outputs are clamped by the ReLU");
    }
}
