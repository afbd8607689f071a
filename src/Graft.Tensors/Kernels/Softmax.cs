using System.Numerics.Tensors;

namespace Graft.Tensors.Kernels;

/// <summary>Softmax over one row, numerically stable; −∞ entries are masked out.</summary>
public static class Softmax
{
    /// <summary>
    /// row ← exp(row − max) / Σ exp(row − max), in place. A row whose entries are all −∞ (nothing allowed)
    /// becomes all zeros rather than NaN.
    /// </summary>
    public static void Row(Span<float> row)
    {
        if (row.IsEmpty) return;
        float max = TensorPrimitives.Max(row);
        if (float.IsNegativeInfinity(max))
        {
            row.Clear();
            return;
        }
        TensorPrimitives.Subtract(row, max, row);
        TensorPrimitives.Exp(row, row);
        TensorPrimitives.Multiply(row, 1f / TensorPrimitives.Sum(row), row);
    }

    /// <summary>dx = y ⊙ (dy − ⟨dy, y⟩) for one row of probabilities y; zero where y is zero.</summary>
    public static void RowBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        float dot = TensorPrimitives.Dot(dy, y);
        TensorPrimitives.Subtract(dy, dot, dx);
        TensorPrimitives.Multiply(dx, y, dx);
    }
}
