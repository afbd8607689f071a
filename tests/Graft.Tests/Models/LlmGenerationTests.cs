using Graft.Models.Llm;

namespace Graft.Tests.Models;

public class LlmGenerationTests
{
    public static TheoryData<string> Families => new(LlmGolden.Families);

    [Theory]
    [MemberData(nameof(Families))]
    public void Greedy_generation_matches_the_reference_continuation(string family)
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder(family));
        using var golden = LlmGolden.Values(family);
        var expected = LlmGolden.Ids(golden, "greedy");
        var produced = Generation.Generate(model, LlmGolden.Ids(golden, "prompt"), expected.Length, stopTokens: []).ToArray();
        Assert.Equal(expected, produced);
    }

    [Fact]
    public void A_stop_token_is_yielded_and_ends_generation()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("llama"));
        using var golden = LlmGolden.Values("llama");
        var expected = LlmGolden.Ids(golden, "greedy");
        var produced = Generation.Generate(model, LlmGolden.Ids(golden, "prompt"), 8, stopTokens: [expected[2]]).ToArray();
        Assert.Equal(expected[..3], produced);
    }

    [Fact]
    public void Seeded_sampling_is_reproducible_and_top_k_1_is_greedy()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("internlm2"));
        using var golden = LlmGolden.Values("internlm2");
        var prompt = LlmGolden.Ids(golden, "prompt");
        var sampled = new SamplingOptions { Temperature = 1.5f, TopP = 0.9f, Seed = 7 };
        var first = Generation.Generate(model, prompt, 6, sampled, []).ToArray();
        Assert.Equal(first, Generation.Generate(model, prompt, 6, sampled, []).ToArray());
        var topOne = new SamplingOptions { Temperature = 1f, TopK = 1, Seed = 3 };
        Assert.Equal(LlmGolden.Ids(golden, "greedy")[..6], Generation.Generate(model, prompt, 6, topOne, []).ToArray());
    }

    private static double[] Frequencies(SamplingOptions options, float[] logits, int draws = 20000)
    {
        var sampler = new TokenSampler(options);
        var counts = new double[logits.Length];
        for (int i = 0; i < draws; i++) counts[sampler.Next(logits, [])]++;
        return counts.Select(c => c / draws).ToArray();
    }

    private static readonly float[] Logits = [MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.2f)];

    [Fact]
    public void Temperature_one_samples_the_softmax()
    {
        var f = Frequencies(new SamplingOptions { Temperature = 1f, Seed = 1 }, Logits);
        Assert.Equal(0.5, f[0], 0.02);
        Assert.Equal(0.3, f[1], 0.02);
        Assert.Equal(0.2, f[2], 0.02);
    }

    [Fact]
    public void Top_p_keeps_the_smallest_set_reaching_p_and_renormalises()
    {
        var f = Frequencies(new SamplingOptions { Temperature = 1f, TopP = 0.6f, Seed = 2 }, Logits);
        Assert.Equal(0.5 / 0.8, f[0], 0.02);
        Assert.Equal(0.3 / 0.8, f[1], 0.02);
        Assert.Equal(0, f[2]);
    }

    [Fact]
    public void Top_k_keeps_the_k_most_likely()
    {
        var f = Frequencies(new SamplingOptions { Temperature = 1f, TopK = 2, Seed = 3 }, Logits);
        Assert.Equal(0, f[2]);
        Assert.Equal(0.5 / 0.8, f[0], 0.02);
    }

    [Theory]
    [InlineData(2f, 1.9f)]
    [InlineData(-1f, -1.1f)]
    public void Repetition_penalty_pushes_seen_tokens_down_on_either_sign(float seen, float other)
    {
        var penalised = new TokenSampler(new SamplingOptions { RepetitionPenalty = 1.2f });
        Assert.Equal(1, penalised.Next([seen, other], [0]));
        Assert.Equal(0, new TokenSampler(SamplingOptions.Greedy).Next([seen, other], [0]));
    }

    [Theory]
    [InlineData(-1f, 0, 1f, 1f)]
    [InlineData(1f, -1, 1f, 1f)]
    [InlineData(1f, 0, 0f, 1f)]
    [InlineData(1f, 0, 1.5f, 1f)]
    [InlineData(1f, 0, 1f, 0f)]
    public void Invalid_options_are_refused(float temperature, int topK, float topP, float penalty)
    {
        var options = new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP, RepetitionPenalty = penalty };
        Assert.Throws<ArgumentException>(() => new TokenSampler(options));
    }
}
