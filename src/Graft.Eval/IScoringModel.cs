namespace Graft.Eval;

/// <summary>
/// A request as the harness writes it: the full prompt text, with one <c>&lt;image&gt;</c> placeholder per
/// entry of <see cref="ImagePaths"/> in order. Formatting (few-shot examples, dialogue history) is already done;
/// a route only tokenises and runs it.
/// </summary>
public sealed record EvalPrompt(string Text, IReadOnlyList<string> ImagePaths)
{
    public const string ImagePlaceholder = Graft.Training.Data.PromptFormats.ImagePlaceholder;

    public static EvalPrompt TextOnly(string text) => new(text, []);

    /// <summary>The request of a shared layout (<see cref="Graft.Training.Data.PromptFormats"/>); its targets, if any, are not part of a request.</summary>
    public static EvalPrompt From(Graft.Training.Data.FormattedPrompt prompt) => new(prompt.Text, prompt.ImagePaths);

    public bool HasImages => ImagePaths.Count > 0;
}

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

    /// <summary>Prompts shortened from the left to fit the model's context so far (reported with the results).</summary>
    int TruncatedPrompts { get; }
}
