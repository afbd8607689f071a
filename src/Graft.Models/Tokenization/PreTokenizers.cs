namespace Graft.Models.Tokenization;

/// <summary>A piece of normalized text on its way to the model; <see cref="AtStart"/>: it begins at offset 0 of the input.</summary>
internal readonly record struct Piece(string Text, bool AtStart);

/// <summary>tokenizer.json `pre_tokenizer`: splits a piece into the words the BPE model sees.</summary>
internal abstract class PreTokenizer
{
    public abstract void Split(Piece piece, List<Piece> output);

    public static PreTokenizer? Parse(JsonNode? node)
    {
        if (node is not { } n) return null;
        return n.Type switch
        {
            "Sequence" => new SequencePreTokenizer(n.Required("pretokenizers").Items().Select(i => Parse(i)!).ToArray()),
            "Split" => new SplitPreTokenizer(n.Pattern("pattern"), ParseBehavior(n), n.Bool("invert", false)),
            "ByteLevel" => new ByteLevelPreTokenizer(n.Bool("add_prefix_space", true), n.Bool("use_regex", true), n.File, n.Path),
            "Metaspace" => new MetaspacePreTokenizer(n),
            "Digits" => new SplitPreTokenizer(new UnicodeRegex(n.Bool("individual_digits", false) ? @"\p{N}" : @"\p{N}+", n.File, n.Path),
                                              SplitBehavior.Isolated, false),
            var other => throw new UnsupportedTokenizerException(n.File, n.Child("type"), $"pre-tokenizer '{other}' is not supported"),
        };
    }

    private static SplitBehavior ParseBehavior(JsonNode n)
    {
        var value = n.String("behavior");
        return Enum.TryParse<SplitBehavior>(value, out var b)
            ? b : throw n.Required("behavior").Malformed($"unknown split behavior '{value}'");
    }

    /// <summary>Keeps the spans of <paramref name="text"/> that <paramref name="behavior"/> keeps (NormalizedString::split).</summary>
    public static void SplitBy(string text, bool atStart, List<Span> spans, SplitBehavior behavior, List<Piece> output)
    {
        var kept = new List<(int Start, int End)>(spans.Count);
        bool previousMatch = false;
        switch (behavior)
        {
            case SplitBehavior.Removed:
                foreach (var s in spans) if (!s.IsMatch) kept.Add((s.Start, s.End));
                break;
            case SplitBehavior.Isolated:
                foreach (var s in spans) kept.Add((s.Start, s.End));
                break;
            case SplitBehavior.MergedWithPrevious:
                foreach (var s in spans)
                {
                    if (s.IsMatch && !previousMatch && kept.Count > 0) kept[^1] = (kept[^1].Start, s.End);
                    else kept.Add((s.Start, s.End));
                    previousMatch = s.IsMatch;
                }
                break;
            case SplitBehavior.MergedWithNext:
                for (int i = spans.Count - 1; i >= 0; i--)
                {
                    var s = spans[i];
                    if (s.IsMatch && !previousMatch && kept.Count > 0) kept[^1] = (s.Start, kept[^1].End);
                    else kept.Add((s.Start, s.End));
                    previousMatch = s.IsMatch;
                }
                kept.Reverse();
                break;
            case SplitBehavior.Contiguous:
                foreach (var s in spans)
                {
                    if (s.IsMatch == previousMatch && kept.Count > 0) kept[^1] = (kept[^1].Start, s.End);
                    else kept.Add((s.Start, s.End));
                    previousMatch = s.IsMatch;
                }
                break;
        }
        foreach (var (start, end) in kept)
            if (end > start) output.Add(new Piece(text[start..end], atStart && start == 0));
    }
}

internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

internal sealed class SequencePreTokenizer(PreTokenizer[] inner) : PreTokenizer
{
    public override void Split(Piece piece, List<Piece> output)
    {
        var current = new List<Piece> { piece };
        var next = new List<Piece>();
        foreach (var p in inner)
        {
            next.Clear();
            foreach (var c in current) p.Split(c, next);
            (current, next) = (next, current);
        }
        output.AddRange(current);
    }
}

internal sealed class SplitPreTokenizer(UnicodeRegex regex, SplitBehavior behavior, bool invert) : PreTokenizer
{
    [ThreadStatic] private static List<Span>? t_spans;

    public override void Split(Piece piece, List<Piece> output)
    {
        var spans = t_spans ??= [];
        regex.Spans(piece.Text, spans, invert);
        SplitBy(piece.Text, piece.AtStart, spans, behavior, output);
    }
}

/// <summary>ByteLevel: optional prefix space, GPT-2's regex when use_regex, then every UTF-8 byte as its printable stand-in char.</summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex, string file, string field) : PreTokenizer
{
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    private readonly SplitPreTokenizer? _split = useRegex
        ? new SplitPreTokenizer(new UnicodeRegex(Gpt2Pattern, file, field), SplitBehavior.Isolated, false) : null;

    public override void Split(Piece piece, List<Piece> output)
    {
        var text = addPrefixSpace && !piece.Text.StartsWith(' ') ? " " + piece.Text : piece.Text;
        int first = output.Count;
        if (_split is null) output.Add(piece with { Text = text });
        else _split.Split(piece with { Text = text }, output);
        for (int i = first; i < output.Count; i++) output[i] = output[i] with { Text = ByteLevel.Encode(output[i].Text) };
    }
}

/// <summary>Metaspace: spaces become the replacement char (▁), optionally prepended, optionally split before each ▁.</summary>
internal sealed class MetaspacePreTokenizer : PreTokenizer
{
    private readonly char _replacement;
    private readonly string _prepend;
    private readonly bool _split;

    public MetaspacePreTokenizer(JsonNode n)
    {
        var replacement = n.String("replacement");
        if (replacement.Length != 1) throw n.Required("replacement").Malformed("must be a single character");
        _replacement = replacement[0];
        _prepend = n.OptionalString("prepend_scheme") ?? (n.Bool("add_prefix_space", true) ? "always" : "never");
        if (_prepend is not ("always" or "first" or "never")) throw n.Required("prepend_scheme").Malformed($"unknown prepend scheme '{_prepend}'");
        _split = n.Bool("split", true);
    }

    public override void Split(Piece piece, List<Piece> output)
    {
        var text = piece.Text.Replace(' ', _replacement);
        bool prepend = _prepend == "always" || (_prepend == "first" && piece.AtStart);
        if (prepend && !text.StartsWith(_replacement)) text = _replacement + text;
        if (!_split) { output.Add(piece with { Text = text }); return; }
        var spans = new List<Span>();
        int last = 0;
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] != _replacement) continue;
            if (last < i) spans.Add(new Span(last, i, false));
            spans.Add(new Span(i, i + 1, true));
            last = i + 1;
        }
        if (last < text.Length || text.Length == 0) spans.Add(new Span(last, text.Length, false));
        SplitBy(text, piece.AtStart, spans, SplitBehavior.MergedWithNext, output);
    }
}
