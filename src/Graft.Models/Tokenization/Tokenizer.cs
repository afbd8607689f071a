using System.Text.Json;

namespace Graft.Models.Tokenization;

/// <summary>
/// A Hugging Face `tokenizer.json` (BPE: byte-level as GPT-2 / Qwen2 / Llama 3, or SentencePiece-style with
/// byte fallback as Llama 2 / Mistral) that encodes and decodes exactly as the `tokenizers` library does.
/// Pipeline: added tokens are cut out of the raw text; each remaining piece is normalized, searched again
/// for normalized added tokens, pre-tokenized into words, and each word is BPE-merged; the post-processor
/// adds BOS/EOS when asked. Thread-safe after construction.
/// </summary>
public sealed class Tokenizer
{
    private readonly BpeModel _model;
    private readonly Normalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly PostProcessor? _postProcessor;
    private readonly Decoder? _decoder;
    private readonly AddedTokenMatcher _rawMatcher;
    private readonly AddedTokenMatcher _normalizedMatcher;
    private readonly Dictionary<string, int> _addedByContent;
    private readonly string?[] _idToToken;
    private readonly bool[] _isSpecial;

    private Tokenizer(JsonNode root)
    {
        var model = root.Required("model");
        var type = model.OptionalString("type") ?? (model.Optional("merges") is not null ? "BPE" : null);
        if (type is null) throw model.Malformed("has neither a 'type' nor BPE 'merges'");
        if (type != "BPE") throw new UnsupportedTokenizerException(root.File, "model.type", $"model '{type}' is not supported (only BPE)");
        _model = new BpeModel(model);
        _normalizer = Normalizer.Parse(root.Optional("normalizer"));
        _preTokenizer = PreTokenizer.Parse(root.Optional("pre_tokenizer"));
        _postProcessor = PostProcessor.Parse(root.Optional("post_processor"));
        _decoder = Decoder.Parse(root.Optional("decoder"));

        var added = new List<AddedToken>();
        foreach (var t in root.Optional("added_tokens")?.Items() ?? [])
        {
            var content = t.String("content");
            // The reference keeps a token's model id when the model already has it, whatever the file says.
            int id = _model.Vocab.TryGetValue(content, out var modelId) ? modelId : t.Int("id");
            if (id < 0) throw t.Required("id").Malformed($"negative id {id}");
            bool special = t.Bool("special", false);
            added.Add(new AddedToken(id, content, special, t.Bool("single_word", false), t.Bool("lstrip", false),
                                     t.Bool("rstrip", false), t.Bool("normalized", !special)));
        }
        _addedByContent = added.GroupBy(a => a.Content).ToDictionary(g => g.Key, g => g.Last().Id, StringComparer.Ordinal);
        _rawMatcher = new AddedTokenMatcher(added.Where(a => !a.Normalized).Select(a => (a.Content, a)));
        _normalizedMatcher = new AddedTokenMatcher(added.Where(a => a.Normalized)
            .Select(a => (_normalizer?.Normalize(a.Content) ?? a.Content, a)));

        int size = Math.Max(_model.MaxId, added.Count == 0 ? -1 : added.Max(a => a.Id)) + 1;
        _idToToken = new string?[size];
        foreach (var (token, id) in _model.Vocab)
        {
            if (id < 0) throw new TokenizerFormatException(root.File, "model.vocab." + token, $"negative id {id}");
            _idToToken[id] = token;
        }
        foreach (var a in added) _idToToken[a.Id] = a.Content;
        var specialContents = added.Where(a => a.Special).Select(a => a.Content).ToHashSet(StringComparer.Ordinal);
        _isSpecial = Array.ConvertAll(_idToToken, t => t is not null && specialContents.Contains(t));
        SpecialTokens = added.Where(a => a.Special).GroupBy(a => a.Content).ToDictionary(g => g.Key, g => g.Last().Id, StringComparer.Ordinal);
    }

    /// <summary>Ids run from 0 to VocabSize - 1 (the largest id in the model or the added tokens, plus one).</summary>
    public int VocabSize => _idToToken.Length;
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }

    /// <summary>From tokenizer_config.json beside the tokenizer.json, when present.</summary>
    public string? BosToken { get; private set; }
    public string? EosToken { get; private set; }
    public int? BosTokenId => BosToken is null ? null : TokenToId(BosToken);
    public int? EosTokenId => EosToken is null ? null : TokenToId(EosToken);
    public bool? AddBosToken { get; private set; }
    public string? ChatTemplate { get; private set; }

    public static Tokenizer FromFile(string tokenizerJsonPath)
    {
        using var document = ParseJson(File.ReadAllBytes(tokenizerJsonPath), tokenizerJsonPath);
        var tokenizer = new Tokenizer(new JsonNode(tokenizerJsonPath, "", document.RootElement));
        var config = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tokenizerJsonPath))!, "tokenizer_config.json");
        if (File.Exists(config)) tokenizer.ReadConfig(File.ReadAllBytes(config), config);
        return tokenizer;
    }

    /// <summary>A tokenizer from the text of a tokenizer.json (and of its tokenizer_config.json); <paramref name="source"/> names it in errors.</summary>
    public static Tokenizer FromJson(string tokenizerJson, string? tokenizerConfigJson = null, string source = "tokenizer.json")
    {
        ArgumentNullException.ThrowIfNull(tokenizerJson);
        using var document = ParseJson(System.Text.Encoding.UTF8.GetBytes(tokenizerJson), source);
        var tokenizer = new Tokenizer(new JsonNode(source, "", document.RootElement));
        if (tokenizerConfigJson is not null) tokenizer.ReadConfig(System.Text.Encoding.UTF8.GetBytes(tokenizerConfigJson), source + " (tokenizer_config.json)");
        return tokenizer;
    }

    /// <summary>A Hugging Face model folder: tokenizer.json (required) and tokenizer_config.json (optional).</summary>
    public static Tokenizer FromFolder(string modelDir)
    {
        var path = Path.Combine(modelDir, "tokenizer.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"{modelDir} has no tokenizer.json", path);
        return FromFile(path);
    }

    public int? TokenToId(string token) =>
        _addedByContent.TryGetValue(token, out var id) || _model.Vocab.TryGetValue(token, out id) ? id : null;

    public string? IdToToken(int id) => id >= 0 && id < _idToToken.Length ? _idToToken[id] : null;

    /// <param name="addSpecialTokens">Let the post-processor add its tokens (Llama's BOS, say).</param>
    /// <param name="parseSpecialTokens">Recognise special tokens written in the text; false encodes "&lt;|im_end|&gt;" as plain text.</param>
    public int[] Encode(string text, bool addSpecialTokens = true, bool parseSpecialTokens = true)
    {
        var ids = new List<int>();
        Split(text, parseSpecialTokens, token => ids.Add(token.Id), word => _model.Tokenize(word, ids));
        if (addSpecialTokens && _postProcessor is not null) ids = _postProcessor.Process(ids);
        return ids.ToArray();
    }

    /// <summary>
    /// The words the BPE model sees, in order, as a trainer counts them (Hugging Face's pre_tokenize_str after the
    /// normalizer): added tokens are cut out and left out, the rest is normalized and pre-tokenized (byte-level words
    /// come out in their printable stand-in characters).
    /// </summary>
    public List<string> PreTokenize(string text, bool parseSpecialTokens = true)
    {
        var words = new List<string>();
        Split(text, parseSpecialTokens, _ => { }, words.Add);
        return words;
    }

    /// <summary>Cuts added tokens out of the raw and the normalized text and pre-tokenizes the rest, in text order.</summary>
    private void Split(string text, bool parseSpecialTokens, Action<AddedToken> addedToken, Action<string> word)
    {
        ArgumentNullException.ThrowIfNull(text);
        var rawSpans = new List<(int Start, int End, AddedToken? Token)>();
        var normalizedSpans = new List<(int Start, int End, AddedToken? Token)>();
        var words = new List<Piece>();
        _rawMatcher.Split(text, parseSpecialTokens, rawSpans);
        foreach (var (start, end, token) in rawSpans)
        {
            if (token is not null) { addedToken(token); continue; }
            var piece = text[start..end];
            var normalized = _normalizer?.Normalize(piece) ?? piece;
            _normalizedMatcher.Split(normalized, parseSpecialTokens, normalizedSpans);
            foreach (var (s, e, t) in normalizedSpans)
            {
                if (t is not null) { addedToken(t); continue; }
                var whole = new Piece(normalized[s..e], start == 0 && s == 0);
                words.Clear();
                if (_preTokenizer is null) words.Add(whole);
                else _preTokenizer.Split(whole, words);
                foreach (var w in words) word(w.Text);
            }
        }
    }

    /// <summary>The text of <paramref name="ids"/>; an id outside the vocabulary is an error.</summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var tokens = new List<string>(ids.Length);
        foreach (var id in ids)
        {
            if (IdToToken(id) is not { } token) throw new ArgumentOutOfRangeException(nameof(ids), id, $"id {id} is not in the vocabulary (size {VocabSize})");
            if (!(skipSpecialTokens && _isSpecial[id])) tokens.Add(token);
        }
        return _decoder is null ? string.Join(' ', tokens) : string.Concat(_decoder.DecodeChain(tokens));
    }

    /// <summary>A decoder fed one id at a time that only ever returns whole characters.</summary>
    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    private static JsonDocument ParseJson(byte[] json, string path)
    {
        try
        {
            return JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException(path, $"line {e.LineNumber + 1}, byte {e.BytePositionInLine}", "is not valid JSON: " + e.Message, e);
        }
    }

    private void ReadConfig(byte[] json, string path)
    {
        using var document = ParseJson(json, path);
        var root = new JsonNode(path, "", document.RootElement);
        BosToken = TokenName(root.Optional("bos_token"));
        EosToken = TokenName(root.Optional("eos_token"));
        AddBosToken = root.Optional("add_bos_token")?.AsBool();
        if (root.Optional("chat_template") is { } template)
        {
            // Either one template, or a list of {name, template} of which "default" is the one to use.
            ChatTemplate = template.Element.ValueKind == JsonValueKind.String ? template.AsString()
                : template.Items().Select(t => (Name: t.String("name"), Text: t.String("template")))
                    .OrderBy(t => t.Name == "default" ? 0 : 1).Select(t => t.Text).FirstOrDefault();
        }
    }

    /// <summary>A token in tokenizer_config.json: "&lt;s&gt;" or {"content": "&lt;s&gt;", ...}.</summary>
    private static string? TokenName(JsonNode? node) =>
        node is not { } n ? null : n.Element.ValueKind == JsonValueKind.String ? n.AsString() : n.String("content");
}
