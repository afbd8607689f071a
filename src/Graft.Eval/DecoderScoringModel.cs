using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Tensors;

namespace Graft.Eval;

/// <summary>
/// The base route: a frozen decoder and its tokenizer, text only. Continuations are split off the way
/// lm-evaluation-harness does (encode prompt, encode prompt + continuation, the continuation is what follows
/// their common prefix), so a tokenizer that writes " A" as one token and one that writes it as "▁" + "A" (or
/// merges it into the prompt's last token) are both scored correctly. When every candidate is one token after
/// the whole prompt, one forward over the prompt scores them all (the log-softmax of its last position);
/// otherwise each candidate gets a full forward and its tokens' log-probabilities are summed.
/// </summary>
public sealed class DecoderScoringModel : IScoringModel
{
    private readonly DecoderModel _model;
    private readonly Tokenizer _tokenizer;
    private readonly HashSet<int> _eos;

    public DecoderScoringModel(DecoderModel model, Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        _model = model;
        _tokenizer = tokenizer;
        _eos = [.. model.Config.EosTokenIds];
        if (tokenizer.EosTokenId is { } eos) _eos.Add(eos);
    }

    public string Route => "base";
    public bool AcceptsImages => false;
    public int TruncatedPrompts { get; private set; }

    /// <summary>Forwards run so far (one per prompt on the single-token path), so tests can see which path was taken.</summary>
    public int Forwards { get; private set; }

    private int ContextLength => _model.Config.MaxPositionEmbeddings;

    public double[] LogLikelihoods(EvalPrompt prompt, IReadOnlyList<string> continuations)
    {
        RefuseImages(prompt);
        if (continuations.Count == 0) throw new ArgumentException("no continuations to score", nameof(continuations));
        var context = _tokenizer.Encode(prompt.Text);
        var splits = new (int[] Full, int Common)[continuations.Count];
        bool singleTokens = true;
        for (int i = 0; i < continuations.Count; i++)
        {
            var full = _tokenizer.Encode(prompt.Text + continuations[i]);
            int common = CommonPrefix(context, full);
            if (common == full.Length)
                throw new ArgumentException($"continuation \"{continuations[i]}\" adds no token to the prompt", nameof(continuations));
            if (common == 0) throw new ArgumentException($"prompt and continuation \"{continuations[i]}\" share no token to condition on", nameof(continuations));
            splits[i] = (full, common);
            singleTokens &= common == context.Length && full.Length == context.Length + 1;
        }

        var scores = new double[continuations.Count];
        if (singleTokens)
        {
            var logits = Run(Fit(context, 0), lastPositionOnly: true);   // [1, V]
            var row = logits.Span;
            double logSum = LogSumExp(row);
            for (int i = 0; i < scores.Length; i++) scores[i] = row[splits[i].Full[^1]] - logSum;
            return scores;
        }
        for (int i = 0; i < scores.Length; i++)
        {
            var (full, common) = splits[i];
            int continuation = full.Length - common;
            if (continuation >= ContextLength) throw new ArgumentException($"continuation \"{continuations[i]}\" alone is {continuation} tokens, more than the model's context of {ContextLength}", nameof(continuations));
            var ids = Fit(full, 0);
            var logits = Run(ids, lastPositionOnly: false);   // [T, V]
            int vocab = logits.Shape[1];
            double total = 0;
            for (int p = ids.Length - continuation - 1; p < ids.Length - 1; p++)
            {
                var row = logits.Span.Slice(p * vocab, vocab);
                total += row[ids[p + 1]] - LogSumExp(row);
            }
            scores[i] = total;
        }
        return scores;
    }

    public string Generate(EvalPrompt prompt, int maxNewTokens, string? stop = null)
    {
        RefuseImages(prompt);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxNewTokens);
        var ids = Fit(_tokenizer.Encode(prompt.Text), Math.Min(maxNewTokens, ContextLength - 1));
        int room = Math.Min(maxNewTokens, ContextLength - ids.Length);
        var cache = new KvCache(_model.Config, ids.Length + room);
        var generated = new List<int>(room);
        var logits = _model.Forward(ids, cache, lastPositionOnly: true);
        Forwards++;
        string text = "";
        for (int step = 0; step < room; step++)
        {
            int next = ArgMax(logits.Span);
            if (_eos.Contains(next)) break;
            generated.Add(next);
            text = DecodeKnown(generated);
            if (stop is not null && text.IndexOf(stop, StringComparison.Ordinal) is var at and >= 0) return text[..at];
            if (step + 1 < room) logits = _model.Forward([next], cache, lastPositionOnly: true);
        }
        return text;
    }

    private Tensor Run(int[] ids, bool lastPositionOnly)
    {
        foreach (int id in ids)
            if ((uint)id >= (uint)_model.Config.VocabSize)
                throw new ArgumentException($"token id {id} from the tokenizer is outside the model's vocabulary of {_model.Config.VocabSize}");
        Forwards++;
        return _model.Forward(ids, lastPositionOnly: lastPositionOnly).ToF32();
    }

    /// <summary>Keeps the last tokens when prompt + <paramref name="reserve"/> new tokens exceed the context (lm-evaluation-harness drops from the left too).</summary>
    private int[] Fit(int[] ids, int reserve)
    {
        int limit = ContextLength - reserve;
        if (ids.Length <= limit) return ids;
        TruncatedPrompts++;
        return ids[^limit..];
    }

    /// <summary>Ids the tokenizer has no token for (padding rows of a larger embedding) add no text.</summary>
    private string DecodeKnown(List<int> ids)
    {
        var known = ids.Where(id => _tokenizer.IdToToken(id) is not null).ToArray();
        return _tokenizer.Decode(known, skipSpecialTokens: true);
    }

    private static void RefuseImages(EvalPrompt prompt)
    {
        if (prompt.HasImages) throw new NotSupportedException("the base route takes text only; a request with images needs a plug-in");
    }

    private static int CommonPrefix(int[] a, int[] b)
    {
        int n = Math.Min(a.Length, b.Length), i = 0;
        while (i < n && a[i] == b[i]) i++;
        return i;
    }

    internal static double LogSumExp(ReadOnlySpan<float> row)
    {
        float max = System.Numerics.Tensors.TensorPrimitives.Max(row);
        double sum = 0;
        foreach (float x in row) sum += Math.Exp(x - max);
        return max + Math.Log(sum);
    }

    private static int ArgMax(ReadOnlySpan<float> row) => System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row);
}
