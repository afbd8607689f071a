namespace Graft.Models.Generation;

/// <summary>
/// What generation needs from a language model: a vocabulary size, a context limit, and incremental states.
/// The decoder implements it through an adapter; plug-ins provide multimodal states through the same seam.
/// </summary>
public interface ITokenSequenceModel
{
    int VocabSize { get; }

    /// <summary>The most tokens one state may hold (prompt and completion together).</summary>
    int MaxSequenceLength { get; }

    ISequenceState CreateState();
}

/// <summary>One growing sequence with its cache (the KV cache for a decoder).</summary>
public interface ISequenceState : IDisposable
{
    /// <summary>Tokens appended so far.</summary>
    int Length { get; }

    /// <summary>
    /// Appends tokens (the whole prompt, or one decode step) and returns the logits [V] of the last appended
    /// position. The span is valid until the next call.
    /// </summary>
    ReadOnlySpan<float> Append(ReadOnlySpan<int> tokens);
}
