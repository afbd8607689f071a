namespace Graft.Tensors;

public static partial class Ops
{
    /// <summary>
    /// Applies rotary position embedding to x [B, T, H, D] or [T, H, D]. positions holds one absolute
    /// position per token: T of them (shared by the batch) or B·T. Only the first rope.RotaryDim features of
    /// each head rotate; the rest pass through. The backward rotates the gradient by the negative angle.
    /// </summary>
    public static Tensor Rope(Tensor x, RotaryEmbedding rope, ReadOnlySpan<int> positions)
    {
        ArgumentNullException.ThrowIfNull(rope);
        if (x.Rank is not (3 or 4)) throw new ArgumentException($"rope: input must be [B, T, H, D] or [T, H, D], got {x.ShapeString}");
        int batch = x.Rank == 4 ? x.Shape[0] : 1;
        int t = x.Dim(-3), heads = x.Dim(-2), headDim = x.Dim(-1);
        if (rope.RotaryDim > headDim) throw new ArgumentException($"rope: rotary size {rope.RotaryDim} exceeds head size {headDim} of {x.ShapeString}");
        if (positions.Length != t && positions.Length != batch * t)
            throw new ArgumentException($"rope: {positions.Length} positions for input {x.ShapeString}; need T = {t} or B·T = {batch * t}");
        int half = rope.RotaryDim / 2;
        var cos = new float[positions.Length * half];
        var sin = new float[positions.Length * half];
        for (int p = 0; p < positions.Length; p++) rope.CosSin(positions[p], cos.AsSpan(p * half, half), sin.AsSpan(p * half, half));

        var y = Tensor.Zeros(x.Shape);
        Kernels.Rope.Rotate(x.Span, y.Span, cos, sin, heads, headDim, half, inverse: false);
        return Autograd.Record(y, "rope", [x], gy =>
        {
            if (!x.RequiresGrad) return;
            var dx = new float[x.Length];
            Kernels.Rope.Rotate(gy.Span, dx, cos, sin, heads, headDim, half, inverse: true);
            AccumulateOwned(x, dx);
        });
    }
}
