namespace Graft.Tensors;

/// <summary>
/// Which keys each query of <see cref="Ops.Attention"/> may see. Causal masks place query i at absolute
/// position queryOffset + i (a KV cache holding queryOffset earlier keys) and let it see keys
/// 0..queryOffset + i. An explicit pattern [batch, Tq, Tk] (batch 1 = shared) may be combined with causality.
/// </summary>
public sealed class AttentionMask
{
    private readonly bool[]? _allowed;
    private readonly int _batch, _tq, _tk;

    private AttentionMask(bool causal, int queryOffset, bool[]? allowed, int batch, int tq, int tk)
    {
        if (queryOffset < 0) throw new ArgumentOutOfRangeException(nameof(queryOffset), queryOffset, "query offset must not be negative");
        IsCausal = causal;
        QueryOffset = queryOffset;
        _allowed = allowed;
        _batch = batch;
        _tq = tq;
        _tk = tk;
    }

    /// <summary>Every query sees every key.</summary>
    public static AttentionMask None { get; } = new(false, 0, null, 0, 0, 0);

    /// <summary>Query i sees keys 0..queryOffset + i; Tk must be at least queryOffset + Tq.</summary>
    public static AttentionMask Causal(int queryOffset = 0) => new(true, queryOffset, null, 0, 0, 0);

    /// <summary>
    /// An arbitrary pattern: allowed[(b·tq + i)·tk + j] says whether query i of sequence b may see key j;
    /// batch is 1 (one pattern for every sequence) or B. With causal, both conditions must hold.
    /// </summary>
    public static AttentionMask FromAllowed(bool[] allowed, int batch, int tq, int tk, bool causal = false, int queryOffset = 0)
    {
        ArgumentNullException.ThrowIfNull(allowed);
        if (batch < 1 || tq < 0 || tk < 0) throw new ArgumentException($"attention mask dimensions [{batch}, {tq}, {tk}] are invalid");
        if (allowed.Length != (long)batch * tq * tk)
            throw new ArgumentException($"attention mask has {allowed.Length} entries, expected batch·tq·tk = {batch}·{tq}·{tk}", nameof(allowed));
        return new(causal, queryOffset, (bool[])allowed.Clone(), batch, tq, tk);
    }

    public bool IsCausal { get; }

    public int QueryOffset { get; }

    /// <summary>True when an explicit pattern was given.</summary>
    public bool HasPattern => _allowed is not null;

    internal void Validate(int batch, int tq, int tk)
    {
        if (IsCausal && QueryOffset + tq > tk)
            throw new ArgumentException($"attention: causal mask with query offset {QueryOffset} needs at least {QueryOffset + tq} keys for {tq} queries, got {tk}");
        if (_allowed is not null && (_tq != tq || _tk != tk || (_batch != 1 && _batch != batch)))
            throw new ArgumentException($"attention: mask pattern [{_batch}, {_tq}, {_tk}] does not fit batch {batch}, {tq} queries, {tk} keys");
    }

    /// <summary>Keys at or beyond this index are hidden from query row i.</summary>
    internal int KeyLimit(int row, int tk) => IsCausal ? Math.Min(tk, QueryOffset + row + 1) : tk;

    /// <summary>The explicit pattern row for (sequence b, query i), or empty when there is none.</summary>
    internal ReadOnlySpan<bool> PatternRow(int b, int row) =>
        _allowed is null ? [] : _allowed.AsSpan(((_batch == 1 ? 0 : b) * _tq + row) * _tk, _tk);
}
