using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Graft.Tensors.Kernels;

/// <summary>
/// Batched decoding: Y[b, :] = X[b, :] · Wᵀ for B rows of X (one token of each sequence) against a weight W stored
/// [N, K], with W streamed from memory once for all B rows instead of once per row. Row b's result is bit-identical
/// to the matrix-vector product of that row alone (<see cref="MatVec"/>): the outputs are split into the same ranges
/// and take the same path (8-output BF16 groups, 4-output groups, single outputs), and every (row, output) pair sees
/// the same chain of fused multiply-adds and the same reduction. Only the order in which pairs are computed changes:
/// four rows of X share each load of W, so a row's result never depends on the other rows.
/// </summary>
public static unsafe partial class Gemm
{
    /// <summary>Rows of X that share each load of W in the register-blocked kernels (4 x 4 accumulators).</summary>
    const int SharedRows = 4;

    /// <summary>Y[B, N] = X[B, K] · Wᵀ with W float32 [N, K]; each row as <see cref="Multiply"/> gives it for that row alone.</summary>
    public static void MultiplyRows(int rows, int n, int k, ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y)
    {
        CheckRows(rows, n, k, x.Length, w.Length, y.Length);
        if (rows == 0 || n == 0) return;
        if (k == 0) { y[..(rows * n)].Clear(); return; }
        fixed (float* px = x, pw = w, py = y) MatVecRows(px, rows, k, new PanelSource(pw, k, true, DType.F32), n, py);
    }

    /// <summary>As <see cref="MultiplyRows"/> with W stored as BF16 or F16 bits; each row as <see cref="MultiplyHalf"/> gives it alone.</summary>
    public static void MultiplyRowsHalf(DType wType, int rows, int n, int k, ReadOnlySpan<float> x, ReadOnlySpan<ushort> w, Span<float> y)
    {
        if (!wType.IsHalf()) throw new ArgumentException($"W must be stored as BF16 or F16 bits, not {wType}", nameof(wType));
        CheckRows(rows, n, k, x.Length, w.Length, y.Length);
        if (rows == 0 || n == 0) return;
        if (k == 0) { y[..(rows * n)].Clear(); return; }
        fixed (float* px = x, py = y)
        fixed (ushort* pw = w)
            MatVecRows(px, rows, k, new PanelSource(pw, k, true, wType), n, py);
    }

    static void CheckRows(int rows, int n, int k, int xLength, int wLength, int yLength)
    {
        CheckDims(rows, n, k);
        if (xLength < (long)rows * k) throw new ArgumentException($"x holds {xLength} elements, fewer than {rows} rows of {k}", "x");
        if (wLength < (long)n * k) throw new ArgumentException($"w holds {wLength} elements, fewer than {n} rows of {k}", "w");
        if (yLength < (long)rows * n) throw new ArgumentException($"y holds {yLength} elements, fewer than {rows} rows of {n}", "y");
    }

    static void MatVecRows(float* x, int rows, int k, PanelSource w, int n, float* y)
    {
        // The same paired order of x as MatVec deals, one copy per row.
        bool paired = UseAvx512 && w.Type == DType.BF16 && k >= Bf16Block;
        float* pairedX = null;
        if (paired)
        {
            pairedX = (float*)NativeMemory.AlignedAlloc((nuint)rows * (nuint)k * sizeof(float), 64);
            for (int b = 0; b < rows; b++) PairEvenOdd(x + (long)b * k, k, pairedX + (long)b * k);
        }
        try
        {
            int ranges = MatVecRanges(n, k);
            if (ranges == 1)
            {
                RowsRange(x, pairedX, rows, k, w, 0, n, y, n);
                return;
            }
            nint xAddress = (nint)x, pairedAddress = (nint)pairedX, yAddress = (nint)y;
            Parallel.For(0, ranges, r =>
                RowsRange((float*)xAddress, (float*)pairedAddress, rows, k, w, RangeStart(n, r, ranges), RangeStart(n, r + 1, ranges), (float*)yAddress, n));
        }
        finally
        {
            if (pairedX != null) NativeMemory.AlignedFree(pairedX);
        }
    }

    /// <summary>Outputs j0..j1 of every row, grouped exactly as <see cref="DotRows"/> groups them for one row.</summary>
    static void RowsRange(float* x, float* pairedX, int rows, int k, PanelSource w, int j0, int j1, float* y, int n)
    {
        int j = j0;
        if (UseAvx512 && pairedX != null)
            for (; j + Bf16Rows <= j1; j += Bf16Rows) Rows8Bf16(pairedX, rows, k, w, j, y, n);
        if (UseAvx512 && (w.Type == DType.F32 || pairedX != null))
        {
            for (; j + 4 <= j1; j += 4)
            {
                for (int b = 0; b < rows; b++)
                {
                    if (w.Type == DType.F32 && b + SharedRows <= rows)
                    {
                        Dot4x4F32(x + (long)b * k, k, w, j, y + (long)b * n + j, n);
                        b += SharedRows - 1;
                        continue;
                    }
                    var (d0, d1, d2, d3) = w.Type == DType.F32
                        ? Dot4F32(x + (long)b * k, k, (float*)w.Address(j, 0), (float*)w.Address(j + 1, 0), (float*)w.Address(j + 2, 0), (float*)w.Address(j + 3, 0))
                        : Dot4Bf16(pairedX + (long)b * k, k, (ushort*)w.Address(j, 0), (ushort*)w.Address(j + 1, 0), (ushort*)w.Address(j + 2, 0), (ushort*)w.Address(j + 3, 0));
                    float* yb = y + (long)b * n + j;
                    yb[0] = d0; yb[1] = d1; yb[2] = d2; yb[3] = d3;
                }
            }
        }
        if (j < j1) SingleOutputs(x, rows, k, w, j, j1, y, n);
    }

    /// <summary>
    /// The outputs past the groups (every output for F16, or without AVX-512), one at a time as the tail of
    /// <see cref="DotRows"/> computes them: a whole-row dot for F32, else a sum of dots over widened chunks, each chunk
    /// widened once for all rows of x.
    /// </summary>
    static void SingleOutputs(float* x, int rows, int k, PanelSource w, int j0, int j1, float* y, int n)
    {
        const int chunk = 1024;
        float* widened = stackalloc float[chunk];
        for (int j = j0; j < j1; j++)
        {
            if (w.Type == DType.F32)
            {
                var row = new ReadOnlySpan<float>(w.Address(j, 0), k);
                for (int b = 0; b < rows; b++) y[(long)b * n + j] = TensorPrimitives.Dot(new ReadOnlySpan<float>(x + (long)b * k, k), row);
                continue;
            }
            for (int b = 0; b < rows; b++) y[(long)b * n + j] = 0f;
            for (int p = 0; p < k; p += chunk)
            {
                int count = Math.Min(chunk, k - p);
                w.ReadContiguous(w.Address(j, p), count, widened);
                var part = new ReadOnlySpan<float>(widened, count);
                for (int b = 0; b < rows; b++) y[(long)b * n + j] += TensorPrimitives.Dot(new ReadOnlySpan<float>(x + (long)b * k + p, count), part);
            }
        }
    }

    /// <summary>
    /// Outputs j..j+7 of a BF16 W for every row: as <see cref="Dot8Bf16"/> per row, four rows of x at a time sharing each
    /// load of W (the eight outputs as two halves of four), then the same <see cref="Sum8"/> reduction and tail.
    /// </summary>
    static void Rows8Bf16(float* pairedX, int rows, int k, PanelSource w, int j, float* y, int n)
    {
        // acc[o * SharedRows + q]: output j + o, row b + q.
        var acc = stackalloc Vector512<float>[Bf16Rows * SharedRows];
        int wholeBlocks = k / Bf16Block * Bf16Block;
        int b = 0;
        for (; b + SharedRows <= rows; b += SharedRows)
        {
            float* px = pairedX + (long)b * k;
            Paired4x4(px, k, w, j, acc);
            Paired4x4(px, k, w, j + 4, acc + 4 * SharedRows);
            for (int q = 0; q < SharedRows; q++)
            {
                var sums = Sum8(acc[q], acc[SharedRows + q], acc[2 * SharedRows + q], acc[3 * SharedRows + q],
                    acc[4 * SharedRows + q], acc[5 * SharedRows + q], acc[6 * SharedRows + q], acc[7 * SharedRows + q]);
                if (wholeBlocks != k) sums += Bf16Tail8(px + (long)q * k, wholeBlocks, k, w, j);
                sums.Store(y + (long)(b + q) * n + j);
            }
        }
        for (; b < rows; b++) Dot8Bf16(pairedX + (long)b * k, k, w, j).Store(y + (long)b * n + j);
    }

    /// <summary>
    /// The paired BF16 accumulators of outputs j..j+3 against four rows of x (each row's paired copy k floats apart) over
    /// the whole blocks of K, written to acc[o * 4 + q]: per pair exactly the <see cref="PairedStep"/> chain of <see cref="Dot8Bf16"/>.
    /// </summary>
    static void Paired4x4(float* pairedX, int k, PanelSource w, int j, Vector512<float>* acc)
    {
        var high = Vector512.Create(0xFFFF0000u);
        ushort* r0 = (ushort*)w.Address(j, 0), r1 = (ushort*)w.Address(j + 1, 0), r2 = (ushort*)w.Address(j + 2, 0), r3 = (ushort*)w.Address(j + 3, 0);
        float* x0 = pairedX, x1 = pairedX + k, x2 = pairedX + 2L * k, x3 = pairedX + 3L * k;
        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default;
        Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default, s30 = default, s31 = default, s32 = default, s33 = default;
        const int half = Bf16Block / 2;
        for (int p = 0; p + Bf16Block <= k; p += Bf16Block)
        {
            var e0 = Avx512F.LoadVector512(x0 + p); var o0 = Avx512F.LoadVector512(x0 + p + half);
            var e1 = Avx512F.LoadVector512(x1 + p); var o1 = Avx512F.LoadVector512(x1 + p + half);
            var e2 = Avx512F.LoadVector512(x2 + p); var o2 = Avx512F.LoadVector512(x2 + p + half);
            var e3 = Avx512F.LoadVector512(x3 + p); var o3 = Avx512F.LoadVector512(x3 + p + half);
            var u = Avx512F.LoadVector512((uint*)(r0 + p));
            var even = Avx512F.ShiftLeftLogical(u, 16).AsSingle();
            var odd = Avx512F.And(u, high).AsSingle();
            s00 = Avx512F.FusedMultiplyAdd(odd, o0, Avx512F.FusedMultiplyAdd(even, e0, s00));
            s01 = Avx512F.FusedMultiplyAdd(odd, o1, Avx512F.FusedMultiplyAdd(even, e1, s01));
            s02 = Avx512F.FusedMultiplyAdd(odd, o2, Avx512F.FusedMultiplyAdd(even, e2, s02));
            s03 = Avx512F.FusedMultiplyAdd(odd, o3, Avx512F.FusedMultiplyAdd(even, e3, s03));
            u = Avx512F.LoadVector512((uint*)(r1 + p));
            even = Avx512F.ShiftLeftLogical(u, 16).AsSingle();
            odd = Avx512F.And(u, high).AsSingle();
            s10 = Avx512F.FusedMultiplyAdd(odd, o0, Avx512F.FusedMultiplyAdd(even, e0, s10));
            s11 = Avx512F.FusedMultiplyAdd(odd, o1, Avx512F.FusedMultiplyAdd(even, e1, s11));
            s12 = Avx512F.FusedMultiplyAdd(odd, o2, Avx512F.FusedMultiplyAdd(even, e2, s12));
            s13 = Avx512F.FusedMultiplyAdd(odd, o3, Avx512F.FusedMultiplyAdd(even, e3, s13));
            u = Avx512F.LoadVector512((uint*)(r2 + p));
            even = Avx512F.ShiftLeftLogical(u, 16).AsSingle();
            odd = Avx512F.And(u, high).AsSingle();
            s20 = Avx512F.FusedMultiplyAdd(odd, o0, Avx512F.FusedMultiplyAdd(even, e0, s20));
            s21 = Avx512F.FusedMultiplyAdd(odd, o1, Avx512F.FusedMultiplyAdd(even, e1, s21));
            s22 = Avx512F.FusedMultiplyAdd(odd, o2, Avx512F.FusedMultiplyAdd(even, e2, s22));
            s23 = Avx512F.FusedMultiplyAdd(odd, o3, Avx512F.FusedMultiplyAdd(even, e3, s23));
            u = Avx512F.LoadVector512((uint*)(r3 + p));
            even = Avx512F.ShiftLeftLogical(u, 16).AsSingle();
            odd = Avx512F.And(u, high).AsSingle();
            s30 = Avx512F.FusedMultiplyAdd(odd, o0, Avx512F.FusedMultiplyAdd(even, e0, s30));
            s31 = Avx512F.FusedMultiplyAdd(odd, o1, Avx512F.FusedMultiplyAdd(even, e1, s31));
            s32 = Avx512F.FusedMultiplyAdd(odd, o2, Avx512F.FusedMultiplyAdd(even, e2, s32));
            s33 = Avx512F.FusedMultiplyAdd(odd, o3, Avx512F.FusedMultiplyAdd(even, e3, s33));
        }
        acc[0] = s00; acc[1] = s01; acc[2] = s02; acc[3] = s03;
        acc[4] = s10; acc[5] = s11; acc[6] = s12; acc[7] = s13;
        acc[8] = s20; acc[9] = s21; acc[10] = s22; acc[11] = s23;
        acc[12] = s30; acc[13] = s31; acc[14] = s32; acc[15] = s33;
    }

    /// <summary>
    /// Outputs j..j+3 of an F32 W for four rows of x (k floats apart), written to y[q·n + o]: per pair exactly the chain
    /// and reduction of <see cref="Dot4F32"/>, with each load of W shared by the four rows.
    /// </summary>
    static void Dot4x4F32(float* x, int k, PanelSource w, int j, float* y, int n)
    {
        float* r0 = (float*)w.Address(j, 0), r1 = (float*)w.Address(j + 1, 0), r2 = (float*)w.Address(j + 2, 0), r3 = (float*)w.Address(j + 3, 0);
        float* x0 = x, x1 = x + k, x2 = x + 2L * k, x3 = x + 3L * k;
        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default;
        Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default, s30 = default, s31 = default, s32 = default, s33 = default;
        int p = 0;
        for (; p + 16 <= k; p += 16)
        {
            var w0 = Avx512F.LoadVector512(r0 + p);
            var w1 = Avx512F.LoadVector512(r1 + p);
            var w2 = Avx512F.LoadVector512(r2 + p);
            var w3 = Avx512F.LoadVector512(r3 + p);
            var v = Avx512F.LoadVector512(x0 + p);
            s00 = Avx512F.FusedMultiplyAdd(w0, v, s00); s10 = Avx512F.FusedMultiplyAdd(w1, v, s10);
            s20 = Avx512F.FusedMultiplyAdd(w2, v, s20); s30 = Avx512F.FusedMultiplyAdd(w3, v, s30);
            v = Avx512F.LoadVector512(x1 + p);
            s01 = Avx512F.FusedMultiplyAdd(w0, v, s01); s11 = Avx512F.FusedMultiplyAdd(w1, v, s11);
            s21 = Avx512F.FusedMultiplyAdd(w2, v, s21); s31 = Avx512F.FusedMultiplyAdd(w3, v, s31);
            v = Avx512F.LoadVector512(x2 + p);
            s02 = Avx512F.FusedMultiplyAdd(w0, v, s02); s12 = Avx512F.FusedMultiplyAdd(w1, v, s12);
            s22 = Avx512F.FusedMultiplyAdd(w2, v, s22); s32 = Avx512F.FusedMultiplyAdd(w3, v, s32);
            v = Avx512F.LoadVector512(x3 + p);
            s03 = Avx512F.FusedMultiplyAdd(w0, v, s03); s13 = Avx512F.FusedMultiplyAdd(w1, v, s13);
            s23 = Avx512F.FusedMultiplyAdd(w2, v, s23); s33 = Avx512F.FusedMultiplyAdd(w3, v, s33);
        }
        y[0] = TailF32(Sum(s00), x0, r0, p, k); y[1] = TailF32(Sum(s10), x0, r1, p, k); y[2] = TailF32(Sum(s20), x0, r2, p, k); y[3] = TailF32(Sum(s30), x0, r3, p, k);
        y += n;
        y[0] = TailF32(Sum(s01), x1, r0, p, k); y[1] = TailF32(Sum(s11), x1, r1, p, k); y[2] = TailF32(Sum(s21), x1, r2, p, k); y[3] = TailF32(Sum(s31), x1, r3, p, k);
        y += n;
        y[0] = TailF32(Sum(s02), x2, r0, p, k); y[1] = TailF32(Sum(s12), x2, r1, p, k); y[2] = TailF32(Sum(s22), x2, r2, p, k); y[3] = TailF32(Sum(s32), x2, r3, p, k);
        y += n;
        y[0] = TailF32(Sum(s03), x3, r0, p, k); y[1] = TailF32(Sum(s13), x3, r1, p, k); y[2] = TailF32(Sum(s23), x3, r2, p, k); y[3] = TailF32(Sum(s33), x3, r3, p, k);
    }
}
