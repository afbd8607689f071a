using Graft.Training.Data;

namespace Graft.Tests.Training;

/// <summary>The demo's text world keeps its held-out questions out of the training text, and is fixed by its parameters.</summary>
public sealed class DemoTextWorldTests
{
    private static readonly DemoWorldParameters Parameters = new() { Seed = 7, Cities = 24, DrillCities = 8, QuestionCities = 8 };

    private static List<string> Documents(DemoTextWorld world, int count, ulong seed)
    {
        var random = new SeededRandom(seed);
        return Enumerable.Range(0, count).Select(_ => world.NextDocument(random)).ToList();
    }

    [Fact]
    public void Held_out_facts_and_arithmetic_never_appear_in_the_training_text()
    {
        var world = new DemoTextWorld(Parameters);
        var text = string.Join("\n", Documents(world, 3000, 11));
        foreach (var fact in world.Knowledge.Arithmetic)
        {
            Assert.DoesNotContain($"What is {fact.Expression}?", text);
            Assert.DoesNotMatch(@"(?<![0-9])" + System.Text.RegularExpressions.Regex.Escape(fact.Expression) + " = ", text);
        }
        foreach (var city in world.QuestionCities.Concat(world.StatementCities))
        {
            Assert.DoesNotContain($"{city.Name} is a city in which country?", text);
            Assert.DoesNotContain($"In which year was {city.Name} founded?", text);
        }
        foreach (var city in world.StatementCities)
        {
            Assert.DoesNotContain($"In which country is {city.Name}?", text);
            Assert.DoesNotContain($"When was {city.Name} founded?", text);
            Assert.Contains($"{city.Name}", text);
        }
        foreach (var city in world.DrillCities.Take(3)) Assert.Contains($"{city.Name} is a city in which country?", text);
        Assert.Contains("<|im_start|>assistant\n", text);
        Assert.Contains("Response: The answer is ", text);
        Assert.Contains("The following are multiple choice questions (with answers) about  world geography.", text);
    }

    [Fact]
    public void Test_sets_cover_their_cities_and_use_training_questions_as_shots()
    {
        var world = new DemoTextWorld(Parameters);
        Assert.Equal(["facts-drilled", "facts-asked", "facts-stated", "arithmetic"], world.TestSets.Select(s => s.Name));
        var asked = world.TestSets[1];
        Assert.Equal(4 * world.QuestionCities.Count, asked.Questions.Count);
        Assert.All(asked.Questions, q => Assert.Contains(world.QuestionCities, c => q.Question.Contains(c.Name)));
        Assert.Equal(24, world.TestSets[3].Questions.Count);
        Assert.All(world.TestSets[3].Questions, q => Assert.Equal("arithmetic", q.Subject));
        foreach (var shot in asked.Shots)
            Assert.True(shot.Subject == "arithmetic" ? !world.Knowledge.Arithmetic.Any(f => shot.Question == $"What is {f.Expression}?")
                : world.DrillCities.Any(c => shot.Question.Contains(c.Name)), $"shot \"{shot.Question}\" is not a training question");
        Assert.Equal(15, asked.Shots.Count);
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
    public void Impossible_splits_are_refused()
    {
        Assert.Throws<ArgumentException>(() => new DemoTextWorld(Parameters with { DrillCities = 20, QuestionCities = 8 }));
        Assert.Throws<ArgumentException>(() => new DemoTextWorld(Parameters with { DrillCities = 0 }));
    }
}
