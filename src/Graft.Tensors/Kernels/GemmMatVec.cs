using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
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
        // BF16 rows are read as pairs packed in 32-bit lanes (see Dot4Bf16); x is dealt into the same even/odd order once here.
        bool paired = UseAvx512 && w.Transposed && w.Type == DType.BF16 && k >= Bf16Block;
        float* pairedX = null;
        if (paired)
        {
            pairedX = (float*)NativeMemory.AlignedAlloc((nuint)k * sizeof(float), 64);
            PairEvenOdd(x, k, pairedX);
        }
        try
        {
            int ranges = MatVecRanges(n, k);
            if (ranges == 1)
            {
                MatVecRange(x, pairedX, k, w, 0, n, y, incy, beta);
                return;
            }
            nint xAddress = (nint)x, pairedAddress = (nint)pairedX, yAddress = (nint)y;
            Parallel.For(0, ranges, r =>
            {
                // Boundaries on whole groups of rows, so only the last range has rows left over for the narrower paths.
                int j0 = RangeStart(n, r, ranges), j1 = RangeStart(n, r + 1, ranges);
                MatVecRange((float*)xAddress, (float*)pairedAddress, k, w, j0, j1, (float*)yAddress, incy, beta);
            });
        }
        finally
        {
            if (pairedX != null) NativeMemory.AlignedFree(pairedX);
        }
    }

    /// <summary>
    /// How many ranges the N outputs are split into: one when a single thread streams W faster than two can be woken;
    /// else more ranges than threads, so a thread slowed by a neighbour does not hold up the rest (each range is a
    /// contiguous run of rows, so every thread streams its part of W front to back).
    /// </summary>
    static int MatVecRanges(int n, int k) => (long)n * k < MatVecParallelLimit ? 1 : Environment.ProcessorCount * 4;

    /// <summary>First output of range r of <paramref name="ranges"/>, a multiple of <see cref="Bf16Rows"/> (n for the end).</summary>
    static int RangeStart(int n, int r, int ranges) =>
        r == ranges ? n : (int)((long)n * r / ranges) / Bf16Rows * Bf16Rows;

    /// <summary>BF16 elements per block of the paired layout: one 64-byte load of a row.</summary>
    const int Bf16Block = 32;

    /// <summary>
    /// paired[32b + i] = x[32b + 2i] and paired[32b + 16 + i] = x[32b + 2i + 1] for i &lt; 16 in every whole
    /// block of 32; the elements past the last whole block are copied as they are.
    /// </summary>
    static void PairEvenOdd(float* x, int k, float* paired)
    {
        int p = 0;
        for (; p + Bf16Block <= k; p += Bf16Block)
        {
            for (int i = 0; i < Bf16Block / 2; i++)
            {
                paired[p + i] = x[p + 2 * i];
                paired[p + Bf16Block / 2 + i] = x[p + 2 * i + 1];
            }
        }
        for (; p < k; p++) paired[p] = x[p];
    }

    static void MatVecRange(float* x, float* pairedX, int k, PanelSource w, int j0, int j1, float* y, int incy, float beta)
    {
        if (w.Transposed) DotRows(x, pairedX, k, w, j0, j1, y, incy, beta);
        else AxpyRows(x, k, w, j0, j1, y, incy, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Accumulate(float* y, float value, float beta) => *y = beta == 0f ? value : value + beta * *y;

    /// <summary>
    /// W stored [N,K] (a linear layer's weight): y[j] = dot(x, W[j,:]), four rows per pass sharing each load of x.
    /// <paramref name="pairedX"/> is x in the paired order for BF16 rows (null when not used).
    /// </summary>
    static void DotRows(float* x, float* pairedX, int k, PanelSource w, int j0, int j1, float* y, int incy, float beta)
    {
        int j = j0;
        if (UseAvx512 && pairedX != null)
        {
            for (; j + Bf16Rows <= j1; j += Bf16Rows)
            {
                var sums = Dot8Bf16(pairedX, k, w, j);
                if (beta == 0f && incy == 1) sums.Store(y + j);
                else
                    for (int i = 0; i < Bf16Rows; i++) Accumulate(y + (long)(j + i) * incy, sums.GetElement(i), beta);
            }
        }
        if (UseAvx512 && (w.Type == DType.F32 || pairedX != null))
        {
            for (; j + 4 <= j1; j += 4)
            {
                var (d0, d1, d2, d3) = w.Type == DType.F32
                    ? Dot4F32(x, k, (float*)w.Address(j, 0), (float*)w.Address(j + 1, 0), (float*)w.Address(j + 2, 0), (float*)w.Address(j + 3, 0))
                    : Dot4Bf16(pairedX, k, (ushort*)w.Address(j, 0), (ushort*)w.Address(j + 1, 0), (ushort*)w.Address(j + 2, 0), (ushort*)w.Address(j + 3, 0));
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
        return (TailF32(Sum(s0), x, r0, p, k), TailF32(Sum(s1), x, r1, p, k), TailF32(Sum(s2), x, r2, p, k), TailF32(Sum(s3), x, r3, p, k));
    }

    /// <summary>sum + x[p]·r[p] for the elements from p past the last whole vector, in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float TailF32(float sum, float* x, float* r, int p, int k)
    {
        for (; p < k; p++) sum += x[p] * r[p];
        return sum;
    }

    /// <summary>
    /// As <see cref="Dot4F32"/> with BF16 rows. A 64-byte load holds 32 elements as 16 pairs in 32-bit lanes:
    /// shifting a lane left 16 gives the even element as a float, masking off its low half the odd one. So
    /// each block costs one load, one shift, one and, two FMAs per row, against x dealt into the same
    /// order (<see cref="PairEvenOdd"/>); widening 16 at a time costs a port-5 conversion more per 16.
    /// </summary>
    static (float, float, float, float) Dot4Bf16(float* pairedX, int k, ushort* r0, ushort* r1, ushort* r2, ushort* r3)
    {
        var high = Vector512.Create(0xFFFF0000u);
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        Vector512<float> t0 = default, t1 = default, t2 = default, t3 = default;
        int p = 0;
        for (; p + Bf16Block <= k; p += Bf16Block)
        {
            var even = Avx512F.LoadVector512(pairedX + p);
            var odd = Avx512F.LoadVector512(pairedX + p + Bf16Block / 2);
            var w0 = Avx512F.LoadVector512((uint*)(r0 + p));
            var w1 = Avx512F.LoadVector512((uint*)(r1 + p));
            var w2 = Avx512F.LoadVector512((uint*)(r2 + p));
            var w3 = Avx512F.LoadVector512((uint*)(r3 + p));
            s0 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(w0, 16).AsSingle(), even, s0);
            s1 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(w1, 16).AsSingle(), even, s1);
            s2 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(w2, 16).AsSingle(), even, s2);
            s3 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(w3, 16).AsSingle(), even, s3);
            t0 = Avx512F.FusedMultiplyAdd(Avx512F.And(w0, high).AsSingle(), odd, t0);
            t1 = Avx512F.FusedMultiplyAdd(Avx512F.And(w1, high).AsSingle(), odd, t1);
            t2 = Avx512F.FusedMultiplyAdd(Avx512F.And(w2, high).AsSingle(), odd, t2);
            t3 = Avx512F.FusedMultiplyAdd(Avx512F.And(w3, high).AsSingle(), odd, t3);
        }
        float d0 = Sum(s0 + t0), d1 = Sum(s1 + t1), d2 = Sum(s2 + t2), d3 = Sum(s3 + t3);
        // Past the last whole block the paired x holds x's own elements.
        for (; p < k; p++)
        {
            float xp = pairedX[p];
            d0 += xp * HalfConvert.Bf16ToFloat(r0[p]); d1 += xp * HalfConvert.Bf16ToFloat(r1[p]);
            d2 += xp * HalfConvert.Bf16ToFloat(r2[p]); d3 += xp * HalfConvert.Bf16ToFloat(r3[p]);
        }
        return (d0, d1, d2, d3);
    }

    /// <summary>BF16 rows per pass of <see cref="Dot8Bf16"/>.</summary>
    const int Bf16Rows = 8;

    /// <summary>
    /// dot(x, W[j+i,:]) for i &lt; 8, as <see cref="Dot4Bf16"/> but eight rows per pass. Streaming BF16 is bound by
    /// how many lines are in flight, not by arithmetic: eight rows keep eight independent load streams and
    /// accumulator chains going, each row is reduced only once at the end (all eight together), and every
    /// step prefetches the same columns of the next eight rows so their lines arrive while this group is summed
    /// (measured under load: four rows without prefetch reached ~70% of the read ceiling, this ~95%).
    /// </summary>
    static Vector256<float> Dot8Bf16(float* pairedX, int k, PanelSource w, int j)
    {
        var high = Vector512.Create(0xFFFF0000u);
        ushort* r0 = (ushort*)w.Address(j, 0), r1 = (ushort*)w.Address(j + 1, 0), r2 = (ushort*)w.Address(j + 2, 0), r3 = (ushort*)w.Address(j + 3, 0);
        ushort* r4 = (ushort*)w.Address(j + 4, 0), r5 = (ushort*)w.Address(j + 5, 0), r6 = (ushort*)w.Address(j + 6, 0), r7 = (ushort*)w.Address(j + 7, 0);
        // Prefetch is a hint: past the end of W it neither faults nor reads anything the result depends on.
        long ahead = (long)Bf16Rows * w.Ld;
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        int p = 0;
        for (; p + Bf16Block <= k; p += Bf16Block)
        {
            Sse.Prefetch0(r0 + ahead + p); Sse.Prefetch0(r1 + ahead + p); Sse.Prefetch0(r2 + ahead + p); Sse.Prefetch0(r3 + ahead + p);
            Sse.Prefetch0(r4 + ahead + p); Sse.Prefetch0(r5 + ahead + p); Sse.Prefetch0(r6 + ahead + p); Sse.Prefetch0(r7 + ahead + p);
            var even = Avx512F.LoadVector512(pairedX + p);
            var odd = Avx512F.LoadVector512(pairedX + p + Bf16Block / 2);
            s0 = PairedStep(Avx512F.LoadVector512((uint*)(r0 + p)), even, odd, high, s0);
            s1 = PairedStep(Avx512F.LoadVector512((uint*)(r1 + p)), even, odd, high, s1);
            s2 = PairedStep(Avx512F.LoadVector512((uint*)(r2 + p)), even, odd, high, s2);
            s3 = PairedStep(Avx512F.LoadVector512((uint*)(r3 + p)), even, odd, high, s3);
            s4 = PairedStep(Avx512F.LoadVector512((uint*)(r4 + p)), even, odd, high, s4);
            s5 = PairedStep(Avx512F.LoadVector512((uint*)(r5 + p)), even, odd, high, s5);
            s6 = PairedStep(Avx512F.LoadVector512((uint*)(r6 + p)), even, odd, high, s6);
            s7 = PairedStep(Avx512F.LoadVector512((uint*)(r7 + p)), even, odd, high, s7);
        }
        var sums = Sum8(s0, s1, s2, s3, s4, s5, s6, s7);
        return p == k ? sums : sums + Bf16Tail8(pairedX, p, k, w, j);
    }

    /// <summary>Σ x[p]·W[j+i, p] for i &lt; 8 over the elements from p past the last whole block, where the paired x holds x's own elements.</summary>
    static Vector256<float> Bf16Tail8(float* pairedX, int p, int k, PanelSource w, int j)
    {
        ushort* r0 = (ushort*)w.Address(j, 0), r1 = (ushort*)w.Address(j + 1, 0), r2 = (ushort*)w.Address(j + 2, 0), r3 = (ushort*)w.Address(j + 3, 0);
        ushort* r4 = (ushort*)w.Address(j + 4, 0), r5 = (ushort*)w.Address(j + 5, 0), r6 = (ushort*)w.Address(j + 6, 0), r7 = (ushort*)w.Address(j + 7, 0);
        float t0 = 0f, t1 = 0f, t2 = 0f, t3 = 0f, t4 = 0f, t5 = 0f, t6 = 0f, t7 = 0f;
        for (; p < k; p++)
        {
            float xp = pairedX[p];
            t0 += xp * HalfConvert.Bf16ToFloat(r0[p]); t1 += xp * HalfConvert.Bf16ToFloat(r1[p]);
            t2 += xp * HalfConvert.Bf16ToFloat(r2[p]); t3 += xp * HalfConvert.Bf16ToFloat(r3[p]);
            t4 += xp * HalfConvert.Bf16ToFloat(r4[p]); t5 += xp * HalfConvert.Bf16ToFloat(r5[p]);
            t6 += xp * HalfConvert.Bf16ToFloat(r6[p]); t7 += xp * HalfConvert.Bf16ToFloat(r7[p]);
        }
        return Vector256.Create(t0, t1, t2, t3, t4, t5, t6, t7);
    }

    /// <summary>s + (even elements of w) · even + (odd elements of w) · odd, w holding 16 BF16 pairs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> PairedStep(Vector512<uint> w, Vector512<float> even, Vector512<float> odd, Vector512<uint> high, Vector512<float> s) =>
        Avx512F.FusedMultiplyAdd(Avx512F.And(w, high).AsSingle(), odd,
            Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(w, 16).AsSingle(), even, s));

    /// <summary>[Σ a0, …, Σ a7]: halves added, then three rounds of pairwise adds that transpose as they reduce.</summary>
    static Vector256<float> Sum8(Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3,
        Vector512<float> a4, Vector512<float> a5, Vector512<float> a6, Vector512<float> a7)
    {
        var v0 = a0.GetLower() + a0.GetUpper(); var v1 = a1.GetLower() + a1.GetUpper();
        var v2 = a2.GetLower() + a2.GetUpper(); var v3 = a3.GetLower() + a3.GetUpper();
        var v4 = a4.GetLower() + a4.GetUpper(); var v5 = a5.GetLower() + a5.GetUpper();
        var v6 = a6.GetLower() + a6.GetUpper(); var v7 = a7.GetLower() + a7.GetUpper();
        // Each 128-bit half of u0 holds partial sums of rows 0-3 (low half: elements 0-3 of each, high: 4-7); u1 rows 4-7.
        var u0 = Avx.HorizontalAdd(Avx.HorizontalAdd(v0, v1), Avx.HorizontalAdd(v2, v3));
        var u1 = Avx.HorizontalAdd(Avx.HorizontalAdd(v4, v5), Avx.HorizontalAdd(v6, v7));
        return Avx.Permute2x128(u0, u1, 0x20) + Avx.Permute2x128(u0, u1, 0x31);
    }

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
