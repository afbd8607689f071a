namespace Graft.Models.Generation;

/// <summary>
/// How to pick each next token and when to stop. Temperature 0 is greedy decoding; TopK 0 and TopP 1 turn
/// those filters off; RepetitionPenalty 1 turns it off. The same options and seed give the same tokens.
/// </summary>
public sealed record SamplingOptions
{
    public int MaxTokens { get; init; } = 256;
    public float Temperature { get; init; } = 1f;
    public int TopK { get; init; }
    public float TopP { get; init; } = 1f;

    /// <summary>Hugging Face semantics: the logit of every token already in the sequence (prompt included) is
    /// divided by the penalty when positive and multiplied by it when negative.</summary>
    public float RepetitionPenalty { get; init; } = 1f;

    public int Seed { get; init; }
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];

    /// <summary>Text that ends the completion; it is never part of the returned text.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    public bool IsGreedy => Temperature == 0f;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        if (MaxTokens < 1) throw Invalid(nameof(MaxTokens), MaxTokens, "must be at least 1");
        if (float.IsNaN(Temperature) || Temperature < 0f || float.IsPositiveInfinity(Temperature))
            throw Invalid(nameof(Temperature), Temperature, "must be a finite number >= 0 (0 = greedy)");
        if (TopK < 0) throw Invalid(nameof(TopK), TopK, "must be >= 0 (0 = off)");
        if (float.IsNaN(TopP) || TopP <= 0f || TopP > 1f) throw Invalid(nameof(TopP), TopP, "must be in (0, 1] (1 = off)");
        if (float.IsNaN(RepetitionPenalty) || RepetitionPenalty <= 0f || float.IsPositiveInfinity(RepetitionPenalty))
            throw Invalid(nameof(RepetitionPenalty), RepetitionPenalty, "must be a finite number > 0 (1 = off)");
        ArgumentNullException.ThrowIfNull(StopTokenIds, nameof(StopTokenIds));
        ArgumentNullException.ThrowIfNull(StopStrings, nameof(StopStrings));
        for (int i = 0; i < StopStrings.Count; i++)
            if (string.IsNullOrEmpty(StopStrings[i])) throw Invalid(nameof(StopStrings), $"[{i}]", "stop strings must not be empty");
    }

    private static ArgumentException Invalid(string name, object value, string rule) =>
        new($"sampling option {name} = {value} {rule}", name);
}
