namespace Graft.Eval;

/// <summary>
/// A request as the harness writes it: the full prompt text, with one <c>&lt;image&gt;</c> placeholder per
/// entry of <see cref="ImagePaths"/> in order. Formatting (few-shot examples, dialogue history) is already done;
/// a route only tokenises and runs it. A conversation (<see cref="Chat"/>) is instead given as its messages: the route
/// lays it out with its chat template (the base's own on the base route, the plug-in's on the plug-in's), exactly as
/// `graft chat` and the server do.
/// </summary>
public sealed record EvalPrompt(string Text, IReadOnlyList<string> ImagePaths)
{
    public const string ImagePlaceholder = Graft.Data.PromptFormats.ImagePlaceholder;

    /// <summary>The conversation a route renders with its chat template; null for a prompt given as text.</summary>
    public Graft.Data.ChatTurns? Conversation { get; init; }

    public static EvalPrompt TextOnly(string text) => new(text, []);

    /// <summary>The request of a shared layout (<see cref="Graft.Data.PromptFormats"/>); its targets, if any, are not part of a request.</summary>
    public static EvalPrompt From(Graft.Data.FormattedPrompt prompt) => new(prompt.Text, prompt.ImagePaths);

    /// <summary>A conversation (its messages and each one's images) to lay out with the route's chat template, asking for the next answer.</summary>
    public static EvalPrompt Chat(Graft.Data.ChatTurns conversation)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        return new EvalPrompt("", conversation.Images.SelectMany(list => list).ToArray()) { Conversation = conversation };
    }

    public bool HasImages => ImagePaths.Count > 0;
}

/// <summary>A log-likelihood request: the prompt and the continuations to score after it.</summary>
public sealed record LikelihoodRequest(EvalPrompt Prompt, IReadOnlyList<string> Continuations);

/// <summary>A generation request: greedy, at most <paramref name="MaxNewTokens"/> tokens, cut before <paramref name="Stop"/> when given.</summary>
public sealed record GenerationRequest(EvalPrompt Prompt, int MaxNewTokens, string? Stop = null);

/// <summary>
/// The seam between the harness and a model route (the base alone, or base + plug-in): the two things
/// evaluation asks of a model, so every benchmark runs the same way on every route.
/// </summary>
public interface IScoringModel
{
    /// <summary>Names the route in results ("base", "plugin:NAME").</summary>
    string Route { get; }

    /// <summary>Whether requests with images can be served; when not, the harness skips them and counts them.</summary>
    bool AcceptsImages { get; }

    /// <summary>
    /// log P(continuation | prompt) for each candidate, summed over the continuation's tokens (natural log).
    /// Candidates are plain text appended to the prompt (" A", " B", ...).
    /// </summary>
    double[] LogLikelihoods(EvalPrompt prompt, IReadOnlyList<string> continuations);

    /// <summary>Greedy completion of at most <paramref name="maxNewTokens"/> tokens, cut before <paramref name="stop"/> when given.</summary>
    string Generate(EvalPrompt prompt, int maxNewTokens, string? stop = null);

    /// <summary>
    /// The scores of many requests, in their order; a route may run them in another order and share work between them
    /// (a common prompt prefix), which changes no score beyond rounding. <paramref name="completed"/> is told the number of
    /// requests finished so far, each time one finishes. One at a time by default.
    /// </summary>
    IReadOnlyList<double[]> LogLikelihoods(IReadOnlyList<LikelihoodRequest> requests, Action<int>? completed = null)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var scores = new double[requests.Count][];
        for (int i = 0; i < requests.Count; i++)
        {
            scores[i] = LogLikelihoods(requests[i].Prompt, requests[i].Continuations);
            completed?.Invoke(i + 1);
        }
        return scores;
    }

    /// <summary>The completions of many requests, in their order (see the batch <see cref="LogLikelihoods(IReadOnlyList{LikelihoodRequest}, Action{int}?)"/>). One at a time by default.</summary>
    IReadOnlyList<string> Generate(IReadOnlyList<GenerationRequest> requests, Action<int>? completed = null)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var answers = new string[requests.Count];
        for (int i = 0; i < requests.Count; i++)
        {
            answers[i] = Generate(requests[i].Prompt, requests[i].MaxNewTokens, requests[i].Stop);
            completed?.Invoke(i + 1);
        }
        return answers;
    }

    /// <summary>Prompts shortened from the left to fit the model's context so far (reported with the results).</summary>
    int TruncatedPrompts { get; }
}
