using System.Numerics.Tensors;

namespace Graft.Models.Generation;

/// <summary>
/// Picks next tokens from logits [V] in the Hugging Face order: repetition penalty, temperature, top-k,
/// top-p, softmax, then a draw from System.Random seeded with <see cref="SamplingOptions.Seed"/>. Greedy
/// (temperature 0) takes the arg-max, lowest index first on ties. Buffers are sized once for the vocabulary,
/// so a step allocates nothing. Not thread-safe: one sampler per sequence.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private readonly bool[] _seen;
    private readonly int[] _seenIds;
    private int _seenCount;
    private readonly float[] _values;
    private readonly int[] _order;
    private readonly float[] _probabilities;

    public Sampler(SamplingOptions options, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 1);
        _options = options;
        _random = new Random(options.Seed);
        VocabSize = vocabSize;
        bool penalise = options.RepetitionPenalty != 1f;
        _seen = penalise ? new bool[vocabSize] : [];
        _seenIds = penalise ? new int[vocabSize] : [];
        bool sampled = !options.IsGreedy;
        _values = sampled && (options.TopK > 0 || options.TopP < 1f) ? new float[vocabSize] : [];
        _order = sampled && options.TopP < 1f ? new int[vocabSize] : [];
        _probabilities = sampled ? new float[vocabSize] : [];
    }

    public int VocabSize { get; }

    /// <summary>Records tokens of the sequence (the prompt, then each chosen token) for the repetition penalty.</summary>
    public void Observe(ReadOnlySpan<int> tokens)
    {
        foreach (var id in tokens)
        {
            if ((uint)id >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), id, $"token id {id} is outside the vocabulary of {VocabSize}");
            if (_seen.Length == 0 || _seen[id]) continue;
            _seen[id] = true;
            _seenIds[_seenCount++] = id;
        }
    }

    /// <summary>Chooses the next token; <paramref name="logits"/> [V] is overwritten with the filtered, scaled logits.</summary>
    public int Sample(Span<float> logits)
    {
        if (logits.Length != VocabSize) throw new ArgumentException($"got {logits.Length} logits for a vocabulary of {VocabSize}", nameof(logits));
        ApplyRepetitionPenalty(logits);
        if (_options.IsGreedy) return ArgMax(logits);
        ScaleByTemperature(logits, _options.Temperature);
        int finite = CheckAndCountFinite(logits);
        if (_options.TopK > 0 && _options.TopK < finite) finite = KeepTopK(logits, _options.TopK);
        if (_options.TopP < 1f) KeepTopP(logits, finite, _options.TopP);
        return Draw(logits);
    }

    private void ApplyRepetitionPenalty(Span<float> logits)
    {
        float penalty = _options.RepetitionPenalty;
        for (int i = 0; i < _seenCount; i++)
        {
            ref float l = ref logits[_seenIds[i]];
            l = l < 0f ? l * penalty : l / penalty;
        }
    }

    /// <summary>
    /// l / T, as Hugging Face divides. A temperature so small that the largest logit over it overflows (1e-45, a
    /// denormal) is scaled as (l - max) / T instead: the same distribution (softmax ignores a shift), with the top
    /// logits at 0 and the rest at or towards -infinity, where l / T would be +infinity and no distribution at all.
    /// </summary>
    private static void ScaleByTemperature(Span<float> logits, float temperature)
    {
        if (float.IsFinite(TensorPrimitives.MaxMagnitude(logits) / temperature))
        {
            TensorPrimitives.Divide(logits, temperature, logits);
            return;
        }
        // Masked (infinite) logits, or a temperature that overflows: look at the finite logits alone.
        float largest = 0f, max = float.NegativeInfinity;
        foreach (float l in logits)
        {
            if (float.IsFinite(l))
            {
                largest = Math.Max(largest, Math.Abs(l));
                max = Math.Max(max, l);
            }
        }
        if (float.IsFinite(largest / temperature))
        {
            TensorPrimitives.Divide(logits, temperature, logits);
            return;
        }
        for (int i = 0; i < logits.Length; i++)
            if (!float.IsNaN(logits[i])) logits[i] = logits[i] == max ? 0f : (logits[i] - max) / temperature;
    }

    private static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        float max = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
        {
            float l = logits[i];
            if (float.IsNaN(l)) throw NotANumber(i);
            if (l > max) { max = l; best = i; }
        }
        if (float.IsNegativeInfinity(max)) throw new InvalidOperationException("no token has a finite logit");
        return best;
    }

    private static int CheckAndCountFinite(ReadOnlySpan<float> logits)
    {
        int finite = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            float l = logits[i];
            if (float.IsNaN(l)) throw NotANumber(i);
            if (float.IsPositiveInfinity(l)) throw new InvalidOperationException($"the logit of token {i} is +infinity after temperature scaling");
            if (!float.IsNegativeInfinity(l)) finite++;
        }
        if (finite == 0) throw new InvalidOperationException("no token has a finite logit");
        return finite;
    }

    /// <summary>Masks every logit below the k-th largest (ties with it stay, as in HF); returns how many remain.</summary>
    private int KeepTopK(Span<float> logits, int k)
    {
        // A min-heap of the k largest logits seen so far: its root is the k-th largest.
        var heap = _values.AsSpan(0, k);
        int count = 0;
        foreach (float l in logits)
        {
            if (float.IsNegativeInfinity(l)) continue;
            if (count < k) { heap[count] = l; SiftUp(heap, count++); }
            else if (l > heap[0]) { heap[0] = l; SiftDown(heap, 0); }
        }
        float threshold = heap[0];
        int kept = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] < threshold) logits[i] = float.NegativeInfinity;
            else kept++;
        }
        return kept;
    }

    private static void SiftUp(Span<float> heap, int i)
    {
        while (i > 0)
        {
            int parent = (i - 1) / 2;
            if (heap[parent] <= heap[i]) return;
            (heap[parent], heap[i]) = (heap[i], heap[parent]);
            i = parent;
        }
    }

    private static void SiftDown(Span<float> heap, int i)
    {
        while (true)
        {
            int smallest = i, left = 2 * i + 1, right = left + 1;
            if (left < heap.Length && heap[left] < heap[smallest]) smallest = left;
            if (right < heap.Length && heap[right] < heap[smallest]) smallest = right;
            if (smallest == i) return;
            (heap[smallest], heap[i]) = (heap[i], heap[smallest]);
            i = smallest;
        }
    }

    /// <summary>
    /// Nucleus filter: keeps the most probable tokens whose probabilities first add up to at least p. Only
    /// tokens within a margin of the largest logit are sorted, the margin widening until they alone hold p of
    /// the total mass: every token outside is less probable than all inside, so the kept set is the same as
    /// sorting the whole vocabulary.
    /// </summary>
    private void KeepTopP(Span<float> logits, int finite, float p)
    {
        float max = TensorPrimitives.Max(logits);
        double total = 0;
        foreach (float l in logits) total += Math.Exp(l - max);
        var keys = _values.AsSpan();
        var order = _order.AsSpan();
        int n;
        for (float margin = 8f; ; margin *= 2)
        {
            n = 0;
            double mass = 0;
            // Past e^-64 the rest cannot matter in practice, but one last pass over everything keeps it exact.
            float threshold = margin > 64f ? float.MinValue : max - margin;
            for (int i = 0; i < logits.Length; i++)
            {
                float l = logits[i];
                if (l < threshold || float.IsNegativeInfinity(l)) continue;
                keys[n] = -l;   // ascending keys = descending logits
                order[n++] = i;
                mass += Math.Exp(l - max);
            }
            if (mass >= p * total || n == finite) break;
        }
        keys = keys[..n];
        order = order[..n];
        keys.Sort(order);
        double cumulative = 0;
        int keep = n;
        for (int j = 0; j < n; j++)
        {
            cumulative += Math.Exp(-keys[j] - max) / total;
            if (cumulative >= p) { keep = j + 1; break; }
        }
        logits.Fill(float.NegativeInfinity);
        for (int j = 0; j < keep; j++) logits[order[j]] = -keys[j];
    }

    private int Draw(ReadOnlySpan<float> logits)
    {
        var probabilities = _probabilities.AsSpan();
        float max = TensorPrimitives.Max(logits);
        TensorPrimitives.Subtract(logits, max, probabilities);
        TensorPrimitives.Exp(probabilities, probabilities);
        double total = 0;
        foreach (float q in probabilities) total += q;
        double target = _random.NextDouble() * total;
        double cumulative = 0;
        int last = 0;
        for (int i = 0; i < probabilities.Length; i++)
        {
            if (probabilities[i] == 0f) continue;
            cumulative += probabilities[i];
            last = i;
            if (cumulative > target) return i;
        }
        return last;   // rounding left the target just past the final cumulative sum
    }

    private static InvalidOperationException NotANumber(int index) => new($"the logit of token {index} is NaN");
}
