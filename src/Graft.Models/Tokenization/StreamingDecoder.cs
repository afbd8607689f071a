namespace Graft.Models.Tokenization;

/// <summary>
/// Decodes ids one at a time, as the reference's DecodeStream: it decodes a short window of recent ids and
/// returns only the text that window adds beyond its prefix, holding text back while it ends in U+FFFD
/// (half a UTF-8 character from byte-level or byte-fallback tokens). The window keeps one earlier token of
/// context so decoders that treat the first token specially (SentencePiece's leading-space strip) are
/// not applied mid-stream. Concatenating every Step and the final Flush gives Decode of all ids.
/// </summary>
public sealed class StreamingDecoder
{
    private const char Replacement = '\uFFFD';
    private readonly Tokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly List<int> _ids = [];
    private string _prefix = "";
    private int _prefixIndex;

    internal StreamingDecoder(Tokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>The new complete text that <paramref name="id"/> finishes; empty while a character is incomplete.</summary>
    public string Step(int id)
    {
        if (_tokenizer.IdToToken(id) is null) throw new ArgumentOutOfRangeException(nameof(id), id, $"id {id} is not in the vocabulary");
        if (_prefix.Length == 0 && _ids.Count > 0)
        {
            var prefix = Decode();
            if (!prefix.EndsWith(Replacement))
            {
                _prefix = prefix;
                _prefixIndex = _ids.Count;
            }
        }
        _ids.Add(id);
        var text = Decode();
        if (text.Length <= _prefix.Length || text.EndsWith(Replacement)) return "";
        if (!text.StartsWith(_prefix, StringComparison.Ordinal))
            throw new InvalidOperationException($"the decoder changed earlier text: '{_prefix}' is not a prefix of '{text}'");
        var added = text[_prefix.Length..];
        int newPrefixIndex = _ids.Count - _prefixIndex;
        _ids.RemoveRange(0, _prefixIndex);
        _prefix = Decode();
        _prefixIndex = newPrefixIndex;
        return added;
    }

    /// <summary>Whatever is held back at the end of the stream (U+FFFD for bytes that never completed a character).</summary>
    public string Flush()
    {
        var text = Decode();
        var rest = text.Length > _prefix.Length && text.StartsWith(_prefix, StringComparison.Ordinal) ? text[_prefix.Length..] : "";
        _ids.Clear();
        _prefix = "";
        _prefixIndex = 0;
        return rest;
    }

    private string Decode() => _tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids), _skipSpecialTokens);
}
