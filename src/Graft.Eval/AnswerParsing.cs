using System.Text.RegularExpressions;

namespace Graft.Eval;

/// <summary>How generated answers are read and compared.</summary>
public static partial class AnswerParsing
{
    // ScienceQA's and LaVIN's extraction, verbatim: re.compile(r'The answer is ([A-Z]).') and findall; exactly one
    // match is an answer, none or several is "FAILED". The trailing '.' is any character, so "The answer is A" at
    // the very end of the output does not match, as in the original.
    [GeneratedRegex("The answer is ([A-Z]).", RegexOptions.CultureInvariant)]
    private static partial Regex AnswerIsPattern();

    /// <summary>
    /// The option index <paramref name="output"/> names with "The answer is X", or null when it names none, several,
    /// or a letter beyond the <paramref name="choiceCount"/> options (the originals then guess at random; Graft
    /// counts it as wrong and reports it as unparsed).
    /// </summary>
    public static int? ParseAnswerIs(string output, int choiceCount)
    {
        ArgumentNullException.ThrowIfNull(output);
        var matches = AnswerIsPattern().Matches(output);
        if (matches.Count != 1) return null;
        int index = matches[0].Groups[1].Value[0] - 'A';
        return index < choiceCount ? index : null;
    }

    /// <summary>Short free answers: trimmed, case-folded (invariant), one final period dropped, then trimmed again.</summary>
    public static string Normalize(string answer)
    {
        ArgumentNullException.ThrowIfNull(answer);
        string text = answer.Trim().ToLowerInvariant();
        if (text.EndsWith('.')) text = text[..^1].TrimEnd();
        return text;
    }

    public static bool ExactMatch(string prediction, string gold) => Normalize(prediction) == Normalize(gold);

    /// <summary>
    /// A short free answer's first line (leading white space skipped): an answer ends at its line break, so a base that
    /// writes on after it (the next question of a transcript) is judged on its answer alone.
    /// </summary>
    public static string FirstLine(string answer)
    {
        ArgumentNullException.ThrowIfNull(answer);
        string text = answer.TrimStart();
        int end = text.IndexOf('\n');
        return end < 0 ? text : text[..end];
    }
}
