namespace Graft.Models.Tokenization;

/// <summary>An entry of tokenizer.json `added_tokens`: matched in the text before the model sees it.</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord, bool LStrip, bool RStrip, bool Normalized);

/// <summary>
/// Finds added tokens in a string as the reference's AddedVocabulary::find_matches: leftmost-longest,
/// non-overlapping; a single_word token touching a word character is skipped, lstrip/rstrip swallow
/// neighbouring whitespace into the token's span.
/// </summary>
internal sealed class AddedTokenMatcher
{
    // First character -> candidates, longest first, so the first hit at a position is the longest.
    private readonly Dictionary<char, (string Pattern, AddedToken Token)[]> _byFirstChar;

    public AddedTokenMatcher(IEnumerable<(string Pattern, AddedToken Token)> patterns) =>
        _byFirstChar = patterns.Where(p => p.Pattern.Length > 0)
            .GroupBy(p => p.Pattern[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(p => p.Pattern.Length).ToArray());

    /// <summary>Spans covering <paramref name="text"/>; Token is null for text between added tokens. Empty spans are left out.</summary>
    public void Split(string text, bool parseSpecial, List<(int Start, int End, AddedToken? Token)> output)
    {
        output.Clear();
        int startOffset = 0, position = 0;
        while (_byFirstChar.Count > 0 && FindAt(text, position) is var (start, length, token) && token is not null)
        {
            int stop = start + length;
            position = stop;
            if (!parseSpecial && token.Special) continue;
            if (token.SingleWord && ((start > 0 && IsWordChar(text, start - 1, before: true)) || (stop < text.Length && IsWordChar(text, stop, before: false))))
                continue;
            if (token.LStrip)
            {
                int newStart = start;
                while (newStart > 0 && char.IsWhiteSpace(text[newStart - 1])) newStart--;
                start = Math.Max(newStart, startOffset);
            }
            if (token.RStrip)
                while (stop < text.Length && char.IsWhiteSpace(text[stop])) stop++;
            if (startOffset < start) output.Add((startOffset, start, null));
            output.Add((start, stop, token));
            startOffset = stop;
        }
        if (startOffset < text.Length) output.Add((startOffset, text.Length, null));
    }

    private (int Start, int Length, AddedToken? Token) FindAt(string text, int from)
    {
        for (int i = from; i < text.Length; i++)
        {
            if (!_byFirstChar.TryGetValue(text[i], out var candidates)) continue;
            foreach (var (pattern, token) in candidates)
                if (i + pattern.Length <= text.Length && string.CompareOrdinal(text, i, pattern, 0, pattern.Length) == 0)
                    return (i, pattern.Length, token);
        }
        return (text.Length, 0, null);
    }

    /// <summary>Rust regex `\w` on the code point just before (or at) an index: letters, marks, digits, connector punctuation.</summary>
    private static bool IsWordChar(string text, int index, bool before)
    {
        int codePoint = before && index > 0 && char.IsLowSurrogate(text[index]) && char.IsHighSurrogate(text[index - 1])
            ? char.ConvertToUtf32(text[index - 1], text[index])
            : char.IsHighSurrogate(text[index]) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1])
                ? char.ConvertToUtf32(text[index], text[index + 1]) : text[index];
        var category = System.Globalization.CharUnicodeInfo.GetUnicodeCategory(codePoint);
        return category is <= System.Globalization.UnicodeCategory.EnclosingMark // letters and marks
            or System.Globalization.UnicodeCategory.DecimalDigitNumber or System.Globalization.UnicodeCategory.LetterNumber
            or System.Globalization.UnicodeCategory.ConnectorPunctuation;
    }
}
