namespace Graft.Models.Generation;

/// <summary>Why a completion ended, with the OpenAI names the serving layer reports.</summary>
public static class FinishReason
{
    /// <summary>An EOS or stop token, or a stop string.</summary>
    public const string Stop = "stop";

    /// <summary>MaxTokens or the model's MaxSequenceLength.</summary>
    public const string Length = "length";
}

/// <param name="Text">The completion, without any stop string.</param>
/// <param name="TokenIds">Every generated token, including the stop token that ended it, if any.</param>
/// <param name="FinishReason">"stop" or "length" (<see cref="Generation.FinishReason"/>).</param>
public sealed record GenerationResult(string Text, IReadOnlyList<int> TokenIds, string FinishReason, int PromptTokens)
{
    public int CompletionTokens => TokenIds.Count;
}
