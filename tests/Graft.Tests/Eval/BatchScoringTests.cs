using Graft.Data;
using Graft.Eval;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tests.Plugins;

namespace Graft.Tests.Eval;

/// <summary>
/// Batched scoring on the tiny Llama: a batch shares its prompts' common prefixes through the KV cache, and its scores
/// are those of a full forward over each whole prompt (computed here without the scorer) to 1e-4, picking the same
/// letters; the plug-in route scores text-only requests as the base route does, bit for bit, and generates through
/// its KV cache exactly the tokens that recomputing the whole sequence gives.
/// </summary>
public class BatchScoringTests
{
    private static (List<(EvalPrompt Prompt, int Choices)> Questions, int[] Answers) MmluQuestions(TempFolder temp, int count)
    {
        string folder = Path.Combine(temp.Path, "world");
        TextWorld.Write(new DataOutput(folder, force: false, TextWorld.OutputNames), 8, seed: 5);
        var subjects = Benchmarks.LoadMmlu(Path.Combine(folder, "mmlu"), new EvalOptions());
        var order = Benchmarks.RoundRobin(subjects.Values.Select(s => s.Questions).ToList(), count);
        // Three shots keep every byte-level prompt inside the tiny model's 512 positions (a prompt cut from the left shares no prefix).
        var questions = order.Select(q => (EvalPrompt.TextOnly(MmluPrompt.Build(q, subjects[q.Subject].Dev, 3)), q.Choices.Count)).ToList();
        return (questions, order.Select(q => q.Answer).ToArray());
    }

    /// <summary>log P(letter | prompt) for " A".. from one full forward over the prompt, in double precision from the float logits.</summary>
    private static double[] Reference(DecoderModel model, Tokenizer tokenizer, EvalPrompt prompt, int choices)
    {
        var ids = tokenizer.Encode(prompt.Text);
        var row = model.Forward(ids).ToArray().AsSpan((ids.Length - 1) * model.Config.VocabSize, model.Config.VocabSize).ToArray();
        double max = row.Max(), sum = row.Sum(v => Math.Exp(v - max));
        return Enumerable.Range(0, choices).Select(i => row[tokenizer.Encode(" " + (char)('A' + i)).Single()] - max - Math.Log(sum)).ToArray();
    }

    [Fact]
    public void A_batch_shares_the_k_shot_prefix_and_scores_as_full_forwards_do()
    {
        using var temp = new TempFolder();
        string folder = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        using var model = DecoderModel.Load(folder);
        var tokenizer = Tokenizer.FromFolder(folder);
        var (questions, _) = MmluQuestions(temp, 12);
        var requests = questions.Select(q => new LikelihoodRequest(q.Prompt, Enumerable.Range(0, q.Choices).Select(i => " " + (char)('A' + i)).ToArray())).ToArray();

        var scorer = new DecoderScoringModel(model, tokenizer);
        var finished = new List<int>();
        var scores = scorer.LogLikelihoods(requests, finished.Add);
        Assert.Equal(Enumerable.Range(1, requests.Length), finished);
        Assert.Equal(requests.Length, scorer.Forwards);
        long promptTokens = questions.Sum(q => (long)tokenizer.Encode(q.Prompt.Text).Length);
        // Three subjects: each k-shot prefix runs once, then only each question's own tokens.
        Assert.Equal(0, scorer.TruncatedPrompts);
        Assert.True(scorer.TokensRun < promptTokens / 2, $"{scorer.TokensRun} tokens run for {promptTokens} prompt tokens");

        for (int i = 0; i < requests.Length; i++)
        {
            var reference = Reference(model, tokenizer, questions[i].Prompt, questions[i].Choices);
            for (int c = 0; c < reference.Length; c++) Assert.Equal(reference[c], scores[i][c], 1e-4);
            Assert.Equal(Array.IndexOf(reference, reference.Max()), Array.IndexOf(scores[i], scores[i].Max()));
        }

        // The runs are sorted by their tokens, so the order of the requests changes no bit of any score.
        var shuffled = Enumerable.Range(0, requests.Length).Reverse().ToArray();
        var again = new DecoderScoringModel(model, tokenizer).LogLikelihoods(shuffled.Select(i => requests[i]).ToArray());
        for (int k = 0; k < shuffled.Length; k++)
            Assert.Equal(scores[shuffled[k]].Select(BitConverter.DoubleToInt64Bits), again[k].Select(BitConverter.DoubleToInt64Bits));
    }

    [Fact]
    public void The_mmlu_benchmark_picks_what_one_full_forward_per_question_picks()
    {
        using var temp = new TempFolder();
        string folder = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        using var model = DecoderModel.Load(folder);
        var tokenizer = Tokenizer.FromFolder(folder);
        var (questions, answers) = MmluQuestions(temp, 9);
        var picks = Benchmarks.PickLetters(new DecoderScoringModel(model, tokenizer), questions, progress: null);
        var expected = questions.Select(q => Reference(model, tokenizer, q.Prompt, q.Choices)).Select(r => Array.IndexOf(r, r.Max())).ToArray();
        Assert.Equal(expected, picks);
        Assert.Equal(answers.Length, picks.Length);
    }

    /// <summary>
    /// More prompts than decode together (so finished ones make room for the next), with different lengths, budgets and
    /// stop strings: each completion is the one a plain cached greedy loop gives for that prompt alone.
    /// </summary>
    [Fact]
    public void Batched_generation_gives_each_prompt_what_decoding_it_alone_gives()
    {
        using var temp = new TempFolder();
        string folder = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        using var model = DecoderModel.Load(folder);
        var tokenizer = Tokenizer.FromFolder(folder);
        var requests = Enumerable.Range(0, GreedyBatch.Width + 5).Select(i => new GenerationRequest(
            EvalPrompt.TextOnly($"Question {i}: {new string('x', i % 7)} what comes next?\nAnswer:"), 3 + i % 6, i % 4 == 0 ? "e" : null)).ToArray();
        var finished = new List<int>();
        var texts = new DecoderScoringModel(model, tokenizer).Generate(requests, finished.Add);
        Assert.Equal(Enumerable.Range(1, requests.Length), finished);

        var eos = new HashSet<int>(model.Config.EosTokenIds);
        if (tokenizer.EosTokenId is { } end) eos.Add(end);
        for (int i = 0; i < requests.Length; i++)
        {
            var ids = tokenizer.Encode(requests[i].Prompt.Text);
            var cache = new KvCache(model.Config, ids.Length + requests[i].MaxNewTokens);
            var logits = model.Forward(ids, cache, lastPositionOnly: true).ToArray();
            var generated = new List<int>();
            string expected = "";
            for (int step = 0; step < requests[i].MaxNewTokens; step++)
            {
                int next = Array.IndexOf(logits, logits.Max());
                if (eos.Contains(next)) break;
                generated.Add(next);
                expected = tokenizer.Decode(generated.Where(id => tokenizer.IdToToken(id) is not null).ToArray(), skipSpecialTokens: true);
                if (requests[i].Stop is { } stop && expected.Contains(stop, StringComparison.Ordinal))
                {
                    expected = expected[..expected.IndexOf(stop, StringComparison.Ordinal)];
                    break;
                }
                logits = model.Forward([next], cache, lastPositionOnly: true).ToArray();
            }
            Assert.Equal(expected, texts[i]);
        }
        Assert.Contains(texts, t => t.Length > 0);
    }

    [Fact]
    public void Text_only_requests_on_the_plugin_route_score_bit_for_bit_as_on_the_base_route()
    {
        using var temp = new TempFolder();
        string folder = EvalFixtures.ModelFolder(temp, mergeLetters: false);
        using var model = DecoderModel.Load(folder);
        var tokenizer = Tokenizer.FromFolder(folder);
        var (questions, _) = MmluQuestions(temp, 6);
        var requests = questions.Select(q => new LikelihoodRequest(q.Prompt, [" A", " B", " C"])).ToArray();
        var host = new PluginHost(model);
        host.Attach("b", PluginFixtures.RandomBridge(model, 4));
        var plugin = new PluginScoringModel(host, "b", tokenizer, TextRoute.Base).LogLikelihoods(requests);
        var alone = new DecoderScoringModel(model, tokenizer).LogLikelihoods(requests);
        for (int i = 0; i < requests.Length; i++)
            Assert.Equal(alone[i].Select(BitConverter.DoubleToInt64Bits), plugin[i].Select(BitConverter.DoubleToInt64Bits));
    }

    [Fact]
    public void Plugin_route_generation_runs_on_the_cache_and_gives_the_tokens_recomputation_gives()
    {
        using var temp = new TempFolder();
        string folder = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        using var model = DecoderModel.Load(folder);
        var tokenizer = Tokenizer.FromFolder(folder);
        var bridge = PluginFixtures.RandomBridge(model, 6);
        var host = new PluginHost(model);
        host.Attach("b", bridge);
        string image = Path.Combine(temp.Path, "image.ppm");
        File.WriteAllBytes(image, [.. "P6\n4 4\n255\n"u8.ToArray(), .. Enumerable.Range(0, 48).Select(i => (byte)(i * 7))]);
        var prompt = new EvalPrompt("Look: <image>\nWhat is it?", [image]);

        var scorer = new PluginScoringModel(host, "b", tokenizer, TextRoute.Base);
        string text = scorer.Generate(prompt, maxNewTokens: 8);

        var parts = new List<PromptPart> { new TextPart(tokenizer.Encode("Look: ")), new ImagePart(ImageDecoder.Load(image)) };
        var ids = tokenizer.Encode("\nWhat is it?", addSpecialTokens: false).ToList();
        var generated = new List<int>();
        var eos = new HashSet<int>(model.Config.EosTokenIds);
        if (tokenizer.EosTokenId is { } end) eos.Add(end);
        for (int step = 0; step < 8; step++)
        {
            var logits = host.Forward("b", new MultimodalPrompt([.. parts, new TextPart([.. ids, .. generated])]), lastPositionOnly: true);
            int next = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits.ToArray());
            if (eos.Contains(next)) break;
            generated.Add(next);
        }
        Assert.NotEmpty(generated);
        Assert.Equal(tokenizer.Decode(generated.Where(id => tokenizer.IdToToken(id) is not null).ToArray(), skipSpecialTokens: true), text);
        Assert.True(text.Length >= 2, $"the greedy text \"{text}\" is too short to test a stop string");
        Assert.Equal(text[..text.IndexOf(text[1])], scorer.Generate(prompt, 8, stop: text[1..2]));

        // Image and text-only requests decoding together: each gives what it gives alone.
        GenerationRequest[] mixed =
        [
            new(prompt, 8), new(EvalPrompt.TextOnly("What is it?"), 5), new(new EvalPrompt("<image> and <image>?", [image, image]), 6, "x"), new(prompt, 3),
        ];
        var together = scorer.Generate(mixed);
        Assert.Equal(mixed.Select(r => scorer.Generate(r.Prompt, r.MaxNewTokens, r.Stop)), together);
        Assert.Equal(text, together[0]);
    }
}
