using Graft.Models.Generation;

namespace Graft.Tests.Models;

public sealed class GenerationSamplerTests
{
    private static Sampler Create(SamplingOptions options, int vocab) => new(options, vocab);

    [Fact]
    public void GreedyTakesTheFirstOfTiedMaxima()
    {
        var sampler = Create(new SamplingOptions { Temperature = 0 }, 5);
        Assert.Equal(1, sampler.Sample(new float[] { 1, 3, 3, 2, 3 }));
        Assert.Equal(4, sampler.Sample(new float[] { float.NegativeInfinity, -5, -5, -5, -1 }));
    }

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOfSeenTokens()
    {
        var sampler = Create(new SamplingOptions { Temperature = 0, RepetitionPenalty = 2 }, 4);
        sampler.Observe([0, 1, 1]);
        var logits = new float[] { 2, -2, 1, 0.5f };
        Assert.Equal(0, sampler.Sample(logits));   // 2 -> 1 ties with token 2; the lower index wins
        Assert.Equal(new float[] { 1, -4, 1, 0.5f }, logits);

        var discouraging = Create(new SamplingOptions { Temperature = 0, RepetitionPenalty = 0.5f }, 3);
        discouraging.Observe([2]);
        var boosted = new float[] { 1, 0, 0.6f };
        Assert.Equal(2, discouraging.Sample(boosted));   // 0.6 / 0.5 = 1.2 beats 1
        Assert.Equal(1.2f, boosted[2], 6);
    }

    [Fact]
    public void TopKKeepsTheKLargestAndTiesWithTheKth()
    {
        var logits = new float[] { 1, 5, 3, 5, 2 };
        Create(new SamplingOptions { TopK = 2 }, 5).Sample(logits);
        Assert.Equal(new[] { 1, 3 }, Kept(logits));

        var tied = new float[] { 1, 5, 3, 5, 3 };
        Create(new SamplingOptions { TopK = 3 }, 5).Sample(tied);
        Assert.Equal(new[] { 1, 2, 3, 4 }, Kept(tied));

        var all = new float[] { 1, 2, 3 };
        Create(new SamplingOptions { TopK = 10 }, 3).Sample(all);
        Assert.Equal(new[] { 0, 1, 2 }, Kept(all));
    }

    [Theory]
    [InlineData(0.45f, new[] { 2 })]
    [InlineData(0.75f, new[] { 0, 2 })]
    [InlineData(0.81f, new[] { 0, 2, 3 })]
    [InlineData(1.0f, new[] { 0, 1, 2, 3 })]
    public void TopPKeepsTheSmallestMostProbableSetReachingP(float p, int[] expected)
    {
        // Probabilities 0.3, 0.05, 0.5, 0.15 (descending: tokens 2, 0, 3, 1).
        var logits = new[] { MathF.Log(0.3f), MathF.Log(0.05f), MathF.Log(0.5f), MathF.Log(0.15f) };
        Create(new SamplingOptions { TopP = p }, 4).Sample(logits);
        Assert.Equal(expected, Kept(logits));
    }

    [Theory]
    [InlineData(0.5f, 1.0)]
    [InlineData(0.9f, 3.0)]
    [InlineData(0.99f, 0.3)]
    [InlineData(0.999f, 20.0)]
    public void TopPKeepsTheSameSetAsSortingTheWholeVocabulary(float p, double spread)
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 10; trial++)
        {
            var logits = Enumerable.Range(0, 3000).Select(_ => (float)((rng.NextDouble() - 0.5) * spread * 10)).ToArray();
            logits[rng.Next(3000)] = -1e30f;   // a far outlier must not stall the margin search
            logits[rng.Next(3000)] = float.NegativeInfinity;
            double max = logits.Max();
            double total = logits.Sum(l => Math.Exp(l - max));
            var expected = new List<int>();
            double cumulative = 0;
            foreach (var i in Enumerable.Range(0, logits.Length).Where(i => !float.IsNegativeInfinity(logits[i])).OrderByDescending(i => logits[i]).ThenBy(i => i))
            {
                expected.Add(i);
                cumulative += Math.Exp(logits[i] - max) / total;
                if (cumulative >= p) break;
            }
            var copy = (float[])logits.Clone();
            Create(new SamplingOptions { TopP = p }, logits.Length).Sample(copy);
            Assert.Equal(expected.Order(), Kept(copy));
            Assert.All(Kept(copy), i => Assert.Equal(logits[i], copy[i]));
        }
    }

    [Fact]
    public void TopPAlwaysKeepsTheMostProbableToken()
    {
        var logits = new float[] { 0, 10, 0 };
        var sampler = Create(new SamplingOptions { TopP = 1e-6f }, 3);
        Assert.Equal(1, sampler.Sample(logits));
        Assert.Equal(new[] { 1 }, Kept(logits));
    }

    [Fact]
    public void TemperatureScalesLogitsBeforeTheDraw()
    {
        var rng = new Random(7);
        var cold = Create(new SamplingOptions { Temperature = 0.5f, Seed = 3 }, 50);
        var plain = Create(new SamplingOptions { Temperature = 1, Seed = 3 }, 50);
        for (int step = 0; step < 200; step++)
        {
            var logits = Enumerable.Range(0, 50).Select(_ => (float)rng.NextDouble() * 4).ToArray();
            var doubled = logits.Select(l => l * 2).ToArray();
            Assert.Equal(plain.Sample(doubled), cold.Sample(logits));
        }
    }

    /// <summary>A temperature whose quotient overflows (a denormal, 1e-45) is the limit of a small one: all mass on the maxima, ties shared.</summary>
    [Fact]
    public void ADenormalTemperatureDrawsOnlyTheLargestLogits()
    {
        var sampler = Create(new SamplingOptions { Temperature = 1e-45f, Seed = 5 }, 5);
        var draws = new HashSet<int>();
        for (int step = 0; step < 200; step++)
        {
            var logits = new float[] { 1f, 30f, -2f, 30f, float.NegativeInfinity };
            draws.Add(sampler.Sample(logits));
            Assert.Equal(new[] { 1, 3 }, Kept(logits));
        }
        Assert.Equal(new HashSet<int> { 1, 3 }, draws);
        var single = Create(new SamplingOptions { Temperature = 1e-45f, Seed = 5, TopK = 2, TopP = 0.5f }, 3);
        Assert.Equal(2, single.Sample([3e38f, -3e38f, 3.1e38f]));
    }

    [Fact]
    public void TheSameSeedGivesTheSameDrawsAndAnotherSeedOthers()
    {
        int[] Draws(int seed)
        {
            var sampler = Create(new SamplingOptions { Seed = seed, TopK = 500, TopP = 0.95f }, 1000);
            return Enumerable.Range(0, 50).Select(_ => sampler.Sample(new float[1000])).ToArray();
        }
        Assert.Equal(Draws(42), Draws(42));
        Assert.NotEqual(Draws(42), Draws(43));
    }

    [Fact]
    public void DrawFrequenciesMatchSoftmaxProbabilities()
    {
        var logits = new float[] { 1, 2, 3, 0.5f, float.NegativeInfinity };
        var expected = logits.Select(MathF.Exp).ToArray();
        float total = expected.Sum();
        var sampler = Create(new SamplingOptions { Seed = 11 }, logits.Length);
        var counts = new int[logits.Length];
        const int draws = 40_000;
        var scratch = new float[logits.Length];
        for (int i = 0; i < draws; i++)
        {
            logits.CopyTo(scratch, 0);
            counts[sampler.Sample(scratch)]++;
        }
        for (int t = 0; t < logits.Length; t++)
            Assert.InRange(counts[t] / (double)draws, expected[t] / total - 0.01, expected[t] / total + 0.01);
        Assert.Equal(0, counts[4]);
    }

    [Fact]
    public void SamplingRespectsTheFilters()
    {
        var sampler = Create(new SamplingOptions { TopK = 2, Seed = 5 }, 6);
        for (int i = 0; i < 500; i++) Assert.Contains(sampler.Sample(new float[] { 0, 4, 1, 4.5f, 2, 3 }), new[] { 1, 3 });
    }

    public static TheoryData<SamplingOptions, string> InvalidOptions => new()
    {
        { new SamplingOptions { Temperature = -0.1f }, "Temperature" },
        { new SamplingOptions { Temperature = float.NaN }, "Temperature" },
        { new SamplingOptions { TopP = 0 }, "TopP" },
        { new SamplingOptions { TopP = 1.01f }, "TopP" },
        { new SamplingOptions { TopP = float.NaN }, "TopP" },
        { new SamplingOptions { TopK = -1 }, "TopK" },
        { new SamplingOptions { RepetitionPenalty = 0 }, "RepetitionPenalty" },
        { new SamplingOptions { RepetitionPenalty = -1 }, "RepetitionPenalty" },
        { new SamplingOptions { RepetitionPenalty = float.NaN }, "RepetitionPenalty" },
        { new SamplingOptions { MaxTokens = 0 }, "MaxTokens" },
        { new SamplingOptions { StopStrings = [""] }, "StopStrings" },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void InvalidOptionsAreRejectedByName(SamplingOptions options, string name)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => new Sampler(options, 10));
        Assert.Equal(name, e.ParamName);
        Assert.Contains(name, e.Message);
    }

    [Fact]
    public void BadLogitsAreReported()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Create(new SamplingOptions(), 3).Sample(new[] { 0, float.NaN, 1 }));
        Assert.Contains("token 1", e.Message);
        Assert.Throws<InvalidOperationException>(() => Create(new SamplingOptions { Temperature = 0 }, 2).Sample(new[] { float.NaN, 1 }));
        Assert.Throws<InvalidOperationException>(() => Create(new SamplingOptions(), 2).Sample(new[] { float.NegativeInfinity, float.NegativeInfinity }));
        Assert.Throws<ArgumentException>(() => Create(new SamplingOptions(), 3).Sample(new float[4]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Create(new SamplingOptions { RepetitionPenalty = 1.1f }, 3).Observe([3]));
    }

    private static int[] Kept(float[] logits) =>
        Enumerable.Range(0, logits.Length).Where(i => !float.IsNegativeInfinity(logits[i])).ToArray();
}
