using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tests.Plugins;
using Graft.Training;

namespace Graft.Tests.Training;

public class RecipeTests
{
    private const string Valid = """
        {
          "name": "tiny",
          "design": { "name": "wings", "options": { "rank": 4 } },
          "seed": 3,
          "data": { "sources": ["shapes:/data/shapes", { "source": "alpaca:/data/a.json", "weight": 0.5 }], "text_share": 0.2 },
          "stages": [
            { "name": "one", "trainable": { "parts": ["projector"], "patterns": ["model.layers.*.wings.visual.*"] },
              "learning_rate": 1e-3, "learning_rates": { "projector": 2e-3 }, "betas": [0.9, 0.95], "eps": 1e-6, "weight_decay": 0.01,
              "warmup_fraction": 0.1, "lr_floor": 0.1, "steps": 10, "batch_size": 2, "gradient_accumulation": 3, "max_length": 64,
              "overflow": "skip", "gradient_clip": 1.0, "checkpoint_every": 5 },
            { "name": "two", "trainable": { "parts": ["textual", "router"] }, "learning_rate": 5e-4, "epochs": 2,
              "data": { "sources": ["mmlu:/data/mmlu:val"], "text_share": null } }
          ]
        }
        """;

    [Fact]
    public void A_recipe_is_read_with_every_field_and_the_defaults()
    {
        var recipe = Recipe.Parse(Valid, "r.json");
        Assert.Equal(("tiny", "wings", 3), (recipe.Name, recipe.Design, recipe.Seed));
        Assert.Equal(4, recipe.DesignOptions["rank"]!.GetValue<int>());
        Assert.Equal([new DataSourceSpec("shapes", "/data/shapes", null, 1), new DataSourceSpec("alpaca", "/data/a.json", null, 0.5)], recipe.Data.Sources);
        Assert.Equal(0.2, recipe.Data.TextShare);
        var one = recipe.Stages[0];
        Assert.Equal(["projector"], one.Trainable.Parts);
        Assert.Equal(["model.layers.*.wings.visual.*"], one.Trainable.Patterns);
        Assert.False(one.Trainable.WholeBase);
        Assert.Equal((1e-3f, 0.9f, 0.95f, 1e-6f, 0.01f), (one.LearningRate, one.Beta1, one.Beta2, one.Eps, one.WeightDecay));
        Assert.Equal([("projector", 2e-3f)], one.LearningRates);
        Assert.Equal((10, 2, 3, 6, 64, OverflowPolicy.Skip, 1.0f, 5), (one.Steps!.Value, one.BatchSize, one.GradientAccumulation, one.ExamplesPerStep, one.MaxLength, one.Overflow, one.GradientClip!.Value, one.CheckpointEvery));
        Assert.Equal(1, one.Warmup(10));
        Assert.Equal(0.1, one.LearningRateFloor);
        Assert.Same(recipe.Data.Sources, one.Data.Sources);

        var two = recipe.Stages[1];
        Assert.Equal((null, 2.0), (two.Steps, two.Epochs));
        Assert.Equal((8, 1, 512, OverflowPolicy.Truncate, null, 0), (two.BatchSize, two.GradientAccumulation, two.MaxLength, two.Overflow, two.GradientClip, two.CheckpointEvery));
        Assert.Equal((0.9f, 0.999f, 1e-8f, 0f), (two.Beta1, two.Beta2, two.Eps, two.WeightDecay));
        Assert.Equal([new DataSourceSpec("mmlu", "/data/mmlu", "val", 1)], two.Data.Sources);
        Assert.Null(two.Data.TextShare);
    }

    [Theory]
    [InlineData("""{"name": "x", "design": "bridge", "stages": []}""", "stages")]
    [InlineData("""{"design": "bridge", "stages": [{}]}""", "name")]
    [InlineData("""{"name": "a/b", "design": "bridge", "stages": [{}]}""", "name")]
    [InlineData("""{"name": "x", "stages": [{}]}""", "design")]
    [InlineData("""{"name": "x", "design": 3, "stages": [{}]}""", "design")]
    [InlineData("""{"name": "x", "design": {"name": "wings", "opts": {}}, "stages": [{}]}""", "design.opts")]
    [InlineData("""{"name": "x", "design": "bridge", "seed": -1, "stages": [{}]}""", "seed")]
    [InlineData("""{"name": "x", "design": "bridge", "sead": 1, "stages": [{}]}""", "sead")]
    [InlineData("""{"name": "x", "design": "bridge", "data": {"sources": ["pictures:/a"]}, "stages": [{}]}""", "data.sources[0]")]
    [InlineData("""{"name": "x", "design": "bridge", "data": {"sources": [{"source": "shapes:/a", "weight": 0}]}, "stages": [{}]}""", "data.sources[0].weight")]
    [InlineData("""{"name": "x", "design": "bridge", "data": {"sources": [{"src": "shapes:/a"}]}, "stages": [{}]}""", "data.sources[0].src")]
    [InlineData("""{"name": "x", "design": "bridge", "data": {"text_share": 1.5}, "stages": [{}]}""", "data.text_share")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 1}]}""", "stages[0].name")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "learning_rate": 1e-3, "steps": 1}]}""", "stages[0].trainable")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {}, "learning_rate": 1e-3, "steps": 1}]}""", "stages[0].trainable")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": "p"}, "learning_rate": 1e-3, "steps": 1}]}""", "stages[0].trainable.parts")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"], "base": "some"}, "learning_rate": 1e-3, "steps": 1}]}""", "stages[0].trainable.base")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "steps": 1}]}""", "stages[0].learning_rate")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 2, "steps": 1}]}""", "stages[0].learning_rate")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3}]}""", "stages[0]")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 1, "epochs": 1}]}""", "stages[0]")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 1.5}]}""", "stages[0].steps")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 0}]}""", "stages[0].steps")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4, "warmup_steps": 5}]}""", "stages[0].warmup_steps")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4, "warmup_steps": 1, "warmup_fraction": 0.1}]}""", "stages[0]")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4, "betas": [0.9]}]}""", "stages[0].betas")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4, "betas": [0.9, 1.0]}]}""", "stages[0].betas")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4, "overflow": "wrap"}]}""", "stages[0].overflow")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4, "batch_size": 0}]}""", "stages[0].batch_size")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4, "gradient_clip": 0}]}""", "stages[0].gradient_clip")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4, "learning_rates": {"p": "fast"}}]}""", "stages[0].learning_rates.p")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4, "learnig_rate": 1}]}""", "stages[0].learnig_rate")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4, "data": {"sources": [3]}}]}""", "stages[0].data.sources[0]")]
    [InlineData("""{"name": "x", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4}, {"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 4}]}""", "stages[1].name")]
    public void Every_error_names_the_file_and_the_field(string json, string field)
    {
        var e = Assert.Throws<RecipeException>(() => Recipe.Parse(json, "my-recipe.json"));
        Assert.Equal("my-recipe.json", e.File);
        Assert.Equal(field, e.Field);
        Assert.StartsWith($"my-recipe.json: {field}: ", e.Message);
    }

    [Fact]
    public void Invalid_json_names_the_file()
    {
        var e = Assert.Throws<RecipeException>(() => Recipe.Parse("{\"name\": ", "broken.json"));
        Assert.StartsWith("broken.json: is not valid JSON", e.Message);
    }

    [Theory]
    [InlineData("shapes:/a/b", "shapes", "/a/b", null, 1.0)]
    [InlineData("scienceqa:/a/sqa:val", "scienceqa", "/a/sqa", "val", 1.0)]
    [InlineData("mmlu:/a/m.jsonl@2.5", "mmlu", "/a/m.jsonl", null, 2.5)]
    [InlineData("alpaca:/a/x:y.json", "alpaca", "/a/x:y.json", null, 1.0)]
    public void Data_sources_are_kind_path_split_and_weight(string text, string kind, string path, string? split, double weight) =>
        Assert.Equal(new DataSourceSpec(kind, path, split, weight), DataSourceSpec.Parse(text, "--data"));

    [Theory]
    [InlineData("shapes")]
    [InlineData("shapes:")]
    [InlineData("photos:/a")]
    [InlineData("shapes:/a@-1")]
    public void A_bad_data_source_names_where_it_came_from(string text) =>
        Assert.StartsWith("--data: ", Assert.Throws<ArgumentException>(() => DataSourceSpec.Parse(text, "--data")).Message);

    [Fact]
    public void With_replaces_sources_everywhere_and_resolves_steps()
    {
        var recipe = Recipe.Parse(Valid, "r.json").With([new DataSourceSpec("llava", "/x.json", null, 2)], seed: 9, stageSteps: [4, 7]);
        Assert.Equal(9, recipe.Seed);
        Assert.All(recipe.Stages, s => Assert.Equal([new DataSourceSpec("llava", "/x.json", null, 2)], s.Data.Sources));
        Assert.Equal([4, 7], recipe.Stages.Select(s => s.Steps!.Value));
        Assert.All(recipe.Stages, s => Assert.Null(s.Epochs));
        Assert.Null(recipe.Stages[1].Data.TextShare);
        Assert.Equal("r.json", recipe.Origin);
    }

    [Fact]
    public void Step_budgets_are_shared_in_proportion_with_at_least_one_each()
    {
        Assert.Equal([50, 50], PluginTrainer.ShareSteps(100, [300, 300]));
        Assert.Equal([1, 9], PluginTrainer.ShareSteps(10, [1, 100]));
        Assert.Equal([34, 33, 33], PluginTrainer.ShareSteps(100, [1, 1, 1]));
        Assert.Equal(7, PluginTrainer.ShareSteps(7, [3, 5, 11]).Sum());
        Assert.Throws<ArgumentException>(() => PluginTrainer.ShareSteps(2, [1, 1, 1]));
    }

    [Fact]
    public void Every_preset_parses_and_builds_its_plugin_for_a_tiny_base()
    {
        Assert.Equal(["bridge", "bridge-full", "inner-adaptor", "mma", "visual-experts", "wings"], Recipe.PresetNames);
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        foreach (var name in Recipe.PresetNames)
        {
            var recipe = Recipe.Load(Recipe.PresetPrefix + name);
            Assert.Equal(name, recipe.Name);
            Assert.NotEmpty(recipe.Description);
            var plugin = PluginBuilder.Create(recipe, model, recipe.Design == VisualExperts.DesignName ? null : PluginFixtures.Vision());
            Assert.Equal(recipe.Design, plugin.Design);
            for (int i = 0; i < recipe.Stages.Count; i++)
            {
                var selected = TrainableSelection.Resolve(recipe, i, plugin, []);
                Assert.True(selected.Count > 0 || recipe.Stages[i].Trainable.WholeBase, $"{name} stage {i} selects nothing");
            }
        }
    }

    [Fact]
    public void Design_options_are_checked_by_field()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        RecipeException Build(string design, string options) => Assert.Throws<RecipeException>(() => PluginBuilder.Create(
            Recipe.Parse($$"""{"name": "x", "design": {"name": "{{design}}", "options": {{options}}}, "stages": [{"name": "s", "trainable": {"parts": ["projector"]}, "learning_rate": 1e-3, "steps": 1}]}""", "o.json"),
            model, design == VisualExperts.DesignName ? null : PluginFixtures.Vision()));
        Assert.Equal("design.options.tune", Build("bridge", """{"tune": "half"}""").Field);
        Assert.Equal("design.options.rank", Build("wings", """{"rank": -2}""").Field);
        Assert.Equal("design.options.router", Build("wings", """{"router": "row"}""").Field);
        Assert.Equal("design.options.ranks", Build("wings", """{"ranks": 2}""").Field);
        Assert.Equal("design.options.layers", Build("inner-adaptor", """{"layers": [0, "x"]}""").Field);
        Assert.Equal("design.options", Build("inner-adaptor", """{"layers": [5]}""").Field);
        Assert.Equal("design.options.own_head", Build("inner-adaptor", """{"own_head": 1}""").Field);
        Assert.Equal("design.options", Build("mma", """{"adapter_rank": 7}""").Field);
        Assert.Equal("design.options.max_tiles", Build("visual-experts", """{"max_tiles": 0}""").Field);
        Assert.Equal("design", Assert.Throws<RecipeException>(() => PluginBuilder.Create(
            Recipe.Parse("""{"name": "x", "design": "lava", "stages": [{"name": "s", "trainable": {"parts": ["p"]}, "learning_rate": 1e-3, "steps": 1}]}""", "o.json"),
            model, PluginFixtures.Vision())).Field);
    }

    [Fact]
    public void The_recipe_document_round_trips()
    {
        var recipe = Recipe.Parse(Valid, "r.json");
        var again = Recipe.Parse(recipe.ToJson(), "again.json");
        Assert.True(JsonNode.DeepEquals(recipe.Document, again.Document));
        Assert.Equal(recipe.Stages.Count, again.Stages.Count);
    }
}
