using Graft.Training.Data;

namespace Graft.Eval;

/// <summary>Runs one benchmark on one route. Each method reads its set, scores items in a fixed order, and tallies.</summary>
public static class Benchmarks
{
    public const string LetterMethod = "loglik-letter";
    public const string GenerateMethod = "generate-parse";
    public const string ExactMatchMethod = "generate-exact-match";
    public const string NeedsPlugin = "images need a plug-in";

    public static BenchResult Run(BenchSpec spec, IScoringModel model, EvalOptions options, ProgressBar? progress = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        int truncatedBefore = model.TruncatedPrompts;
        var result = spec.Kind switch
        {
            BenchKind.Mmlu => Mmlu(spec, model, options, progress),
            BenchKind.ScienceQa => ScienceQa(spec, model, options, progress),
            BenchKind.Shapes => FreeAnswers(spec, System.IO.Path.Combine(spec.Path, "llava.json"), System.IO.Path.Combine(spec.Path, "images"), model, options, progress),
            BenchKind.Llava => FreeAnswers(spec, spec.Path, LlavaReader.DefaultImageFolder(spec.Path), model, options, progress),
            BenchKind.Iit => Iit.Run(spec, model, options, progress),
            _ => throw new ArgumentOutOfRangeException(nameof(spec), spec.Kind, "unknown benchmark kind"),
        };
        result.Truncated = model.TruncatedPrompts - truncatedBefore;
        return result;
    }

    /// <summary>The option whose letter (" A", " B", ...) the model finds likeliest after the prompt; ties go to the first.</summary>
    public static int PickLetter(IScoringModel model, EvalPrompt prompt, int choices)
    {
        var candidates = new string[choices];
        for (int i = 0; i < choices; i++) candidates[i] = " " + (char)('A' + i);
        var scores = model.LogLikelihoods(prompt, candidates);
        int best = 0;
        for (int i = 1; i < scores.Length; i++)
            if (scores[i] > scores[best]) best = i;
        return best;
    }

    /// <summary>
    /// MMLU: Hendrycks' k-shot prompt per subject and the likeliest answer letter. A folder gives the shots from
    /// dev/ and the questions from the split folder; a JSONL file takes the first k questions of each subject as
    /// its shots and scores the rest. With a limit, questions are taken round-robin over subjects so every subject
    /// is represented.
    /// </summary>
    public static BenchResult Mmlu(BenchSpec spec, IScoringModel model, EvalOptions options, ProgressBar? progress)
    {
        var subjects = LoadMmlu(spec.Path, options);
        var result = new BenchResult(spec.Name, spec.Path, LetterMethod, model.Route);
        foreach (var subject in subjects.Keys) result.Declare(subject);
        var order = RoundRobin(subjects.Values.Select(s => s.Questions).ToList(), options.Limit);
        progress?.Start(spec.Name, order.Count);
        for (int i = 0; i < order.Count; i++)
        {
            var question = order[i];
            var dev = subjects[question.Subject].Dev;
            var prompt = EvalPrompt.TextOnly(MmluPrompt.Build(question, dev, Math.Min(options.Shots, dev.Count)));
            bool correct = PickLetter(model, prompt, question.Choices.Count) == question.Answer;
            result.Add(correct, hasImage: false, [question.Subject]);
            progress?.Report(i + 1);
        }
        return result;
    }

    /// <summary>Per subject (ordinal order): the questions scored and the dev examples used as shots (<see cref="MmluReader.LoadWithShots"/>).</summary>
    public static SortedDictionary<string, (List<MmluQuestion> Questions, List<MmluQuestion> Dev)> LoadMmlu(string path, EvalOptions options) =>
        MmluReader.LoadWithShots(path, options.Split, options.Shots);

    /// <summary>
    /// ScienceQA as LaVIN evaluates it: its prompt, greedy generation, "The answer is X" read with the original
    /// regex; an unreadable answer is wrong and counted. Image problems without a plug-in are skipped and counted.
    /// </summary>
    public static BenchResult ScienceQa(BenchSpec spec, IScoringModel model, EvalOptions options, ProgressBar? progress)
    {
        var problems = ScienceQaDataset.Load(spec.Path).Split(options.Split);
        if (options.Limit is { } limit && problems.Count > limit) problems = problems.GetRange(0, limit);
        var result = new BenchResult(spec.Name, spec.Path, GenerateMethod, model.Route);
        foreach (var category in ScienceQaBreakdown.Categories) result.Declare(category);
        progress?.Start(spec.Name, problems.Count);
        for (int i = 0; i < problems.Count; i++)
        {
            var p = problems[i];
            if (p.HasImage && !model.AcceptsImages) result.Skip(NeedsPlugin);
            else
            {
                var prompt = EvalPrompt.From(PromptFormats.ScienceQa(p));
                int? answer = AnswerParsing.ParseAnswerIs(model.Generate(prompt, options.MaxNewTokens), p.Choices.Count);
                if (answer is null) result.Unparsed++;
                result.Add(answer == p.Answer, p.HasImage, ChoiceQuestion.Breakdown(p));
            }
            progress?.Report(i + 1);
        }
        return result;
    }

    /// <summary>
    /// Short free answers (LLaVA conversations, the shapes world): every assistant turn is an item, asked with the
    /// earlier turns and their gold answers as history, answered greedily up to the first newline and compared by
    /// <see cref="AnswerParsing.ExactMatch"/>. Turns whose conversation has images are skipped without a plug-in.
    /// </summary>
    public static BenchResult FreeAnswers(BenchSpec spec, string file, string imageFolder, IScoringModel model, EvalOptions options, ProgressBar? progress)
    {
        var conversations = LlavaReader.Read(file, imageFolder);
        var items = conversations.SelectMany(c => c.SupervisedTurns.Select(turn => (Conversation: c, Turn: turn))).ToList();
        if (options.Limit is { } limit && items.Count > limit) items = items.GetRange(0, limit);
        var result = new BenchResult(spec.Name, spec.Path, ExactMatchMethod, model.Route);
        progress?.Start(spec.Name, items.Count);
        for (int i = 0; i < items.Count; i++)
        {
            var (conversation, turn) = items[i];
            var prompt = FreeAnswerPrompt(conversation, turn);
            if (prompt.HasImages && !model.AcceptsImages) result.Skip(NeedsPlugin);
            else
            {
                string answer = model.Generate(prompt, options.MaxNewTokens, stop: "\n");
                result.Add(AnswerParsing.ExactMatch(answer, conversation.Turns[turn].Text), prompt.HasImages, []);
            }
            progress?.Report(i + 1);
        }
        return result;
    }

    /// <summary>The free-answer request for one assistant turn (<see cref="PromptFormats.FreeAnswer"/>).</summary>
    public static EvalPrompt FreeAnswerPrompt(Conversation conversation, int turn) => EvalPrompt.From(PromptFormats.FreeAnswer(conversation, turn));

    internal static List<T> RoundRobin<T>(IReadOnlyList<List<T>> groups, int? limit)
    {
        var order = new List<T>();
        int total = groups.Sum(g => g.Count), cap = Math.Min(limit ?? total, total);
        for (int round = 0; order.Count < cap; round++)
            foreach (var group in groups)
                if (round < group.Count && order.Count < cap) order.Add(group[round]);
        return order;
    }
}
