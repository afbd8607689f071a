using System.Text;

namespace Graft.Data;

/// <summary>
/// A prompt as text with one <see cref="PromptFormats.ImagePlaceholder"/> per image (in order), and the character spans of
/// the text the loss is computed on (<see cref="Targets"/>, none for an evaluation prompt). With
/// <see cref="EndsWithEos"/>, the tokenizer's end-of-sequence token follows the text and is a target too.
/// </summary>
public sealed record FormattedPrompt(string Text, IReadOnlyList<string> ImagePaths, IReadOnlyList<Range> Targets, bool EndsWithEos = false)
{
    public bool HasImages => ImagePaths.Count > 0;
}

/// <summary>
/// The text layouts evaluation scores and training teaches, in one place: a plug-in is trained on exactly the prompts
/// it is later asked (Graft.Eval builds its requests with these; the trainer adds the answers as targets).
/// </summary>
public static class PromptFormats
{
    public const string ImagePlaceholder = Conversation.ImagePlaceholder;

    /// <summary>What precedes a free answer; the answer follows after a space.</summary>
    private const string AnswerCue = "Answer:";

    /// <summary>
    /// A free-answer request for assistant turn <paramref name="turn"/>: the raw transcript a base model continues,
    /// "Question: {user}\n" and "Answer: {assistant}\n\n" for the turns before it (system text first, on its own line),
    /// ending in "Answer:"; the images of those turns in order.
    /// </summary>
    public static FormattedPrompt FreeAnswer(Conversation conversation, int turn)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        ArgumentOutOfRangeException.ThrowIfNegative(turn);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(turn, conversation.Turns.Count);
        var text = new StringBuilder();
        var images = new List<string>();
        for (int i = 0; i < turn; i++) AppendTurn(text, images, conversation, i);
        text.Append(AnswerCue);
        return new FormattedPrompt(text.ToString(), images, []);
    }

    /// <summary>
    /// The whole conversation as <see cref="FreeAnswer"/> lays it out, with every assistant answer (" {answer}\n\n") as a
    /// target: the text before each target is exactly the free-answer request for that turn.
    /// </summary>
    public static FormattedPrompt FreeAnswerTranscript(Conversation conversation)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        var text = new StringBuilder();
        var images = new List<string>();
        var targets = new List<Range>();
        for (int i = 0; i < conversation.Turns.Count; i++)
        {
            int start = text.Length + AnswerCue.Length;
            AppendTurn(text, images, conversation, i);
            if (conversation.Turns[i].IsSupervised) targets.Add(start..text.Length);
        }
        return new FormattedPrompt(text.ToString(), images, targets);
    }

    /// <summary>ScienceQA as LaVIN asks it: the image placeholder line when the problem has an image, then its prompt ending in "Response:".</summary>
    public static FormattedPrompt ScienceQa(ScienceQaProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return problem.HasImage
            ? new FormattedPrompt(ImagePlaceholder + "\n" + problem.Prompt(), [problem.ImagePath!], [])
            : new FormattedPrompt(problem.Prompt(), [], []);
    }

    /// <summary>The ScienceQA request followed by LaVIN's answer (" The answer is X. BECAUSE: ...") and the end of the sequence.</summary>
    public static FormattedPrompt ScienceQaAnswered(ScienceQaProblem problem) => WithAnswer(ScienceQa(problem), " " + problem.Target(), endsWithEos: true);

    /// <summary>
    /// The MMLU example layout for any multiple-choice question: "{q}\nA. ..\nB. ..\nAnswer:", behind an image
    /// placeholder line when it has an image. For MMLU questions this is Hendrycks' format_example byte for byte.
    /// </summary>
    public static string Choice(string question, IReadOnlyList<string> choices, bool hasImage)
    {
        ArgumentNullException.ThrowIfNull(question);
        ArgumentNullException.ThrowIfNull(choices);
        var text = new StringBuilder();
        if (hasImage) text.Append(ImagePlaceholder).Append('\n');
        text.Append(question);
        for (int i = 0; i < choices.Count; i++) text.Append('\n').Append((char)('A' + i)).Append(". ").Append(choices[i]);
        return text.Append('\n').Append(AnswerCue).ToString();
    }

    /// <summary>A ScienceQA problem in the <see cref="Choice"/> layout (its hint as "Context: ..." after the question) and its letter.</summary>
    public static FormattedPrompt ChoiceAnswered(ScienceQaProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        var prompt = new FormattedPrompt(Choice(ChoiceQuestionText(problem), problem.Choices, problem.HasImage),
            problem.HasImage ? [problem.ImagePath!] : [], []);
        return WithAnswer(prompt, " " + problem.AnswerLetter, endsWithEos: false);
    }

    /// <summary>The question of a ScienceQA problem as the <see cref="Choice"/> layout shows it: with its hint as "Context: ..." when it has one.</summary>
    public static string ChoiceQuestionText(ScienceQaProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return problem.Hint.Trim().Length > 0 ? $"{problem.Question}\nContext: {problem.Hint.Trim()}" : problem.Question;
    }

    /// <summary>An MMLU question in Hendrycks' k-shot prompt (<see cref="MmluPrompt.Build"/>) and its letter.</summary>
    public static FormattedPrompt MmluAnswered(MmluQuestion question, IReadOnlyList<MmluQuestion> dev, int shots) =>
        WithAnswer(new FormattedPrompt(MmluPrompt.Build(question, dev, shots), [], []), " " + question.AnswerLetter, endsWithEos: false);

    /// <summary>The Stanford Alpaca template, then " {output}" and the end of the sequence.</summary>
    public static FormattedPrompt AlpacaAnswered(AlpacaExample example)
    {
        ArgumentNullException.ThrowIfNull(example);
        return WithAnswer(new FormattedPrompt(example.Prompt(), [], []), " " + example.Output, endsWithEos: true);
    }

    private static FormattedPrompt WithAnswer(FormattedPrompt prompt, string answer, bool endsWithEos) =>
        new(prompt.Text + answer, prompt.ImagePaths, [prompt.Text.Length..(prompt.Text.Length + answer.Length)], endsWithEos);

    /// <summary>One finished turn of the free-answer transcript, with its images.</summary>
    private static void AppendTurn(StringBuilder text, List<string> images, Conversation conversation, int index)
    {
        var turn = conversation.Turns[index];
        switch (turn.Role)
        {
            case Role.System: text.Append(turn.Text).Append('\n'); break;
            case Role.User: text.Append("Question: ").Append(turn.Text).Append('\n'); break;
            default: text.Append(AnswerCue).Append(' ').Append(turn.Text).Append("\n\n"); break;
        }
        images.AddRange(turn.ImageRefs.Select(r => conversation.ImagePaths[r]));
    }
}
