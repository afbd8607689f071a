using Graft.Models.Generation;
using Graft.Models.Llm;
using Graft.Models.Tokenization;

namespace Graft.Tests.Models;

/// <summary>TextGenerator over the real decoder (through DecoderSequenceModel) on the tiny golden checkpoints.</summary>
public sealed class GenerationDecoderTests
{
    public static TheoryData<string> Families => new(LlmGolden.Families);

    [Theory]
    [MemberData(nameof(Families))]
    public void GreedyGenerationMatchesTheReferenceContinuation(string family)
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder(family));
        using var golden = LlmGolden.Values(family);
        var prompt = LlmGolden.Ids(golden, "prompt");
        var expected = LlmGolden.Ids(golden, "greedy");
        // Any tokenizer does for the text; this one's EOS lies outside the tiny vocabularies, so only length stops.
        var tokenizer = Tokenizer.FromFolder(Path.Combine(AppContext.BaseDirectory, "Golden", "tokenizer", "qwen2_style"));
        Assert.True(tokenizer.EosTokenId >= model.Config.VocabSize);
        var adapter = new DecoderSequenceModel(model, prompt.Length + expected.Length);
        var generator = new TextGenerator(tokenizer, adapter);
        var options = new SamplingOptions { Temperature = 0, MaxTokens = expected.Length };

        var result = generator.Generate(prompt, options);
        Assert.Equal(expected, result.TokenIds);
        Assert.Equal(FinishReason.Length, result.FinishReason);
        Assert.Equal(tokenizer.Decode(expected, skipSpecialTokens: true), result.Text);
        // The second run reuses the first state's cache.
        Assert.Equal(expected, generator.Generate(prompt, options).TokenIds);
    }

    [Fact]
    public void TheStateAppendsPrefillThenSteps()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("qwen2"));
        var adapter = new DecoderSequenceModel(model, 8);
        Assert.Equal(model.Config.VocabSize, adapter.VocabSize);
        using var state = adapter.CreateState();
        Assert.Equal(model.Config.VocabSize, state.Append([1, 2, 3]).Length);
        state.Append([4]);
        Assert.Equal(4, state.Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => state.Append([model.Config.VocabSize]));
    }
}
