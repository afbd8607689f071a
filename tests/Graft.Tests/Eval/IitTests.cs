using Graft.Eval;

namespace Graft.Tests.Eval;

/// <summary>The interleaved benchmark: deterministic assembly, shared slots across configurations, gold history, skipping.</summary>
public class IitTests
{
    private static List<ChoiceQuestion> Pool(string prefix, int count, bool image) =>
        Enumerable.Range(0, count).Select(i => new ChoiceQuestion($"{prefix}{i}", $"Q{i} {prefix}?", ["a", "b", "c"], i % 3, image ? $"/img/{i}.png" : null, [])).ToList();

    private static string Fingerprint(IEnumerable<IitDialogue> dialogues) =>
        string.Join(";", dialogues.Select(d => d.Configuration + ":" + string.Join(",", d.Turns.Select(t => t.Question.Id))));

    [Fact]
    public void Assembly_is_fixed_by_the_seed()
    {
        var text = Pool("t", 9, false);
        var image = Pool("i", 6, true);
        var first = Iit.Assemble(text, image, 5, seed: 7);
        Assert.Equal(Fingerprint(first), Fingerprint(Iit.Assemble(text, image, 5, seed: 7)));
        Assert.NotEqual(Fingerprint(first), Fingerprint(Iit.Assemble(text, image, 5, seed: 8)));
        Assert.Equal(Iit.Configurations.Count * 5, first.Count);
    }

    [Fact]
    public void Configurations_share_questions_slot_by_slot_and_never_repeat_one_in_a_dialogue()
    {
        var dialogues = Iit.Assemble(Pool("t", 5, false), Pool("i", 4, true), 6, seed: 3);
        foreach (var group in dialogues.GroupBy(d => d.Index))
        {
            foreach (var a in group)
                foreach (var b in group)
                    for (int k = 0; k < Iit.TurnsPerDialogue; k++)
                        if (a.Configuration[k] == b.Configuration[k]) Assert.Same(a.Turns[k].Question, b.Turns[k].Question);
            foreach (var d in group)
            {
                Assert.Equal(d.Configuration, string.Concat(d.Turns.Select(t => t.IsImage ? 'I' : 'T')));
                Assert.Equal(d.Turns.Count, d.Turns.Select(t => t.Question.Id).Distinct().Count());
                Assert.All(d.Turns, t => Assert.Equal(t.IsImage, t.Question.ImagePath is not null));
            }
        }
    }

    [Fact]
    public void Each_turn_sees_earlier_turns_with_their_gold_answers()
    {
        var dialogue = Iit.Assemble(Pool("t", 4, false), Pool("i", 4, true), 1, seed: 1).Single(d => d.Configuration == "TITI");
        var prompt = Iit.Prompt(dialogue, 2);
        var turns = dialogue.Turns;
        Assert.Equal(
            turns[0].Question.Render() + $" {turns[0].Question.AnswerLetter}\n\n" +
            turns[1].Question.Render() + $" {turns[1].Question.AnswerLetter}\n\n" +
            turns[2].Question.Render(), prompt.Text);
        Assert.Equal([turns[1].Question.ImagePath!], prompt.ImagePaths);
        Assert.StartsWith("<image>\n", turns[1].Question.Render());
    }

    [Fact]
    public void Scoring_counts_every_turn_and_skips_image_dialogues_without_a_plugin()
    {
        using var temp = new TempFolder();
        string mmlu = EvalFixtures.Mmlu(temp, ("algebra", "AAAABBBB"));
        string scienceqa = EvalFixtures.ScienceQa(temp, 16);
        var spec = BenchSpec.Parse($"iit:mmlu:{mmlu},scienceqa:{scienceqa}");
        var options = new EvalOptions { Limit = 3 };

        var baseRoute = Benchmarks.Run(spec, new FakeScoringModel((_, _) => 0, _ => ""), options);
        Assert.Equal(5 * 3, baseRoute.Skipped);
        Assert.Equal(12, baseRoute.Overall.Total);
        Assert.Equal(baseRoute.Overall, baseRoute.Category("TTTT"));
        Assert.Equal(baseRoute.Overall, baseRoute.Category("TTTT text"));
        Assert.Equal(0, baseRoute.Category("IIII").Total);

        var plugin = Benchmarks.Run(spec, new FakeScoringModel((_, _) => 0, _ => "", acceptsImages: true), options);
        Assert.Equal(0, plugin.Skipped);
        Assert.Equal(6 * 3 * 4, plugin.Overall.Total);
        foreach (var configuration in Iit.Configurations)
        {
            var all = plugin.Category(configuration);
            Assert.Equal(12, all.Total);
            Assert.Equal(3 * configuration.Count(c => c == 'I'), plugin.Category(configuration + " image").Total);
            Assert.Equal(all.Correct, plugin.Category(configuration + " text").Correct + plugin.Category(configuration + " image").Correct);
        }
        Assert.Equal(plugin.WithImage.Total, Iit.Configurations.Sum(c => plugin.Category(c + " image").Total));
    }
}
