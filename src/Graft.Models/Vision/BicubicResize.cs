using Graft.Tensors;

namespace Graft.Models.Vision;

/// <summary>
/// torch's <c>F.interpolate(mode='bicubic', align_corners=False)</c> (no antialias) as a fixed linear map:
/// the Keys cubic kernel with a = -0.75 (not PIL's a = -0.5), source coordinate (i + 0.5)·in/out − 0.5 without
/// clamping, and taps outside the grid clamped to the border. Because the map is a constant matrix applied
/// with <see cref="Ops.MatMul"/>, the resized table is differentiable in the table for free.
/// </summary>
public static class BicubicResize
{
    private const double A = -0.75;

    /// <summary>The 1-D resampling matrix [outSize, inSize]: out = R · in.</summary>
    public static double[,] Matrix1D(int inSize, int outSize)
    {
        if (inSize <= 0 || outSize <= 0) throw new ArgumentOutOfRangeException(nameof(inSize), $"bicubic resize needs positive sizes, got {inSize} -> {outSize}");
        var r = new double[outSize, inSize];
        double scale = (double)inSize / outSize;
        for (int i = 0; i < outSize; i++)
        {
            double source = (i + 0.5) * scale - 0.5;
            int left = (int)Math.Floor(source);
            double t = source - left;
            ReadOnlySpan<double> weights = [Far(t + 1), Near(t), Near(1 - t), Far(2 - t)];
            for (int tap = 0; tap < 4; tap++) r[i, Math.Clamp(left - 1 + tap, 0, inSize - 1)] += weights[tap];
        }
        return r;
    }

    /// <summary>
    /// The 2-D map [outH·outW, inH·inW] for row-major grids: resized[(i·outW + j)] = Σ R_h[i, a]·R_w[j, b]·table[(a·inW + b)].
    /// </summary>
    public static Tensor Matrix2D(int inHeight, int inWidth, int outHeight, int outWidth)
    {
        var rh = Matrix1D(inHeight, outHeight);
        var rw = Matrix1D(inWidth, outWidth);
        var m = Tensor.Zeros(outHeight * outWidth, inHeight * inWidth);
        var ms = m.Span;
        int columns = inHeight * inWidth;
        for (int i = 0; i < outHeight; i++)
            for (int j = 0; j < outWidth; j++)
            {
                var row = ms.Slice((i * outWidth + j) * columns, columns);
                for (int a = 0; a < inHeight; a++)
                {
                    double wa = rh[i, a];
                    if (wa == 0) continue;
                    for (int b = 0; b < inWidth; b++) row[a * inWidth + b] = (float)(wa * rw[j, b]);
                }
            }
        return m;
    }

    /// <summary>table [inH·inW, C] (row-major grid of C-vectors) resized to [outH·outW, C]; identity when the grids agree.</summary>
    public static Tensor Resize(Tensor table, int inHeight, int inWidth, int outHeight, int outWidth)
    {
        if (table.Rank != 2 || table.Shape[0] != inHeight * inWidth)
            throw new ArgumentException($"bicubic resize: table {table.ShapeString} must be [{inHeight}·{inWidth}, C]");
        if (inHeight == outHeight && inWidth == outWidth) return table;
        return Ops.MatMul(Matrix2D(inHeight, inWidth, outHeight, outWidth), table);
    }

    /// <summary>Kernel for |x| ≤ 1.</summary>
    private static double Near(double x) => ((A + 2) * x - (A + 3)) * x * x + 1;

    /// <summary>Kernel for 1 &lt; |x| &lt; 2.</summary>
    private static double Far(double x) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}
