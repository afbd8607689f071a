using Graft.Tensors;

namespace Graft.Models.Llm;

/// <summary>The decoder's side of the plug-in seam: a layer with hooks, and layers run with a plug-in's own weights.</summary>
public sealed partial class DecoderModel
{
    /// <summary>One decoder layer with the plug-in's hooks at each of its points; the same operations as the plain layer otherwise.</summary>
    private Tensor HookedLayer(DecoderLayerWeights w, Tensor h, int[] positions, RotaryEmbedding rope, KvCache? cache, int i, DecoderHooks hooks, AttentionMask mask)
    {
        float eps = Config.RmsNormEps;
        var normed = hooks.BeforeAttention(i, Ops.RmsNorm(h, w.AttentionNorm, eps), positions);
        var (attended, weights) = Attention(w, normed, positions, rope, cache, i, hooks.NeedsAttentionWeights(i), mask, hooks.ProjectsAttention(i) ? hooks : null);
        h = hooks.BesideAttention(i, Ops.Add(h, attended), weights, positions);
        h = Ops.Add(h, hooks.FeedForward(i, Ops.RmsNorm(h, w.FfnNorm, eps), x => FeedForward(w, x), positions));
        return hooks.AfterLayer(i, h, positions);
    }

    /// <summary>The hook's projection by token, with the base's as a callable (kept apart so the plain path builds no closure).</summary>
    private static Tensor ProjectByToken(Tensor x, Tensor weight, Tensor? bias, DecoderHooks hooks, int layer, AttentionProjection projection, int[] positions) =>
        hooks.ProjectAttention(layer, projection, x, input => Ops.Linear(input, weight, bias), positions);

    /// <summary>
    /// One decoder layer of this model's shapes and rotary embedding with other weights (a plug-in's own layers):
    /// h [T, C] at <paramref name="positions"/> (consecutive) -> [T, C]. With a cache (the plug-in's own, made for its
    /// layer count), keys and values go to its layer <paramref name="cacheLayer"/>; the plug-in advances it with
    /// <see cref="AdvanceCache"/> once all its layers have run for the chunk.
    /// </summary>
    public Tensor RunLayer(DecoderLayerWeights weights, Tensor hidden, ReadOnlySpan<int> positions, KvCache? cache = null, int cacheLayer = 0)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (hidden.Rank != 2 || hidden.Shape[1] != Config.HiddenSize)
            throw new ArgumentException($"hidden states must be [T, {Config.HiddenSize}], got {hidden.ShapeString}", nameof(hidden));
        int t = hidden.Shape[0];
        if (positions.Length != t) throw new ArgumentException($"{positions.Length} positions for {t} tokens", nameof(positions));
        if (cache is not null)
        {
            if (cacheLayer < 0 || cacheLayer >= cache.Layers)
                throw new ArgumentOutOfRangeException(nameof(cacheLayer), cacheLayer, $"the cache holds {cache.Layers} layers");
            if (t > 0 && positions[0] != cache.Length)
                throw new ArgumentException($"the chunk starts at position {positions[0]} but the cache holds {cache.Length} tokens", nameof(positions));
            cache.CheckFits(Config with { NumLayers = cache.Layers }, t);
        }
        var at = positions.ToArray();
        var rope = RopeFor(t == 0 ? 0 : at[^1] + 1);
        return PlainLayer(weights, hidden, at, rope, cache, cacheLayer);
    }

    /// <summary>Counts <paramref name="tokens"/> a plug-in's own layers have appended to their own cache (the base's cache advances itself).</summary>
    public static void AdvanceCache(KvCache cache, int tokens)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        cache.Advance(tokens);
    }
}
