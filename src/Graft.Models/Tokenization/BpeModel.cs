using System.Collections.Concurrent;
using System.Text;

namespace Graft.Models.Tokenization;

/// <summary>
/// tokenizer.json `model` of type BPE: a word is split into characters (or byte-fallback / unk tokens), then
/// adjacent pairs are merged lowest rank first, leftmost on ties, until no pair has a merge.
/// </summary>
internal sealed class BpeModel
{
    // Words longer than this are not cached (the reference's MAX_LENGTH); the cache stops growing when full.
    private const int CacheableLength = 256;
    private const int CacheCapacity = 10_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly int[]? _byteFallbackIds;
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly bool _ignoreMerges;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    public BpeModel(JsonNode n)
    {
        if (n.OptionalString("continuing_subword_prefix") is { Length: > 0 })
            throw n.Required("continuing_subword_prefix").Unsupported("a continuing subword prefix is not supported");
        if (n.OptionalString("end_of_word_suffix") is { Length: > 0 })
            throw n.Required("end_of_word_suffix").Unsupported("an end-of-word suffix is not supported");
        if (n.Optional("dropout") is { } dropout && dropout.Element.GetDouble() != 0)
            throw dropout.Unsupported("BPE dropout is a training-time feature and is not supported");

        _vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (token, id) in n.Required("vocab").Properties()) _vocab[token] = id.AsInt();
        _vocabBySpan = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        MaxId = _vocab.Count == 0 ? -1 : _vocab.Values.Max();

        _merges = [];
        int rank = 0;
        foreach (var merge in n.Required("merges").Items())
        {
            var (left, right) = ParseMerge(merge);
            int leftId = _vocab.TryGetValue(left, out var l) ? l : throw merge.Malformed($"merge token '{left}' is not in model.vocab");
            int rightId = _vocab.TryGetValue(right, out var r) ? r : throw merge.Malformed($"merge token '{right}' is not in model.vocab");
            int newId = _vocab.TryGetValue(left + right, out var m) ? m : throw merge.Malformed($"merged token '{left + right}' is not in model.vocab");
            _merges[Key(leftId, rightId)] = (rank++, newId);
        }

        if (n.Bool("byte_fallback", false))
        {
            _byteFallbackIds = new int[256];
            for (int b = 0; b < 256; b++) _byteFallbackIds[b] = _vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1;
        }
        if (n.OptionalString("unk_token") is { } unk)
            _unkId = _vocab.TryGetValue(unk, out var id) ? id : throw n.Required("unk_token").Malformed($"'{unk}' is not in model.vocab");
        _fuseUnk = n.Bool("fuse_unk", false);
        _ignoreMerges = n.Bool("ignore_merges", false);
    }

    public int MaxId { get; }
    public IReadOnlyDictionary<string, int> Vocab => _vocab;

    public void Tokenize(string word, List<int> ids)
    {
        if (word.Length == 0) return;
        if (_ignoreMerges && _vocab.TryGetValue(word, out var whole)) { ids.Add(whole); return; }
        if (_cache.TryGetValue(word, out var cached)) { ids.AddRange(cached); return; }
        var result = Merge(word);
        if (word.Length < CacheableLength && _cache.Count < CacheCapacity) _cache.TryAdd(word, result);
        ids.AddRange(result);
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    private static (string, string) ParseMerge(JsonNode merge)
    {
        if (merge.Element.ValueKind == System.Text.Json.JsonValueKind.Array)
        {
            var parts = merge.Items().ToArray();
            if (parts.Length != 2) throw merge.Malformed("a merge pair must have exactly two tokens");
            return (parts[0].AsString(), parts[1].AsString());
        }
        var text = merge.AsString();
        int space = text.IndexOf(' ');
        if (space <= 0 || space == text.Length - 1 || text.IndexOf(' ', space + 1) >= 0)
            throw merge.Malformed($"'{text}' is not of the form \"left right\"");
        return (text[..space], text[(space + 1)..]);
    }

    /// <summary>Merges by a priority queue over a doubly linked list of symbols: O(n log n) for long words.</summary>
    private int[] Merge(string word)
    {
        var symbols = InitialSymbols(word);
        int n = symbols.Count;
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        var id = symbols.ToArray();
        for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; alive[i] = true; }

        // Priority: rank, then position, in one long so that the queue orders like the reference's heap.
        var queue = new PriorityQueue<(int Pos, int NewId), long>();
        for (int i = 0; i + 1 < n; i++)
            if (_merges.TryGetValue(Key(id[i], id[i + 1]), out var m)) queue.Enqueue((i, m.NewId), ((long)m.Rank << 32) | (uint)i);

        while (queue.TryDequeue(out var top, out _))
        {
            int pos = top.Pos;
            if (!alive[pos] || next[pos] < 0) continue;
            int right = next[pos];
            // A stale entry: one of the two symbols has changed since it was queued.
            if (!_merges.TryGetValue(Key(id[pos], id[right]), out var current) || current.NewId != top.NewId) continue;
            id[pos] = top.NewId;
            alive[right] = false;
            next[pos] = next[right];
            if (next[right] >= 0) prev[next[right]] = pos;
            if (prev[pos] >= 0 && _merges.TryGetValue(Key(id[prev[pos]], id[pos]), out var left))
                queue.Enqueue((prev[pos], left.NewId), ((long)left.Rank << 32) | (uint)prev[pos]);
            if (next[pos] >= 0 && _merges.TryGetValue(Key(id[pos], id[next[pos]]), out var after))
                queue.Enqueue((pos, after.NewId), ((long)after.Rank << 32) | (uint)pos);
        }

        var result = new List<int>(n);
        for (int i = 0; i < n; i++) if (alive[i]) result.Add(id[i]);
        return result.ToArray();
    }

    /// <summary>One symbol per character; unknown characters become byte-fallback tokens or (fused) unk, as merge_word in the reference.</summary>
    private List<int> InitialSymbols(string word)
    {
        var symbols = new List<int>(word.Length);
        int? pendingUnk = null;
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < word.Length;)
        {
            int length = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            var ch = word.AsSpan(i, length);
            i += length;
            if (_vocabBySpan.TryGetValue(ch, out var charId))
            {
                if (pendingUnk is { } u) { symbols.Add(u); pendingUnk = null; }
                symbols.Add(charId);
                continue;
            }
            if (_byteFallbackIds is not null)
            {
                int count = Encoding.UTF8.GetBytes(ch, utf8);
                bool all = true;
                for (int b = 0; b < count; b++) all &= _byteFallbackIds[utf8[b]] >= 0;
                if (all)
                {
                    for (int b = 0; b < count; b++) symbols.Add(_byteFallbackIds[utf8[b]]);
                    continue;
                }
            }
            if (_unkId is { } unk)
            {
                if (pendingUnk is { } u && !_fuseUnk) symbols.Add(u);
                pendingUnk = unk;
            }
        }
        if (pendingUnk is { } last) symbols.Add(last);
        return symbols;
    }
}
