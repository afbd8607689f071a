using Graft.Models.Generation;
using Graft.Models.Tokenization;

namespace Graft.Eval;

/// <summary>One greedy completion to run: a fresh state, the prompt ids it starts with, at most <paramref name="Room"/> new tokens, an optional stop string.</summary>
internal sealed record GreedySequence(ISequenceState State, int[] Prompt, int Room, string? Stop);

/// <summary>
/// Greedy completions of many prompts, up to <see cref="Width"/> at a time: each prompt is prefilled on its own, then the
/// running sequences take their decode steps together (<see cref="SequenceBatch.Step"/>: one pass over the weights for
/// all of them), and a finished sequence's place goes to the next prompt. Each row of a batched step is bit for bit that
/// sequence's step alone, so a completion does not depend on its neighbours: the text is what decoding it alone gives.
/// Each sequence is a greedy <see cref="Completion"/>: it ends at an end-of-sequence token (not part of the text), when
/// its text holds the stop string (cut before it), or after <see cref="GreedySequence.Room"/> tokens.
/// </summary>
internal static class GreedyBatch
{
    /// <summary>Sequences decoding at once: their caches live together, and a step's linear layers read the weights once for all.</summary>
    public const int Width = 16;

    /// <param name="open">Opens sequence i (its state is disposed when it ends); called in order, when a place is free.</param>
    public static string[] Run(int count, Func<int, GreedySequence> open, Tokenizer tokenizer, IReadOnlySet<int> eos, Action<int>? completed)
    {
        var answers = new string[count];
        var running = new List<(int Index, GreedySequence Sequence, Completion Completion)>(Width);
        int next = 0, done = 0;
        void RemoveFinished()
        {
            for (int i = running.Count - 1; i >= 0; i--)
            {
                if (!running[i].Completion.IsFinished) continue;
                running[i].Sequence.State.Dispose();
                answers[running[i].Index] = running[i].Completion.Result!.Text;
                completed?.Invoke(++done);
                running.RemoveAt(i);
            }
        }
        while (next < count || running.Count > 0)
        {
            RemoveFinished();
            while (running.Count < Width && next < count)
            {
                var sequence = open(next);
                var logits = sequence.State.Append(sequence.Prompt).ToArray();
                var options = new SamplingOptions { Temperature = 0f, MaxTokens = sequence.Room, StopStrings = sequence.Stop is { } stop ? [stop] : [] };
                var completion = new Completion(tokenizer, eos, options, logits.Length, sequence.Prompt.Length + sequence.Room, sequence.Prompt);
                running.Add((next++, sequence, completion));
                completion.Step(logits);
            }
            RemoveFinished();
            if (running.Count == 0) continue;
            var step = SequenceBatch.Step(running.Select(s => s.Sequence.State).ToArray(), running.Select(s => s.Completion.NextToken).ToArray());   // [B, V]
            int vocabulary = step.Shape[1];
            for (int b = 0; b < running.Count; b++) running[b].Completion.Step(step.Span.Slice(b * vocabulary, vocabulary));
        }
        return answers;
    }
}
