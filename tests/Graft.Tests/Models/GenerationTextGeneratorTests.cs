using Graft.Models.Generation;
using Graft.Models.Tokenization;

namespace Graft.Tests.Models;

/// <summary>TextGenerator over a scripted model and the committed qwen2_style tokenizer (byte-level BPE).</summary>
public sealed class GenerationTextGeneratorTests
{
    private static readonly Tokenizer Qwen = Tokenizer.FromFolder(Path.Combine(AppContext.BaseDirectory, "Golden", "tokenizer", "qwen2_style"));
    private static int ImEnd => Qwen.TokenToId("<|im_end|>")!.Value;
    private static int EndOfText => Qwen.TokenToId("<|endoftext|>")!.Value;
    private static readonly int[] Prompt = [5, 6, 7];

    /// <summary>A model whose states' n-th Append returns logits peaked at script[n] (then at <see cref="Fallback"/>).</summary>
    internal sealed class ScriptedModel(int[] script, int vocab, int maxSequenceLength = 4096) : ITokenSequenceModel
    {
        public int VocabSize => vocab;
        public int MaxSequenceLength => maxSequenceLength;
        public int[] Script { get; } = script;
        public int Fallback { get; init; } = -1;
        public List<int[]> Appends { get; } = [];
        public bool Disposed { get; private set; }

        public ISequenceState CreateState() => new State(this);

        private sealed class State(ScriptedModel model) : ISequenceState
        {
            private readonly float[] _logits = new float[model.VocabSize];
            private int _appends;
            public int Length { get; private set; }

            public ReadOnlySpan<float> Append(ReadOnlySpan<int> tokens)
            {
                model.Appends.Add(tokens.ToArray());
                Length += tokens.Length;
                Array.Fill(_logits, 0f);
                int step = _appends++;
                int next = step < model.Script.Length ? model.Script[step] : model.Fallback;
                if (next < 0) throw new InvalidOperationException("the script ran out");
                _logits[next] = 30f;
                return _logits;
            }

            public void Dispose() => model.Disposed = true;
        }
    }

    private static SamplingOptions Greedy(int maxTokens = 100) => new() { Temperature = 0, MaxTokens = maxTokens };

    private static async Task<List<string>> Collect(TextGenerator generator, SamplingOptions options, Action<GenerationResult>? done = null)
    {
        var pieces = new List<string>();
        await foreach (var piece in generator.GenerateAsync(Prompt, options, done)) pieces.Add(piece);
        return pieces;
    }

    [Fact]
    public async Task StopsAtTheTokenizerEosWithoutEmittingIt()
    {
        var text = Qwen.Encode("Hello world", addSpecialTokens: false);
        var model = new ScriptedModel([.. text, ImEnd, .. text], Qwen.VocabSize);
        var generator = new TextGenerator(Qwen, model);
        GenerationResult? result = null;
        var pieces = await Collect(generator, Greedy(), r => result = r);

        Assert.Equal("Hello world", string.Concat(pieces));
        Assert.NotNull(result);
        Assert.Equal("Hello world", result.Text);
        Assert.Equal(FinishReason.Stop, result.FinishReason);
        Assert.Equal([.. text, ImEnd], result.TokenIds);
        Assert.Equal(3, result.PromptTokens);
        Assert.Equal(text.Length + 1, result.CompletionTokens);
        // Prefill once, then one token per step; the stop token is never fed back.
        Assert.Equal(Prompt, model.Appends[0]);
        Assert.All(model.Appends.Skip(1), a => Assert.Single(a));
        Assert.Equal(text.Length + 1, model.Appends.Count);
        Assert.True(model.Disposed);
    }

    [Fact]
    public void StopsAtCheckpointEosAndStopTokenIds()
    {
        var text = Qwen.Encode("abc def", addSpecialTokens: false);
        var fromConfig = new TextGenerator(Qwen, new ScriptedModel([.. text, EndOfText, 1, 2], Qwen.VocabSize), [EndOfText]);
        Assert.Equal(FinishReason.Stop, fromConfig.Generate(Prompt, Greedy()).FinishReason);
        Assert.Contains(ImEnd, fromConfig.EosTokenIds);

        var stopId = text[^1];
        var generator = new TextGenerator(Qwen, new ScriptedModel([.. text, 1, 2], Qwen.VocabSize));
        var result = generator.Generate(Prompt, Greedy() with { StopTokenIds = [stopId] });
        Assert.Equal(FinishReason.Stop, result.FinishReason);
        Assert.Equal(Qwen.Decode(text[..^1]), result.Text);
        Assert.Equal(text, result.TokenIds);
    }

    [Fact]
    public async Task AStopStringSpanningTokensIsNeverEmitted()
    {
        var text = Qwen.Encode("Hello world, and more text after it", addSpecialTokens: false);
        Assert.True(Qwen.Decode(text[..1]).Length < "Hello w".Length, "the stop string must span several tokens");
        var generator = new TextGenerator(Qwen, new ScriptedModel(text, Qwen.VocabSize));
        GenerationResult? result = null;
        var pieces = await Collect(generator, Greedy() with { StopStrings = ["lo wor", "never"] }, r => result = r);

        Assert.Equal("Hel", string.Concat(pieces));
        Assert.All(pieces, p => Assert.DoesNotContain("lo", p));
        Assert.Equal("Hel", result!.Text);
        Assert.Equal(FinishReason.Stop, result.FinishReason);
        Assert.True(result.CompletionTokens < text.Length);
    }

    [Fact]
    public void HeldBackTextIsReleasedWhenTheStopStringDoesNotComplete()
    {
        var text = Qwen.Encode("one two thr", addSpecialTokens: false);
        var generator = new TextGenerator(Qwen, new ScriptedModel(text, Qwen.VocabSize));
        var result = generator.Generate(Prompt, Greedy(text.Length) with { StopStrings = ["three", "two!"] });
        Assert.Equal("one two thr", result.Text);
        Assert.Equal(FinishReason.Length, result.FinishReason);
    }

    [Fact]
    public void StopsAtMaxTokensAndAtTheModelsSequenceLimit()
    {
        var text = Qwen.Encode("a b c d e f g h", addSpecialTokens: false);
        var generator = new TextGenerator(Qwen, new ScriptedModel(text, Qwen.VocabSize));
        var result = generator.Generate(Prompt, Greedy(maxTokens: 3));
        Assert.Equal(FinishReason.Length, result.FinishReason);
        Assert.Equal(text[..3], result.TokenIds);
        Assert.Equal(Qwen.Decode(text[..3]), result.Text);

        var limited = new ScriptedModel(text, Qwen.VocabSize, maxSequenceLength: Prompt.Length + 2);
        var capped = new TextGenerator(Qwen, limited).Generate(Prompt, Greedy());
        Assert.Equal(FinishReason.Length, capped.FinishReason);
        Assert.Equal(2, capped.CompletionTokens);
        Assert.Equal(Prompt.Length + 1, limited.Appends.Sum(a => a.Length));

        Assert.Throws<ArgumentException>(() => new TextGenerator(Qwen, new ScriptedModel(text, Qwen.VocabSize, 3)).Generate(Prompt, Greedy()));
        Assert.Throws<ArgumentException>(() => generator.Generate([], Greedy()));
        var outside = Assert.Throws<ArgumentException>(() => generator.Generate([1, Qwen.VocabSize], Greedy()));
        Assert.Contains($"prompt token 1 has id {Qwen.VocabSize}", outside.Message);
    }

    [Fact]
    public async Task MultiByteCharactersAreStreamedWhole()
    {
        const string expected = "a😀é中b";
        var text = Qwen.Encode(expected, addSpecialTokens: false);
        var generator = new TextGenerator(Qwen, new ScriptedModel([.. text, ImEnd], Qwen.VocabSize));
        var pieces = await Collect(generator, Greedy());

        Assert.True(text.Length > pieces.Count, "some character must take several tokens");
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.All(pieces, p => Assert.False(char.IsHighSurrogate(p[^1])));
        Assert.Equal(expected, string.Concat(pieces));
    }

    [Fact]
    public async Task CancellationIsHonouredBetweenSteps()
    {
        var text = Qwen.Encode("one two three four five", addSpecialTokens: false);
        var model = new ScriptedModel(text, Qwen.VocabSize) { Fallback = text[0] };
        var generator = new TextGenerator(Qwen, model);
        using var cts = new CancellationTokenSource();
        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in generator.GenerateAsync(Prompt, Greedy(1000), cts.Token))
                if (++seen == 2) cts.Cancel();
        });
        Assert.Equal(2, seen);
        Assert.True(model.Disposed);
        Assert.True(model.Appends.Count <= 4);

        Assert.Throws<OperationCanceledException>(() => generator.Generate(Prompt, Greedy(), cts.Token));
    }

    [Fact]
    public void SampledGenerationIsReproducibleFromTheSeed()
    {
        var generator = new TextGenerator(Qwen, new RandomLogitsModel(Qwen.VocabSize));
        var options = new SamplingOptions { MaxTokens = 20, Temperature = 0.9f, TopK = 40, TopP = 0.9f, RepetitionPenalty = 1.2f, Seed = 9 };
        var first = generator.Generate(Prompt, options);
        Assert.Equal(first.TokenIds, generator.Generate(Prompt, options).TokenIds);
        Assert.NotEqual(first.TokenIds, generator.Generate(Prompt, options with { Seed = 10 }).TokenIds);
    }

    /// <summary>Logits that depend only on the sequence so far, so a run is a pure function of the seed.</summary>
    private sealed class RandomLogitsModel(int vocab) : ITokenSequenceModel
    {
        public int VocabSize => vocab;
        public int MaxSequenceLength => 1000;
        public ISequenceState CreateState() => new State(vocab);

        private sealed class State(int vocab) : ISequenceState
        {
            private readonly float[] _logits = new float[vocab];
            private int _hash = 17;
            public int Length { get; private set; }

            public ReadOnlySpan<float> Append(ReadOnlySpan<int> tokens)
            {
                foreach (var t in tokens) _hash = _hash * 31 + t;
                Length += tokens.Length;
                var rng = new Random(_hash);
                for (int i = 0; i < vocab; i++) _logits[i] = (float)rng.NextDouble() * 5;
                return _logits;
            }

            public void Dispose() { }
        }
    }
}
