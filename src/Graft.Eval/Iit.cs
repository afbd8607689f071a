using System.Text;
using Graft.Data;

namespace Graft.Eval;

/// <summary>One turn of an interleaved dialogue: the question and whether it is the configuration's image turn.</summary>
public sealed record IitTurn(ChoiceQuestion Question, bool IsImage);

/// <summary>One dialogue of one configuration (index <see cref="Index"/> within it).</summary>
public sealed record IitDialogue(string Configuration, int Index, IReadOnlyList<IitTurn> Turns);

/// <summary>
/// The interleaved benchmark, in the spirit of WINGS' IIT (its data was never released); docs/iit.md describes it
/// so that others can rebuild it. Dialogues of four multiple-choice turns, text (T) or image (I), in six
/// configurations from text-only to image-only. Dialogue d of every configuration draws from the same four text
/// and four image questions (turn k takes text question k or image question k), so configurations differ only
/// in where images are, and text accuracy across them measures how images earlier in a dialogue disturb text.
/// Every turn is scored by its answer letter with the earlier turns and their gold answers as history.
/// </summary>
public static class Iit
{
    public const int TurnsPerDialogue = 4;

    /// <summary>The six configurations, text-rich to image-rich.</summary>
    public static readonly IReadOnlyList<string> Configurations = ["TTTT", "TTTI", "ITTT", "TITI", "IIIT", "IIII"];

    /// <summary>
    /// Assembles <paramref name="dialogues"/> dialogues per configuration. One <see cref="SeededRandom"/>(seed)
    /// shuffles a copy of each pool (text first, then image); dialogue d takes the next four questions of each pool,
    /// reshuffling a pool (with the same generator) when fewer than four are left, so no question repeats within
    /// a dialogue.
    /// </summary>
    public static List<IitDialogue> Assemble(IReadOnlyList<ChoiceQuestion> textPool, IReadOnlyList<ChoiceQuestion> imagePool, int dialogues, ulong seed)
    {
        if (textPool.Count < TurnsPerDialogue || imagePool.Count < TurnsPerDialogue)
            throw new ArgumentException($"IIT needs at least {TurnsPerDialogue} text and {TurnsPerDialogue} image questions; got {textPool.Count} and {imagePool.Count}");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dialogues);
        var random = new SeededRandom(seed);
        var text = new Pool(textPool, random);
        var image = new Pool(imagePool, random);
        var slots = new List<(ChoiceQuestion[] Text, ChoiceQuestion[] Image)>(dialogues);
        for (int d = 0; d < dialogues; d++) slots.Add((text.Take(TurnsPerDialogue), image.Take(TurnsPerDialogue)));

        var result = new List<IitDialogue>(dialogues * Configurations.Count);
        foreach (var configuration in Configurations)
            for (int d = 0; d < dialogues; d++)
            {
                var turns = new IitTurn[TurnsPerDialogue];
                for (int k = 0; k < TurnsPerDialogue; k++)
                    turns[k] = configuration[k] == 'I' ? new IitTurn(slots[d].Image[k], true) : new IitTurn(slots[d].Text[k], false);
                result.Add(new IitDialogue(configuration, d, turns));
            }
        return result;
    }

    /// <summary>Turn <paramref name="turn"/>'s request: earlier turns rendered with " {gold letter}\n\n" after them, then this turn.</summary>
    public static EvalPrompt Prompt(IitDialogue dialogue, int turn)
    {
        var text = new StringBuilder();
        var images = new List<string>();
        for (int k = 0; k <= turn; k++)
        {
            var question = dialogue.Turns[k].Question;
            text.Append(question.Render());
            if (question.ImagePath is { } image) images.Add(image);
            if (k < turn) text.Append(' ').Append(question.AnswerLetter).Append("\n\n");
        }
        return new EvalPrompt(text.ToString(), images);
    }

    /// <summary>
    /// Scores every turn of every dialogue. Categories: per configuration all turns, then its text turns and image
    /// turns ("TTTI", "TTTI text", "TTTI image"). A dialogue with an image is skipped whole (and counted, per
    /// dialogue) on a route without images, so a configuration is never scored on a subset of its turns.
    /// </summary>
    public static BenchResult Run(BenchSpec spec, IScoringModel model, EvalOptions options, ProgressBar? progress)
    {
        var dialogues = Assemble(TextQuestions(spec.TextSet!, options), ImageQuestions(spec.ImageSet!, options), options.Limit ?? options.IitDialogues, options.Seed);
        var result = new BenchResult(spec.Name, spec.ToString(), Benchmarks.LetterMethod, model.Route);
        foreach (var configuration in Configurations)
        {
            result.Declare(configuration);
            if (configuration.Contains('T')) result.Declare(configuration + " text");
            if (configuration.Contains('I')) result.Declare(configuration + " image");
        }
        var turns = new List<(IitDialogue Dialogue, int Turn)>();
        foreach (var dialogue in dialogues)
        {
            if (dialogue.Turns.Any(t => t.IsImage) && !model.AcceptsImages) result.Skip(Benchmarks.NeedsPlugin + " (whole dialogues skipped)");
            else turns.AddRange(Enumerable.Range(0, dialogue.Turns.Count).Select(k => (dialogue, k)));
        }
        progress?.Start(spec.Name, turns.Count);
        var picks = Benchmarks.PickLetters(model, turns.Select(t => (Prompt(t.Dialogue, t.Turn), t.Dialogue.Turns[t.Turn].Question.Choices.Count)).ToArray(), progress);
        for (int i = 0; i < turns.Count; i++)
        {
            var (dialogue, k) = turns[i];
            var turn = dialogue.Turns[k];
            result.Add(picks[i] == turn.Question.Answer, turn.IsImage, [dialogue.Configuration, dialogue.Configuration + (turn.IsImage ? " image" : " text")]);
        }
        return result;
    }

    /// <summary>Text questions: every MMLU question of the split (subjects in order), or the ScienceQA problems of the split without an image.</summary>
    public static List<ChoiceQuestion> TextQuestions(BenchSpec set, EvalOptions options) => set.Kind switch
    {
        BenchKind.Mmlu => Benchmarks.LoadMmlu(set.Path, options).Values
            .SelectMany(s => s.Questions.Select(ChoiceQuestion.FromMmlu)).ToList(),
        BenchKind.ScienceQa => ScienceQaDataset.Load(set.Path).Split(options.Split)
            .Where(p => !p.HasImage).Select(ChoiceQuestion.FromScienceQa).ToList(),
        _ => throw new ArgumentException($"the IIT text set must be mmlu or scienceqa, not {set.Name}"),
    };

    /// <summary>
    /// Image questions: the ScienceQA problems of the split that have an image; for a shapes folder (one generated set,
    /// scored whole as its free answers are), every problem of its scienceqa/ folder that has an image, whatever its split.
    /// </summary>
    public static List<ChoiceQuestion> ImageQuestions(BenchSpec set, EvalOptions options)
    {
        var problems = set.Kind switch
        {
            BenchKind.ScienceQa => ScienceQaDataset.Load(set.Path).Split(options.Split),
            BenchKind.Shapes => AllSplits(ScienceQaDataset.Load(Path.Combine(set.Path, "scienceqa"))),
            _ => throw new ArgumentException($"the IIT image set must be scienceqa or shapes, not {set.Name}"),
        };
        return problems.Where(p => p.HasImage).Select(ChoiceQuestion.FromScienceQa).ToList();
    }

    private static List<ScienceQaProblem> AllSplits(ScienceQaDataset dataset) =>
        dataset.Splits.Keys.Order(StringComparer.Ordinal).SelectMany(dataset.Split).ToList();

    /// <summary>A shuffled pool handed out in order, reshuffled when it cannot fill a dialogue.</summary>
    private sealed class Pool(IReadOnlyList<ChoiceQuestion> items, SeededRandom random)
    {
        private readonly List<ChoiceQuestion> _order = Shuffled(items, random);
        private int _next;

        public ChoiceQuestion[] Take(int count)
        {
            if (_order.Count - _next < count)
            {
                random.Shuffle(_order);
                _next = 0;
            }
            var taken = _order.GetRange(_next, count).ToArray();
            _next += count;
            return taken;
        }

        private static List<ChoiceQuestion> Shuffled(IReadOnlyList<ChoiceQuestion> items, SeededRandom random)
        {
            var list = items.ToList();
            random.Shuffle(list);
            return list;
        }
    }
}
