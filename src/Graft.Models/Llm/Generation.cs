namespace Graft.Models.Llm;

/// <summary>Autoregressive decoding over a KV cache: one prefill of the prompt, then one token per step.</summary>
public static class Generation
{
    /// <summary>
    /// Yields up to <paramref name="maxNewTokens"/> tokens after <paramref name="prompt"/>, lazily, one per step.
    /// A stop token (by default config.json's eos_token_id) is yielded and ends the sequence, as in
    /// transformers' output. The enumeration may be abandoned at any point.
    /// </summary>
    public static IEnumerable<int> Generate(DecoderModel model, IReadOnlyList<int> prompt, int maxNewTokens,
        SamplingOptions? options = null, IReadOnlyCollection<int>? stopTokens = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompt);
        if (prompt.Count == 0) throw new ArgumentException("generation needs a prompt of at least one token", nameof(prompt));
        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        var sampler = new TokenSampler(options ?? SamplingOptions.Greedy);
        return Steps(model, prompt.ToArray(), maxNewTokens, sampler, (stopTokens ?? model.Config.EosTokenIds).ToHashSet());
    }

    private static IEnumerable<int> Steps(DecoderModel model, int[] prompt, int maxNewTokens, TokenSampler sampler, HashSet<int> stop)
    {
        if (maxNewTokens == 0) yield break;
        var cache = new KvCache(model.Config, prompt.Length + maxNewTokens - 1);
        var context = new List<int>(prompt);
        var logits = model.Forward(prompt, cache, lastPositionOnly: true);
        for (int produced = 1; ; produced++)
        {
            int next = sampler.Next(logits.Span, context);
            yield return next;
            if (produced == maxNewTokens || stop.Contains(next)) yield break;
            context.Add(next);
            logits = model.Forward([next], cache);
        }
    }
}
