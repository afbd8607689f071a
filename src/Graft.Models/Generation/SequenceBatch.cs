using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Models.Generation;

/// <summary>
/// A state of a decoder whose single-token steps can join other sequences' steps on the same decoder
/// (<see cref="SequenceBatch.Step"/>), so that one pass over the weights serves them all.
/// </summary>
public interface IDecoderSequenceState : ISequenceState
{
    DecoderModel Model { get; }

    /// <summary>This sequence's part of a batched step that appends <paramref name="token"/> (its cache, its hooks).</summary>
    DecodeRow StepRow(int token);
}

/// <summary>Decode steps of several sequences at once (continuous batching appends one token to each running sequence).</summary>
public static class SequenceBatch
{
    /// <summary>
    /// Appends tokens[b] to states[b] for every b and returns the logits [B, V] of the appended positions, row b for
    /// states[b]. Decoder states on the same model step together (<see cref="DecoderModel.DecodeStep"/>), any other state
    /// alone; either way row b is bit for bit what states[b].Append(tokens[b]) gives. Every state must be distinct and
    /// have the same vocabulary.
    /// </summary>
    public static Tensor Step(IReadOnlyList<ISequenceState> states, ReadOnlySpan<int> tokens)
    {
        ArgumentNullException.ThrowIfNull(states);
        if (states.Count == 0) throw new ArgumentException("a step needs at least one sequence", nameof(states));
        if (tokens.Length != states.Count) throw new ArgumentException($"{tokens.Length} tokens for {states.Count} sequences", nameof(tokens));
        for (int b = 0; b < states.Count; b++)
            for (int other = 0; other < b; other++)
                if (ReferenceEquals(states[b], states[other])) throw new ArgumentException($"sequences {other} and {b} are the same state", nameof(states));

        var rows = new ReadOnlyMemory<float>[states.Count];
        var done = new bool[states.Count];
        for (int b = 0; b < states.Count; b++)
        {
            if (done[b] || states[b] is not IDecoderSequenceState first) continue;
            var group = new List<int>();
            for (int other = b; other < states.Count; other++)
                if (!done[other] && states[other] is IDecoderSequenceState s && ReferenceEquals(s.Model, first.Model)) group.Add(other);
            var decodeRows = new DecodeRow[group.Count];
            for (int i = 0; i < group.Count; i++) decodeRows[i] = ((IDecoderSequenceState)states[group[i]]).StepRow(tokens[group[i]]);
            var logits = first.Model.DecodeStep(decodeRows);
            int vocabulary = logits.Shape[1];
            for (int i = 0; i < group.Count; i++)
            {
                rows[group[i]] = logits.Memory.Slice(i * vocabulary, vocabulary);
                done[group[i]] = true;
            }
        }
        for (int b = 0; b < states.Count; b++)
            if (!done[b]) rows[b] = states[b].Append([tokens[b]]).ToArray();

        int width = rows[0].Length;
        var result = Tensor.Zeros(states.Count, width);
        for (int b = 0; b < states.Count; b++)
        {
            if (rows[b].Length != width) throw new ArgumentException($"sequence {b} has a vocabulary of {rows[b].Length}, sequence 0 one of {width}", nameof(states));
            rows[b].Span.CopyTo(result.Span.Slice(b * width, width));
        }
        return result;
    }
}
