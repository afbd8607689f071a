using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Graft.Models.Tokenization;

/// <summary>
/// A regex matched over code points, like the Oniguruma engine the reference uses. .NET matches UTF-16 code
/// units, so an astral character (emoji, 𝐇, CJK extension B) is two surrogates of category Cs and `\p{L}`
/// or `[^\s\p{L}\p{N}]?` see the wrong thing. Text with surrogate pairs is matched on a copy in which each
/// astral code point is replaced by one BMP stand-in of the same general category; offsets map back.
/// </summary>
internal sealed class UnicodeRegex
{
    private static readonly char[] StandIn = BuildStandIns();
    private readonly Regex _regex;

    public UnicodeRegex(string pattern, string file, string field)
    {
        Source = pattern;
        try
        {
            _regex = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        }
        catch (ArgumentException e)
        {
            throw new UnsupportedTokenizerException(file, field, $"regex {pattern} is not supported by .NET: {e.Message}");
        }
    }

    public string Source { get; }

    /// <summary>Appends (start, end, isMatch) spans covering all of <paramref name="text"/>, as the reference's find_matches.</summary>
    public void Spans(string text, List<Span> spans, bool invert)
    {
        spans.Clear();
        if (text.Length == 0) { spans.Add(new Span(0, 0, false)); return; }
        int[]? toOriginal = null;
        var subject = text;
        if (HasSurrogates(text)) (subject, toOriginal) = MapAstral(text);
        int previous = 0;
        for (var m = _regex.Match(subject); m.Success; m = m.NextMatch())
        {
            int start = toOriginal is null ? m.Index : toOriginal[m.Index];
            int end = toOriginal is null ? m.Index + m.Length : toOriginal[m.Index + m.Length];
            if (start != previous) spans.Add(new Span(previous, start, invert));
            spans.Add(new Span(start, end, !invert));
            previous = end;
        }
        if (previous != text.Length) spans.Add(new Span(previous, text.Length, invert));
    }

    public string Replace(string text, string replacement)
    {
        var spans = new List<Span>();
        Spans(text, spans, invert: false);
        var sb = new StringBuilder(text.Length);
        foreach (var s in spans) sb.Append(s.IsMatch ? replacement : text.AsSpan(s.Start, s.End - s.Start));
        return sb.ToString();
    }

    private static bool HasSurrogates(string text) =>
        text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') >= 0;

    private static (string Mapped, int[] ToOriginal) MapAstral(string text)
    {
        var mapped = new StringBuilder(text.Length);
        var toOriginal = new int[text.Length + 1];
        int i = 0;
        while (i < text.Length)
        {
            toOriginal[mapped.Length] = i;
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                var category = CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]));
                mapped.Append(StandIn[(int)category]);
                i += 2;
            }
            else
            {
                mapped.Append(text[i]);
                i++;
            }
        }
        toOriginal[mapped.Length] = text.Length;
        return (mapped.ToString(), toOriginal);
    }

    /// <summary>For each general category, a non-ASCII BMP character of that category (so no ASCII literal in a pattern matches it).</summary>
    private static char[] BuildStandIns()
    {
        var result = new char[32];
        var found = new bool[32];
        for (int c = 0x100; c < 0x10000; c++)
        {
            if (c is >= 0xD800 and <= 0xDFFF) continue;
            int category = (int)CharUnicodeInfo.GetUnicodeCategory((char)c);
            if (found[category] || char.IsWhiteSpace((char)c)) continue;
            result[category] = (char)c;
            found[category] = true;
        }
        return result;
    }
}

internal readonly record struct Span(int Start, int End, bool IsMatch);
