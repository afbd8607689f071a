using System.Numerics.Tensors;

namespace Graft.Tensors;

/// <summary>Regularisation.</summary>
public static partial class Ops
{
    /// <summary>
    /// Inverted dropout: while training, each element is zeroed with probability p and the kept ones are scaled
    /// by 1/(1-p), so evaluation needs no rescaling. Returns x itself when not training or p is 0. The mask
    /// is drawn from <paramref name="random"/> in element order, so a seeded generator repeats it; the
    /// backward pass applies the same mask.
    /// </summary>
    public static Tensor Dropout(Tensor x, float p, Random random, bool training)
    {
        if (!(p >= 0f && p <= 1f)) throw new ArgumentOutOfRangeException(nameof(p), $"dropout probability must be in [0, 1], got {p}");
        ArgumentNullException.ThrowIfNull(random);
        if (!training || p == 0f) return x;
        float keptScale = p == 1f ? 0f : 1f / (1f - p);
        var multiplier = new float[x.Length];
        for (int i = 0; i < multiplier.Length; i++) multiplier[i] = random.NextSingle() >= p ? keptScale : 0f;
        var y = Tensor.Zeros(x.Shape);
        TensorPrimitives.Multiply(x.Span, multiplier, y.Span);
        return Autograd.Record(y, "dropout", [x], gy =>
        {
            var gx = x.GradientBuffer();
            TensorPrimitives.MultiplyAdd(gy.Span, multiplier, gx, gx);
        });
    }
}
