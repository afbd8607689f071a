using Graft.Eval;
using Graft.Models.Chat;

namespace Graft.Tests.Eval;

/// <summary>The harness on fake models whose answers are fixed by construction, so every count is known.</summary>
public class HarnessTests
{
    private static readonly EvalOptions Options = new() { Shots = 2 };

    [Fact]
    public void Always_A_on_MMLU_scores_the_share_of_A_answers_per_subject()
    {
        using var temp = new TempFolder();
        string mmlu = EvalFixtures.Mmlu(temp, ("algebra", "ABAC"), ("botany", "AAD"));
        var model = new FakeScoringModel((_, _) => 0, _ => "");
        var result = Benchmarks.Run(BenchSpec.Parse("mmlu:" + mmlu), model, Options);

        Assert.Equal(new Score(4, 7), result.Overall);
        Assert.Equal(new Score(2, 4), result.Category("algebra"));
        Assert.Equal(new Score(2, 3), result.Category("botany"));
        Assert.Equal(result.Overall.Total, result.Categories.Sum(c => c.Score.Total));
        Assert.Equal(result.Overall, result.TextOnly);
        Assert.Equal(7, model.Prompts.Count);
        Assert.All(model.Prompts, p => Assert.EndsWith("\nAnswer:", p.Text));
        Assert.Contains("Shot two?\nA. a\nB. b\nC. c\nD. d\nAnswer: B\n\n", model.Prompts[0].Text);
    }

    [Fact]
    public void Correct_on_even_questions_only_with_a_limit_taken_round_robin()
    {
        using var temp = new TempFolder();
        string mmlu = EvalFixtures.Mmlu(temp, ("algebra", "ABCDA"), ("botany", "DCBA"));
        var answers = "ABCDADCBA".Select(c => c - 'A').ToArray();
        var model = new FakeScoringModel((p, _) =>
        {
            int n = FakeScoringModel.LastQuestion(p);
            return n % 2 == 0 ? answers[n] : (answers[n] + 1) % 4;
        }, _ => "");

        var all = Benchmarks.Run(BenchSpec.Parse("mmlu:" + mmlu), model, Options);
        Assert.Equal(new Score(5, 9), all.Overall);          // Q0, Q2, Q4, Q6, Q8
        Assert.Equal(new Score(3, 5), all.Category("algebra"));
        Assert.Equal(new Score(2, 4), all.Category("botany"));

        var limited = Benchmarks.Run(BenchSpec.Parse("mmlu:" + mmlu), model, Options with { Limit = 4 });
        Assert.Equal(4, limited.Overall.Total);
        Assert.Equal(new Score(1, 2), limited.Category("algebra"));   // Q0, Q1
        Assert.Equal(new Score(1, 2), limited.Category("botany"));    // Q5, Q6
    }

    [Fact]
    public void ScienceQa_counts_parsed_wrong_and_unparsed_answers_and_skips_images_without_a_plugin()
    {
        using var temp = new TempFolder();
        string folder = EvalFixtures.ScienceQa(temp, 12);
        // Problem n: right answer when n % 3 == 0, a wrong letter when 1, no readable answer when 2.
        Func<EvalPrompt, string> generate = p =>
        {
            int n = FakeScoringModel.LastQuestion(p);
            return (n % 3) switch
            {
                0 => $"The answer is {(char)('A' + n % 3)}. BECAUSE: it is.",
                1 => $"The answer is {(char)('A' + (n + 1) % 3)}.",
                _ => "I cannot tell.",
            };
        };

        var textOnly = Benchmarks.Run(BenchSpec.Parse("scienceqa:" + folder), new FakeScoringModel((_, _) => 0, generate), Options);
        // Text problems: n % 4 in {0, 1} -> 0, 1, 4, 5, 8, 9; right: 0, 9; unparsed: 5, 8.
        Assert.Equal(new Score(2, 6), textOnly.Overall);
        Assert.Equal(6, textOnly.Skipped);
        Assert.Equal(Benchmarks.NeedsPlugin, textOnly.SkipReason);
        Assert.Equal(2, textOnly.Unparsed);
        Assert.Equal(new Score(1, 3), textOnly.Category("NAT"));   // 0, 4, 8
        Assert.Equal(new Score(1, 3), textOnly.Category("SOC"));   // 1, 5, 9
        Assert.Equal(new Score(0, 0), textOnly.Category("LAN"));
        Assert.Equal(new Score(1, 3), textOnly.Category("TXT"));   // hints: 1, 5, 9
        Assert.Equal(new Score(1, 3), textOnly.Category("NO"));    // 0, 4, 8
        Assert.Equal(new Score(0, 0), textOnly.Category("IMG"));
        Assert.Equal(new Score(1, 4), textOnly.Category("G1-6"));  // grades 1, 2, 5, 6
        Assert.Equal(new Score(1, 2), textOnly.Category("G7-12")); // grades 9, 10

        var withImages = Benchmarks.Run(BenchSpec.Parse("scienceqa:" + folder), new FakeScoringModel((_, _) => 0, generate, acceptsImages: true), Options);
        // All twelve; right: 0, 3, 6, 9; unparsed: 2, 5, 8, 11.
        Assert.Equal(new Score(4, 12), withImages.Overall);
        Assert.Equal(0, withImages.Skipped);
        Assert.Equal(4, withImages.Unparsed);
        Assert.Equal(new Score(2, 6), withImages.Category("IMG"));  // 2, 3, 6, 7, 10, 11
        Assert.Equal(withImages.Category("IMG"), withImages.WithImage);
        Assert.Equal(12, withImages.Category("NAT").Total + withImages.Category("SOC").Total + withImages.Category("LAN").Total);
        Assert.Equal(12, withImages.Category("G1-6").Total + withImages.Category("G7-12").Total);
        Assert.Equal(12, withImages.Category("TXT").Total + withImages.Category("IMG").Total + withImages.Category("NO").Total);
    }

    [Fact]
    public void Free_answers_are_exact_matches_after_normalising_with_gold_history()
    {
        using var temp = new TempFolder();
        string file = temp.File("chat.json", """
            [{"id": "t", "conversations": [
                {"from": "human", "value": "Capital of Ostria?"}, {"from": "gpt", "value": "Velmor"},
                {"from": "human", "value": "Its river?"}, {"from": "gpt", "value": "the Kell."}]},
             {"id": "i", "image": "x.png", "conversations": [
                {"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "red"}]}]
            """);
        // The second answer goes on after its first line (as a base does): only the first line is judged.
        var model = new FakeScoringModel((_, _) => 0, p => p.Conversation!.Messages[^1].Content == "Its river?" ? "  The KELL \n\nQuestion: and" : "Paris");
        var result = Benchmarks.Run(BenchSpec.Parse("llava:" + file), model, Options);

        Assert.Equal(new Score(1, 2), result.Overall);
        Assert.Equal(1, result.Skipped);
        // The request is the conversation before the turn, gold answers as history, for the route's chat template.
        var asked = model.Prompts[1].Conversation!;
        Assert.Equal([ChatMessage.User("Capital of Ostria?"), ChatMessage.Assistant("Velmor"), ChatMessage.User("Its river?")], asked.Messages);
        Assert.All(asked.Images, images => Assert.Empty(images));
        Assert.Equal(["Paris", "  The KELL \n\nQuestion: and"], result.Answers.Select(a => a.Answer));
        Assert.Equal(["t#1", "t#3"], result.Answers.Select(a => a.Id));
        Assert.Equal([false, true], result.Answers.Select(a => a.Correct));
    }

    [Theory]
    [InlineData(" red\n\n", "red")]
    [InlineData("\n  Velmor\nQuestion: x", "Velmor")]
    [InlineData("", "")]
    public void A_free_answer_is_its_first_line(string answer, string expected) => Assert.Equal(expected, AnswerParsing.FirstLine(answer));

    [Theory]
    [InlineData("The answer is B. BECAUSE: ...", 3, 1)]
    [InlineData("Well. The answer is C, I think", 3, 2)]
    [InlineData("The answer is A\n", 3, null)]             // '.' does not match a newline
    [InlineData("The answer is A", 3, null)]               // nothing after the letter, as in the original
    [InlineData("The answer is D. ", 3, null)]             // beyond the options
    [InlineData("The answer is A. Or The answer is B.", 3, null)]   // two answers
    [InlineData("the answer is A.", 3, null)]              // case-sensitive
    [InlineData("The answer is (A).", 3, null)]
    [InlineData("", 2, null)]
    public void The_answer_is_X_follows_the_ScienceQA_regex(string output, int choices, int? expected) =>
        Assert.Equal(expected, AnswerParsing.ParseAnswerIs(output, choices));

    [Theory]
    [InlineData("  Paris. ", "paris", true)]
    [InlineData("RED", "red", true)]
    [InlineData("two", "Two.", true)]
    [InlineData("red.", "red..", false)]
    [InlineData("the red", "red", false)]
    public void Exact_match_trims_case_folds_and_drops_one_final_period(string prediction, string gold, bool expected) =>
        Assert.Equal(expected, AnswerParsing.ExactMatch(prediction, gold));

    [Fact]
    public void Bench_specs_parse_and_name_what_is_wrong()
    {
        Assert.Equal(new BenchSpec(BenchKind.Mmlu, "/d/mm,lu"), BenchSpec.Parse("mmlu:/d/mm,lu"));
        var iit = BenchSpec.Parse("iit:mmlu:/a,b/mmlu,scienceqa:/c");
        Assert.Equal(new BenchSpec(BenchKind.Mmlu, "/a,b/mmlu"), iit.TextSet);
        Assert.Equal(new BenchSpec(BenchKind.ScienceQa, "/c"), iit.ImageSet);
        Assert.Contains("unknown kind \"gsm8k\"", Assert.Throws<ArgumentException>(() => BenchSpec.Parse("gsm8k:/x")).Message);
        Assert.Contains("KIND:PATH", Assert.Throws<ArgumentException>(() => BenchSpec.Parse("mmlu")).Message);
        Assert.Contains("image set must be", Assert.Throws<ArgumentException>(() => BenchSpec.Parse("iit:mmlu:/a,mmlu:/b")).Message);
        Assert.Contains("TEXTSET,IMAGESET", Assert.Throws<ArgumentException>(() => BenchSpec.Parse("iit:mmlu:/a")).Message);
    }

    [Fact]
    public void Interactive_progress_redraws_in_place_at_most_ten_times_a_second_with_rate_and_time_left()
    {
        var output = new StringWriter();
        var clock = new ManualClock();
        var bar = new ProgressBar(output, interactive: true, width: 4, time: clock);
        bar.Start("mmlu", 100);
        string half = "";
        for (int i = 1; i <= 100; i++)
        {
            clock.Advance(TimeSpan.FromMilliseconds(10));
            bar.Report(i);
            if (i == 50) half = output.ToString();
        }
        string text = output.ToString();
        // The start, a redraw each 100 ms (items 10, 20, ..., 90) and the end.
        Assert.Equal(11, text.Count(c => c == '\r'));
        Assert.EndsWith("\rmmlu [##--] 50/100  100.0/s  ETA 0:00", half);
        Assert.EndsWith("\rmmlu [####] 100/100  100.0/s  in 1.0 s" + Environment.NewLine, text);
        Assert.Single(text.Split('\n'), line => line.Length > 0);
    }

    [Fact]
    public void Interactive_progress_gives_minutes_left_and_clears_a_longer_line_it_drew_before()
    {
        var output = new StringWriter();
        var clock = new ManualClock();
        var bar = new ProgressBar(output, interactive: true, width: 2, time: clock);
        bar.Start("iit", 1000);
        clock.Advance(TimeSpan.FromSeconds(2));
        bar.Report(10);   // 5/s: 990 left take 198 s
        Assert.EndsWith("iit [--] 10/1000  5.0/s  ETA 3:18", output.ToString());
        bar.Start("x", 2);
        Assert.EndsWith("\rx [--] 0/2", output.ToString());
    }

    [Fact]
    public void Redirected_progress_writes_one_plain_line_when_a_benchmark_ends()
    {
        var output = new StringWriter();
        var clock = new ManualClock();
        var bar = new ProgressBar(output, interactive: false, time: clock);
        bar.Start("mmlu", 100);
        for (int i = 1; i <= 100; i++)
        {
            clock.Advance(TimeSpan.FromMilliseconds(20));
            bar.Report(i);
        }
        Assert.Equal("mmlu: 100/100 in 2.0 s (50.0/s)" + Environment.NewLine, output.ToString());
        bar.Start("empty", 0);
        Assert.EndsWith("empty: 0/0 in 0.0 s (0.0/s)" + Environment.NewLine, output.ToString());
    }

    /// <summary>A clock that moves only when told.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }
}
