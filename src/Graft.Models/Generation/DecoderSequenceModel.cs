using Graft.Models.Llm;

namespace Graft.Models.Generation;

/// <summary>
/// The decoder as an <see cref="ITokenSequenceModel"/>: a state is a KV cache of MaxSequenceLength tokens and
/// each append is a cached forward that computes the head for the last position only. A cache costs
/// 2 x layers x KV heads x head size x 4 bytes per token, so the cache of a disposed state is kept for the
/// next one (a chat session allocates it once).
/// </summary>
public sealed class DecoderSequenceModel : ITokenSequenceModel, IDisposable
{
    private readonly DecoderModel _model;
    private readonly bool _ownsModel;
    private KvCache? _spare;

    /// <param name="maxSequenceLength">Tokens a state may hold; capped at max_position_embeddings unless the
    /// checkpoint's dynamic rope scaling is made to run past it.</param>
    public DecoderSequenceModel(DecoderModel model, int maxSequenceLength, bool ownsModel = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSequenceLength, 2);
        _model = model;
        _ownsModel = ownsModel;
        var config = model.Config;
        MaxSequenceLength = config.RopeScaling.Kind == RopeScalingKind.Dynamic
            ? maxSequenceLength : Math.Min(maxSequenceLength, config.MaxPositionEmbeddings);
    }

    /// <summary>Loads the checkpoint of <paramref name="folder"/>; disposing the result releases it.</summary>
    public static DecoderSequenceModel Load(string folder, int maxSequenceLength) =>
        new(DecoderModel.Load(folder), maxSequenceLength, ownsModel: true);

    public DecoderModel Model => _model;
    public int VocabSize => _model.Config.VocabSize;
    public int MaxSequenceLength { get; }

    public ISequenceState CreateState()
    {
        var cache = Interlocked.Exchange(ref _spare, null) ?? new KvCache(_model.Config, MaxSequenceLength);
        cache.Reset();
        return new State(this, cache);
    }

    public void Dispose()
    {
        if (_ownsModel) _model.Dispose();
    }

    private sealed class State(DecoderSequenceModel owner, KvCache cache) : IDecoderSequenceState
    {
        private bool _disposed;

        public int Length => cache.Length;

        public DecoderModel Model => owner._model;

        public DecodeRow StepRow(int token)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return new DecodeRow(token, cache);
        }

        public ReadOnlySpan<float> Append(ReadOnlySpan<int> tokens)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            foreach (var id in tokens)
                if ((uint)id >= (uint)owner.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), id, $"token id {id} is outside the model's vocabulary of {owner.VocabSize}");
            return owner._model.Forward(tokens, cache, lastPositionOnly: true).Span;   // [1, V]
        }

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            Interlocked.CompareExchange(ref owner._spare, cache, null);
        }
    }
}
