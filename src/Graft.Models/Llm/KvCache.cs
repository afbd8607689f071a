using Graft.Tensors;

namespace Graft.Models.Llm;

/// <summary>
/// Keys (after RoPE) and values of every layer for the tokens seen so far, in buffers allocated once for
/// <see cref="MaxLength"/> tokens: per layer [MaxLength, Hkv, D] float32 each. A forward appends its new
/// tokens to every layer, then <see cref="Length"/> advances by their count.
/// </summary>
public sealed class KvCache
{
    private readonly float[][] _keys;
    private readonly float[][] _values;
    private readonly int _rowLength;

    public KvCache(LlmConfig config, int maxLength)
        : this((config ?? throw new ArgumentNullException(nameof(config))).NumLayers, config.NumKeyValueHeads, config.HeadDim, maxLength)
    {
    }

    private KvCache(int layers, int keyValueHeads, int headDim, int maxLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLength);
        Layers = layers;
        KeyValueHeads = keyValueHeads;
        HeadDim = headDim;
        MaxLength = maxLength;
        _rowLength = KeyValueHeads * HeadDim;
        long perBuffer = (long)maxLength * _rowLength;
        if (perBuffer > Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, $"a cache of {maxLength} tokens exceeds one array per layer");
        _keys = new float[Layers][];
        _values = new float[Layers][];
        for (int i = 0; i < Layers; i++)
        {
            _keys[i] = new float[perBuffer];
            _values[i] = new float[perBuffer];
        }
    }

    public int Layers { get; }
    public int KeyValueHeads { get; }
    public int HeadDim { get; }
    public int MaxLength { get; }

    /// <summary>Tokens held (the position the next token takes).</summary>
    public int Length { get; private set; }

    /// <summary>
    /// A cache for <paramref name="maxLength"/> tokens holding a copy of the tokens this one holds: a plug-in's own
    /// cache (IAA's inner layers) outgrowing the size it was first given.
    /// </summary>
    public KvCache Grown(int maxLength)
    {
        if (maxLength < Length) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, $"the cache already holds {Length} tokens");
        var grown = new KvCache(Layers, KeyValueHeads, HeadDim, maxLength) { Length = Length };
        int used = Length * _rowLength;
        for (int i = 0; i < Layers; i++)
        {
            _keys[i].AsSpan(0, used).CopyTo(grown._keys[i]);
            _values[i].AsSpan(0, used).CopyTo(grown._values[i]);
        }
        return grown;
    }

    /// <summary>Forgets every token; the buffers are kept.</summary>
    public void Reset() => Length = 0;

    /// <summary>
    /// Keeps the first <paramref name="length"/> tokens and forgets the rest (the buffers are kept), so a sequence that
    /// shares them as a prefix continues from there.
    /// </summary>
    public void Truncate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        Length = length;
    }

    internal void CheckFits(LlmConfig config, int newTokens)
    {
        if (config.NumLayers != Layers || config.NumKeyValueHeads != KeyValueHeads || config.HeadDim != HeadDim)
            throw new ArgumentException($"KV cache for {Layers} layers x {KeyValueHeads} heads x {HeadDim} does not fit a model of {config.NumLayers} x {config.NumKeyValueHeads} x {config.HeadDim}");
        if (Length + newTokens > MaxLength)
            throw new InvalidOperationException($"KV cache holds {Length} of {MaxLength} tokens; {newTokens} more do not fit");
    }

    /// <summary>
    /// Writes k and v [1, T, Hkv, D] of one layer after the tokens held, and returns views of all
    /// Length + T keys and values [1, Length + T, Hkv, D] (no copy).
    /// </summary>
    internal (Tensor Keys, Tensor Values) Append(int layer, Tensor k, Tensor v)
    {
        int t = k.Dim(1);
        k.Span.CopyTo(_keys[layer].AsSpan(Length * _rowLength));
        v.Span.CopyTo(_values[layer].AsSpan(Length * _rowLength));
        int total = (Length + t) * _rowLength;
        return (Tensor.FromMemory(_keys[layer].AsMemory(0, total), 1, Length + t, KeyValueHeads, HeadDim),
                Tensor.FromMemory(_values[layer].AsMemory(0, total), 1, Length + t, KeyValueHeads, HeadDim));
    }

    /// <summary>Counts the tokens every layer has appended.</summary>
    internal void Advance(int tokens) => Length += tokens;
}
