using System.Text;
using Graft.Models.Tokenization;

namespace Graft.Models.Generation;

/// <summary>
/// One completion in progress, a step at a time: picks each next token from the logits of the last appended position,
/// turns it into text through the tokenizer's streaming decoder (a piece never ends inside a character; special tokens
/// and ids the tokenizer has no token for add no text), and decides when to stop: an EOS or stop token, a stop string
/// (never emitted), MaxTokens, or the model's context limit. <see cref="TextGenerator"/> drives one over a state; a
/// scheduler drives many, feeding each the logits of its row of a batched step. Not thread-safe.
/// </summary>
public sealed class Completion
{
    private readonly Tokenizer _tokenizer;
    private readonly SamplingOptions _options;
    private readonly int _maxSequenceLength;
    private readonly int _promptLength;
    private readonly Sampler _sampler;
    private readonly HashSet<int> _stopIds;
    private readonly StreamingDecoder _decoder;
    private readonly StopStringFilter _filter;
    private readonly StringBuilder _text = new();
    private readonly List<int> _generated = [];
    private readonly int[] _step = new int[1];

    /// <param name="eosTokenIds">Tokens that end the completion besides <see cref="SamplingOptions.StopTokenIds"/> (the model's EOS ids).</param>
    /// <param name="vocabSize">The model's vocabulary: every prompt id must be inside it.</param>
    /// <param name="maxSequenceLength">Tokens the model's state holds, prompt and completion together.</param>
    public Completion(Tokenizer tokenizer, IEnumerable<int> eosTokenIds, SamplingOptions options, int vocabSize, int maxSequenceLength, IReadOnlyList<int> promptIds)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(eosTokenIds);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(promptIds);
        options.Validate();
        if (promptIds.Count == 0) throw new ArgumentException("the prompt has no tokens", nameof(promptIds));
        if (promptIds.Count >= maxSequenceLength)
            throw new ArgumentException($"the prompt has {promptIds.Count} tokens; the model holds at most {maxSequenceLength}, leaving no room for a completion", nameof(promptIds));
        for (int i = 0; i < promptIds.Count; i++)
            if ((uint)promptIds[i] >= (uint)vocabSize)
                throw new ArgumentException($"prompt token {i} has id {promptIds[i]}, outside the model's vocabulary of {vocabSize}; is the tokenizer the model's?", nameof(promptIds));
        _tokenizer = tokenizer;
        _options = options;
        _maxSequenceLength = maxSequenceLength;
        _promptLength = promptIds.Count;
        _sampler = new Sampler(options, vocabSize);
        _sampler.Observe(promptIds.ToArray());
        _stopIds = [.. eosTokenIds, .. options.StopTokenIds];
        _decoder = tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
        _filter = new StopStringFilter(options.StopStrings);
    }

    /// <summary>Whether the completion has ended; then <see cref="Result"/> holds it.</summary>
    public bool IsFinished => Result is not null;

    /// <summary>The token to append to the sequence before the next <see cref="Step"/> (the last one chosen).</summary>
    public int NextToken { get; private set; } = -1;

    /// <summary>The whole completion once finished, else null.</summary>
    public GenerationResult? Result { get; private set; }

    /// <summary>Tokens generated so far (the stop token that ended it included).</summary>
    public int CompletionTokens => _generated.Count;

    /// <summary>
    /// Chooses the next token from <paramref name="logits"/> [V] (overwritten with the filtered, scaled logits) and returns
    /// the text that is now safe to emit, possibly empty; when this step ends the completion, the text held back for stop
    /// strings comes with it. Unless <see cref="IsFinished"/>, append <see cref="NextToken"/> and step again with its logits.
    /// </summary>
    public string Step(Span<float> logits)
    {
        if (IsFinished) throw new InvalidOperationException("the completion has already finished");
        int token = _sampler.Sample(logits);
        _generated.Add(token);
        NextToken = token;
        if (_stopIds.Contains(token)) return Finish(FinishReason.Stop, "");
        var piece = _filter.Push(_tokenizer.IdToToken(token) is null ? "" : _decoder.Step(token));
        if (_filter.Stopped) return Finish(FinishReason.Stop, piece);
        if (_generated.Count == _options.MaxTokens || _promptLength + _generated.Count >= _maxSequenceLength)
            return Finish(FinishReason.Length, piece);
        _step[0] = token;
        _sampler.Observe(_step);
        _text.Append(piece);
        return piece;
    }

    private string Finish(string reason, string piece)
    {
        var emitted = piece + _filter.Push(_decoder.Flush()) + _filter.Flush();
        _text.Append(emitted);
        Result = new GenerationResult(_text.ToString(), _generated.ToArray(), reason, _promptLength);
        return emitted;
    }
}
