using System.Runtime.CompilerServices;
using System.Text;
using Graft.Models.Tokenization;

namespace Graft.Models.Generation;

/// <summary>
/// Autoregressive text generation: prefills the prompt, then samples one token per step and streams its
/// text through the tokenizer's streaming decoder, so a piece never ends inside a character. Stops at an
/// EOS token (the tokenizer's and the checkpoint's), a stop token, a stop string (never emitted), MaxTokens,
/// or the model's MaxSequenceLength. Special tokens are left out of the text; ids the tokenizer has no
/// token for (padding rows of a larger embedding) add no text. Cancellation is checked before every step.
/// </summary>
public sealed class TextGenerator
{
    private readonly Tokenizer _tokenizer;
    private readonly ITokenSequenceModel _model;

    /// <param name="eosTokenIds">The checkpoint's EOS ids (generation_config.json); the tokenizer's EOS is added.</param>
    public TextGenerator(Tokenizer tokenizer, ITokenSequenceModel model, IEnumerable<int>? eosTokenIds = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(model);
        _tokenizer = tokenizer;
        _model = model;
        var eos = new HashSet<int>(eosTokenIds ?? []);
        if (tokenizer.EosTokenId is { } id) eos.Add(id);
        EosTokenIds = eos;
    }

    public IReadOnlySet<int> EosTokenIds { get; }

    /// <summary>Streams the completion's text pieces.</summary>
    public IAsyncEnumerable<string> GenerateAsync(IReadOnlyList<int> promptIds, SamplingOptions options, CancellationToken cancellationToken = default) =>
        GenerateAsync(promptIds, options, null, cancellationToken);

    /// <summary>Streams the completion's text pieces, then hands the whole result to <paramref name="completed"/>.</summary>
    public async IAsyncEnumerable<string> GenerateAsync(IReadOnlyList<int> promptIds, SamplingOptions options,
        Action<GenerationResult>? completed, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        // Each step is CPU-bound and synchronous; yielding once frees the caller before the prefill starts.
        await Task.Yield();
        var result = new GenerationResult[1];
        foreach (var piece in Run(promptIds, options, result, cancellationToken)) yield return piece;
        completed?.Invoke(result[0]);
    }

    public GenerationResult Generate(IReadOnlyList<int> promptIds, SamplingOptions options, CancellationToken cancellationToken = default)
    {
        var result = new GenerationResult[1];
        foreach (var _ in Run(promptIds, options, result, cancellationToken)) { }
        return result[0];
    }

    private IEnumerable<string> Run(IReadOnlyList<int> promptIds, SamplingOptions options, GenerationResult[] result, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (promptIds.Count == 0) throw new ArgumentException("the prompt has no tokens", nameof(promptIds));
        if (promptIds.Count >= _model.MaxSequenceLength)
            throw new ArgumentException($"the prompt has {promptIds.Count} tokens; the model holds at most {_model.MaxSequenceLength}, leaving no room for a completion", nameof(promptIds));

        var prompt = promptIds.ToArray();
        for (int i = 0; i < prompt.Length; i++)
            if ((uint)prompt[i] >= (uint)_model.VocabSize)
                throw new ArgumentException($"prompt token {i} has id {prompt[i]}, outside the model's vocabulary of {_model.VocabSize}; is the tokenizer the model's?", nameof(promptIds));
        var sampler = new Sampler(options, _model.VocabSize);
        sampler.Observe(prompt);
        var stopIds = new HashSet<int>(EosTokenIds);
        stopIds.UnionWith(options.StopTokenIds);
        var decoder = _tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
        var filter = new StopStringFilter(options.StopStrings);
        var text = new StringBuilder();
        var generated = new List<int>();
        var logits = new float[_model.VocabSize];
        var step = new int[1];

        cancellationToken.ThrowIfCancellationRequested();
        using var state = _model.CreateState();
        Append(state, prompt, logits);
        string finish;
        while (true)
        {
            int token = sampler.Sample(logits);
            generated.Add(token);
            if (stopIds.Contains(token)) { finish = FinishReason.Stop; break; }
            var piece = filter.Push(_tokenizer.IdToToken(token) is null ? "" : decoder.Step(token));
            if (piece.Length > 0)
            {
                text.Append(piece);
                yield return piece;
            }
            if (filter.Stopped) { finish = FinishReason.Stop; break; }
            if (generated.Count == options.MaxTokens || prompt.Length + generated.Count >= _model.MaxSequenceLength)
            {
                finish = FinishReason.Length;
                break;
            }
            cancellationToken.ThrowIfCancellationRequested();
            step[0] = token;
            sampler.Observe(step);
            Append(state, step, logits);
        }
        var tail = filter.Push(decoder.Flush()) + filter.Flush();
        if (tail.Length > 0)
        {
            text.Append(tail);
            yield return tail;
        }
        result[0] = new GenerationResult(text.ToString(), generated, finish, prompt.Length);
    }

    private void Append(ISequenceState state, int[] tokens, float[] logits)
    {
        var output = state.Append(tokens);
        if (output.Length != logits.Length)
            throw new InvalidOperationException($"the model returned {output.Length} logits for a vocabulary of {logits.Length}");
        output.CopyTo(logits);
    }
}
