using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Plugins;
using Graft.Training;

namespace Graft.Tests.Training;

public class TrainableSelectionTests
{
    private static Recipe Stage(string design, string trainable, string extra = "") => Recipe.Parse(
        $$"""{"name": "x", "design": "{{design}}", "stages": [{"name": "s", "trainable": {{trainable}}, "learning_rate": 1e-3, "steps": 1 {{extra}}}]}""", "sel.json");

    private static (DecoderModel Model, IReadOnlyCollection<string> BaseNames) Base()
    {
        string folder = PluginFixtures.ModelFolder("qwen2");
        using var checkpoint = SafeTensorsCheckpoint.Open(folder);
        return (DecoderModel.Load(folder), checkpoint.Tensors.Select(t => t.Name).ToHashSet());
    }

    [Fact]
    public void Parts_and_patterns_select_the_plugins_own_tensors()
    {
        var (model, names) = Base();
        using var _ = model;
        var wings = Wings.Create(model, PluginFixtures.Vision());
        var selected = TrainableSelection.Resolve(Stage("wings", """{"parts": ["projector"], "patterns": ["model.layers.1.wings.textual.*"]}"""), 0, wings, names);
        var expected = wings.Parameters.Where(p => p.Part == Wings.ProjectorPart || p.Name.StartsWith("model.layers.1.wings.textual.", StringComparison.Ordinal)).ToList();
        Assert.Equal(expected.Select(p => p.Name), selected.Select(s => s.Parameter.Name));
        Assert.Equal(4 + LorraLearner.Projections.Length * 2, selected.Count);
    }

    [Theory]
    [InlineData("""{"patterns": ["model.layers.*"]}""", "stages[0].trainable.patterns[0]", "base weight")]
    [InlineData("""{"patterns": ["*.mlp.up_proj.weight"]}""", "stages[0].trainable.patterns[0]", "base weight")]
    [InlineData("""{"patterns": ["mm_projector.*", "model.embed_tokens.weight"]}""", "stages[0].trainable.patterns[1]", "base weight")]
    [InlineData("""{"parts": ["projector", "llm"]}""", "stages[0].trainable.parts[1]", "names the base model")]
    [InlineData("""{"parts": ["base"]}""", "stages[0].trainable.parts[0]", "names the base model")]
    [InlineData("""{"parts": ["projektor"]}""", "stages[0].trainable.parts[0]", "is not a part of a bridge plug-in")]
    [InlineData("""{"patterns": ["mm_projector.9.*"]}""", "stages[0].trainable.patterns[0]", "matches no tensor")]
    public void A_selector_never_reaches_a_base_weight_and_never_selects_nothing(string trainable, string field, string message)
    {
        var (model, names) = Base();
        using var _ = model;
        var bridge = Bridge.Create(model, PluginFixtures.Vision());
        var e = Assert.Throws<RecipeException>(() => TrainableSelection.Resolve(Stage("bridge", trainable), 0, bridge, names));
        Assert.Equal(field, e.Field);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void A_part_the_design_has_but_this_plugin_lacks_selects_nothing_and_a_stage_must_select_something()
    {
        var (model, names) = Base();
        using var _ = model;
        var mma = Mma.Create(model, PluginFixtures.Vision());   // a parameter-free front end: no ViT adapters
        Assert.Equal(mma.Parameters.Count(p => p.Part == Mma.LlmAdaptersPart),
            TrainableSelection.Resolve(Stage("mma", """{"parts": ["llm_adapters", "vision_adapters"]}"""), 0, mma, names).Count);
        var e = Assert.Throws<RecipeException>(() => TrainableSelection.Resolve(Stage("mma", """{"parts": ["vision_adapters"]}"""), 0, mma, names));
        Assert.Equal("stages[0].trainable", e.Field);
    }

    [Fact]
    public void Learning_rates_go_by_part_or_pattern_and_decay_skips_biases_norms_and_embedding_tables()
    {
        var (model, names) = Base();
        using var _ = model;
        var mma = Mma.Create(model, PluginFixtures.Vision());
        var recipe = Stage("mma", """{"parts": ["llm_adapters", "adapter_proj", "modality_embedding"]}""",
            """, "learning_rates": {"adapter_proj": 0.01, "layers.1.*": 0.02}""");
        var selected = TrainableSelection.Resolve(recipe, 0, mma, names).ToDictionary(s => s.Parameter.Name);
        Assert.Equal(0.01f, selected["adapter_proj.conv_A.weight"].LearningRate);
        Assert.Equal(0.02f, selected["layers.1.adapter_attn.conv_A.weight"].LearningRate);
        Assert.Equal(1e-3f, selected["layers.0.adapter_attn.conv_A.weight"].LearningRate);
        Assert.True(selected["adapter_proj.conv_A.weight"].Decays);
        Assert.False(selected["adapter_proj.conv_A.bias"].Decays);
        Assert.False(selected["adapter_modality_embedding.weight"].Decays);

        var unknown = Stage("mma", """{"parts": ["llm_adapters"]}""", """, "learning_rates": {"adapters": 0.1}""");
        Assert.Equal("stages[0].learning_rates.adapters", Assert.Throws<RecipeException>(() => TrainableSelection.Resolve(unknown, 0, mma, names)).Field);

        var experts = VisualExperts.Create(model);
        var decays = TrainableSelection.Resolve(Stage("visual-experts", """{"parts": ["patch_embedding", "markers"]}"""), 0, experts, names)
            .ToDictionary(s => s.Parameter.Name, s => s.Decays);
        Assert.True(decays["vision_model.embeddings.patch_embedding.weight"]);
        Assert.False(decays["vision_model.embeddings.position_embedding"]);
        Assert.False(decays["img_markers.embedding"]);
    }

    [Theory]
    [InlineData("model.layers.*.wings.visual.*", "model.layers.12.wings.visual.q.a", true)]
    [InlineData("model.layers.*.wings.visual.*", "model.layers.12.wings.textual.q.a", false)]
    [InlineData("mm_projector.?.weight", "mm_projector.0.weight", true)]
    [InlineData("mm_projector.?.weight", "mm_projector.10.weight", false)]
    [InlineData("*", "anything", true)]
    [InlineData("a*b*c", "aXbYbZc", true)]
    [InlineData("a*b*c", "aXbYbZ", false)]
    public void Globs_match_whole_names(string pattern, string name, bool matches) => Assert.Equal(matches, Glob.Matches(pattern, name));
}
