using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Graft.Tensors.Kernels;

/// <summary>
/// Matrix-vector products, the decode case: y[N] = x[K] · W where W is read once, so the speed limit is
/// memory bandwidth. Threads take disjoint ranges of outputs; each streams its rows of W exactly once.
/// </summary>
public static unsafe partial class Gemm
{
    /// <summary>Below this many weight elements one thread streams the weight faster than two can be woken.</summary>
    const long MatVecParallelLimit = 1L << 16;
    /// <summary>Columns of a W[K,N] handled per pass (accumulators stay in L1).</summary>
    const int AxpyColumns = 1024;

    /// <summary>y[j·incy] = Σ_p x[p] · W(p, j) + beta · y[j·incy], with W the logical [K,N] matrix.</summary>
    static void MatVec(float* x, int k, PanelSource w, int n, float* y, int incy, float beta)
    {
        int threads = (long)n * k < MatVecParallelLimit ? 1 : Environment.ProcessorCount;
        if (threads == 1)
        {
            MatVecRange(x, k, w, 0, n, y, incy, beta);
            return;
        }
        // More ranges than threads so a thread slowed by a neighbour does not hold up the rest.
        int ranges = threads * 4;
        nint xAddress = (nint)x, yAddress = (nint)y;
        Parallel.For(0, ranges, r =>
        {
            int j0 = (int)((long)n * r / ranges), j1 = (int)((long)n * (r + 1) / ranges);
            MatVecRange((float*)xAddress, k, w, j0, j1, (float*)yAddress, incy, beta);
        });
    }

    static void MatVecRange(float* x, int k, PanelSource w, int j0, int j1, float* y, int incy, float beta)
    {
        if (w.Transposed) DotRows(x, k, w, j0, j1, y, incy, beta);
        else AxpyRows(x, k, w, j0, j1, y, incy, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Accumulate(float* y, float value, float beta) => *y = beta == 0f ? value : value + beta * *y;

    /// <summary>W stored [N,K] (a linear layer's weight): y[j] = dot(x, W[j,:]), four rows per pass sharing each load of x.</summary>
    static void DotRows(float* x, int k, PanelSource w, int j0, int j1, float* y, int incy, float beta)
    {
        int j = j0;
        if (UseAvx512 && w.Type != DType.F16)
        {
            for (; j + 4 <= j1; j += 4)
            {
                var (d0, d1, d2, d3) = w.Type == DType.F32
                    ? Dot4F32(x, k, (float*)w.Address(j, 0), (float*)w.Address(j + 1, 0), (float*)w.Address(j + 2, 0), (float*)w.Address(j + 3, 0))
                    : Dot4Bf16(x, k, (ushort*)w.Address(j, 0), (ushort*)w.Address(j + 1, 0), (ushort*)w.Address(j + 2, 0), (ushort*)w.Address(j + 3, 0));
                Accumulate(y + (long)j * incy, d0, beta);
                Accumulate(y + (long)(j + 1) * incy, d1, beta);
                Accumulate(y + (long)(j + 2) * incy, d2, beta);
                Accumulate(y + (long)(j + 3) * incy, d3, beta);
            }
        }
        if (j >= j1) return;
        const int chunk = 1024;
        float* widened = stackalloc float[chunk];
        var xs = new ReadOnlySpan<float>(x, k);
        for (; j < j1; j++)
        {
            float sum = 0f;
            if (w.Type == DType.F32)
                sum = TensorPrimitives.Dot(xs, new ReadOnlySpan<float>(w.Address(j, 0), k));
            else
            {
                for (int p = 0; p < k; p += chunk)
                {
                    int count = Math.Min(chunk, k - p);
                    w.ReadContiguous(w.Address(j, p), count, widened);
                    sum += TensorPrimitives.Dot(xs.Slice(p, count), new ReadOnlySpan<float>(widened, count));
                }
            }
            Accumulate(y + (long)j * incy, sum, beta);
        }
    }

    static (float, float, float, float) Dot4F32(float* x, int k, float* r0, float* r1, float* r2, float* r3)
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        int p = 0;
        for (; p + 16 <= k; p += 16)
        {
            var xv = Avx512F.LoadVector512(x + p);
            s0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(r0 + p), xv, s0);
            s1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(r1 + p), xv, s1);
            s2 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(r2 + p), xv, s2);
            s3 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(r3 + p), xv, s3);
        }
        float d0 = Sum(s0), d1 = Sum(s1), d2 = Sum(s2), d3 = Sum(s3);
        for (; p < k; p++)
        {
            d0 += x[p] * r0[p]; d1 += x[p] * r1[p]; d2 += x[p] * r2[p]; d3 += x[p] * r3[p];
        }
        return (d0, d1, d2, d3);
    }

    /// <summary>As <see cref="Dot4F32"/> with BF16 rows, widened in registers: zero-extend to 32 bits, shift left 16.</summary>
    static (float, float, float, float) Dot4Bf16(float* x, int k, ushort* r0, ushort* r1, ushort* r2, ushort* r3)
    {
        // 32 elements (one cache line) per row per pass, in two chains per row so the FMAs overlap.
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        Vector512<float> t0 = default, t1 = default, t2 = default, t3 = default;
        int p = 0;
        for (; p + 32 <= k; p += 32)
        {
            var xv = Avx512F.LoadVector512(x + p);
            var xw = Avx512F.LoadVector512(x + p + 16);
            s0 = Avx512F.FusedMultiplyAdd(WidenBf16(r0 + p), xv, s0);
            s1 = Avx512F.FusedMultiplyAdd(WidenBf16(r1 + p), xv, s1);
            s2 = Avx512F.FusedMultiplyAdd(WidenBf16(r2 + p), xv, s2);
            s3 = Avx512F.FusedMultiplyAdd(WidenBf16(r3 + p), xv, s3);
            t0 = Avx512F.FusedMultiplyAdd(WidenBf16(r0 + p + 16), xw, t0);
            t1 = Avx512F.FusedMultiplyAdd(WidenBf16(r1 + p + 16), xw, t1);
            t2 = Avx512F.FusedMultiplyAdd(WidenBf16(r2 + p + 16), xw, t2);
            t3 = Avx512F.FusedMultiplyAdd(WidenBf16(r3 + p + 16), xw, t3);
        }
        for (; p + 16 <= k; p += 16)
        {
            var xv = Avx512F.LoadVector512(x + p);
            s0 = Avx512F.FusedMultiplyAdd(WidenBf16(r0 + p), xv, s0);
            s1 = Avx512F.FusedMultiplyAdd(WidenBf16(r1 + p), xv, s1);
            s2 = Avx512F.FusedMultiplyAdd(WidenBf16(r2 + p), xv, s2);
            s3 = Avx512F.FusedMultiplyAdd(WidenBf16(r3 + p), xv, s3);
        }
        float d0 = Sum(s0 + t0), d1 = Sum(s1 + t1), d2 = Sum(s2 + t2), d3 = Sum(s3 + t3);
        for (; p < k; p++)
        {
            d0 += x[p] * HalfConvert.Bf16ToFloat(r0[p]); d1 += x[p] * HalfConvert.Bf16ToFloat(r1[p]);
            d2 += x[p] * HalfConvert.Bf16ToFloat(r2[p]); d3 += x[p] * HalfConvert.Bf16ToFloat(r3[p]);
        }
        return (d0, d1, d2, d3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> WidenBf16(ushort* source) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Avx.LoadVector256(source)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Sum(Vector512<float> v) => Vector256.Sum(v.GetLower() + v.GetUpper());

    /// <summary>W stored [K,N]: y[j0:j1] = Σ_p x[p] · W[p, j0:j1], a block of columns at a time with the sums in L1.</summary>
    static void AxpyRows(float* x, int k, PanelSource w, int j0, int j1, float* y, int incy, float beta)
    {
        float* sums = stackalloc float[AxpyColumns];
        float* widened = stackalloc float[AxpyColumns];
        for (int jc = j0; jc < j1; jc += AxpyColumns)
        {
            int cols = Math.Min(AxpyColumns, j1 - jc);
            var acc = new Span<float>(sums, cols);
            acc.Clear();
            for (int p = 0; p < k; p++)
            {
                ReadOnlySpan<float> row;
                if (w.Type == DType.F32) row = new ReadOnlySpan<float>(w.Address(p, jc), cols);
                else
                {
                    w.ReadContiguous(w.Address(p, jc), cols, widened);
                    row = new ReadOnlySpan<float>(widened, cols);
                }
                TensorPrimitives.MultiplyAdd(row, x[p], acc, acc);
            }
            for (int j = 0; j < cols; j++) Accumulate(y + (long)(jc + j) * incy, sums[j], beta);
        }
    }
}
