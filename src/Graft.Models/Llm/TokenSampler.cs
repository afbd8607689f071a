namespace Graft.Models.Llm;

/// <summary>
/// How the next token is chosen. Temperature 0 is greedy (arg max); otherwise the logits go through
/// transformers' processors in its order (repetition penalty, temperature, top-k, top-p) and a token is
/// drawn from the softmax with a generator seeded by <see cref="Seed"/>.
/// </summary>
public sealed record SamplingOptions
{
    public float Temperature { get; init; }

    /// <summary>Keep the k most likely tokens; 0 keeps all.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>transformers' CTRL penalty on tokens already in the context: positive logits divided by it, negative multiplied.</summary>
    public float RepetitionPenalty { get; init; } = 1f;

    public int Seed { get; init; }

    public static SamplingOptions Greedy { get; } = new();

    internal void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature)) throw new ArgumentException($"temperature must be finite and not negative, got {Temperature}");
        if (TopK < 0) throw new ArgumentException($"top-k must not be negative, got {TopK}");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p must be in (0, 1], got {TopP}");
        if (!(RepetitionPenalty > 0) || float.IsInfinity(RepetitionPenalty)) throw new ArgumentException($"repetition penalty must be positive and finite, got {RepetitionPenalty}");
    }
}

/// <summary>Chooses next tokens from logits rows; one instance per generated sequence (it owns the random state).</summary>
public sealed class TokenSampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private float[] _scores = [];
    private int[] _order = [];

    public TokenSampler(SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _random = new Random(options.Seed);
    }

    /// <summary>The next token for one row of logits [V], given the tokens so far (for the repetition penalty).</summary>
    public int Next(ReadOnlySpan<float> logits, IReadOnlyCollection<int> context)
    {
        if (logits.IsEmpty) throw new ArgumentException("no logits to choose from", nameof(logits));
        if (_scores.Length != logits.Length)
        {
            _scores = new float[logits.Length];
            _order = new int[logits.Length];
        }
        var scores = _scores.AsSpan();
        logits.CopyTo(scores);
        if (_options.RepetitionPenalty != 1f)
            foreach (int id in context.Distinct())
                if ((uint)id < (uint)scores.Length)
                    scores[id] = scores[id] < 0 ? scores[id] * _options.RepetitionPenalty : scores[id] / _options.RepetitionPenalty;
        if (_options.Temperature == 0f) return ArgMax(scores);

        for (int i = 0; i < scores.Length; i++) scores[i] /= _options.Temperature;
        // Most likely first; ties keep the lower id first, so the choice does not depend on the sort.
        var order = _order.AsSpan();
        for (int i = 0; i < order.Length; i++) order[i] = i;
        var keys = _scores;
        order.Sort((a, b) => keys[b] != keys[a] ? keys[b].CompareTo(keys[a]) : a.CompareTo(b));

        int kept = _options.TopK > 0 ? Math.Min(_options.TopK, order.Length) : order.Length;
        double max = scores[order[0]];
        var probabilities = new double[kept];
        double total = 0;
        for (int i = 0; i < kept; i++) total += probabilities[i] = Math.Exp(scores[order[i]] - max);
        if (_options.TopP < 1f)
        {
            double cumulative = 0;
            for (int i = 0; i < kept; i++)
            {
                cumulative += probabilities[i] / total;
                if (cumulative >= _options.TopP)
                {
                    kept = i + 1;
                    break;
                }
            }
            total = 0;
            for (int i = 0; i < kept; i++) total += probabilities[i];
        }

        double draw = _random.NextDouble() * total;
        for (int i = 0; i < kept - 1; i++)
        {
            draw -= probabilities[i];
            if (draw < 0) return order[i];
        }
        return order[kept - 1];
    }

    private static int ArgMax(ReadOnlySpan<float> scores)
    {
        int best = 0;
        for (int i = 1; i < scores.Length; i++) if (scores[i] > scores[best]) best = i;
        return best;
    }
}
