using System.Numerics.Tensors;

namespace Graft.Tensors.Kernels;

/// <summary>RMSNorm and LayerNorm over the last axis. x, y [N, C]; weight, bias [C]; per-row statistics [N].</summary>
public static class Normalization
{
    /// <summary>y = x · rstd · w with rstd = 1/√(mean(x²) + eps); saves rstd per row for the backward.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y, Span<float> rstd)
    {
        int c = weight.Length;
        for (int row = 0; row < rstd.Length; row++)
        {
            var xr = x.Slice(row * c, c);
            var yr = y.Slice(row * c, c);
            float r = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(xr) / c + eps);
            rstd[row] = r;
            TensorPrimitives.Multiply(xr, r, yr);
            TensorPrimitives.Multiply(yr, weight, yr);
        }
    }

    /// <summary>
    /// dx = r·g − x·r³·mean(g ⊙ x) with g = dy ⊙ w (written to dx, not accumulated); dw += Σ_rows dy ⊙ x · r when dw is not empty.
    /// scratch holds C floats.
    /// </summary>
    public static void RmsNormBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> rstd, ReadOnlySpan<float> dy,
        Span<float> dx, Span<float> dWeight, Span<float> scratch)
    {
        int c = weight.Length;
        var g = scratch[..c];
        for (int row = 0; row < rstd.Length; row++)
        {
            var xr = x.Slice(row * c, c);
            var dyr = dy.Slice(row * c, c);
            float r = rstd[row];
            TensorPrimitives.Multiply(dyr, weight, g);
            if (!dx.IsEmpty)
            {
                float meanGx = TensorPrimitives.Dot(g, xr) / c;
                var dxr = dx.Slice(row * c, c);
                TensorPrimitives.Multiply(g, r, dxr);
                TensorPrimitives.MultiplyAdd(xr, -r * r * r * meanGx, dxr, dxr);
            }
            if (!dWeight.IsEmpty)
            {
                TensorPrimitives.Multiply(dyr, xr, g);
                TensorPrimitives.MultiplyAdd(g, r, dWeight, dWeight);
            }
        }
    }

    /// <summary>y = (x − mean)·rstd·w + b with the biased variance; saves mean and rstd per row. bias may be empty.</summary>
    public static void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps,
        Span<float> y, Span<float> mean, Span<float> rstd)
    {
        int c = weight.Length;
        for (int row = 0; row < rstd.Length; row++)
        {
            var xr = x.Slice(row * c, c);
            var yr = y.Slice(row * c, c);
            float mu = TensorPrimitives.Sum(xr) / c;
            TensorPrimitives.Subtract(xr, mu, yr);
            float r = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(yr) / c + eps);
            mean[row] = mu;
            rstd[row] = r;
            TensorPrimitives.Multiply(yr, r, yr);
            TensorPrimitives.Multiply(yr, weight, yr);
            if (!bias.IsEmpty) TensorPrimitives.Add(yr, bias, yr);
        }
    }

    /// <summary>
    /// dx = r·(g − mean(g) − x̂·mean(g ⊙ x̂)) with g = dy ⊙ w, x̂ = (x − mean)·r (written, not accumulated);
    /// dw += Σ dy ⊙ x̂ and db += Σ dy when not empty. scratch holds 2·C floats.
    /// </summary>
    public static void LayerNormBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd,
        ReadOnlySpan<float> dy, Span<float> dx, Span<float> dWeight, Span<float> dBias, Span<float> scratch)
    {
        int c = weight.Length;
        var xhat = scratch[..c];
        var g = scratch.Slice(c, c);
        for (int row = 0; row < rstd.Length; row++)
        {
            var xr = x.Slice(row * c, c);
            var dyr = dy.Slice(row * c, c);
            float r = rstd[row];
            TensorPrimitives.Subtract(xr, mean[row], xhat);
            TensorPrimitives.Multiply(xhat, r, xhat);
            if (!dx.IsEmpty)
            {
                TensorPrimitives.Multiply(dyr, weight, g);
                float meanG = TensorPrimitives.Sum(g) / c;
                float meanGx = TensorPrimitives.Dot(g, xhat) / c;
                var dxr = dx.Slice(row * c, c);
                TensorPrimitives.MultiplyAdd(xhat, -meanGx, g, dxr);
                TensorPrimitives.Subtract(dxr, meanG, dxr);
                TensorPrimitives.Multiply(dxr, r, dxr);
            }
            if (!dWeight.IsEmpty) TensorPrimitives.MultiplyAdd(dyr, xhat, dWeight, dWeight);
            if (!dBias.IsEmpty) TensorPrimitives.Add(dBias, dyr, dBias);
        }
    }
}
