using Graft.Data;

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
    public static int PickLetter(IScoringModel model, EvalPrompt prompt, int choices) => Best(model.LogLikelihoods(prompt, Letters(choices)));

    /// <summary>
    /// <see cref="PickLetter"/> for many prompts as one batch (the route may share their common prefixes), with
    /// <paramref name="progress"/> told each finished prompt.
    /// </summary>
    public static int[] PickLetters(IScoringModel model, IReadOnlyList<(EvalPrompt Prompt, int Choices)> questions, ProgressBar? progress)
    {
        var requests = questions.Select(q => new LikelihoodRequest(q.Prompt, Letters(q.Choices))).ToArray();
        return model.LogLikelihoods(requests, progress is null ? null : progress.Report).Select(Best).ToArray();
    }

    /// <summary>" A", " B", ... for <paramref name="choices"/> options.</summary>
    private static string[] Letters(int choices)
    {
        var candidates = new string[choices];
        for (int i = 0; i < choices; i++) candidates[i] = " " + (char)('A' + i);
        return candidates;
    }

    private static int Best(double[] scores)
    {
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
        var prompts = order.Select(question =>
        {
            var dev = subjects[question.Subject].Dev;
            return (EvalPrompt.TextOnly(MmluPrompt.Build(question, dev, Math.Min(options.Shots, dev.Count))), question.Choices.Count);
        }).ToArray();
        progress?.Start(spec.Name, order.Count);
        var picks = PickLetters(model, prompts, progress);
        for (int i = 0; i < order.Count; i++) result.Add(picks[i] == order[i].Answer, hasImage: false, [order[i].Subject]);
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
        var asked = problems.Where(p => !p.HasImage || model.AcceptsImages).ToList();
        for (int i = asked.Count; i < problems.Count; i++) result.Skip(NeedsPlugin);
        var requests = asked.Select(p => new GenerationRequest(EvalPrompt.From(PromptFormats.ScienceQa(p)), options.MaxNewTokens)).ToArray();
        progress?.Start(spec.Name, requests.Length);
        var answers = model.Generate(requests, progress is null ? null : progress.Report);
        for (int i = 0; i < asked.Count; i++)
        {
            var p = asked[i];
            int? answer = AnswerParsing.ParseAnswerIs(answers[i], p.Choices.Count);
            if (answer is null) result.Unparsed++;
            result.Add(answer == p.Answer, p.HasImage, ChoiceQuestion.Breakdown(p));
            result.Answered(p.Id, answers[i], p.AnswerLetter.ToString(), answer == p.Answer);
        }
        return result;
    }

    /// <summary>
    /// Short free answers (LLaVA conversations, the shapes world): every assistant turn is an item, asked with the earlier
    /// turns and their gold answers as history, laid out by the route's chat template (as `graft chat` and the server lay
    /// it out), answered greedily until the template's end of turn (or the token limit), and judged on its first line by
    /// <see cref="AnswerParsing.ExactMatch"/>; the answers as generated are kept in the result. Turns whose conversation has
    /// images are skipped without a plug-in.
    /// </summary>
    public static BenchResult FreeAnswers(BenchSpec spec, string file, string imageFolder, IScoringModel model, EvalOptions options, ProgressBar? progress)
    {
        var conversations = LlavaReader.Read(file, imageFolder);
        var items = conversations.SelectMany(c => c.SupervisedTurns.Select(turn => (Conversation: c, Turn: turn))).ToList();
        if (options.Limit is { } limit && items.Count > limit) items = items.GetRange(0, limit);
        var result = new BenchResult(spec.Name, spec.Path, ExactMatchMethod, model.Route);
        var asked = items.Select(item => (Item: item, Prompt: FreeAnswerPrompt(item.Conversation, item.Turn)))
            .Where(x => !x.Prompt.HasImages || model.AcceptsImages).ToList();
        for (int i = asked.Count; i < items.Count; i++) result.Skip(NeedsPlugin);
        progress?.Start(spec.Name, asked.Count);
        var answers = model.Generate(asked.Select(x => new GenerationRequest(x.Prompt, options.MaxNewTokens)).ToArray(),
            progress is null ? null : progress.Report);
        for (int i = 0; i < asked.Count; i++)
        {
            var ((conversation, turn), prompt) = asked[i];
            string gold = conversation.Turns[turn].Text;
            bool correct = AnswerParsing.ExactMatch(AnswerParsing.FirstLine(answers[i]), gold);
            result.Add(correct, prompt.HasImages, []);
            result.Answered($"{conversation.Id}#{turn}", answers[i], gold, correct);
        }
        return result;
    }

    /// <summary>The request for one assistant turn: the conversation before it, to be laid out in the route's chat template.</summary>
    public static EvalPrompt FreeAnswerPrompt(Conversation conversation, int turn) => EvalPrompt.Chat(PromptFormats.Chat(conversation, turn));

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
