using Graft.Models.Generation;
using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>
/// Generation with plug-ins: one host and the plug-in requests name, behind the <see cref="ITokenSequenceModel"/> seam
/// that <see cref="TextGenerator"/> drives. <see cref="Request"/> makes one prompt ready; its state prefills the prepared
/// embeddings (with the plug-in's hooks for that request) into a KV cache, then embeds each new token with the base's
/// embedding and runs it with the same hooks. A request the host routes to the base alone (no image, default text
/// route) runs exactly as <see cref="DecoderSequenceModel"/> does, so its tokens and logits are the base's, bit for bit.
/// </summary>
/// <remarks>
/// A cache costs 2 x layers x KV heads x head size x 4 bytes per token; the cache of a finished state is kept for the
/// next request, so a chat allocates it once.
/// </remarks>
public sealed class PluginSession
{
    private KvCache? _spare;

    /// <param name="pluginName">The attached plug-in requests use; null for the base alone.</param>
    /// <param name="maxSequenceLength">Tokens a state may hold, prompt (image positions included) and completion together;
    /// capped at max_position_embeddings unless the base's dynamic rope scaling runs past it.</param>
    /// <param name="imagePositionId">The id the generator is shown at positions that hold no token of the prompt
    /// (image features, tokens the plug-in adds): they count towards the context limit and a repetition penalty sees
    /// them; the model itself reads the prepared embeddings there.</param>
    public PluginSession(PluginHost host, string? pluginName, int maxSequenceLength, int imagePositionId = 0)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSequenceLength, 2);
        if (pluginName is not null) host.Plugin(pluginName);
        var config = host.Base.Config;
        ArgumentOutOfRangeException.ThrowIfNegative(imagePositionId);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(imagePositionId, config.VocabSize);
        Host = host;
        PluginName = pluginName;
        ImagePositionId = imagePositionId;
        MaxSequenceLength = config.RopeScaling.Kind == RopeScalingKind.Dynamic ? maxSequenceLength : Math.Min(maxSequenceLength, config.MaxPositionEmbeddings);
    }

    public PluginHost Host { get; }
    public string? PluginName { get; }
    public int ImagePositionId { get; }
    public int MaxSequenceLength { get; }

    /// <summary>
    /// One prompt, routed and prepared (images encoded) once; give the generator its <see cref="PluginRequest.PromptIds"/>.
    /// With <paramref name="maxNewTokens"/>, its states hold only the prompt and that many tokens (a smaller cache).
    /// </summary>
    public PluginRequest Request(MultimodalPrompt prompt, int? maxNewTokens = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (maxNewTokens is int n) ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        int vocabulary = Host.Base.Config.VocabSize, position = 0;
        foreach (var part in prompt.Parts)
        {
            if (part is not TextPart text) continue;
            foreach (var id in text.Ids)
            {
                if ((uint)id >= (uint)vocabulary)
                    throw new ArgumentException($"prompt token {position} has id {id}, outside the base's vocabulary of {vocabulary}; is the tokenizer the model's?", nameof(prompt));
                position++;
            }
        }
        var plugin = Host.Route(PluginName, prompt);
        PreparedInput? prepared = null;
        if (plugin is not null)
            using (Autograd.NoGrad()) prepared = plugin.Prepare(prompt);
        var ids = prepared is null ? prompt.TextIds() : IdsFor(prompt, prepared);
        int length = maxNewTokens is int m ? (int)Math.Min(MaxSequenceLength, (long)ids.Length + m) : MaxSequenceLength;
        return new PluginRequest(this, prompt, plugin, prepared, ids, length);
    }

    /// <summary>The kept cache when it holds <paramref name="length"/> tokens, else a new one.</summary>
    internal KvCache RentCache(int length)
    {
        var cache = Interlocked.Exchange(ref _spare, null);
        if (cache is null || cache.MaxLength < length) cache = new KvCache(Host.Base.Config, length);
        cache.Reset();
        return cache;
    }

    internal void ReturnCache(KvCache cache) => Interlocked.CompareExchange(ref _spare, cache, null);

    /// <summary>
    /// The prompt's token ids at the positions the layout gives them, <see cref="ImagePositionId"/> elsewhere. The text ids
    /// are placed in order on the positions outside the image mask when those are exactly as many; a design that adds
    /// tokens of its own (a modality token, image markers) changes the count, and then every position shows the stand-in.
    /// </summary>
    private int[] IdsFor(MultimodalPrompt prompt, PreparedInput prepared)
    {
        var ids = new int[prepared.Length];
        Array.Fill(ids, ImagePositionId);
        var text = prompt.Parts.OfType<TextPart>().SelectMany(p => p.Ids).ToArray();
        if (prepared.ImageMask.Count(m => !m) != text.Length) return ids;
        int next = 0;
        for (int i = 0; i < ids.Length; i++)
            if (!prepared.ImageMask[i]) ids[i] = text[next++];
        return ids;
    }
}

/// <summary>
/// One prompt of a <see cref="PluginSession"/> as an <see cref="ITokenSequenceModel"/>: each state's first append must
/// be <see cref="PromptIds"/> (the prompt), later appends are generated tokens.
/// </summary>
public sealed class PluginRequest : ITokenSequenceModel
{
    private readonly PluginSession _session;
    private readonly MultimodalPrompt _prompt;
    private PreparedInput? _unused;

    internal PluginRequest(PluginSession session, MultimodalPrompt prompt, IPlugin? plugin, PreparedInput? prepared, int[] promptIds, int maxSequenceLength)
    {
        MaxSequenceLength = maxSequenceLength;
        _session = session;
        _prompt = prompt;
        Plugin = plugin;
        _unused = prepared;
        PromptIds = promptIds;
    }

    /// <summary>The plug-in serving this prompt, or null when the host routed it to the base alone.</summary>
    public IPlugin? Plugin { get; }

    /// <summary>One id per position of the prepared prompt (see <see cref="PluginSession.ImagePositionId"/>).</summary>
    public IReadOnlyList<int> PromptIds { get; }

    public int VocabSize => _session.Host.Base.Config.VocabSize;
    public int MaxSequenceLength { get; }

    public ISequenceState CreateState()
    {
        PreparedInput? prepared = null;
        if (Plugin is not null)
        {
            // Hooks hold per-request state (a design's own caches), so a second state gets its own preparation.
            prepared = Interlocked.Exchange(ref _unused, null);
            if (prepared is null)
                using (Autograd.NoGrad()) prepared = Plugin.Prepare(_prompt);
        }
        return new State(this, prepared, _session.RentCache(MaxSequenceLength));
    }

    private sealed class State(PluginRequest owner, PreparedInput? prepared, KvCache cache) : IDecoderSequenceState
    {
        private bool _disposed;

        public int Length => cache.Length;

        public DecoderModel Model => owner._session.Host.Base;

        /// <summary>A generated token, embedded by the base and run with this request's hooks, as <see cref="Append"/> runs it.</summary>
        public DecodeRow StepRow(int token)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (cache.Length == 0) throw new InvalidOperationException($"the first append of a plug-in request must be its {owner.PromptIds.Count} prompt ids");
            return new DecodeRow(token, cache, prepared?.Hooks);
        }

        public ReadOnlySpan<float> Append(ReadOnlySpan<int> tokens)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            foreach (var id in tokens)
                if ((uint)id >= (uint)owner.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), id, $"token id {id} is outside the model's vocabulary of {owner.VocabSize}");
            var model = owner._session.Host.Base;
            bool prompt = cache.Length == 0;
            if (prompt && !tokens.SequenceEqual(owner.PromptIds.ToArray()))
                throw new InvalidOperationException($"the first append of a plug-in request must be its {owner.PromptIds.Count} prompt ids");
            if (prepared is null) return model.Forward(tokens, cache, lastPositionOnly: true).Span;   // [1, V]: the base alone
            using var _ = Autograd.NoGrad();
            var embeddings = prompt ? prepared.Embeddings : model.Embed(tokens);
            return model.ForwardEmbeddings(embeddings, cache, lastPositionOnly: true, hooks: prepared.Hooks).Span;
        }

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            owner._session.ReturnCache(cache);
        }
    }
}
