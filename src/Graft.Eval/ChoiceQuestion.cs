using System.Text;
using Graft.Training.Data;

namespace Graft.Eval;

/// <summary>
/// A multiple-choice question from any set, in one shape: the question (with its context, if any), the options,
/// the right option's index, the image it needs (or null) and the categories it counts in.
/// </summary>
public sealed record ChoiceQuestion(string Id, string Question, IReadOnlyList<string> Choices, int Answer, string? ImagePath, IReadOnlyList<string> Categories)
{
    public char AnswerLetter => (char)('A' + Answer);

    /// <summary>
    /// The MMLU example layout for any set: "{q}\nA. ..\nB. ..\nAnswer:", behind an image placeholder line when the
    /// question has an image. For MMLU questions this is Hendrycks' format_example byte for byte.
    /// </summary>
    public string Render()
    {
        var text = new StringBuilder();
        if (ImagePath is not null) text.Append(EvalPrompt.ImagePlaceholder).Append('\n');
        text.Append(Question);
        for (int i = 0; i < Choices.Count; i++) text.Append('\n').Append((char)('A' + i)).Append(". ").Append(Choices[i]);
        return text.Append("\nAnswer:").ToString();
    }

    public static ChoiceQuestion FromMmlu(MmluQuestion q, int index) =>
        new($"{q.Subject}/{index}", q.Question, q.Choices, q.Answer, null, [q.Subject]);

    /// <summary>A ScienceQA problem with its hint as "Context: ..." after the question; categories are its breakdown.</summary>
    public static ChoiceQuestion FromScienceQa(ScienceQaProblem p)
    {
        string question = p.Hint.Trim().Length > 0 ? $"{p.Question}\nContext: {p.Hint.Trim()}" : p.Question;
        return new(p.Id, question, p.Choices, p.Answer, p.ImagePath, Breakdown(p));
    }

    /// <summary>The standard ScienceQA categories a problem counts in (TXT and IMG overlap, as get_scores counts them).</summary>
    public static IReadOnlyList<string> Breakdown(ScienceQaProblem p)
    {
        var categories = new List<string>(4) { p.SubjectCode };
        if (p.HasText) categories.Add("TXT");
        if (p.HasImage) categories.Add("IMG");
        if (p.NoContext) categories.Add("NO");
        categories.Add(p.GradeBand);
        return categories;
    }
}
