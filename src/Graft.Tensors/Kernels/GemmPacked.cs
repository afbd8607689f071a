using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Graft.Tensors.Kernels;

/// <summary>
/// The packed GEMM, in the BLIS/GotoBLAS shape. For each KC slice of the inner dimension and each NC-wide
/// block of op(B): pack the block [KC, NC] into NR-wide panels (sits in L2), then for every MR-row strip of
/// op(A): pack the strip [MR, KC] (sits in L1) and run the register-blocked micro-kernel against each panel.
/// Threads own disjoint column ranges of C (so each packs only its own B), or row ranges when C is narrow.
/// </summary>
public static unsafe partial class Gemm
{
    /// <summary>Inner-dimension slice: an A strip of 8 x 256 floats is 8 KiB, well inside L1.</summary>
    const int KC = 256;
    /// <summary>Column block: a packed B block of 256 x 480 floats is 480 KiB, inside the 1-2 MiB L2; a multiple of both NRs.</summary>
    const int NC = 480;
    /// <summary>Rows of op(A) packed together (a multiple of both MRs): 120 x 256 floats sit in L2 beside the B block, and a transposed A is read 480 bytes at a time.</summary>
    const int MC = 120;
    /// <summary>Up to this many rows of op(A), packed once per KC slice (512 KiB) and reused by every column block instead of repacked per block.</summary>
    const int WholeAMaxRows = 512;
    const int WideMR = 8, WideNR = 48;
    const int NarrowMR = 6, NarrowNR = 16;
    /// <summary>Below this many multiply-adds, waking a second thread costs more than it saves.</summary>
    const long ParallelProductLimit = 1L << 20;

    /// <summary>Whether the AVX-512 micro-kernels run; tests turn it off to exercise the Vector256 fallback.</summary>
    internal static bool UseAvx512 { get; set; } = Avx512F.IsSupported;

    // Per-thread packing buffers, allocated once per thread and kept for its lifetime (thread-pool threads
    // live long), so steady-state calls allocate nothing large.
    [ThreadStatic] static float* threadPackedA;
    [ThreadStatic] static float* threadPackedB;

    static float* PackedABuffer()
    {
        if (threadPackedA == null) threadPackedA = (float*)NativeMemory.AlignedAlloc(KC * WholeAMaxRows * sizeof(float), 64);
        return threadPackedA;
    }

    static float* PackedBBuffer()
    {
        if (threadPackedB == null) threadPackedB = (float*)NativeMemory.AlignedAlloc(KC * NC * sizeof(float), 64);
        return threadPackedB;
    }

    static void Packed(int m, int n, int k, float* a, int lda, bool transA, PanelSource b, float* c, int ldc, float beta)
    {
        bool wide = UseAvx512;
        int mr = wide ? WideMR : NarrowMR, nr = wide ? WideNR : NarrowNR;
        int threads = (long)m * n * k < ParallelProductLimit ? 1 : Environment.ProcessorCount;
        if (threads == 1)
        {
            Block(0, m, 0, n, k, a, lda, transA, b, c, ldc, beta, wide);
            return;
        }
        int panels = (n + nr - 1) / nr, strips = (m + mr - 1) / mr;
        nint aAddress = (nint)a, cAddress = (nint)c;
        if (panels >= 2 * threads)
        {
            // Split columns: tasks differ by at most one panel, and none repacks another's part of B.
            Parallel.For(0, threads, t =>
            {
                int j0 = Math.Min(n, (int)((long)panels * t / threads) * nr);
                int j1 = Math.Min(n, (int)((long)panels * (t + 1) / threads) * nr);
                Block(0, m, j0, j1, k, (float*)aAddress, lda, transA, b, (float*)cAddress, ldc, beta, wide);
            });
        }
        else
        {
            Parallel.For(0, threads, t =>
            {
                int i0 = Math.Min(m, (int)((long)strips * t / threads) * mr);
                int i1 = Math.Min(m, (int)((long)strips * (t + 1) / threads) * mr);
                Block(i0, i1, 0, n, k, (float*)aAddress, lda, transA, b, (float*)cAddress, ldc, beta, wide);
            });
        }
    }

    /// <summary>C[i0:i1, j0:j1] = op(A)[i0:i1, :] · op(B)[:, j0:j1] + beta · C, on the calling thread.</summary>
    static void Block(int i0, int i1, int j0, int j1, int k, float* a, int lda, bool transA, PanelSource b,
        float* c, int ldc, float beta, bool wide)
    {
        if (i0 >= i1 || j0 >= j1) return;
        int mr = wide ? WideMR : NarrowMR, nr = wide ? WideNR : NarrowNR;
        float* packedA = PackedABuffer(), packedB = PackedBBuffer();
        float* edgeTile = stackalloc float[WideMR * WideNR];
        // A strip count rounds up to whole strips, so the whole-A buffer must hold the padded rows too.
        bool wholeA = (i1 - i0 + mr - 1) / mr * mr <= WholeAMaxRows;
        int mc = wholeA ? i1 - i0 : MC;
        for (int pc = 0; pc < k; pc += KC)
        {
            int kc = Math.Min(KC, k - pc);
            float blockBeta = pc == 0 ? beta : 1f;
            if (wholeA) PackA(a, lda, transA, i0, mc, pc, kc, mr, packedA);
            for (int jc = j0; jc < j1; jc += NC)
            {
                int nc = Math.Min(NC, j1 - jc);
                PackB(b, pc, kc, jc, nc, nr, packedB);
                for (int ic = i0; ic < i1; ic += mc)
                {
                    int blockRows = Math.Min(mc, i1 - ic);
                    if (!wholeA) PackA(a, lda, transA, ic, blockRows, pc, kc, mr, packedA);
                    for (int ir = 0; ir < blockRows; ir += mr)
                    {
                        int rows = Math.Min(mr, blockRows - ir);
                        float* aStrip = packedA + (long)ir * kc;
                        for (int jr = 0; jr < nc; jr += nr)
                        {
                            int cols = Math.Min(nr, nc - jr);
                            float* cTile = c + (long)(ic + ir) * ldc + jc + jr;
                            float* bPanel = packedB + (long)jr * kc;
                            if (rows == mr && cols == nr)
                                MicroKernel(wide, aStrip, bPanel, kc, cTile, ldc, blockBeta);
                            else
                            {
                                MicroKernel(wide, aStrip, bPanel, kc, edgeTile, nr, 0f);
                                MergeEdge(edgeTile, nr, rows, cols, cTile, ldc, blockBeta);
                            }
                        }
                    }
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void MicroKernel(bool wide, float* a, float* b, int kc, float* c, int ldc, float beta)
    {
        if (wide) Kernel8x48(a, b, kc, c, ldc, beta);
        else Kernel6x16(a, b, kc, c, ldc, beta);
    }

    static void MergeEdge(float* tile, int nr, int rows, int cols, float* c, int ldc, float beta)
    {
        for (int r = 0; r < rows; r++)
        {
            float* source = tile + r * nr, target = c + (long)r * ldc;
            for (int j = 0; j < cols; j++) target[j] = beta == 0f ? source[j] : source[j] + beta * target[j];
        }
    }

    /// <summary>packed[q][p, 0:nr] = op(B)[pc + p, jc + q·nr : +nr], zero-padded past the last column.</summary>
    static void PackB(PanelSource b, int pc, int kc, int jc, int nc, int nr, float* packed)
    {
        float* rows = stackalloc float[8 * KC];
        for (int q = 0; q * nr < nc; q++)
        {
            int cols = Math.Min(nr, nc - q * nr);
            int j = jc + q * nr;
            float* panel = packed + (long)q * nr * kc;
            if (!b.Transposed)
            {
                for (int p = 0; p < kc; p++)
                {
                    float* target = panel + p * nr;
                    b.ReadContiguous(b.Address(pc + p, j), cols, target);
                    if (cols < nr) new Span<float>(target + cols, nr - cols).Clear();
                }
            }
            else
            {
                // Stored rows are columns of op(B): transpose them into the panel, 8 x 8 at a time.
                int jj = 0;
                if (b.Type == DType.BF16 && Avx2.IsSupported)
                {
                    for (; jj + 8 <= cols; jj += 8)
                        PackBf16Columns((ushort*)b.Address(j + jj, pc), b.Ld, kc, panel + jj, nr);
                }
                else if (Avx.IsSupported)
                {
                    for (; jj + 8 <= cols; jj += 8)
                    {
                        float* source = b.Type == DType.F32 ? (float*)b.Address(j + jj, pc) : rows;
                        long ld = b.Type == DType.F32 ? b.Ld : KC;
                        if (b.Type != DType.F32)
                            for (int s = 0; s < 8; s++) b.ReadContiguous(b.Address(j + jj + s, pc), kc, rows + s * KC);
                        int p = 0;
                        for (; p + 8 <= kc; p += 8) Transpose8x8(source + p, ld, panel + p * nr + jj, nr);
                        for (; p < kc; p++)
                            for (int s = 0; s < 8; s++) panel[p * nr + jj + s] = source[s * ld + p];
                    }
                }
                for (; jj < cols; jj++)
                {
                    float* source;
                    if (b.Type == DType.F32) source = (float*)b.Address(j + jj, pc);
                    else { b.ReadContiguous(b.Address(j + jj, pc), kc, rows); source = rows; }
                    for (int p = 0; p < kc; p++) panel[p * nr + jj] = source[p];
                }
                for (jj = cols; jj < nr; jj++)
                    for (int p = 0; p < kc; p++) panel[p * nr + jj] = 0f;
            }
        }
    }

    /// <summary>
    /// Packs op(A)[ic : ic + blockRows, pc : pc + kc] as consecutive strips of mr rows: strip[p, 0:mr], zero-padded past the last row.
    /// </summary>
    static void PackA(float* a, int lda, bool transA, int ic, int blockRows, int pc, int kc, int mr, float* packed)
    {
        int strips = (blockRows + mr - 1) / mr;
        if (transA)
        {
            // Stored rows run along m: read each once, contiguously, and deal it out to the strips (a whole strip of 8 rows
            // is one vector: the weight gradients and attention's backward products all come through here).
            int fullStrips = mr == 8 ? blockRows / 8 : 0;
            for (int p = 0; p < kc; p++)
            {
                float* source = a + (long)(pc + p) * lda + ic;
                for (int s = 0; s < fullStrips; s++)
                    Vector256.Store(Vector256.Load(source + s * 8), packed + ((long)s * kc + p) * 8);
                for (int s = fullStrips; s < strips; s++)
                {
                    int rows = Math.Min(mr, blockRows - s * mr);
                    float* target = packed + ((long)s * kc + p) * mr;
                    for (int r = 0; r < rows; r++) target[r] = source[s * mr + r];
                    for (int r = rows; r < mr; r++) target[r] = 0f;
                }
            }
            return;
        }
        for (int s = 0; s < strips; s++)
        {
            int rows = Math.Min(mr, blockRows - s * mr);
            float* strip = packed + (long)s * kc * mr;
            int p0 = 0;
            if (rows == 8 && mr == 8 && Avx.IsSupported)
                for (float* source = a + (long)(ic + s * mr) * lda + pc; p0 + 8 <= kc; p0 += 8) Transpose8x8(source + p0, lda, strip + p0 * 8, 8);
            for (int r = 0; r < mr; r++)
            {
                if (r < rows)
                {
                    float* source = a + (long)(ic + s * mr + r) * lda + pc;
                    for (int p = p0; p < kc; p++) strip[p * mr + r] = source[p];
                }
                else
                    for (int p = 0; p < kc; p++) strip[p * mr + r] = 0f;
            }
        }
    }

    /// <summary>target[t·targetStride + s] = source[s·sourceStride + t] for s, t &lt; 8.</summary>
    static void Transpose8x8(float* source, long sourceStride, float* target, long targetStride) =>
        Transpose8x8(Avx.LoadVector256(source), Avx.LoadVector256(source + sourceStride),
            Avx.LoadVector256(source + 2 * sourceStride), Avx.LoadVector256(source + 3 * sourceStride),
            Avx.LoadVector256(source + 4 * sourceStride), Avx.LoadVector256(source + 5 * sourceStride),
            Avx.LoadVector256(source + 6 * sourceStride), Avx.LoadVector256(source + 7 * sourceStride),
            target, targetStride);

    /// <summary>
    /// panel[p, 0:8] = widen(source[s·ld + p]) for s &lt; 8, p &lt; kc: eight stored bf16 rows (columns of op(B))
    /// widened and transposed in registers, 8 x 8 at a time, straight into the packed panel of stride nr.
    /// </summary>
    static void PackBf16Columns(ushort* source, long ld, int kc, float* panel, int nr)
    {
        int p = 0;
        for (; p + 8 <= kc; p += 8)
        {
            ushort* s = source + p;
            Transpose8x8(WidenBf16(s), WidenBf16(s + ld), WidenBf16(s + 2 * ld), WidenBf16(s + 3 * ld),
                WidenBf16(s + 4 * ld), WidenBf16(s + 5 * ld), WidenBf16(s + 6 * ld), WidenBf16(s + 7 * ld),
                panel + p * nr, nr);
        }
        for (; p < kc; p++)
            for (int s = 0; s < 8; s++) panel[p * nr + s] = HalfConvert.Bf16ToFloat(source[s * ld + p]);
    }

    /// <summary>Eight bf16 values to float32: zero-extend each to 32 bits, then move the bits to the top half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> WidenBf16(ushort* source) =>
        Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(source), 16).AsSingle();

    /// <summary>target[t·targetStride + s] = row s, element t, for s, t &lt; 8: unpack, shuffle, swap lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Transpose8x8(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3,
        Vector256<float> r4, Vector256<float> r5, Vector256<float> r6, Vector256<float> r7, float* target, long targetStride)
    {
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(target, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(target + targetStride, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(target + 2 * targetStride, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(target + 3 * targetStride, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(target + 4 * targetStride, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(target + 5 * targetStride, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(target + 6 * targetStride, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(target + 7 * targetStride, Avx.Permute2x128(u3, u7, 0x31));
    }

    /// <summary>
    /// C[8,48] (=|+= beta·C) = Apanel[kc,8]ᵀ · Bpanel[kc,48]: 24 zmm accumulators, 3 loads and 8 broadcasts per 24 FMAs.
    /// </summary>
    static void Kernel8x48(float* a, float* b, int kc, float* c, int ldc, float beta)
    {
        Vector512<float> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default, c50 = default, c51 = default, c52 = default;
        Vector512<float> c60 = default, c61 = default, c62 = default, c70 = default, c71 = default, c72 = default;
        for (int p = 0; p < kc; p++)
        {
            // The B panel streams from L2 faster than the hardware prefetcher alone brings it to L1.
            Sse.Prefetch0(b + 8 * WideNR);
            Sse.Prefetch0(b + 8 * WideNR + 16);
            Sse.Prefetch0(b + 8 * WideNR + 32);
            var b0 = Avx512F.LoadAlignedVector512(b);
            var b1 = Avx512F.LoadAlignedVector512(b + 16);
            var b2 = Avx512F.LoadAlignedVector512(b + 32);
            var ar = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(ar, b0, c00); c01 = Avx512F.FusedMultiplyAdd(ar, b1, c01); c02 = Avx512F.FusedMultiplyAdd(ar, b2, c02);
            ar = Vector512.Create(a[1]);
            c10 = Avx512F.FusedMultiplyAdd(ar, b0, c10); c11 = Avx512F.FusedMultiplyAdd(ar, b1, c11); c12 = Avx512F.FusedMultiplyAdd(ar, b2, c12);
            ar = Vector512.Create(a[2]);
            c20 = Avx512F.FusedMultiplyAdd(ar, b0, c20); c21 = Avx512F.FusedMultiplyAdd(ar, b1, c21); c22 = Avx512F.FusedMultiplyAdd(ar, b2, c22);
            ar = Vector512.Create(a[3]);
            c30 = Avx512F.FusedMultiplyAdd(ar, b0, c30); c31 = Avx512F.FusedMultiplyAdd(ar, b1, c31); c32 = Avx512F.FusedMultiplyAdd(ar, b2, c32);
            ar = Vector512.Create(a[4]);
            c40 = Avx512F.FusedMultiplyAdd(ar, b0, c40); c41 = Avx512F.FusedMultiplyAdd(ar, b1, c41); c42 = Avx512F.FusedMultiplyAdd(ar, b2, c42);
            ar = Vector512.Create(a[5]);
            c50 = Avx512F.FusedMultiplyAdd(ar, b0, c50); c51 = Avx512F.FusedMultiplyAdd(ar, b1, c51); c52 = Avx512F.FusedMultiplyAdd(ar, b2, c52);
            ar = Vector512.Create(a[6]);
            c60 = Avx512F.FusedMultiplyAdd(ar, b0, c60); c61 = Avx512F.FusedMultiplyAdd(ar, b1, c61); c62 = Avx512F.FusedMultiplyAdd(ar, b2, c62);
            ar = Vector512.Create(a[7]);
            c70 = Avx512F.FusedMultiplyAdd(ar, b0, c70); c71 = Avx512F.FusedMultiplyAdd(ar, b1, c71); c72 = Avx512F.FusedMultiplyAdd(ar, b2, c72);
            a += WideMR;
            b += WideNR;
        }
        StoreRow512(c, beta, c00, c01, c02); c += ldc;
        StoreRow512(c, beta, c10, c11, c12); c += ldc;
        StoreRow512(c, beta, c20, c21, c22); c += ldc;
        StoreRow512(c, beta, c30, c31, c32); c += ldc;
        StoreRow512(c, beta, c40, c41, c42); c += ldc;
        StoreRow512(c, beta, c50, c51, c52); c += ldc;
        StoreRow512(c, beta, c60, c61, c62); c += ldc;
        StoreRow512(c, beta, c70, c71, c72);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreRow512(float* c, float beta, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2)
    {
        if (beta != 0f)
        {
            var scale = Vector512.Create(beta);
            v0 = Avx512F.FusedMultiplyAdd(scale, Avx512F.LoadVector512(c), v0);
            v1 = Avx512F.FusedMultiplyAdd(scale, Avx512F.LoadVector512(c + 16), v1);
            v2 = Avx512F.FusedMultiplyAdd(scale, Avx512F.LoadVector512(c + 32), v2);
        }
        Avx512F.Store(c, v0);
        Avx512F.Store(c + 16, v1);
        Avx512F.Store(c + 32, v2);
    }

    /// <summary>Fallback without AVX-512: C[6,16] from 12 ymm accumulators (software FMA where the CPU has none).</summary>
    static void Kernel6x16(float* a, float* b, int kc, float* c, int ldc, float beta)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var ar = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(ar, b0, c00); c01 = Vector256.FusedMultiplyAdd(ar, b1, c01);
            ar = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(ar, b0, c10); c11 = Vector256.FusedMultiplyAdd(ar, b1, c11);
            ar = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(ar, b0, c20); c21 = Vector256.FusedMultiplyAdd(ar, b1, c21);
            ar = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(ar, b0, c30); c31 = Vector256.FusedMultiplyAdd(ar, b1, c31);
            ar = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(ar, b0, c40); c41 = Vector256.FusedMultiplyAdd(ar, b1, c41);
            ar = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(ar, b0, c50); c51 = Vector256.FusedMultiplyAdd(ar, b1, c51);
            a += NarrowMR;
            b += NarrowNR;
        }
        StoreRow256(c, beta, c00, c01); c += ldc;
        StoreRow256(c, beta, c10, c11); c += ldc;
        StoreRow256(c, beta, c20, c21); c += ldc;
        StoreRow256(c, beta, c30, c31); c += ldc;
        StoreRow256(c, beta, c40, c41); c += ldc;
        StoreRow256(c, beta, c50, c51);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreRow256(float* c, float beta, Vector256<float> v0, Vector256<float> v1)
    {
        if (beta != 0f)
        {
            var scale = Vector256.Create(beta);
            v0 = Vector256.FusedMultiplyAdd(scale, Vector256.Load(c), v0);
            v1 = Vector256.FusedMultiplyAdd(scale, Vector256.Load(c + 8), v1);
        }
        Vector256.Store(v0, c);
        Vector256.Store(v1, c + 8);
    }
}
