using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>
/// LLaVA's `mlp2x_gelu` projector, shared by the designs that map vision features into the LLM (Bridge, IAA, WINGS):
/// Z [N, d_v] -> W_2 · GELU(W_1 · Z + b_1) + b_2 [N, d], GELU in its erf form (nn.GELU()).
/// </summary>
public sealed class GeluProjector
{
    public GeluProjector(Tensor w1, Tensor b1, Tensor w2, Tensor b2)
    {
        ArgumentNullException.ThrowIfNull(w1);
        ArgumentNullException.ThrowIfNull(b1);
        ArgumentNullException.ThrowIfNull(w2);
        ArgumentNullException.ThrowIfNull(b2);
        if (w1.Rank != 2) throw new ArgumentException($"W_1 must be [d, d_v], got {w1.ShapeString}", nameof(w1));
        int d = w1.Shape[0];
        if (!b1.Shape.AsSpan().SequenceEqual([d])) throw new ArgumentException($"b_1 must be [{d}], got {b1.ShapeString}", nameof(b1));
        if (!w2.Shape.AsSpan().SequenceEqual([d, d])) throw new ArgumentException($"W_2 must be [{d}, {d}], got {w2.ShapeString}", nameof(w2));
        if (!b2.Shape.AsSpan().SequenceEqual([d])) throw new ArgumentException($"b_2 must be [{d}], got {b2.ShapeString}", nameof(b2));
        (W1, B1, W2, B2) = (w1, b1, w2, b2);
    }

    public Tensor W1 { get; }
    public Tensor B1 { get; }
    public Tensor W2 { get; }
    public Tensor B2 { get; }

    /// <summary>d_v.</summary>
    public int InputWidth => W1.Shape[1];

    /// <summary>d.</summary>
    public int OutputWidth => W1.Shape[0];

    /// <summary>Trainable, initialised as nn.Linear is: weights and biases U(-1/√fan_in, 1/√fan_in).</summary>
    public static GeluProjector Create(int inputWidth, int outputWidth, Random random)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inputWidth);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outputWidth);
        ArgumentNullException.ThrowIfNull(random);
        return new(Uniform(random, inputWidth, [outputWidth, inputWidth]), Uniform(random, inputWidth, [outputWidth]),
            Uniform(random, outputWidth, [outputWidth, outputWidth]), Uniform(random, outputWidth, [outputWidth]));
    }

    /// <summary>Z [N, d_v] -> [N, d].</summary>
    public Tensor Forward(Tensor features)
    {
        if (features.Rank != 2 || features.Shape[1] != InputWidth)
            throw new ArgumentException($"projector input must be [N, {InputWidth}], got {features.ShapeString}", nameof(features));
        return Ops.Linear(Ops.Gelu(Ops.Linear(features, W1, B1)), W2, B2);
    }

    private static Tensor Uniform(Random random, int fanIn, int[] shape)
    {
        float bound = 1f / MathF.Sqrt(fanIn);
        var values = new float[Tensor.ShapeLength(shape)];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * bound;
        return Tensor.Parameter(values, shape);
    }
}
