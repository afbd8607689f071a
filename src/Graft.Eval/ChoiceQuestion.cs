using Graft.Data;

namespace Graft.Eval;

/// <summary>
/// A multiple-choice question from any set, in one shape: the question (with its context, if any), the options,
/// the right option's index, the image it needs (or null) and the categories it counts in.
/// </summary>
public sealed record ChoiceQuestion(string Id, string Question, IReadOnlyList<string> Choices, int Answer, string? ImagePath, IReadOnlyList<string> Categories)
{
    public char AnswerLetter => (char)('A' + Answer);

    /// <summary>The shared multiple-choice layout (<see cref="PromptFormats.Choice"/>): Hendrycks' format_example, behind an image line when it has one.</summary>
    public string Render() => PromptFormats.Choice(Question, Choices, ImagePath is not null);

    public static ChoiceQuestion FromMmlu(MmluQuestion q, int index) =>
        new($"{q.Subject}/{index}", q.Question, q.Choices, q.Answer, null, [q.Subject]);

    /// <summary>A ScienceQA problem with its hint as "Context: ..." after the question; categories are its breakdown.</summary>
    public static ChoiceQuestion FromScienceQa(ScienceQaProblem p) =>
        new(p.Id, PromptFormats.ChoiceQuestionText(p), p.Choices, p.Answer, p.ImagePath, Breakdown(p));

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
