using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tests.Plugins;
using Graft.Training;

namespace Graft.Tests.Training;

public sealed class PluginTrainerTests : IDisposable
{
    private readonly TrainingFixtures _fixtures = new();

    public void Dispose() => _fixtures.Dispose();

    private string Tensors(TrainingResult result) => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(
        File.ReadAllBytes(Path.Combine(result.PluginFolder, PluginFile.TensorsFileName))));

    private static IEnumerable<float> Losses(string run) =>
        File.ReadLines(Path.Combine(run, PluginTrainer.MetricsFileName)).Select(line => System.Text.Json.Nodes.JsonNode.Parse(line)!["loss"]!.GetValue<float>());

    /// <summary>Mean cross-entropy over the target tokens of every example of the shapes world, through <paramref name="plugin"/>.</summary>
    private float MeanLoss(IPlugin plugin)
    {
        var examples = TrainingData.Load(new DataSourceSpec("shapes", _fixtures.Shapes, null, 1), plugin.Layout, Tokenizer.FromFolder(_fixtures.Model), plugin.Base.Config.VocabSize, _fixtures.Conversations()).Examples;
        var vision = TrainingFixtures.Vision();
        double sum = 0;
        long count = 0;
        using var _ = Autograd.NoGrad();
        foreach (var example in examples)
        {
            var prepared = plugin.Prepare(example.ToPrompt(path => new ImagePart(vision.Encode(Graft.Models.Imaging.ImageDecoder.Load(path)))));
            int n = prepared.Targets.Count(t => t != MultimodalPrompt.IgnoreTarget);
            sum += Ops.CrossEntropy(plugin.Base.ForwardEmbeddings(prepared.Embeddings, hooks: prepared.Hooks), prepared.Targets).Span[0] * (double)n;
            count += n;
        }
        return (float)(sum / count);
    }

    [Fact]
    public void A_few_steps_lower_the_loss_and_never_write_the_base()
    {
        var recipe = _fixtures.Recipe("bridge", steps: 24);
        string baseFiles = PluginFixtures.HashFolder(_fixtures.Model);
        using var model = DecoderModel.Load(_fixtures.Model);
        string baseWeights = PluginFixtures.HashWeights(model);
        float before = MeanLoss(PluginBuilder.Create(recipe, model, TrainingFixtures.Vision()));

        var result = PluginTrainer.Train(new TrainingRequest { Recipe = recipe, Base = model, Vision = TrainingFixtures.Vision(), RunFolder = _fixtures.Sub("run") });

        Assert.Equal(baseWeights, PluginFixtures.HashWeights(model));
        Assert.Equal(baseFiles, PluginFixtures.HashFolder(_fixtures.Model));
        float after = MeanLoss(PluginFile.Load(result.PluginFolder, model, TrainingFixtures.Vision()));
        Assert.True(after < before - 0.1f, $"mean loss {before} before training, {after} after");
        Assert.Equal(24, result.Steps);
        Assert.Equal(24, Losses(result.RunFolder).Count());
        Assert.All(result.Plugin.Parameters, p => Assert.True(p.Tensor.RequiresGrad));
    }

    [Theory]
    [InlineData("bridge", null)]
    [InlineData("mma", 0.3)]
    [InlineData("inner-adaptor", null)]
    [InlineData("wings", 0.3)]
    [InlineData("visual-experts", null)]
    public void Every_design_trains_to_a_plugin_the_other_commands_load_and_records_how(string design, double? textShare)
    {
        var result = _fixtures.Train(_fixtures.Recipe(design, steps: 2, textShare: textShare), "run");
        using var model = DecoderModel.Load(_fixtures.Model);
        var loaded = PluginFile.Load(result.PluginFolder, model, design == VisualExperts.DesignName ? null : TrainingFixtures.Vision());
        Assert.Equal(design, loaded.Design);
        var training = loaded.Manifest.Training;
        Assert.Equal("trained", training["state"]!.GetValue<string>());
        Assert.Equal($"{design}-test", training["recipe"]!.GetValue<string>());
        Assert.Equal(2, training["steps"]!.GetValue<int>());
        Assert.Equal(1, training["seed"]!.GetValue<int>());
        Assert.Equal("only", training["stages"]![0]!["name"]!.GetValue<string>());
        Assert.NotNull(training["initialisation"]);
        Assert.Equal(
            new[] { PluginTrainer.RecipeFileName, PluginTrainer.RunFileName, PluginTrainer.MetricsFileName, TrainingCheckpoint.FolderName, $"{design}-test.graft" }.Order(StringComparer.Ordinal),
            Directory.EnumerateFileSystemEntries(result.RunFolder).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var stage = Assert.Single(result.Stages);
        Assert.Equal(2, stage.Steps);
        Assert.True(stage.Tokens > 0 && stage.Targets > 0 && float.IsFinite(stage.LastLoss));
        // The conversations were trained in the base's own chat template, which plugin.json records, name and text.
        Assert.Equal(new RecordedChatTemplate("plain", Graft.Models.Chat.PlainChatTemplate.Jinja), loaded.Manifest.ChatTemplate);
    }

    /// <summary>
    /// A recipe may name the chat template conversations are trained in; plugin.json records it. A base with no template
    /// and a recipe that names none cannot train conversations, and is told so before anything is written.
    /// </summary>
    [Fact]
    public void The_chat_template_is_the_recipes_or_the_bases_and_is_recorded()
    {
        var recipe = Recipe.Parse(_fixtures.Recipe("bridge", steps: 1).ToJson().Replace("\"seed\": 1,", "\"seed\": 1, \"chat_template\": \"chatml\","), "named.json");
        Assert.Equal("chatml", recipe.ChatTemplate);
        var named = _fixtures.Train(recipe, "named");
        Assert.Equal("chatml", PluginFile.ReadManifest(named.PluginFolder).ChatTemplate!.Name);
        Assert.Contains("chat_template: 'alpaca' is not a chat template Graft knows",
            Assert.Throws<RecipeException>(() => Recipe.Parse(recipe.ToJson().Replace("\"chatml\"", "\"alpaca\""), "bad.json")).Message);

        File.WriteAllText(Path.Combine(_fixtures.Model, "tokenizer_config.json"), """{"eos_token": "<|endoftext|>"}""");
        var e = Assert.Throws<ArgumentException>(() => _fixtures.Train(_fixtures.Recipe("bridge", steps: 1), "untemplated"));
        Assert.Contains("chat_template", e.Message);
        Assert.False(Directory.Exists(_fixtures.Sub("untemplated")));
    }

    [Fact]
    public void Two_runs_with_the_same_seed_give_the_same_bits()
    {
        var recipe = _fixtures.Recipe("mma", steps: 3, textShare: 0.3);
        var first = _fixtures.Train(recipe, "one");
        var second = _fixtures.Train(recipe, "two");
        Assert.Equal(Tensors(first), Tensors(second));
        Assert.Equal(Losses(first.RunFolder), Losses(second.RunFolder));
        var other = _fixtures.Train(_fixtures.Recipe("mma", steps: 3, textShare: 0.3, seed: 2), "three");
        Assert.NotEqual(Tensors(first), Tensors(other));
    }

    [Theory]
    [InlineData("mma", 2)]
    [InlineData("wings", 1)]
    [InlineData("wings", 2)]
    [InlineData("wings", 3)]
    public void A_run_interrupted_and_resumed_ends_bit_identical_to_an_uninterrupted_one(string design, int stopAfter)
    {
        string stages = design == "wings"
            ? """
              {"name": "visual", "trainable": {"parts": ["projector", "visual"]}, "learning_rate": 5e-3, "steps": 2, "batch_size": 2, "data": {"text_share": 0}},
              {"name": "learners", "trainable": {"parts": ["visual", "textual", "router"]}, "learning_rate": 5e-3, "steps": 3, "batch_size": 2, "checkpoint_every": 2}
              """
            : "";
        var recipe = _fixtures.Recipe(design, steps: 4, stages: stages, textShare: 0.3);
        var straight = _fixtures.Train(recipe, "straight");

        using var cancel = new CancellationTokenSource();
        var stopped = Assert.Throws<TrainingInterruptedException>(() =>
            _fixtures.Train(recipe, "stopped", progress: new SyncProgress(p => { if (p.Step == stopAfter) cancel.Cancel(); }), cancellation: cancel.Token));
        Assert.Equal(stopAfter, stopped.Step);
        Assert.True(Directory.Exists(stopped.Checkpoint));
        Assert.False(File.Exists(Path.Combine(_fixtures.Sub("stopped"), $"{recipe.Name}.graft", PluginFile.TensorsFileName)));

        var resumed = _fixtures.Train(recipe, "stopped", resume: true);
        Assert.Equal(stopAfter, resumed.ResumedFromStep);
        Assert.Equal(Tensors(straight), Tensors(resumed));
        Assert.Equal(Losses(straight.RunFolder), Losses(resumed.RunFolder));
        Assert.Equal(straight.Stages.Select(s => (s.Name, s.Steps, s.FirstLoss, s.LastLoss)), resumed.Stages.Select(s => (s.Name, s.Steps, s.FirstLoss, s.LastLoss)));
    }

    [Fact]
    public void Cancelling_saves_a_complete_checkpoint_atomically_and_says_how_to_resume()
    {
        var recipe = _fixtures.Recipe("bridge", steps: 5);
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var stopped = Assert.Throws<TrainingInterruptedException>(() => _fixtures.Train(recipe, "run", cancellation: cancel.Token));
        Assert.Equal(0, stopped.Step);
        Assert.Contains("--resume", stopped.Message);
        Assert.Equal(cancel.Token, stopped.CancellationToken);
        var checkpoints = Path.Combine(_fixtures.Sub("run"), TrainingCheckpoint.FolderName);
        string saved = Assert.Single(Directory.GetDirectories(checkpoints));
        Assert.Equal(saved, stopped.Checkpoint);
        Assert.Equal([TrainingCheckpoint.OptimizerFileName, TrainingCheckpoint.PluginFolderName, TrainingCheckpoint.StateFileName],
            Directory.EnumerateFileSystemEntries(saved).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        using (var model = DecoderModel.Load(_fixtures.Model))
            Assert.Equal("training", PluginFile.Load(Path.Combine(saved, TrainingCheckpoint.PluginFolderName), model, TrainingFixtures.Vision()).Manifest.Training["state"]!.GetValue<string>());

        // A crash in the middle of a later save leaves a temporary folder, which resuming clears and never reads.
        string partial = Path.Combine(checkpoints, ".tmp-step-000003-0123");
        Directory.CreateDirectory(Path.Combine(partial, TrainingCheckpoint.PluginFolderName));
        var result = _fixtures.Train(recipe, "run", resume: true);
        Assert.Equal(0, result.ResumedFromStep);
        Assert.Equal(5, result.Steps);
        Assert.False(Directory.Exists(partial));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_fixtures.Sub("run"), ".*", SearchOption.AllDirectories));
        Assert.Equal(TrainingCheckpoint.Keep, Directory.GetDirectories(checkpoints).Length);
    }

    [Fact]
    public void Examples_over_max_length_are_truncated_or_skipped_and_counted()
    {
        string Stage(string overflow, int maxLength) =>
            $$"""{"name": "only", "trainable": {"parts": ["projector"]}, "learning_rate": 1e-3, "steps": 2, "batch_size": 3, "max_length": {{maxLength}}, "overflow": "{{overflow}}"}""";
        var truncated = _fixtures.Train(_fixtures.Recipe("bridge", stages: Stage("truncate", 100)), "truncate");
        Assert.Equal(6, truncated.Truncated);
        Assert.Equal(0, truncated.Skipped);
        Assert.True(truncated.Tokens <= 6 * 100);

        var skipping = _fixtures.Recipe("bridge", stages: Stage("skip", 60));
        var e = Assert.Throws<RecipeException>(() => _fixtures.Train(skipping, "skip"));
        Assert.Equal("stages[0].max_length", e.Field);

        // Positions of a Bridge request with this front end: the text tokens and 4 per image.
        var lengths = TrainingData.Load(new DataSourceSpec("shapes", _fixtures.Shapes, null, 1), PromptLayout.AtPlaceholders, Tokenizer.FromFolder(_fixtures.Model), 320, _fixtures.Conversations()).Examples
            .Select(x => x.TextTokens + 4 * x.Parts.Count(p => p is ExampleImage)).Order().ToList();
        var some = _fixtures.Train(_fixtures.Recipe("bridge", stages: Stage("skip", lengths[lengths.Count / 2])), "some");
        Assert.True(some.Skipped > 0, $"expected some of {string.Join(", ", lengths)} over {lengths[lengths.Count / 2]} positions");
        Assert.Equal(0, some.Truncated);
    }

    [Fact]
    public void Epochs_become_steps_and_a_total_budget_is_shared_over_the_stages()
    {
        string stages = """
            {"name": "a", "trainable": {"parts": ["projector"]}, "learning_rate": 1e-3, "epochs": 1, "batch_size": 4},
            {"name": "b", "trainable": {"parts": ["projector"]}, "learning_rate": 1e-3, "steps": 6, "batch_size": 4}
            """;
        var recipe = _fixtures.Recipe("bridge", stages: stages);
        var byEpochs = _fixtures.Train(recipe, "epochs");
        Assert.Equal([3, 6], byEpochs.Stages.Select(s => s.Steps));   // 12 scenes, 4 per step
        var budget = _fixtures.Train(recipe, "budget", steps: 4);
        Assert.Equal([1, 3], budget.Stages.Select(s => s.Steps));
        var written = Recipe.Parse(File.ReadAllText(Path.Combine(budget.RunFolder, PluginTrainer.RecipeFileName)), "recipe.json");
        Assert.Equal([1, 3], written.Stages.Select(s => s.Steps!.Value));
    }

    [Fact]
    public void Run_folders_and_data_mixes_that_cannot_work_are_refused_clearly()
    {
        var recipe = _fixtures.Recipe("bridge", steps: 1);
        _fixtures.Train(recipe, "run");
        Assert.Contains("--resume", Assert.Throws<IOException>(() => _fixtures.Train(recipe, "run")).Message);
        var changed = Assert.Throws<IOException>(() => _fixtures.Train(_fixtures.Recipe("bridge", steps: 1, seed: 7), "run", resume: true));
        Assert.Contains("differs at 'seed'", changed.Message);
        Directory.CreateDirectory(_fixtures.Sub("empty"));
        Assert.Contains("nothing to resume", Assert.Throws<IOException>(() => _fixtures.Train(recipe, "empty", resume: true)).Message);

        var textOnBridge = Assert.Throws<RecipeException>(() => _fixtures.Train(_fixtures.Recipe("bridge", steps: 1, textShare: 0.2), "text-on-bridge"));
        Assert.Equal("stages[0].data.text_share", textOnBridge.Field);
        var shapesOnly = _fixtures.Recipe("wings", steps: 1, textShare: 0.5).With([new DataSourceSpec("shapes", _fixtures.Shapes, null, 1)]);
        var noText = Assert.Throws<RecipeException>(() => _fixtures.Train(shapesOnly, "notext"));
        Assert.Equal("stages[0].data.text_share", noText.Field);
        var noData = Assert.Throws<RecipeException>(() => _fixtures.Train(Recipe.Load("preset:bridge"), "nodata"));
        Assert.Equal("stages[0].data.sources", noData.Field);
        var fullBase = Assert.Throws<RecipeException>(() => _fixtures.Train(_fixtures.Recipe("bridge",
            stages: """{"name": "s", "trainable": {"parts": ["projector"], "base": "all"}, "learning_rate": 1e-3, "steps": 1}"""), "full"));
        Assert.Equal("stages[0].trainable.base", fullBase.Field);
    }

    private const string FullStages = """
        {"name": "projector", "trainable": {"parts": ["projector"]}, "learning_rate": 5e-3, "steps": 2, "batch_size": 2},
        {"name": "full", "trainable": {"parts": ["projector"], "base": "all"}, "learning_rate": 1e-3, "steps": 3, "batch_size": 2, "checkpoint_every": 1}
        """;

    [Fact]
    public void Bridge_full_writes_a_new_base_beside_a_projector_bound_to_it_and_never_the_old_one()
    {
        string baseFiles = PluginFixtures.HashFolder(_fixtures.Model);
        var result = _fixtures.Train(_fixtures.Recipe("bridge", stages: FullStages, options: """{"tune": "full"}"""), "full");
        Assert.Equal(baseFiles, PluginFixtures.HashFolder(_fixtures.Model));
        Assert.Equal(Path.Combine(result.RunFolder, "base"), result.BaseFolder);
        Assert.True(File.Exists(Path.Combine(result.BaseFolder!, "tokenizer.json")));
        Assert.Equal(["projector", "projector + base"], result.Stages.Select(s => string.Join(" + ", s.Parts)));

        using var original = DecoderModel.Load(_fixtures.Model);
        using var trained = DecoderModel.Load(result.BaseFolder!);
        Assert.Equal(original.Config.NumLayers, trained.Config.NumLayers);
        Assert.NotEqual(original.Weights.Layers[0].Query.ToArray(), trained.Weights.Layers[0].Query.ToArray());
        Assert.NotEqual(original.Weights.Embedding.ToArray(), trained.Weights.Embedding.ToArray());
        var plugin = PluginFile.Load(result.PluginFolder, trained, TrainingFixtures.Vision());
        Assert.Equal("full", plugin.Manifest.HyperParameters["tune"]!.GetValue<string>());
        var refused = Assert.Throws<PluginCompatibilityException>(() => PluginFile.Load(result.PluginFolder, original, TrainingFixtures.Vision()));
        Assert.Contains("fingerprint", refused.Message);
        // The new base runs text as a base does: through the host, a text-only request is the new base's own forward.
        var ids = Tokenizer.FromFolder(result.BaseFolder!).Encode("Question: what?");
        var host = new PluginHost(trained);
        host.Attach("b", plugin);
        Assert.Equal(PluginFixtures.Bits(trained.Forward(ids)), PluginFixtures.Bits(host.Forward("b", MultimodalPrompt.FromIds(ids))));
    }

    [Fact]
    public void Bridge_full_resumed_ends_bit_identical_base_and_projector()
    {
        var recipe = _fixtures.Recipe("bridge", stages: FullStages, options: """{"tune": "full"}""");
        var straight = _fixtures.Train(recipe, "straight");
        using var cancel = new CancellationTokenSource();
        Assert.Throws<TrainingInterruptedException>(() =>
            _fixtures.Train(recipe, "stopped", progress: new SyncProgress(p => { if (p.Step == 3) cancel.Cancel(); }), cancellation: cancel.Token));
        Assert.True(Directory.Exists(Path.Combine(_fixtures.Sub("stopped"), TrainingCheckpoint.FolderName, "step-000003", TrainingCheckpoint.BaseFolderName)));
        var resumed = _fixtures.Train(recipe, "stopped", resume: true);
        Assert.Equal(Tensors(straight), Tensors(resumed));
        Assert.Equal(File.ReadAllBytes(Path.Combine(straight.BaseFolder!, "model.safetensors")), File.ReadAllBytes(Path.Combine(resumed.BaseFolder!, "model.safetensors")));
    }

    [Fact]
    public void Only_bridge_in_full_mode_trains_the_base_and_it_must()
    {
        var notFull = Assert.Throws<RecipeException>(() => _fixtures.Train(_fixtures.Recipe("bridge", stages: FullStages), "a"));
        Assert.Equal("stages[1].trainable.base", notFull.Field);
        var wings = Assert.Throws<RecipeException>(() => _fixtures.Train(_fixtures.Recipe("wings",
            stages: """{"name": "s", "trainable": {"parts": ["visual"], "base": "all"}, "learning_rate": 1e-3, "steps": 1}"""), "b"));
        Assert.Equal("stages[0].trainable.base", wings.Field);
        var idle = Assert.Throws<RecipeException>(() => _fixtures.Train(_fixtures.Recipe("bridge", steps: 1, options: """{"tune": "full"}"""), "c"));
        Assert.Equal("design.options.tune", idle.Field);
        var inside = Assert.Throws<IOException>(() => _fixtures.Train(_fixtures.Recipe("bridge", steps: 1), Path.Combine("model", "run")));
        Assert.Contains("only ever read", inside.Message);
    }
}
