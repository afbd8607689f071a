namespace Graft.Tensors;

/// <summary>
/// Rotary position embedding in the split-halves convention of Hugging Face Llama (`rotate_half`): feature
/// i of the rotated part pairs with feature i + RotaryDim/2. The rotated part is the first
/// <see cref="RotaryDim"/> = 2·inverseFrequencies.Length features of each head; the rest pass through.
/// </summary>
/// <remarks>
/// Angles are formed as Hugging Face forms them, a float32 product position · inverse frequency, and
/// cos/sin of that float angle are taken in double and rounded, so tables match PyTorch's float32 ones.
/// Scaled variants (YaRN, llama3) are expressed by their inverse frequencies and attention scaling.
/// </remarks>
public sealed class RotaryEmbedding
{
    /// <summary>Positions whose cos and sin are kept in a table (4 MiB at most for a head of 128); later ones are computed each time.</summary>
    private const int TablePositions = 4096;

    private readonly float[] _inverseFrequencies;
    private readonly Lazy<(float[] Cos, float[] Sin)> _table;

    public RotaryEmbedding(float[] inverseFrequencies, float attentionScaling = 1f)
    {
        ArgumentNullException.ThrowIfNull(inverseFrequencies);
        if (inverseFrequencies.Length == 0) throw new ArgumentException("rotary embedding needs at least one frequency", nameof(inverseFrequencies));
        foreach (float f in inverseFrequencies)
            if (!float.IsFinite(f)) throw new ArgumentException($"inverse frequency {f} is not finite", nameof(inverseFrequencies));
        _inverseFrequencies = (float[])inverseFrequencies.Clone();
        AttentionScaling = attentionScaling;
        _table = new Lazy<(float[], float[])>(BuildTable);
    }

    /// <summary>The plain Llama table: inverse frequency i = 1 / θ^(2i / headDim), for the whole head.</summary>
    public static RotaryEmbedding Default(int headDim, double theta)
    {
        if (headDim <= 0 || headDim % 2 != 0) throw new ArgumentException($"rotary head size must be positive and even, got {headDim}", nameof(headDim));
        if (!(theta > 0)) throw new ArgumentException($"rotary base θ must be positive, got {theta}", nameof(theta));
        var inverse = new float[headDim / 2];
        for (int i = 0; i < inverse.Length; i++)
        {
            // As torch: the exponent is a float32 quotient, the power a float32 result.
            float exponent = (float)(2 * i) / headDim;
            inverse[i] = 1f / (float)Math.Pow(theta, exponent);
        }
        return new RotaryEmbedding(inverse);
    }

    /// <summary>Number of leading features of each head that are rotated.</summary>
    public int RotaryDim => 2 * _inverseFrequencies.Length;

    /// <summary>Multiplies cos and sin (YaRN's attention factor); 1 for plain RoPE.</summary>
    public float AttentionScaling { get; }

    public ReadOnlySpan<float> InverseFrequencies => _inverseFrequencies;

    /// <summary>
    /// cos and sin (times <see cref="AttentionScaling"/>) of the angles of one position: RotaryDim/2 values each. The
    /// first <see cref="TablePositions"/> positions come from a table built once with the same arithmetic.
    /// </summary>
    public void CosSin(int position, Span<float> cos, Span<float> sin)
    {
        int half = _inverseFrequencies.Length;
        if (cos.Length < half || sin.Length < half) throw new ArgumentException($"cos/sin need {half} values");
        if ((uint)position < TablePositions)
        {
            var (cosTable, sinTable) = _table.Value;
            cosTable.AsSpan(position * half, half).CopyTo(cos);
            sinTable.AsSpan(position * half, half).CopyTo(sin);
            return;
        }
        Compute(position, cos, sin);
    }

    private (float[] Cos, float[] Sin) BuildTable()
    {
        int half = _inverseFrequencies.Length;
        var cos = new float[TablePositions * half];
        var sin = new float[TablePositions * half];
        for (int p = 0; p < TablePositions; p++) Compute(p, cos.AsSpan(p * half, half), sin.AsSpan(p * half, half));
        return (cos, sin);
    }

    private void Compute(int position, Span<float> cos, Span<float> sin)
    {
        int half = _inverseFrequencies.Length;
        for (int i = 0; i < half; i++)
        {
            float angle = position * _inverseFrequencies[i];
            cos[i] = (float)Math.Cos(angle) * AttentionScaling;
            sin[i] = (float)Math.Sin(angle) * AttentionScaling;
        }
    }
}
