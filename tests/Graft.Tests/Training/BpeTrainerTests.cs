using Graft.Data;
using Graft.Models.Chat;
using Graft.Models.Tokenization;
using Graft.Training.Tokenization;

namespace Graft.Tests.Training;

public sealed class BpeTrainerTests
{
    private static List<string> Corpus()
    {
        var kb = TextWorld.NewKnowledgeBase(new SeededRandom(4), 24);
        return kb.Cities.Select(c => c.Statement())
            .Concat(TextWorld.QuestionAnswers(kb).Select(qa => $"Question: {qa.Question}\nAnswer: {qa.Answer}\n\n"))
            .Append("<|im_start|>user\nWhat is 12 + 7?<|im_end|>\n<|im_start|>assistant\n19<|im_end|>\n")
            .ToList();
    }

    [Fact]
    public void Hand_counted_merges_and_their_use()
    {
        var trained = ByteLevelBpeTrainer.Train(["ab ab ab", "abc"], new BpeTrainingOptions { VocabSize = 300 });
        // Words "ab", "Ġab" x2, "abc": (a, b) occurs 4 times, then (Ġ, ab) twice; (ab, c) once is below the minimum of 2.
        Assert.Equal([("a", "b"), ("Ġ", "ab")], trained.Merges);
        var tokenizer = trained.Load();
        Assert.Equal(256 + 2 + 3, tokenizer.VocabSize);
        var ids = tokenizer.Encode("ab abc");
        Assert.Equal(["ab", "Ġab", "c"], ids.Select(id => tokenizer.IdToToken(id)!).ToArray());
        Assert.Equal(256, tokenizer.TokenToId("ab"));
        Assert.Equal(258, tokenizer.TokenToId("<|endoftext|>"));
        Assert.Equal(260, tokenizer.TokenToId("<|im_end|>"));
    }

    [Fact]
    public void Training_text_round_trips_and_every_word_ends_where_no_merge_applies()
    {
        var corpus = Corpus();
        var trained = ByteLevelBpeTrainer.Train(corpus, new BpeTrainingOptions { VocabSize = 600 });
        var tokenizer = trained.Load();
        var merges = trained.Merges.Select(m => m.Left + " " + m.Right).ToHashSet(StringComparer.Ordinal);
        Assert.True(trained.Merges.Count > 100, $"only {trained.Merges.Count} merges were learned");
        foreach (var text in corpus)
        {
            var ids = tokenizer.Encode(text);
            Assert.Equal(text, tokenizer.Decode(ids));
            var tokens = ids.Select(id => tokenizer.IdToToken(id)!).ToArray();
            for (int i = 0; i + 1 < tokens.Length; i++)
                Assert.DoesNotContain(tokens[i] + " " + tokens[i + 1], merges);
        }
        // Frequent words of the text world became single tokens; digits never merge.
        Assert.Single(tokenizer.Encode("Answer"));
        Assert.Single(tokenizer.Encode(" city"));
        Assert.Equal(4, tokenizer.Encode("1203").Length);
        Assert.DoesNotContain(trained.Merges, m => m.Left.Any(char.IsDigit) && m.Right.Any(char.IsDigit));
    }

    [Fact]
    public void An_answer_letter_is_the_same_token_as_its_option_line()
    {
        var trained = ByteLevelBpeTrainer.Train([.. Corpus(), "Which?\nA. red\nB. blue\nAnswer: B\n\n", "Which?\nA. red\nB. blue\nAnswer: A\n\n"],
            new BpeTrainingOptions { VocabSize = 500 });
        var tokenizer = trained.Load();
        var option = tokenizer.Encode("\nB. blue");
        var answer = tokenizer.Encode("Answer: B");
        Assert.Equal(option[1], answer[^1]);
        Assert.Equal("Ġ", tokenizer.IdToToken(answer[^2]));
        Assert.StartsWith("Ġ", tokenizer.IdToToken(tokenizer.Encode(" Answer")[0]));
    }

    [Fact]
    public void Training_is_deterministic_and_ignores_text_order()
    {
        var corpus = Corpus();
        var first = ByteLevelBpeTrainer.Train(corpus, new BpeTrainingOptions { VocabSize = 500 });
        var reversed = Enumerable.Reverse(corpus).ToList();
        var second = ByteLevelBpeTrainer.Train(reversed, new BpeTrainingOptions { VocabSize = 500 });
        Assert.Equal(first.TokenizerJson, second.TokenizerJson);
        Assert.Equal(first.TokenizerConfigJson, second.TokenizerConfigJson);
        Assert.Equal(500, first.Load().VocabSize);
    }

    [Fact]
    public void Files_load_from_a_folder_with_chatml_special_tokens_and_template()
    {
        var trained = ByteLevelBpeTrainer.Train(Corpus(), new BpeTrainingOptions { VocabSize = 400 });
        string folder = Path.Combine(Path.GetTempPath(), $"graft-bpe-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            foreach (var (name, text) in trained.Files) File.WriteAllText(Path.Combine(folder, name), text);
            var tokenizer = Tokenizer.FromFolder(folder);
            Assert.Equal("<|im_end|>", tokenizer.EosToken);
            Assert.Equal(false, tokenizer.AddBosToken);
            var template = ChatTemplates.ForCheckpoint(folder, tokenizer);
            Assert.Equal("chatml", template.Name);
            var ids = template.Encode(tokenizer, [new ChatMessage(ChatRole.User, "What is 2 + 3?")], addGenerationPrompt: true);
            Assert.Equal(tokenizer.TokenToId("<|im_start|>"), ids[0]);
            Assert.Equal("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n", tokenizer.Decode(ids));
            Assert.Equal(3, tokenizer.SpecialTokens.Count);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Impossible_options_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ByteLevelBpeTrainer.Train(["a"], new BpeTrainingOptions { VocabSize = 200 }));
        Assert.Throws<ArgumentException>(() => ByteLevelBpeTrainer.Train(["a"], new BpeTrainingOptions { EosToken = "</s>" }));
    }
}
