using System.Text;
using Graft.Models.Chat;

namespace Graft.Data;

/// <summary>
/// A prompt as text with one <see cref="PromptFormats.ImagePlaceholder"/> per image (in order), and the character spans of
/// the text the loss is computed on (<see cref="Targets"/>, none for an evaluation prompt). With
/// <see cref="EndsWithEos"/>, the tokenizer's end-of-sequence token follows the text and is a target too.
/// </summary>
public sealed record FormattedPrompt(string Text, IReadOnlyList<string> ImagePaths, IReadOnlyList<Range> Targets, bool EndsWithEos = false)
{
    public bool HasImages => ImagePaths.Count > 0;

    /// <summary>
    /// A conversation rendered by a chat template: the images already stand where the design puts them (inside the user
    /// turn), so no layout moves them again, and the first piece gets the tokenizer's special tokens only when
    /// <see cref="AddSpecialTokens"/> (not when the template wrote the beginning-of-sequence token itself).
    /// </summary>
    public bool ImagesPlaced { get; init; }

    public bool AddSpecialTokens { get; init; } = true;
}

/// <summary>A conversation as chat messages, and the image files of each message (placeholders in its text mark where they go).</summary>
public sealed record ChatTurns(IReadOnlyList<ChatMessage> Messages, IReadOnlyList<IReadOnlyList<string>> Images)
{
    public bool HasImages => Images.Any(list => list.Count > 0);
}

/// <summary>
/// The text layouts evaluation scores and training teaches, in one place: a plug-in is trained on exactly the prompts
/// it is later asked (Graft.Eval builds its requests with these; the trainer adds the answers as targets).
/// </summary>
public static class PromptFormats
{
    public const string ImagePlaceholder = Conversation.ImagePlaceholder;

    /// <summary>What precedes a letter answer; the letter follows after a space.</summary>
    private const string AnswerCue = "Answer:";

    /// <summary>
    /// The first <paramref name="turns"/> turns of a conversation as chat messages, each with its images: for a request,
    /// the turns before an assistant turn (the chat template then adds the generation prompt); for training, all of them.
    /// Conversations are trained and asked through a chat template (the base's own, or the one a recipe names), the same
    /// one `chat`, `generate --chat` and the server use.
    /// </summary>
    public static ChatTurns Chat(Conversation conversation, int turns)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        ArgumentOutOfRangeException.ThrowIfNegative(turns);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(turns, conversation.Turns.Count);
        var messages = new ChatMessage[turns];
        var images = new IReadOnlyList<string>[turns];
        for (int i = 0; i < turns; i++)
        {
            var turn = conversation.Turns[i];
            messages[i] = new ChatMessage(turn.Role switch { Role.System => ChatRole.System, Role.User => ChatRole.User, _ => ChatRole.Assistant }, turn.Text);
            images[i] = turn.ImageRefs.Select(r => conversation.ImagePaths[r]).ToArray();
        }
        return new ChatTurns(messages, images);
    }

    /// <summary>An Alpaca example as a conversation: the instruction (and its input, after a blank line) asked, the output answered.</summary>
    public static ChatTurns Chat(AlpacaExample example)
    {
        ArgumentNullException.ThrowIfNull(example);
        string question = example.Input.Length > 0 ? example.Instruction + "\n\n" + example.Input : example.Instruction;
        return new ChatTurns([ChatMessage.User(question), ChatMessage.Assistant(example.Output)], [[], []]);
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

    private static FormattedPrompt WithAnswer(FormattedPrompt prompt, string answer, bool endsWithEos) =>
        new(prompt.Text + answer, prompt.ImagePaths, [prompt.Text.Length..(prompt.Text.Length + answer.Length)], endsWithEos);
}
