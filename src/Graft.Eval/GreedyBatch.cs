using System.Numerics.Tensors;
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
/// A sequence ends at an end-of-sequence token (not part of the text), when its text holds the stop string (cut before
/// it), or after <see cref="GreedySequence.Room"/> tokens.
/// </summary>
internal static class GreedyBatch
{
    /// <summary>Sequences decoding at once: their caches live together, and a step's linear layers read the weights once for all.</summary>
    public const int Width = 16;

    /// <param name="open">Opens sequence i (its state is disposed when it ends); called in order, when a place is free.</param>
    public static string[] Run(int count, Func<int, GreedySequence> open, Tokenizer tokenizer, IReadOnlySet<int> eos, Action<int>? completed)
    {
        var answers = new string[count];
        var running = new List<Running>(Width);
        int next = 0, done = 0;
        void Finish(Running sequence)
        {
            sequence.Sequence.State.Dispose();
            answers[sequence.Index] = sequence.Text;
            completed?.Invoke(++done);
        }
        while (next < count || running.Count > 0)
        {
            while (running.Count < Width && next < count)
            {
                var sequence = new Running(next, open(next));
                next++;
                if (sequence.Take(TensorPrimitives.IndexOfMax(sequence.Sequence.State.Append(sequence.Sequence.Prompt)), tokenizer, eos)) running.Add(sequence);
                else Finish(sequence);
            }
            if (running.Count == 0) continue;
            var logits = SequenceBatch.Step(running.Select(s => s.Sequence.State).ToArray(), running.Select(s => s.Token).ToArray());   // [B, V]
            int vocabulary = logits.Shape[1];
            var stepped = running.ToArray();
            running.Clear();
            for (int b = 0; b < stepped.Length; b++)
            {
                if (stepped[b].Take(TensorPrimitives.IndexOfMax(logits.Span.Slice(b * vocabulary, vocabulary)), tokenizer, eos)) running.Add(stepped[b]);
                else Finish(stepped[b]);
            }
        }
        return answers;
    }

    private sealed class Running(int index, GreedySequence sequence)
    {
        private readonly List<int> _generated = [];

        public int Index { get; } = index;
        public GreedySequence Sequence { get; } = sequence;
        public string Text { get; private set; } = "";

        /// <summary>The token to append at the next step.</summary>
        public int Token { get; private set; }

        /// <summary>Takes the greedy token; whether the sequence goes on (that token then appended at the next step).</summary>
        public bool Take(int token, Tokenizer tokenizer, IReadOnlySet<int> eos)
        {
            if (eos.Contains(token)) return false;
            _generated.Add(token);
            // Ids the tokenizer has no token for (padding rows of a larger embedding) add no text.
            Text = tokenizer.Decode(_generated.Where(id => tokenizer.IdToToken(id) is not null).ToArray(), skipSpecialTokens: true);
            if (Sequence.Stop is { } stop && Text.IndexOf(stop, StringComparison.Ordinal) is var at and >= 0)
            {
                Text = Text[..at];
                return false;
            }
            Token = token;
            return _generated.Count < Sequence.Room;
        }
    }
}
