using Graft.Data;
using Graft.Eval;
using Graft.Models.Llm;
using Graft.Models.Tokenization;

namespace Graft.Tests.Eval;

/// <summary>
/// Letter scoring on the tiny Llama checkpoint, checked against log-softmax of logits the decoder gives for the
/// whole sequence, computed here independently of the scorer.
/// </summary>
public class LetterScoringTests
{
    private static readonly MmluQuestion Shot = new("world_geography", "Velmor is a city in which country?", ["Ostria", "Kell", "Dunia", "Brisia"], 0);
    private static readonly MmluQuestion Asked = new("world_geography", "Which river flows through Velmor?", ["Kell", "Tan", "Os", "Mor"], 2);

    private static double[] LogSoftmaxRow(float[] logits, int row, int vocab)
    {
        var values = logits.AsSpan(row * vocab, vocab);
        double max = values.ToArray().Max(), sum = 0;
        foreach (var v in values) sum += Math.Exp(v - max);
        return values.ToArray().Select(v => v - max - Math.Log(sum)).ToArray();
    }

    [Fact]
    public void One_token_letters_are_scored_from_one_forward_and_pick_the_argmax_of_the_last_logits()
    {
        using var temp = new TempFolder();
        string folder = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        using var model = DecoderModel.Load(folder);
        var tokenizer = Tokenizer.FromFolder(folder);
        var scorer = new DecoderScoringModel(model, tokenizer);
        string prompt = MmluPrompt.Build(Asked, [Shot], shots: 1);

        var scores = scorer.LogLikelihoods(EvalPrompt.TextOnly(prompt), [" A", " B", " C", " D"]);
        Assert.Equal(1, scorer.Forwards);

        var ids = tokenizer.Encode(prompt);
        var logits = model.Forward(ids).ToArray();
        var logProbs = LogSoftmaxRow(logits, ids.Length - 1, model.Config.VocabSize);
        for (int i = 0; i < 4; i++)
        {
            int letter = tokenizer.Encode(" " + (char)('A' + i)).Single();
            Assert.Equal(256 + i, letter);
            Assert.Equal(logProbs[letter], scores[i], 4);
        }
        int expected = Enumerable.Range(0, 4).MaxBy(i => logProbs[256 + i]);
        Assert.Equal(expected, Benchmarks.PickLetter(scorer, EvalPrompt.TextOnly(prompt), 4));
    }

    [Fact]
    public void Two_token_letters_sum_the_log_probabilities_of_both_tokens()
    {
        using var temp = new TempFolder();
        string folder = EvalFixtures.ModelFolder(temp, mergeLetters: false);
        using var model = DecoderModel.Load(folder);
        var tokenizer = Tokenizer.FromFolder(folder);
        var scorer = new DecoderScoringModel(model, tokenizer);
        string prompt = MmluPrompt.Build(Asked, [Shot], shots: 1);

        var scores = scorer.LogLikelihoods(EvalPrompt.TextOnly(prompt), [" A", " B"]);
        Assert.Equal(2, scorer.Forwards);
        // The second candidate continues from the first one's prompt in the cache: only its last three positions run.
        Assert.Equal(2 * (tokenizer.Encode(prompt).Length + 2) - (tokenizer.Encode(prompt).Length - 1), scorer.TokensRun);
        for (int i = 0; i < 2; i++)
        {
            var ids = tokenizer.Encode(prompt + " " + (char)('A' + i));
            Assert.Equal(tokenizer.Encode(prompt).Length + 2, ids.Length);
            var logits = model.Forward(ids).ToArray();
            int vocab = model.Config.VocabSize, n = ids.Length;
            double expected = LogSoftmaxRow(logits, n - 3, vocab)[ids[n - 2]] + LogSoftmaxRow(logits, n - 2, vocab)[ids[n - 1]];
            Assert.Equal(expected, scores[i], 4);
        }
    }

    [Fact]
    public void Greedy_generation_follows_the_argmax_and_stops_at_the_stop_string()
    {
        using var temp = new TempFolder();
        string folder = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        using var model = DecoderModel.Load(folder);
        var tokenizer = Tokenizer.FromFolder(folder);
        var scorer = new DecoderScoringModel(model, tokenizer);

        var ids = tokenizer.Encode("Question: What is 2 + 2?\nAnswer:").ToList();
        var expected = new List<int>();
        for (int step = 0; step < 6; step++)
        {
            var logits = model.Forward(ids.ToArray(), lastPositionOnly: true).ToArray();
            int next = Array.IndexOf(logits, logits.Max());
            if (model.Config.EosTokenIds.Contains(next) || next == 300) break;
            expected.Add(next);
            ids.Add(next);
        }
        string text = tokenizer.Decode(expected.Where(id => tokenizer.IdToToken(id) is not null).ToArray(), skipSpecialTokens: true);
        Assert.Equal(text, scorer.Generate(EvalPrompt.TextOnly("Question: What is 2 + 2?\nAnswer:"), 6));
        Assert.True(text.Length >= 2, $"the tiny model's greedy text \"{text}\" is too short to test a stop string");
        string stop = text[1..2];
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], scorer.Generate(EvalPrompt.TextOnly("Question: What is 2 + 2?\nAnswer:"), 6, stop));
        Assert.Throws<NotSupportedException>(() => scorer.Generate(new EvalPrompt("<image>\nx", ["a.png"]), 4));
    }
}
