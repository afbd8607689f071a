using JsonNode = System.Text.Json.Nodes.JsonNode;
using Graft.Cli;
using Graft.Models.Chat;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Serving;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>
/// A plug-in names its tower and its chat template: plugin.json records them; a deployment finds every plug-in's tower on
/// its own (MMA's among them), takes overrides per plug-in checked against the fingerprint, and checks all of them before
/// anything runs; requests are laid out in the plug-in's template with the design's layout inside the user turn.
/// </summary>
public sealed class DeploymentTests : IDisposable
{
    private static readonly string Llama = PluginFixtures.ModelFolder("llama");
    private static readonly string Clip = WiringVisionTests.Tower("clip_vision");
    private static readonly string Siglip = WiringVisionTests.Tower("siglip_head");
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    private static (int Code, string Output, string Error) Cli(params string[] args) =>
        CliRunner.Run([PluginCommand.Create(), InspectCommand.Create()], args);

    private string New(string name, string design, string? vision, params string[] options)
    {
        string folder = _temp.Sub(name + ".graft");
        var (code, _, error) = Cli(["plugin", "new", "--design", design, "--base", Llama, .. (vision is null ? (string[])[] : ["--vision", vision]), "--out", folder, .. options]);
        Assert.True(code == 0, error);
        return folder;
    }

    [Fact]
    public void Vision_overrides_take_name_equals_folder_per_plugin_or_one_plain_folder()
    {
        var parsed = VisionOverrides.Parse(["a=/towers/clip", "b=/towers/siglip"], ["a", "b"]);
        Assert.Null(parsed.ForAll);
        Assert.Equal("/towers/clip", parsed.ByName["a"]);
        Assert.Equal("/towers/siglip", parsed.ByName["b"]);
        Assert.Equal("/towers/clip", VisionOverrides.Parse(["/towers/clip"], ["a", "b"]).ForAll);
        Assert.Contains("no plug-in is named 'c'", Assert.Throws<ArgumentException>(() => VisionOverrides.Parse(["c=/x"], ["a", "b"])).Message);
        Assert.Contains("given a tower twice", Assert.Throws<ArgumentException>(() => VisionOverrides.Parse(["a=/x", "a=/y"], ["a"])).Message);
        Assert.Contains("NAME=DIR for each plug-in", Assert.Throws<ArgumentException>(() => VisionOverrides.Parse(["/x", "/y"], ["a"])).Message);
        // A folder whose name holds '=' is a folder.
        string odd = Directory.CreateDirectory(_temp.Sub("tower=1")).FullName;
        Assert.Equal(odd, VisionOverrides.Parse([odd], ["a"]).ForAll);
    }

    /// <summary>
    /// Plug-ins with a CLIP tower, a SigLIP tower, MMA's CLIP (class tokens with ViT adapters), a parameter-free front end and
    /// no front end at all, in one deployment with no --vision: each finds its own. A plain folder for all still reaches MMA.
    /// </summary>
    [Fact]
    public void A_deployment_finds_every_plugins_own_tower_mma_included()
    {
        var plugins = new[]
        {
            KeyValuePair.Create("bridge", New("bridge", "bridge", Clip)),
            KeyValuePair.Create("wings", New("wings", "wings", Siglip)),
            KeyValuePair.Create("mma", New("mma", "mma", Clip)),
            KeyValuePair.Create("pixels", New("pixels", "inner-adaptor", "patch-pixels:4:2")),
            KeyValuePair.Create("experts", New("experts", "visual-experts", null)),
        };
        Assert.Equal(Path.GetFullPath(Clip), PluginFile.ReadManifest(plugins[2].Value).Vision!.Folder);
        Assert.Equal(MmaClipFrontEnd.KindName, PluginFile.ReadManifest(plugins[2].Value).Vision!.Kind);
        Assert.Null(PluginFile.ReadManifest(plugins[3].Value).Vision!.Folder);
        using (var deployment = PluginDeployment.Open(Llama, plugins, (VisionOverrides?)null))
        {
            Assert.Equal(5, deployment.Host.PluginNames.Count);
            Assert.All(plugins, p => Assert.True(deployment.Host.Plugin(p.Key).CanEncodePixels));
        }
        // The MMA and Bridge plug-ins read the same CLIP folder: a plain --vision reaches both (MMA's kind counts as a tower).
        var towers = plugins.Where(p => p.Key is "bridge" or "mma").ToList();
        using (var deployment = PluginDeployment.Open(Llama, towers, Clip)) Assert.Equal(2, deployment.Host.PluginNames.Count);
        using (var deployment = PluginDeployment.Open(Llama, plugins, VisionOverrides.Parse([$"wings={Siglip}", $"mma={Clip}"], plugins.Select(p => p.Key).ToList())))
            Assert.Equal(5, deployment.Host.PluginNames.Count);
    }

    /// <summary>An override is checked against the recorded fingerprint, and the error names the plug-in; nothing is loaded past it.</summary>
    [Fact]
    public void A_wrong_tower_for_one_plugin_is_refused_naming_that_plugin_before_anything_runs()
    {
        var plugins = new[]
        {
            KeyValuePair.Create("bridge", New("bridge", "bridge", Clip)),
            KeyValuePair.Create("wings", New("wings", "wings", Siglip)),
        };
        var names = plugins.Select(p => p.Key).ToList();
        var e = Assert.ThrowsAny<Exception>(() => PluginDeployment.Open(Llama, plugins, VisionOverrides.Parse([$"wings={Clip}"], names)));
        Assert.Contains("vision kind: plug-in expects siglip, given clip", e.Message);
        // A tower changed in place (another fingerprint) is refused too.
        string copy = WiringVisionTests.CopyTower(Clip, _temp.Sub("clip-copy"));
        WiringVisionTests.NudgeQueryWeight(copy);
        e = Assert.ThrowsAny<Exception>(() => PluginDeployment.Open(Llama, plugins, VisionOverrides.Parse([$"bridge={copy}"], names)));
        Assert.Contains("vision fingerprint", e.Message);
        Assert.Contains("--vision: none of the plug-ins", Assert.Throws<ArgumentException>(() =>
            PluginDeployment.Open(Llama, [KeyValuePair.Create("a", New("experts", "visual-experts", null)), KeyValuePair.Create("b", New("pixels", "bridge", "patch-pixels:4:2"))], Clip)).Message);
    }

    /// <summary>plugin.json's new fields are written and read back; a plugin.json from before them still loads.</summary>
    [Fact]
    public void Plugin_json_records_the_template_and_the_tower_folder_and_old_files_still_load()
    {
        string folder = New("bridge", "bridge", Clip);
        using var model = DecoderModel.Load(Llama);
        using var vision = VisionTowerFrontEnd.Load(Clip);
        var plugin = PluginFile.Load(folder, model, vision);
        var saved = PluginFile.Save(plugin, folder, chatTemplate: new RecordedChatTemplate("plain", PlainChatTemplate.Jinja));
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, PluginManifest.FileName)))!;
        Assert.Equal("plain", (string?)json["chat_template"]!["name"]);
        Assert.Equal(PlainChatTemplate.Jinja, (string?)json["chat_template"]!["source"]);
        Assert.Equal(Path.GetFullPath(Clip), (string?)json["vision"]!["folder"]);
        var read = PluginFile.ReadManifest(folder);
        Assert.Equal(saved.ChatTemplate, read.ChatTemplate);
        Assert.Equal(Path.GetFullPath(Clip), read.Vision!.Folder);

        // As written before the fields existed: no chat_template, no vision.folder.
        json.AsObject().Remove("chat_template");
        json["vision"]!.AsObject().Remove("folder");
        File.WriteAllText(Path.Combine(folder, PluginManifest.FileName), json.ToJsonString());
        var old = PluginFile.ReadManifest(folder);
        Assert.Null(old.ChatTemplate);
        Assert.Null(old.Vision!.Folder);
        Assert.NotNull(PluginFile.Load(folder, model, vision));
        Assert.Contains("plugin.json records no folder; give the tower's folder with --vision DIR",
            Assert.Throws<ArgumentException>(() => PluginDeployment.Open(Llama, [KeyValuePair.Create("b", folder)], (VisionOverrides?)null)).Message);
        using var given = PluginDeployment.Open(Llama, [KeyValuePair.Create("b", folder)], Clip);
        Assert.Equal("chatml", PluginDeployment.TemplateFor(given.Host.Plugin("b"), ChatTemplates.Create("chatml"), Tokenizer.FromFolder(QwenTokenizer)).Name);
    }

    private static string QwenTokenizer => Path.Combine(AppContext.BaseDirectory, "Golden", "tokenizer", "qwen2_style");

    /// <summary>
    /// A conversation for LaVIN's layout in ChatML: "Image: " and the image open the user message that carries it, inside the
    /// template's user turn; the answer and the template's end-of-turn token are the targets; text routed through the
    /// plug-in gets "Image: N/A" in the first user message; LLaVA's layout keeps the image at its placeholder.
    /// </summary>
    [Fact]
    public void A_designs_layout_applies_inside_the_templates_user_turn()
    {
        var tokenizer = Tokenizer.FromFolder(QwenTokenizer);
        var chatml = ChatTemplates.Create("chatml", tokenizer.BosToken, tokenizer.EosToken);
        var lavin = PromptLayout.Leading("Image: ", "Image: N/A");
        ChatMessage[] conversation = [ChatMessage.User("<image>\nWhat colour?"), ChatMessage.Assistant("red"), ChatMessage.User("And the shape?")];
        var endOfTurn = ChatPrompts.EndOfTurnTokens(tokenizer, []);
        var rendered = ChatPrompts.Render(lavin, chatml, tokenizer, conversation, [1, 0, 0], addGenerationPrompt: false, endOfTurn: endOfTurn);
        Assert.Equal("<|im_start|>user\nImage: <image>What colour?<|im_end|>\n<|im_start|>assistant\nred<|im_end|>\n<|im_start|>user\nAnd the shape?<|im_end|>\n", rendered.Text);
        Assert.Equal(["red<|im_end|>"], rendered.Targets.Select(t => rendered.Text[t]));
        // The request for the answer is the text before it, with the generation prompt: what chat and eval send.
        var request = ChatPrompts.Render(lavin, chatml, tokenizer, conversation[..1], [1], addGenerationPrompt: true);
        Assert.Equal(rendered.Text[..rendered.Targets[0].Start.Value], request.Text);

        var textOnly = ChatPrompts.Render(lavin, chatml, tokenizer, [ChatMessage.System("Be brief."), ChatMessage.User("Hi")], [0, 0], addGenerationPrompt: true, throughPlugin: true);
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nImage: N/AHi<|im_end|>\n<|im_start|>assistant\n", textOnly.Text);
        var llava = ChatPrompts.Render(PromptLayout.AtPlaceholders, chatml, tokenizer, [ChatMessage.User("What colour?")], [1], addGenerationPrompt: true);
        Assert.Equal("<|im_start|>user\n<image>\nWhat colour?<|im_end|>\n<|im_start|>assistant\n", llava.Text);

        // The plain template: the answer, its paragraph end and the end-of-sequence token are the targets.
        var plain = ChatTemplates.Create("plain", eosToken: "<|endoftext|>");
        var transcript = ChatPrompts.Render(PromptLayout.AtPlaceholders, plain, tokenizer, conversation, [1, 0, 0], addGenerationPrompt: false,
            endOfTurn: ["<|endoftext|>"]);
        Assert.Equal("Question: <image>\nWhat colour?\nAnswer: red\n\n<|endoftext|>Question: And the shape?\n", transcript.Text);
        Assert.Equal([" red\n\n<|endoftext|>"], transcript.Targets.Select(t => transcript.Text[t]));
        Assert.Contains("1 '<image>' placeholder(s) for 0 image(s)", Assert.Throws<ArgumentException>(() =>
            ChatPrompts.Render(lavin, chatml, tokenizer, [ChatMessage.User("<image> hi")], [0], addGenerationPrompt: true, throughPlugin: true)).Message);
        Assert.Contains("holds '<image>' but no image", Assert.Throws<ArgumentException>(() =>
            ChatPrompts.Render(PromptLayout.AtPlaceholders, chatml, tokenizer, [ChatMessage.User("<image> hi")], [0], addGenerationPrompt: true)).Message);
    }

    /// <summary>The server lays a plug-in's requests out in the template it records, and the base's in the base's own.</summary>
    [Fact]
    public async Task The_engine_gives_each_plugin_its_recorded_template_and_the_base_its_own()
    {
        string model = WiringVisionTests.CopyTower(Llama, _temp.Sub("model"));
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" }) File.Copy(Path.Combine(QwenTokenizer, file), Path.Combine(model, file));
        string recorded = New("plain", "bridge", "patch-pixels:4:2");
        string unrecorded = New("other", "bridge", "patch-pixels:4:2");
        using (var base_ = DecoderModel.Load(Llama))
            PluginFile.Save(PluginFile.Load(recorded, base_, VisionFrontEnds.ForPlugin(PluginFile.ReadManifest(recorded), recorded, null)), recorded,
                chatTemplate: new RecordedChatTemplate("plain", PlainChatTemplate.Jinja));
        await using var engine = ChatEngine.Open(model, [KeyValuePair.Create("p", recorded), KeyValuePair.Create("o", unrecorded)], (VisionOverrides?)null);
        Assert.Equal("chatml", engine.TemplateOf(engine.BaseName).Name);
        Assert.Equal("plain", engine.TemplateOf(engine.BaseName + "+p").Name);
        Assert.Equal(PlainChatTemplate.Jinja, engine.TemplateOf(engine.BaseName + "+p").Source);
        Assert.Equal("chatml", engine.TemplateOf(engine.BaseName + "+o").Name);
    }

    /// <summary>`graft inspect` describes a CLIP folder, a SigLIP folder and a plug-in folder as well as an LLM.</summary>
    [Fact]
    public void Inspect_describes_towers_and_plugins()
    {
        var (code, output, error) = Cli("inspect", Clip);
        Assert.True(code == 0, error);
        Assert.Contains("architecture: CLIP vision tower", output);
        Assert.Contains("class token: yes", output);
        Assert.Contains("preprocessing (preprocessor_config.json)", output);
        Assert.Contains("parameters: ", output);
        (code, output, error) = Cli("inspect", Siglip);
        Assert.True(code == 0, error);
        Assert.Contains("architecture: SigLIP vision tower", output);
        Assert.Contains("class token: no", output);
        string plugin = New("bridge", "bridge", Clip);
        (code, output, error) = Cli("inspect", plugin);
        Assert.True(code == 0, error);
        Assert.Contains("design: bridge", output);
        Assert.Contains($"made with {Path.GetFullPath(Clip)}", output);
        Assert.Contains("chat template: none recorded", output);
        (code, output, error) = Cli("inspect", Llama);
        Assert.True(code == 0, error);
        Assert.Contains("architecture: LlamaForCausalLM", output);
        (code, output, error) = Cli("inspect", _temp.Sub("nowhere"));
        Assert.Equal(1, code);
        Assert.Contains("does not exist", error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }
}
