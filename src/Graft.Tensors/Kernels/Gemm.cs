using System.Runtime.InteropServices;

namespace Graft.Tensors.Kernels;

/// <summary>
/// Matrix products, row-major. C[m,n] = op(A)[m,k] · op(B)[k,n] + beta · C, where op transposes when asked.
/// Leading dimensions are the row strides of the stored matrices. When beta is 0, C is not read.
/// </summary>
/// <remarks>
/// Routes each call to one of three paths: a direct loop for tiny products, a matrix-vector path for
/// m = 1 or n = 1 (the decode case, bound by how fast the weight streams from memory), and a packed,
/// register-blocked, multithreaded GEMM for everything else (GemmPacked.cs).
/// </remarks>
public static unsafe partial class Gemm
{
    /// <summary>Below this many multiply-adds, packing costs more than it saves.</summary>
    const long DirectProductLimit = 8 * 1024;

    public static void Multiply(bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, float beta = 0f)
    {
        CheckDims(m, n, k);
        CheckMatrix(nameof(a), a.Length, transA ? k : m, transA ? m : k, lda, nameof(lda));
        CheckMatrix(nameof(b), b.Length, transB ? n : k, transB ? k : n, ldb, nameof(ldb));
        CheckMatrix(nameof(c), c.Length, m, n, ldc, nameof(ldc));
        if (m == 0 || n == 0) return;
        fixed (float* pa = a, pb = b, pc = c)
        {
            if (k == 0) { ScaleC(m, n, pc, ldc, beta); return; }
            var bSource = new PanelSource(pb, ldb, transB, DType.F32);
            if (m == 1)
            {
                // c[1,N] = op(A)[1,K] · op(B): the row of A is the vector, B the streamed weight.
                using var x = new ContiguousVector(pa, k, transA ? lda : 1);
                MatVec(x.Pointer, k, bSource, n, pc, 1, beta);
            }
            else if (n == 1)
            {
                // c[M,1] = op(A) · op(B)[K,1] is the same product transposed: the column of B is the vector.
                using var x = new ContiguousVector(pb, k, transB ? 1 : ldb);
                MatVec(x.Pointer, k, new PanelSource(pa, lda, !transA, DType.F32), m, pc, ldc, beta);
            }
            else if ((long)m * n * k <= DirectProductLimit)
                Direct(m, n, k, new PanelSource(pa, lda, transA, DType.F32), bSource, pc, ldc, beta);
            else
                Packed(m, n, k, pa, lda, transA, bSource, pc, ldc, beta);
        }
    }

    /// <summary>As <see cref="Multiply"/> with B stored as F16 or BF16 bits, read in place (widened a panel at a time).</summary>
    public static void MultiplyHalf(DType bType, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<ushort> b, int ldb, Span<float> c, int ldc, float beta = 0f)
    {
        if (!bType.IsHalf()) throw new ArgumentException($"B must be stored as BF16 or F16 bits, not {bType}", nameof(bType));
        CheckDims(m, n, k);
        CheckMatrix(nameof(a), a.Length, m, k, lda, nameof(lda));
        CheckMatrix(nameof(b), b.Length, transB ? n : k, transB ? k : n, ldb, nameof(ldb));
        CheckMatrix(nameof(c), c.Length, m, n, ldc, nameof(ldc));
        if (m == 0 || n == 0) return;
        fixed (float* pa = a, pc = c)
        fixed (ushort* pb = b)
        {
            if (k == 0) { ScaleC(m, n, pc, ldc, beta); return; }
            var bSource = new PanelSource(pb, ldb, transB, bType);
            if (m == 1)
                MatVec(pa, k, bSource, n, pc, 1, beta);
            else if (n == 1)
            {
                using var x = new ContiguousVector(k);
                for (int p = 0; p < k; p++) x.Pointer[p] = bSource.At(p, 0);
                MatVec(x.Pointer, k, new PanelSource(pa, lda, true, DType.F32), m, pc, ldc, beta);
            }
            else if ((long)m * n * k <= DirectProductLimit)
                Direct(m, n, k, new PanelSource(pa, lda, false, DType.F32), bSource, pc, ldc, beta);
            else
                Packed(m, n, k, pa, lda, false, bSource, pc, ldc, beta);
        }
    }

    static void CheckDims(int m, int n, int k)
    {
        if (m < 0) throw new ArgumentOutOfRangeException(nameof(m), m, "rows of C must not be negative");
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, "columns of C must not be negative");
        if (k < 0) throw new ArgumentOutOfRangeException(nameof(k), k, "inner dimension must not be negative");
    }

    /// <summary>A stored matrix of rows x cols with row stride ld must fit in its span.</summary>
    static void CheckMatrix(string name, int length, int rows, int cols, int ld, string ldName)
    {
        if (ld < cols)
            throw new ArgumentException($"{ldName} = {ld} is smaller than the {cols} columns stored per row of {name}", ldName);
        if (rows == 0 || cols == 0) return;
        long needed = (long)(rows - 1) * ld + cols;
        if (length < needed)
            throw new ArgumentException(
                $"{name} holds {length} elements but a stored {rows}x{cols} matrix with leading dimension {ld} needs {needed}", name);
    }

    static void ScaleC(int m, int n, float* c, int ldc, float beta)
    {
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (long)i * ldc, n);
            if (beta == 0f) row.Clear();
            else if (beta != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
        }
    }

    /// <summary>Tiny products: plain loops beat any packing.</summary>
    static void Direct(int m, int n, int k, PanelSource a, PanelSource b, float* c, int ldc, float beta)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float sum = 0;
                for (int p = 0; p < k; p++) sum += a.At(i, p) * b.At(p, j);
                float* cij = c + (long)i * ldc + j;
                *cij = beta == 0f ? sum : sum + beta * *cij;
            }
        }
    }

    /// <summary>A vector of k floats in a contiguous buffer: the source itself when already contiguous, else a gathered copy.</summary>
    readonly struct ContiguousVector : IDisposable
    {
        public readonly float* Pointer;
        readonly bool owned;

        public ContiguousVector(int k)
        {
            Pointer = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(k, 1) * sizeof(float), 64);
            owned = true;
        }

        public ContiguousVector(float* source, int k, int stride)
        {
            if (stride == 1) { Pointer = source; owned = false; return; }
            this = new ContiguousVector(k);
            for (int p = 0; p < k; p++) Pointer[p] = source[(long)p * stride];
        }

        public void Dispose()
        {
            if (owned) NativeMemory.AlignedFree(Pointer);
        }
    }
}
