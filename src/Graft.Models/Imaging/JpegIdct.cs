namespace Graft.Models.Imaging;

/// <summary>
/// libjpeg's "islow" integer inverse DCT (jidctint.c, Loeffler-Ligtenberg-Moschytz with 13-bit constants),
/// so decoded samples match libjpeg-turbo, and hence PIL, bit for bit on the same coefficients.
/// </summary>
internal static class JpegIdct
{
    private const int ConstBits = 13, Pass1Bits = 2;
    private const int Fix0_298631336 = 2446, Fix0_390180644 = 3196, Fix0_541196100 = 4433, Fix0_765366865 = 6270;
    private const int Fix0_899976223 = 7373, Fix1_175875602 = 9633, Fix1_501321110 = 12299, Fix1_847759065 = 15137;
    private const int Fix1_961570560 = 16069, Fix2_053119869 = 16819, Fix2_562915447 = 20995, Fix3_072711026 = 25172;

    /// <summary>Dequantises and transforms every block of a component into a sample plane of (BlocksPerLine*8) x (BlocksPerColumn*8).</summary>
    public static byte[] Plane(short[] coefficients, int blocksPerLine, int blocksPerColumn, ushort[] quant)
    {
        int stride = blocksPerLine * 8;
        var plane = new byte[stride * blocksPerColumn * 8];
        Span<int> workspace = stackalloc int[64];
        for (int by = 0; by < blocksPerColumn; by++)
            for (int bx = 0; bx < blocksPerLine; bx++)
            {
                var block = coefficients.AsSpan((by * blocksPerLine + bx) * 64, 64);
                Block(block, quant, workspace, plane.AsSpan(by * 8 * stride + bx * 8), stride);
            }
        return plane;
    }

    /// <summary>One block, dequantised and transformed into an 8 x 8 corner of <paramref name="output"/>.</summary>
    public static void Block(ReadOnlySpan<short> input, ushort[] q, Span<byte> output, int stride)
    {
        Span<int> ws = stackalloc int[64];
        Block(input, q, ws, output, stride);
    }

    private static void Block(ReadOnlySpan<short> input, ushort[] q, Span<int> ws, Span<byte> output, int stride)
    {
        // Pass 1: columns, results scaled up by 2^Pass1Bits.
        for (int col = 0; col < 8; col++)
        {
            if (input[8 + col] == 0 && input[16 + col] == 0 && input[24 + col] == 0 && input[32 + col] == 0 &&
                input[40 + col] == 0 && input[48 + col] == 0 && input[56 + col] == 0)
            {
                int dc = input[col] * q[col] << Pass1Bits;
                for (int r = 0; r < 8; r++)
                    ws[r * 8 + col] = dc;
                continue;
            }
            Butterfly(
                input[col] * q[col], input[8 + col] * q[8 + col], input[16 + col] * q[16 + col], input[24 + col] * q[24 + col],
                input[32 + col] * q[32 + col], input[40 + col] * q[40 + col], input[48 + col] * q[48 + col], input[56 + col] * q[56 + col],
                out int o0, out int o1, out int o2, out int o3, out int o4, out int o5, out int o6, out int o7);
            const int shift = ConstBits - Pass1Bits, round = 1 << (shift - 1);
            ws[col] = (o0 + round) >> shift;
            ws[8 + col] = (o1 + round) >> shift;
            ws[16 + col] = (o2 + round) >> shift;
            ws[24 + col] = (o3 + round) >> shift;
            ws[32 + col] = (o4 + round) >> shift;
            ws[40 + col] = (o5 + round) >> shift;
            ws[48 + col] = (o6 + round) >> shift;
            ws[56 + col] = (o7 + round) >> shift;
        }
        // Pass 2: rows, removing the Pass1Bits scale and the factor 8, then level-shifting by +128.
        for (int row = 0; row < 8; row++)
        {
            var w = ws.Slice(row * 8, 8);
            var o = output.Slice(row * stride, 8);
            if (w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 && w[5] == 0 && w[6] == 0 && w[7] == 0)
            {
                byte dc = Clamp(((w[0] + (1 << (Pass1Bits + 2))) >> (Pass1Bits + 3)) + 128);
                o.Fill(dc);
                continue;
            }
            Butterfly(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
                out int o0, out int o1, out int o2, out int o3, out int o4, out int o5, out int o6, out int o7);
            const int shift = ConstBits + Pass1Bits + 3, round = 1 << (shift - 1);
            o[0] = Clamp(((o0 + round) >> shift) + 128);
            o[1] = Clamp(((o1 + round) >> shift) + 128);
            o[2] = Clamp(((o2 + round) >> shift) + 128);
            o[3] = Clamp(((o3 + round) >> shift) + 128);
            o[4] = Clamp(((o4 + round) >> shift) + 128);
            o[5] = Clamp(((o5 + round) >> shift) + 128);
            o[6] = Clamp(((o6 + round) >> shift) + 128);
            o[7] = Clamp(((o7 + round) >> shift) + 128);
        }
    }

    /// <summary>The 8-point islow butterfly; outputs are scaled by 2^ConstBits, not yet rounded.</summary>
    private static void Butterfly(int i0, int i1, int i2, int i3, int i4, int i5, int i6, int i7,
        out int o0, out int o1, out int o2, out int o3, out int o4, out int o5, out int o6, out int o7)
    {
        // Even part.
        int z1 = (i2 + i6) * Fix0_541196100;
        int tmp2 = z1 - i6 * Fix1_847759065;
        int tmp3 = z1 + i2 * Fix0_765366865;
        int tmp0 = (i0 + i4) << ConstBits;
        int tmp1 = (i0 - i4) << ConstBits;
        int tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
        // Odd part.
        int t0 = i7, t1 = i5, t2 = i3, t3 = i1;
        int z1o = t0 + t3, z2 = t1 + t2, z3 = t0 + t2, z4 = t1 + t3;
        int z5 = (z3 + z4) * Fix1_175875602;
        t0 *= Fix0_298631336;
        t1 *= Fix2_053119869;
        t2 *= Fix3_072711026;
        t3 *= Fix1_501321110;
        z1o *= -Fix0_899976223;
        z2 *= -Fix2_562915447;
        z3 = z3 * -Fix1_961570560 + z5;
        z4 = z4 * -Fix0_390180644 + z5;
        t0 += z1o + z3;
        t1 += z2 + z4;
        t2 += z2 + z3;
        t3 += z1o + z4;
        o0 = tmp10 + t3;
        o7 = tmp10 - t3;
        o1 = tmp11 + t2;
        o6 = tmp11 - t2;
        o2 = tmp12 + t1;
        o5 = tmp12 - t1;
        o3 = tmp13 + t0;
        o4 = tmp13 - t0;
    }

    private static byte Clamp(int v) => (byte)Math.Clamp(v, 0, 255);
}
