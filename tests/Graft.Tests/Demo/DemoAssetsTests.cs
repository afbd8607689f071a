using System.Text.Json;
using Graft.Data;
using Graft.Demo;
using Graft.Eval;
using Graft.Models;
using Graft.Models.Chat;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Models.Vision;
using Graft.Plugins;
using Graft.Training;

namespace Graft.Tests.Demo;

/// <summary>The committed demo assets (assets/demo, copied beside the tests) load and agree with their assets.json.</summary>
public sealed class DemoAssetsTests
{
    private static string Folder => Path.Combine(AppContext.BaseDirectory, "DemoAssets");

    private static JsonElement Manifest()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, DemoAssets.ManifestFileName)));
        return document.RootElement.Clone();
    }

    [Fact]
    public void Committed_base_loads_with_its_tokenizer_and_matches_the_manifest()
    {
        var manifest = Manifest().GetProperty("base");
        string folder = Path.Combine(Folder, manifest.GetProperty("folder").GetString()!);
        using var model = DecoderModel.Load(folder);
        var tokenizer = Tokenizer.FromFolder(folder);
        var c = model.Config;
        Assert.Equal(LlmFamily.Qwen2, c.Family);
        Assert.Equal(manifest.GetProperty("parameters").GetInt64(), model.ParameterCount);
        Assert.Equal(manifest.GetProperty("hidden_size").GetInt32(), c.HiddenSize);
        Assert.Equal(manifest.GetProperty("layers").GetInt32(), c.NumLayers);
        Assert.Equal(manifest.GetProperty("heads").GetInt32(), c.NumHeads);
        Assert.Equal(manifest.GetProperty("key_value_heads").GetInt32(), c.NumKeyValueHeads);
        Assert.Equal(manifest.GetProperty("intermediate_size").GetInt32(), c.IntermediateSize);
        Assert.Equal(manifest.GetProperty("context_length").GetInt32(), c.MaxPositionEmbeddings);
        Assert.Equal(Manifest().GetProperty("tokenizer").GetProperty("vocab_size").GetInt32(), tokenizer.VocabSize);
        Assert.Equal(tokenizer.VocabSize, c.VocabSize);
        Assert.Contains(tokenizer.TokenToId("<|im_end|>")!.Value, c.EosTokenIds);
        // A base with no chat training: the plain template, each answer ended by the document separator it learned.
        Assert.Equal("<|endoftext|>", tokenizer.EosToken);
        Assert.Contains(tokenizer.EosTokenId!.Value, c.EosTokenIds);
        var template = ChatTemplates.ForCheckpoint(folder, tokenizer);
        Assert.Equal("plain", template.Name);
        Assert.Equal(PlainChatTemplate.Jinja, template.Source);
        Assert.Equal("Question: What is 2 + 3?\nAnswer: 5\n\n<|endoftext|>Question: And 3 + 4?\nAnswer:",
            template.Render([ChatMessage.User("What is 2 + 3?"), ChatMessage.Assistant("5"), ChatMessage.User("And 3 + 4?")], addGenerationPrompt: true));
        Assert.True(CheckpointFolder.IsGraftFolder(folder));
        Assert.True(CheckpointFolder.IsGraftFolder(Folder));
        Assert.All(model.Forward(tokenizer.Encode("Question: What is 2 + 3?\nAnswer:")).ToArray(), v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void Committed_vision_tower_loads_as_a_plug_in_front_end_and_matches_the_manifest()
    {
        var manifest = Manifest().GetProperty("vision");
        string folder = Path.Combine(Folder, manifest.GetProperty("folder").GetString()!);
        using var tower = VisionEncoder.Load(folder);
        Assert.Equal(VisionTowerKind.Clip, tower.Config.Kind);
        Assert.Equal(manifest.GetProperty("parameters").GetInt64(), tower.Parameters.Sum(p => (long)p.Length));
        Assert.Equal(manifest.GetProperty("image_size").GetInt32(), tower.Config.ImageSize);
        Assert.Equal(manifest.GetProperty("patch_size").GetInt32(), tower.Config.PatchSize);
        Assert.Equal(manifest.GetProperty("width").GetInt32(), tower.Config.Width);
        Assert.Equal(manifest.GetProperty("layers").GetInt32(), tower.Config.Layers);
        using var frontEnd = VisionTowerFrontEnd.Load(folder);
        Assert.Equal(tower.Config.Patches, frontEnd.TokensPerImage);
        Assert.Equal(tower.Config.Width, frontEnd.FeatureWidth);
        var accuracy = manifest.GetProperty("head_accuracy");
        foreach (var name in new[] { "shape", "colour", "occupancy", "count" }) Assert.InRange(accuracy.GetProperty(name).GetDouble(), 0, 1);
    }

    [Fact]
    public void Committed_text_tests_regenerate_from_the_manifest_world()
    {
        var world = new DemoTextWorld(DemoAssets.ReadWorld(Folder));
        string regenerated = Directory.CreateTempSubdirectory("graft-assets-").FullName;
        try
        {
            world.WriteTestSets(new DataOutput(regenerated, force: true, []));
            string committed = Path.Combine(Folder, Manifest().GetProperty("text_tests").GetString()!);
            var files = Directory.GetFiles(committed, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(committed, f)).Order().ToList();
            Assert.Equal(files, Directory.GetFiles(regenerated, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(regenerated, f)).Order().ToList());
            foreach (var file in files) Assert.Equal(File.ReadAllText(Path.Combine(committed, file)), File.ReadAllText(Path.Combine(regenerated, file)));
        }
        finally
        {
            Directory.Delete(regenerated, recursive: true);
        }
    }

    [Fact]
    public void Recorded_text_accuracy_is_what_the_harness_measures_now()
    {
        var recorded = Manifest().GetProperty("text_accuracy").EnumerateArray()
            .Select(s => (Set: s.GetProperty("set").GetString()!, Method: s.GetProperty("method").GetString()!, Shots: s.GetProperty("shots").GetInt32(),
                Correct: s.GetProperty("correct").GetInt32(), Total: s.GetProperty("total").GetInt32()))
            .OrderBy(s => s.Method, StringComparer.Ordinal).ThenBy(s => s.Set, StringComparer.Ordinal).ToList();
        Assert.Equal(4, recorded.Count);
        var measured = TextTestEvaluation.Score(Path.Combine(Folder, DemoAssets.BaseFolderName), Path.Combine(Folder, DemoAssets.TextTestsFolderName), [0])
            .Select(s => (s.Set, s.Method, s.Shots, s.Correct, s.Total))
            .OrderBy(s => s.Method, StringComparer.Ordinal).ThenBy(s => s.Set, StringComparer.Ordinal).ToList();
        Assert.Equal(recorded, measured);
        // The point of the assets: the base knows its text world (free answers), which every plug-in must then keep.
        Assert.All(recorded.Where(s => s.Method == TextTestScore.FreeMethod), s => Assert.True(s.Correct >= 0.9 * s.Total, $"{s.Set}: {s.Correct}/{s.Total}"));
    }
}
