using Graft.Data;
using Graft.Demo;

namespace Graft.Tests.Demo;

/// <summary>The demo's text world teaches every fact, keeps its test questions out of the training text, and is fixed by its parameters.</summary>
public sealed class DemoTextWorldTests
{
    private static readonly DemoWorldParameters Parameters = new() { Seed = 7, Cities = 24 };

    private static List<string> Documents(DemoTextWorld world, int count, ulong seed)
    {
        var random = new SeededRandom(seed);
        return Enumerable.Range(0, count).Select(_ => world.NextDocument(random)).ToList();
    }

    [Fact]
    public void Training_text_teaches_every_fact_but_never_shows_a_test_question_as_tested()
    {
        var world = new DemoTextWorld(Parameters);
        var text = string.Join("\n", Documents(world, 4000, 11));
        foreach (var city in world.Knowledge.Cities)
        {
            Assert.Contains($"{city.Name} is a city in which country?", text);
            Assert.Contains(city.Founded.ToString(System.Globalization.CultureInfo.InvariantCulture), text);
        }
        foreach (var fact in world.Arithmetic) Assert.Contains($"{fact.Expression} = {fact.Result}.", text);
        foreach (var question in world.TestSets.SelectMany(s => s.Questions))
            Assert.DoesNotContain(MmluPrompt.FormatExample(question, includeAnswer: true), text);
        Assert.Contains("The following are multiple choice questions (with answers) about  world geography.", text);
        Assert.Contains("\nAnswer: ", text);
    }

    [Fact]
    public void A_test_question_is_recognised_only_with_its_own_option_order()
    {
        var world = new DemoTextWorld(Parameters);
        var question = world.TestSets[1].Questions[0];
        Assert.True(world.IsTestQuestion(question));
        var reordered = question with { Choices = [.. question.Choices.Skip(1), question.Choices[0]], Answer = (question.Answer + 3) % 4 };
        Assert.False(world.IsTestQuestion(reordered));
        Assert.All(world.TestSets.SelectMany(s => s.Shots), shot => Assert.False(world.IsTestQuestion(shot)));
    }

    [Fact]
    public void Test_sets_ask_every_city_fact_and_every_taught_sum_with_five_shots_per_subject()
    {
        var world = new DemoTextWorld(Parameters);
        Assert.Equal(["arithmetic", "facts"], world.TestSets.Select(s => s.Name));
        var facts = world.TestSets[1];
        Assert.Equal(4 * world.Knowledge.Cities.Count, facts.Questions.Count);
        Assert.All(world.Knowledge.Cities, c => Assert.Equal(4, facts.Questions.Count(q => q.Question.Contains(c.Name, StringComparison.Ordinal))));
        Assert.Equal(world.Arithmetic.Count, world.TestSets[0].Questions.Count);
        Assert.All(world.TestSets[0].Questions, q => Assert.Equal("arithmetic", q.Subject));
        Assert.Equal(5, world.TestSets[0].Shots.Count);
        Assert.Equal(10, facts.Shots.Count);
        Assert.All(world.TestSets.SelectMany(s => s.Questions), q => Assert.Equal(4, q.Choices.Count));
    }

    [Fact]
    public void Parameters_fix_the_world_and_its_documents()
    {
        var first = new DemoTextWorld(Parameters);
        var second = new DemoTextWorld(Parameters);
        Assert.Equal(first.Knowledge.Cities, second.Knowledge.Cities);
        Assert.Equal(first.TestSets.SelectMany(s => s.Questions).Select(q => q.Question + string.Join("|", q.Choices) + q.Answer),
            second.TestSets.SelectMany(s => s.Questions).Select(q => q.Question + string.Join("|", q.Choices) + q.Answer));
        Assert.Equal(Documents(first, 50, 3), Documents(second, 50, 3));
        Assert.NotEqual(first.Knowledge.Cities, new DemoTextWorld(Parameters with { Seed = 8 }).Knowledge.Cities);
    }

    [Fact]
    public void Impossible_sizes_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new DemoTextWorld(Parameters with { Cities = 3 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DemoTextWorld(Parameters with { Cities = 1001 }));
    }
}
