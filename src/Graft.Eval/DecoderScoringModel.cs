using Graft.Models.Chat;
using Graft.Models.Generation;
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
/// otherwise each candidate gets a forward of its own and its tokens' log-probabilities are summed.
/// </summary>
/// <remarks>
/// A batch of requests shares work through one KV cache: the sequences to run are sorted by their tokens, and each
/// continues from the longest prefix it shares with the one before (MMLU's k-shot examples, a dialogue's earlier turns,
/// the prompt of a multi-token candidate), so only its own tokens run. A score then comes from a forward over fewer rows
/// than a forward over the whole sequence, which changes its last bits (about 1e-6 on a log-probability), never which
/// tokens are compared. Sorting keeps the result of a batch independent of the order of its requests.
/// Generation is greedy on a KV cache per prompt, the decode steps of up to <see cref="GreedyBatch.Width"/> prompts
/// batched (<see cref="GreedyBatch"/>), each completion bit for bit what decoding it alone gives.
/// </remarks>
public sealed class DecoderScoringModel : IScoringModel
{
    private readonly DecoderModel _model;
    private readonly Tokenizer _tokenizer;
    private readonly HashSet<int> _eos;
    private readonly ChatTemplate? _template;
    private KvCache? _cache;

    /// <param name="template">The chat template conversations are laid out with (the base's own); without one they are refused.</param>
    public DecoderScoringModel(DecoderModel model, Tokenizer tokenizer, ChatTemplate? template = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        _model = model;
        _tokenizer = tokenizer;
        _template = template;
        _eos = [.. model.Config.EosTokenIds];
        if (tokenizer.EosTokenId is { } eos) _eos.Add(eos);
    }

    public string Route => "base";
    public bool AcceptsImages => false;
    public int TruncatedPrompts { get; private set; }

    /// <summary>Forwards run so far (one per prompt on the single-token path), so tests can see which path was taken.</summary>
    public int Forwards { get; private set; }

    /// <summary>Tokens those forwards ran: a prefix continued from the cache is not run again.</summary>
    public long TokensRun { get; private set; }

    private int ContextLength => _model.Config.MaxPositionEmbeddings;

    public double[] LogLikelihoods(EvalPrompt prompt, IReadOnlyList<string> continuations) =>
        LogLikelihoods([new LikelihoodRequest(prompt, continuations)])[0];

    public IReadOnlyList<double[]> LogLikelihoods(IReadOnlyList<LikelihoodRequest> requests, Action<int>? completed = null)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var scores = new double[requests.Count][];
        var pending = new int[requests.Count];
        var runs = new List<Run>();
        for (int r = 0; r < requests.Count; r++)
        {
            var split = Split(requests[r]);
            scores[r] = new double[requests[r].Continuations.Count];
            pending[r] = split.Count;
            runs.AddRange(split.Select(run => run with { Request = r }));
        }

        // Sorted by tokens, runs that share a prefix follow each other; the sort is stable, so equal sequences keep their order.
        var order = Enumerable.Range(0, runs.Count).OrderBy(i => runs[i].Ids, TokenOrder.Instance).ToArray();
        int[] cached = [];
        int done = 0;
        foreach (int i in order)
        {
            var run = runs[i];
            int reuse = Math.Min(CommonPrefix(cached, run.Ids), run.FirstScored);
            var logits = Continue(run.Ids, reuse, lastPositionOnly: run.FirstScored == run.Ids.Length - 1);   // [rows, V]
            cached = run.Ids;
            int vocab = logits.Shape[1];
            var span = logits.Span;
            foreach (var (slot, position, token) in run.Targets)
            {
                var row = span.Slice((logits.Shape[0] == 1 ? 0 : position - reuse) * vocab, vocab);
                scores[run.Request][slot] += row[token] - LogSumExp(row);
            }
            if (--pending[run.Request] == 0) completed?.Invoke(++done);
        }
        return scores;
    }

    /// <summary>
    /// The runs one request needs: one over the prompt when every candidate is one token after it, else one per candidate;
    /// each with the positions whose next token it scores, for which candidate slot.
    /// </summary>
    private List<Run> Split(LikelihoodRequest request)
    {
        var (prompt, continuations) = (request.Prompt, request.Continuations);
        RefuseImages(prompt);
        if (prompt.Conversation is not null) throw new NotSupportedException("a conversation is asked for an answer to generate, not scored by likelihood");
        if (continuations.Count == 0) throw new ArgumentException("no continuations to score", nameof(request));
        var context = _tokenizer.Encode(prompt.Text);
        var splits = new (int[] Full, int Common)[continuations.Count];
        bool singleTokens = true;
        for (int i = 0; i < continuations.Count; i++)
        {
            var full = _tokenizer.Encode(prompt.Text + continuations[i]);
            int common = CommonPrefix(context, full);
            if (common == full.Length)
                throw new ArgumentException($"continuation \"{continuations[i]}\" adds no token to the prompt", nameof(request));
            if (common == 0) throw new ArgumentException($"prompt and continuation \"{continuations[i]}\" share no token to condition on", nameof(request));
            splits[i] = (full, common);
            singleTokens &= common == context.Length && full.Length == context.Length + 1;
        }

        if (singleTokens)
        {
            var ids = Fit(context, 0);
            return [new Run(0, ids, ids.Length - 1, splits.Select((s, slot) => (slot, ids.Length - 1, s.Full[^1])).ToArray())];
        }
        var runs = new List<Run>(continuations.Count);
        for (int slot = 0; slot < continuations.Count; slot++)
        {
            var (full, common) = splits[slot];
            int continuation = full.Length - common;
            if (continuation >= ContextLength) throw new ArgumentException($"continuation \"{continuations[slot]}\" alone is {continuation} tokens, more than the model's context of {ContextLength}", nameof(request));
            var ids = Fit(full, 0);
            int first = ids.Length - continuation - 1;
            var targets = new (int, int, int)[continuation];
            for (int p = first; p < ids.Length - 1; p++) targets[p - first] = (slot, p, ids[p + 1]);
            runs.Add(new Run(0, ids, first, targets));
        }
        return runs;
    }

    public string Generate(EvalPrompt prompt, int maxNewTokens, string? stop = null) => Generate([new GenerationRequest(prompt, maxNewTokens, stop)])[0];

    /// <summary>Greedy completions, decoded together (<see cref="GreedyBatch"/>): each is what decoding it alone gives.</summary>
    public IReadOnlyList<string> Generate(IReadOnlyList<GenerationRequest> requests, Action<int>? completed = null)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var prompts = requests.Select(PromptIds).ToArray();
        return GreedyBatch.Run(requests.Count, i => Open(prompts[i], requests[i]), _tokenizer, _eos, completed);
    }

    /// <summary>A generation request's prompt ids, shortened from the left to leave room for its new tokens; refuses images.</summary>
    internal int[] PromptIds(GenerationRequest request)
    {
        RefuseImages(request.Prompt);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(request.MaxNewTokens);
        return Fit(Encode(request.Prompt), Math.Min(request.MaxNewTokens, ContextLength - 1));
    }

    /// <summary>A text prompt's tokens, or a conversation as the chat template lays it out (its generation prompt added).</summary>
    internal int[] Encode(EvalPrompt prompt)
    {
        if (prompt.Conversation is not { } conversation) return _tokenizer.Encode(prompt.Text);
        var template = _template ?? throw new ArgumentException(
            "a conversation benchmark is asked in the model's chat template, and this base has none; name one with --template (plain for a base with no chat training)");
        return template.Encode(_tokenizer, conversation.Messages, addGenerationPrompt: true);
    }

    /// <summary>A state for <paramref name="ids"/> (from <see cref="PromptIds"/>) and its new tokens, no more.</summary>
    internal GreedySequence Open(int[] ids, GenerationRequest request)
    {
        int room = Math.Min(request.MaxNewTokens, ContextLength - ids.Length);
        Forwards++;
        TokensRun += ids.Length;
        return new GreedySequence(new DecoderSequenceModel(_model, ids.Length + room).CreateState(), ids, room, request.Stop);
    }

    /// <summary>
    /// Logits of <paramref name="ids"/> from position <paramref name="reuse"/> on (or of the last position only), the first
    /// <paramref name="reuse"/> tokens taken from the cache, which holds the previous run's sequence and shares them.
    /// </summary>
    private Tensor Continue(int[] ids, int reuse, bool lastPositionOnly)
    {
        foreach (int id in ids)
            if ((uint)id >= (uint)_model.Config.VocabSize)
                throw new ArgumentException($"token id {id} from the tokenizer is outside the model's vocabulary of {_model.Config.VocabSize}");
        if (_cache is null) _cache = new KvCache(_model.Config, ids.Length);
        else if (_cache.MaxLength < ids.Length) _cache = _cache.Grown(Math.Min(ContextLength, Math.Max(ids.Length, 2 * _cache.MaxLength)));
        _cache.Truncate(reuse);
        Forwards++;
        TokensRun += ids.Length - reuse;
        return _model.Forward(ids.AsSpan(reuse), _cache, lastPositionOnly).ToF32();
    }

    /// <summary>Keeps the last tokens when prompt + <paramref name="reserve"/> new tokens exceed the context (lm-evaluation-harness drops from the left too).</summary>
    private int[] Fit(int[] ids, int reserve)
    {
        int limit = ContextLength - reserve;
        if (ids.Length <= limit) return ids;
        TruncatedPrompts++;
        return ids[^limit..];
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

    /// <summary>
    /// One forward's worth of a request: <see cref="Ids"/> run from the shared prefix on; for each target, the log-probability
    /// of <c>Token</c> after <c>Position</c> is added to candidate <c>Slot</c>'s score. No position before <see cref="FirstScored"/> is scored.
    /// </summary>
    private sealed record Run(int Request, int[] Ids, int FirstScored, (int Slot, int Position, int Token)[] Targets);

    /// <summary>Lexicographic order of token sequences (a prefix before its extensions).</summary>
    private sealed class TokenOrder : IComparer<int[]>
    {
        public static readonly TokenOrder Instance = new();

        public int Compare(int[]? x, int[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}
