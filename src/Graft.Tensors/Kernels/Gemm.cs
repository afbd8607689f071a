namespace Graft.Tensors.Kernels;

/// <summary>
/// Matrix products, row-major. C[m,n] = op(A)[m,k] · op(B)[k,n] + beta · C, where op transposes when asked.
/// Leading dimensions are the row strides of the stored matrices.
/// </summary>
public static class Gemm
{
    public static void Multiply(bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, float beta = 0f)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float sum = 0;
                for (int p = 0; p < k; p++)
                    sum += (transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j]);
                c[i * ldc + j] = beta == 0f ? sum : sum + beta * c[i * ldc + j];
            }
        }
    }

    /// <summary>As <see cref="Multiply"/> with B stored as F16 or BF16 bits, read in place.</summary>
    public static void MultiplyHalf(DType bType, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<ushort> b, int ldb, Span<float> c, int ldc, float beta = 0f)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float sum = 0;
                for (int p = 0; p < k; p++)
                {
                    ushort bits = transB ? b[j * ldb + p] : b[p * ldb + j];
                    sum += a[i * lda + p] * (bType == DType.BF16 ? HalfConvert.Bf16ToFloat(bits) : HalfConvert.F16ToFloat(bits));
                }
                c[i * ldc + j] = beta == 0f ? sum : sum + beta * c[i * ldc + j];
            }
        }
    }
}
