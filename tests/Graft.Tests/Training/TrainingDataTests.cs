using Graft.Data;
using Graft.Eval;
using Graft.Models.Chat;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Tests.Eval;
using Graft.Training;

namespace Graft.Tests.Training;

public sealed class TrainingDataTests : IDisposable
{
    private readonly TrainingFixtures _fixtures = new();

    public void Dispose() => _fixtures.Dispose();

    /// <summary>A plug-in that hands every request it prepares to a list before its inner plug-in prepares it.</summary>
    private sealed class RecordingPlugin(IPlugin inner) : IPlugin
    {
        public List<MultimodalPrompt> Prompts { get; } = [];
        public string Design => inner.Design;
        public PluginManifest Manifest => inner.Manifest;
        public DecoderModel Base => inner.Base;
        public IReadOnlyList<PluginParameter> Parameters => inner.Parameters;
        public bool CanRouteText => inner.CanRouteText;
        public bool CanEncodePixels => inner.CanEncodePixels;
        public PromptLayout Layout => inner.Layout;

        public PreparedInput Prepare(MultimodalPrompt prompt)
        {
            Prompts.Add(prompt);
            return inner.Prepare(prompt);
        }
    }

    /// <summary>
    /// The example before its <paramref name="target"/>-th run of assistant tokens, as runs of token ids (adjacent text
    /// parts joined) and image paths.
    /// </summary>
    private static List<object> Before(TrainingExample example, int target)
    {
        var parts = new List<object>();
        int seen = 0;
        foreach (var part in example.Parts)
        {
            if (part is ExampleText { IsAssistant: true } && seen++ == target) return Joined(parts);
            parts.Add(part is ExampleText text ? text.Ids : ((ExampleImage)part).Path);
        }
        throw new ArgumentException($"the example has {seen} targets");
    }

    /// <summary>A request as the harness sent it, in the same shape (images as "image").</summary>
    private static List<object> Sent(MultimodalPrompt prompt) => Joined(prompt.Parts.Select(p => p is TextPart t ? (object)t.Ids : "image"));

    private static List<object> Joined(IEnumerable<object> parts)
    {
        var joined = new List<object>();
        foreach (var part in parts)
        {
            if (part is int[] ids && joined.Count > 0 && joined[^1] is int[] previous) joined[^1] = previous.Concat(ids).ToArray();
            else joined.Add(part);
        }
        return joined;
    }

    /// <summary>Image paths replaced by "image" (the harness hands the plug-in decoded pixels).</summary>
    private static List<object> Anonymous(List<object> parts) => parts.Select(p => p is string ? "image" : p).ToList();

    public static TheoryData<string> EveryDesign => new() { Bridge.DesignName, Mma.DesignName, InnerAdaptor.DesignName, Wings.DesignName, VisualExperts.DesignName };

    /// <summary>An untrained plug-in of <paramref name="design"/> on the tiny base, with the test front end where it takes one.</summary>
    private static IPlugin Untrained(string design, DecoderModel model) => design switch
    {
        Bridge.DesignName => Bridge.Create(model, TrainingFixtures.Vision()),
        Mma.DesignName => Mma.Create(model, TrainingFixtures.Vision()),
        InnerAdaptor.DesignName => InnerAdaptor.Create(model, TrainingFixtures.Vision()),
        Wings.DesignName => Wings.Create(model, TrainingFixtures.Vision()),
        _ => VisualExperts.Create(model),
    };

    /// <summary>
    /// For every design, the trainer's example and evaluation's request for the same item are the same parts, token for
    /// token: free answers of a shapes conversation (through the base's chat template, the design's layout inside the user
    /// turn), and ScienceQA with and without an image (LaVIN's prompt in the design's layout; the text-only problem through
    /// the plug-in where the design acts on text, else as the base encodes it).
    /// </summary>
    [Theory]
    [MemberData(nameof(EveryDesign))]
    public void The_context_of_every_target_is_the_request_evaluation_sends(string design)
    {
        using var model = DecoderModel.Load(_fixtures.Model);
        var tokenizer = Tokenizer.FromFolder(_fixtures.Model);
        var recorder = new RecordingPlugin(Untrained(design, model));
        Assert.Equal(design == Mma.DesignName ? ("Image: ", "Image: N/A") : (null, null), (recorder.Layout.ImageLead, recorder.Layout.TextOnlyLead));
        var route = recorder.CanRouteText ? TextRoute.Plugin : TextRoute.Base;
        var host = new PluginHost(model);
        host.Attach("p", recorder, route);
        var template = ChatTemplates.ForCheckpoint(_fixtures.Model, tokenizer);
        Assert.Equal("plain", template.Name);
        var scorer = new PluginScoringModel(host, "p", tokenizer, route, template);
        var conversations = LlavaReader.Read(Path.Combine(_fixtures.Shapes, "llava.json"), Path.Combine(_fixtures.Shapes, "images"));
        var format = new ConversationFormat(template, ChatPrompts.EndOfTurnTokens(tokenizer, model.Config.EosTokenIds));
        var example = TrainingData.Load(new DataSourceSpec("shapes", _fixtures.Shapes, null, 1), recorder.Layout, tokenizer, model.Config.VocabSize, format).Examples[0];
        var conversation = conversations[0];
        var turns = conversation.SupervisedTurns.ToList();
        Assert.True(turns.Count >= 2);
        for (int k = 0; k < turns.Count; k++)
        {
            recorder.Prompts.Clear();
            scorer.Generate(Benchmarks.FreeAnswerPrompt(conversation, turns[k]), maxNewTokens: 1);
            var expected = Before(example, k);
            Assert.Equal(conversation.ImagePaths[0], Assert.Single(expected.OfType<string>()));
            Assert.Equal(Anonymous(expected), Sent(Assert.Single(recorder.Prompts)));
        }

        // ScienceQA as LaVIN asks it, with and without an image.
        var problems = ScienceQaDataset.Load(Path.Combine(_fixtures.Shapes, "scienceqa")).Split("train");
        foreach (var problem in new[] { problems.First(p => p.HasImage), problems.First(p => !p.HasImage) })
        {
            var sqa = TrainingExample.Encode(PromptFormats.ScienceQaAnswered(problem), recorder.Layout, tokenizer, model.Config.VocabSize, "sqa");
            var expected = Before(sqa, 0);
            if (problem.HasImage || route == TextRoute.Plugin)
            {
                recorder.Prompts.Clear();
                scorer.Generate(EvalPrompt.From(PromptFormats.ScienceQa(problem)), maxNewTokens: 1);
                Assert.Equal(Anonymous(expected), Sent(Assert.Single(recorder.Prompts)));
            }
            else Assert.Equal(tokenizer.Encode(PromptFormats.ScienceQa(problem).Text), (int[])Assert.Single(expected));
        }
    }

    /// <summary>
    /// MMA's requests are LaVIN's, built here from its insert_image_embeds: [BOS] encode("Image: ") [image] encode(prompt)
    /// without its BOS, and [BOS] encode("Image: N/A") encode(prompt) without its BOS for a text-only request through the
    /// plug-in, whether the trainer or evaluation (generated or scored answers) makes them; on the base route a text-only
    /// request is the base's own encoding.
    /// </summary>
    [Fact]
    public void Mma_requests_from_training_and_evaluation_are_lavins_layout_token_for_token()
    {
        File.WriteAllText(Path.Combine(_fixtures.Model, "tokenizer.json"), EvalFixtures.TokenizerJson(mergeLetters: false, bos: true));
        File.WriteAllText(Path.Combine(_fixtures.Model, "tokenizer_config.json"), """{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}""");
        using var model = DecoderModel.Load(_fixtures.Model);
        var tokenizer = Tokenizer.FromFolder(_fixtures.Model);
        int bos = tokenizer.BosTokenId!.Value;
        Assert.Equal(bos, tokenizer.Encode("x")[0]);
        int[] Lavin(string text) => tokenizer.Encode(text, addSpecialTokens: false);

        var mma = new RecordingPlugin(Mma.Create(model, TrainingFixtures.Vision()));
        var host = new PluginHost(model);
        host.Attach("mma", mma, TextRoute.Plugin);
        var scorer = new PluginScoringModel(host, "mma", tokenizer, TextRoute.Plugin);
        var problems = ScienceQaDataset.Load(Path.Combine(_fixtures.Shapes, "scienceqa")).Split("train");
        var withImage = problems.First(p => p.HasImage);
        var textOnly = problems.First(p => !p.HasImage);
        var examples = TrainingData.Load(new DataSourceSpec("scienceqa", Path.Combine(_fixtures.Shapes, "scienceqa"), "train", 1), mma.Layout, tokenizer, model.Config.VocabSize).Examples;

        // Parts exactly: BOS and "Image: " together, the image, then the prompt encoded on its own.
        List<object> imageLayout = [new[] { bos }.Concat(Lavin("Image: ")).ToArray(), "image", Lavin(withImage.Prompt())];
        List<object> textLayout = [new[] { bos }.Concat(Lavin("Image: N/A")).ToArray(), Lavin(textOnly.Prompt())];
        static List<object> Parts(MultimodalPrompt prompt) => prompt.Parts.Select(p => p is TextPart t ? (object)t.Ids : "image").ToList();

        mma.Prompts.Clear();
        scorer.Generate(EvalPrompt.From(PromptFormats.ScienceQa(withImage)), maxNewTokens: 1);
        scorer.Generate(EvalPrompt.From(PromptFormats.ScienceQa(textOnly)), maxNewTokens: 1);
        Assert.Equal(new[] { imageLayout, textLayout }, mma.Prompts.Select(Parts).ToArray());

        mma.Prompts.Clear();
        scorer.LogLikelihoods(EvalPrompt.From(PromptFormats.ScienceQa(withImage)), [" The answer is A", " The answer is B"]);
        var scored = Parts(mma.Prompts[0]);
        Assert.Equal(imageLayout.GetRange(0, 2), scored.GetRange(0, 2));
        Assert.Equal(Lavin(withImage.Prompt()), ((int[])scored[2])[..Lavin(withImage.Prompt()).Length]);

        // The trainer's examples: LaVIN encodes prompt and answer as one text, with EOS.
        foreach (var (problem, lead) in new[] { (withImage, imageLayout.GetRange(0, 2)), (textOnly, textLayout.GetRange(0, 1)) })
        {
            var example = examples.Single(e => e.Where.EndsWith($"qid {problem.Id}", StringComparison.Ordinal));
            var fed = Sent(example.ToPrompt(path => new ImagePart(Graft.Models.Imaging.ImageDecoder.Load(path))));
            int[] rest = [.. Lavin(problem.Prompt() + " " + problem.Target()), tokenizer.EosTokenId!.Value];
            List<object> expected = [.. lead, rest];
            Assert.Equal(Joined(expected), fed);
        }

        var baseRoute = new PluginHost(model);
        baseRoute.Attach("mma", mma);
        mma.Prompts.Clear();
        new PluginScoringModel(baseRoute, "mma", tokenizer, TextRoute.Base).Generate(EvalPrompt.From(PromptFormats.ScienceQa(textOnly)), maxNewTokens: 1);
        Assert.Empty(mma.Prompts);
    }

    [Fact]
    public void Targets_are_the_answers_with_the_end_of_turn_or_sequence_where_the_format_has_one()
    {
        var tokenizer = Tokenizer.FromFolder(_fixtures.Model);
        int eos = tokenizer.EosTokenId!.Value;
        var plain = ChatTemplates.ForCheckpoint(_fixtures.Model, tokenizer);
        FormattedPrompt Chat(ChatTurns turns)
        {
            var rendered = ChatPrompts.Render(PromptLayout.AtPlaceholders, plain, tokenizer, turns.Messages, turns.Images.Select(i => i.Count).ToArray(),
                addGenerationPrompt: false, endOfTurn: ["<|endoftext|>"]);
            return new FormattedPrompt(rendered.Text, [], rendered.Targets) { ImagesPlaced = true, AddSpecialTokens = !rendered.RendersBos };
        }

        // Alpaca in conversation form: the instruction asked, the output answered, then the turn's end of sequence.
        var alpaca = TrainingExample.Encode(Chat(PromptFormats.Chat(new AlpacaExample("Name a colour.", "", "red"))), PromptLayout.AtPlaceholders, tokenizer, 320, "a");
        var answer = alpaca.Parts.OfType<ExampleText>().Where(p => p.IsAssistant).SelectMany(p => p.Ids).ToArray();
        Assert.Equal([.. tokenizer.Encode(" red\n\n", addSpecialTokens: false), eos], answer);
        Assert.Equal(answer.Length, alpaca.Targets);
        Assert.False(alpaca.HasImage);
        Assert.Equal(["Name a colour.", "Translate.\n\nbonjour"], new[] { new AlpacaExample("Name a colour.", "", "red"), new AlpacaExample("Translate.", "bonjour", "hello") }
            .Select(e => PromptFormats.Chat(e).Messages[0].Content));

        var mmlu = new MmluQuestion("geo", "Which?", ["a", "b", "c", "d"], 2);
        var letter = TrainingExample.Encode(PromptFormats.MmluAnswered(mmlu, [], 0), PromptLayout.AtPlaceholders, tokenizer, 320, "m");
        Assert.Equal(tokenizer.Encode(" C", addSpecialTokens: false), letter.Parts.OfType<ExampleText>().Where(p => p.IsAssistant).SelectMany(p => p.Ids).ToArray());
        Assert.Equal(tokenizer.Encode(MmluPrompt.Build(mmlu, [], 0)), ((ExampleText)letter.Parts[0]).Ids);

        var conversation = new Conversation("c", [], [
            new Turn(Role.User, "Q1?", []), new Turn(Role.Assistant, "A1", []), new Turn(Role.User, "Q2?", []), new Turn(Role.Assistant, "A2", [])]);
        var transcript = Chat(PromptFormats.Chat(conversation, 4));
        Assert.Equal("Question: Q1?\nAnswer: A1\n\n<|endoftext|>Question: Q2?\nAnswer: A2\n\n<|endoftext|>", transcript.Text);
        Assert.Equal([" A1\n\n<|endoftext|>", " A2\n\n<|endoftext|>"], transcript.Targets.Select(r => transcript.Text[r]));
        Assert.False(transcript.EndsWithEos);
        Assert.Equal(2, PromptFormats.Chat(conversation, 2).Messages.Count);
    }

    /// <summary>Conversation data without a chat template to train in is refused, saying how to name one; a broken image is found before training.</summary>
    [Fact]
    public void Conversations_need_a_template_and_every_image_is_decoded()
    {
        var tokenizer = Tokenizer.FromFolder(_fixtures.Model);
        var shapes = new DataSourceSpec("shapes", _fixtures.Shapes, null, 1);
        Assert.Contains("\"chat_template\": \"plain\"", Assert.Throws<ArgumentException>(() => TrainingData.Load(shapes, PromptLayout.AtPlaceholders, tokenizer, 320)).Message);
        var format = new ConversationFormat(ChatTemplates.ForCheckpoint(_fixtures.Model, tokenizer), ["<|endoftext|>"]);
        var image = Directory.GetFiles(Path.Combine(_fixtures.Shapes, "images")).Order(StringComparer.Ordinal).First();
        File.WriteAllBytes(image, [0x89, (byte)'P', (byte)'N', (byte)'G', 1, 2, 3]);
        var e = Assert.Throws<InvalidDataException>(() => TrainingData.Load(shapes, PromptLayout.AtPlaceholders, tokenizer, 320, format));
        Assert.Contains("llava.json record", e.Message);
        Assert.Contains(Path.GetFileName(image), e.Message);
    }

    [Fact]
    public void Bad_examples_are_refused_with_where_they_came_from()
    {
        var tokenizer = Tokenizer.FromFolder(_fixtures.Model);
        var inAnswer = new FormattedPrompt("Q <image> A", ["x.png"], [1..11]);
        Assert.Contains("answer holds an image placeholder", Assert.Throws<ArgumentException>(() => TrainingExample.Encode(inAnswer, PromptLayout.AtPlaceholders, tokenizer, 320, "rec 3")).Message);
        var wrongCount = new FormattedPrompt("Q <image> A", [], [9..11]);
        Assert.StartsWith("rec 4:", Assert.Throws<ArgumentException>(() => TrainingExample.Encode(wrongCount, PromptLayout.AtPlaceholders, tokenizer, 320, "rec 4")).Message);
        var outside = new FormattedPrompt("Q A", [], [1..3]);
        Assert.Contains("outside the base's vocabulary of 40", Assert.Throws<ArgumentException>(() => TrainingExample.Encode(outside, PromptLayout.AtPlaceholders, tokenizer, 40, "rec 5")).Message);
        var missing = new DataSourceSpec("shapes", _fixtures.Sub("nowhere"), null, 1);
        Assert.Contains("nowhere", Assert.Throws<FileNotFoundException>(() => TrainingData.Load(missing, PromptLayout.AtPlaceholders, tokenizer, 320)).Message);
    }

    [Fact]
    public void Truncation_cuts_text_from_the_end_never_into_an_image()
    {
        var example = new TrainingExample("e", [new ExampleText([1, 2], false), new ExampleImage("i.png"), new ExampleText([3, 4], false), new ExampleText([5, 6, 7], true)]);
        Assert.Equal(3, example.Targets);
        var shorter = example.Truncated(2)!;
        Assert.Equal([5], ((ExampleText)shorter.Parts[^1]).Ids);
        Assert.Equal(1, shorter.Targets);
        Assert.Null(example.Truncated(3));   // no target left
        Assert.Null(example.Truncated(6));   // would reach the image
    }

    [Fact]
    public void The_stream_is_fixed_by_its_seed_visits_each_example_once_a_pass_and_resumes_by_replay()
    {
        var text = Enumerable.Range(0, 5).Select(i => new TrainingExample($"t{i}", [new ExampleText([i], true)])).ToList();
        var image = Enumerable.Range(0, 7).Select(i => new TrainingExample($"i{i}", [new ExampleImage("x"), new ExampleText([i], true)])).ToList();
        var sources = new List<(IReadOnlyList<TrainingExample>, double)> { (text, 1), (image, 3) };
        string[] Draw(ExampleStream s, int n) => Enumerable.Range(0, n).Select(_ => s.Next().Where).ToArray();

        Assert.Equal(Draw(new ExampleStream(sources, null, 7), 50), Draw(new ExampleStream(sources, null, 7), 50));
        Assert.NotEqual(Draw(new ExampleStream(sources, null, 7), 50), Draw(new ExampleStream(sources, null, 8), 50));
        var replayed = new ExampleStream(sources, 0.5, 7);
        replayed.Skip(23);
        Assert.Equal(Draw(new ExampleStream(sources, 0.5, 7), 40)[23..], Draw(replayed, 17));
        Assert.Equal(23 + 17, replayed.Drawn);

        var onlyImages = new ExampleStream([(image, 1)], null, 3);
        Assert.Equal(image.Select(e => e.Where).Order(), Draw(onlyImages, 7).Order());
        Assert.Equal(image.Select(e => e.Where).Order(), Draw(onlyImages, 7).Order());

        var weighted = Draw(new ExampleStream(sources, null, 1), 4000);
        Assert.InRange(weighted.Count(w => w.StartsWith('i')) / 4000.0, 0.70, 0.80);
        var shared = Draw(new ExampleStream(sources, 0.2, 1), 4000);
        Assert.InRange(shared.Count(w => w.StartsWith('t')) / 4000.0, 0.15, 0.25);
        Assert.Throws<ArgumentException>(() => new ExampleStream([(image, 1)], 0.3, 1));
        Assert.Throws<ArgumentException>(() => new ExampleStream([(text, 1)], 0.3, 1));
    }
}
