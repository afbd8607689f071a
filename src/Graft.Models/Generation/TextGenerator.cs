using System.Runtime.CompilerServices;
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
        EosTokenIds = EosTokensOf(tokenizer, eosTokenIds);
    }

    /// <summary>The tokens that end a completion: the checkpoint's EOS ids and the tokenizer's EOS.</summary>
    public static IReadOnlySet<int> EosTokensOf(Tokenizer tokenizer, IEnumerable<int>? checkpointEosIds)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var eos = new HashSet<int>(checkpointEosIds ?? []);
        if (tokenizer.EosTokenId is { } id) eos.Add(id);
        return eos;
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
        var completion = new Completion(_tokenizer, EosTokenIds, options, _model.VocabSize, _model.MaxSequenceLength, promptIds);
        var logits = new float[_model.VocabSize];
        var step = new int[1];

        cancellationToken.ThrowIfCancellationRequested();
        using var state = _model.CreateState();
        Append(state, promptIds.ToArray(), logits);
        while (true)
        {
            var piece = completion.Step(logits);
            if (piece.Length > 0) yield return piece;
            if (completion.IsFinished) break;
            cancellationToken.ThrowIfCancellationRequested();
            step[0] = completion.NextToken;
            Append(state, step, logits);
        }
        result[0] = completion.Result!;
    }

    private void Append(ISequenceState state, int[] tokens, float[] logits)
    {
        var output = state.Append(tokens);
        if (output.Length != logits.Length)
            throw new InvalidOperationException($"the model returned {output.Length} logits for a vocabulary of {logits.Length}");
        output.CopyTo(logits);
    }
}
