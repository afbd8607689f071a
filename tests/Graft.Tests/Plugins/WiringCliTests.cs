using System.CommandLine;
using Graft.Cli;
using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>`graft generate|chat|logits --plugin [--image] [--vision]` on the tiny qwen2 base with a byte-level tokenizer beside it.</summary>
public sealed class WiringCliTests : IDisposable
{
    // Byte-level pieces with no merges, so every id is inside the tiny base's vocabulary of 384.
    private const string Prompt = "ZQXJK?!";
    private readonly TempFolder _temp = new();
    private readonly string _model;
    private readonly string _image;

    public WiringCliTests()
    {
        _model = WiringVisionTests.CopyTower(PluginFixtures.ModelFolder("qwen2"), _temp.Sub("model"));
        var tokenizer = Path.Combine(AppContext.BaseDirectory, "Golden", "tokenizer", "qwen2_style");
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" }) File.Copy(Path.Combine(tokenizer, file), Path.Combine(_model, file));
        // A short context keeps chat's 1024-token answers (which a random base never ends) quick: both commands stop at it.
        string config = Path.Combine(_model, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"max_position_embeddings\": 512", "\"max_position_embeddings\": 64"));
        Assert.Contains("\"max_position_embeddings\": 64", File.ReadAllText(config));
        _image = _temp.Sub("image.ppm");
        File.WriteAllBytes(_image, [.. "P6\n4 4\n255\n"u8.ToArray(), .. Enumerable.Range(0, 48).Select(i => (byte)(i * 5))]);
    }

    public void Dispose() => _temp.Dispose();

    private static (int Code, string Output, string Error) Invoke(string? input, params string[] args) =>
        CliRunner.Run([GenerateCommand.Create(DecoderSequenceModel.Load), ChatCommand.Create(DecoderSequenceModel.Load, () => new StringReader(input ?? "")), PluginCommand.Create(), LogitsCommand.Create()], args);

    private string NewPlugin(string name, string? vision = null)
    {
        string folder = _temp.Sub(name);
        var (code, _, error) = vision is null
            ? Invoke(null, "plugin", "new", "--design", "bridge", "--base", _model, "--vision", "patch-pixels:4:2", "--out", folder, "--seed", "2")
            : Invoke(null, "plugin", "new", "--design", "bridge", "--base", _model, "--vision", vision, "--out", folder, "--seed", "2");
        Assert.True(code == 0, error);
        return folder;
    }

    [Fact]
    public void Generate_with_a_plugin_and_no_image_prints_exactly_what_the_base_prints()
    {
        Assert.All(Tokenizer.FromFolder(_model).Encode(Prompt), id => Assert.InRange(id, 0, 383));
        string plugin = NewPlugin("b.graft");
        var alone = Invoke(null, "generate", "--model", _model, "--prompt", Prompt, "--max-tokens", "8");
        var with = Invoke(null, "generate", "--model", _model, "--plugin", plugin, "--prompt", Prompt, "--max-tokens", "8");
        Assert.True(alone.Code == 0, alone.Error);
        Assert.True(with.Code == 0, with.Error);
        Assert.NotEqual("\n", alone.Output.ReplaceLineEndings("\n"));
        Assert.Equal(alone.Output, with.Output);
        Assert.Equal(Counts(alone.Error), Counts(with.Error));
    }

    [Fact]
    public void Generate_with_an_image_places_it_before_the_text_or_at_the_placeholder()
    {
        string plugin = NewPlugin("b.graft");
        int text = Tokenizer.FromFolder(_model).Encode(Prompt).Length;
        var (code, output, error) = Invoke(null, "generate", "--model", _model, "--plugin", plugin, "--image", _image, "--prompt", Prompt, "--max-tokens", "3");
        Assert.True(code == 0, error);
        Assert.EndsWith("\n", output.ReplaceLineEndings("\n"));
        // patch-pixels:4:2 gives 16 image tokens; "\n" follows the inserted placeholder.
        int newline = Tokenizer.FromFolder(_model).Encode("\n" + Prompt).Length;
        Assert.Contains($"[{16 + newline} prompt + 3 completion tokens", error);
        Assert.True(text <= newline);

        (code, _, error) = Invoke(null, "generate", "--model", _model, "--plugin", plugin, "--image", _image, "--prompt", "KQ! <image> " + Prompt, "--max-tokens", "2");
        Assert.True(code == 0, error);
        var tokenizer = Tokenizer.FromFolder(_model);
        Assert.Contains($"[{tokenizer.Encode("KQ! ").Length + 16 + tokenizer.Encode(" " + Prompt, addSpecialTokens: false).Length} prompt + 2 completion tokens", error);

        (code, _, error) = Invoke(null, "generate", "--model", _model, "--plugin", plugin, "--image", _image, "--prompt", Prompt, "--template", "llama2", "--max-tokens", "2");
        Assert.True(code == 0, error);
    }

    [Fact]
    public void Generate_reports_an_image_without_a_plugin_an_unreadable_image_and_a_wrong_or_missing_tower_in_one_line()
    {
        string plugin = NewPlugin("clip.graft", WiringVisionTests.Tower("clip_vision"));
        string plain = NewPlugin("b.graft");
        // A plug-in whose tower has since gone from where it was made.
        string moved = NewPlugin("moved.graft", WiringVisionTests.CopyTower(WiringVisionTests.Tower("clip_vision"), _temp.Sub("tower")));
        Directory.Delete(_temp.Sub("tower"), recursive: true);
        var cases = new (string[] Args, string Message)[]
        {
            (["--image", _image], "--image needs a --plugin"),
            (["--plugin", plain, "--image", _temp.Sub("missing.png")], "missing.png"),
            (["--plugin", moved, "--image", _image], "(plugin.json vision.folder), but that folder does not exist; give the tower's folder with --vision DIR"),
            (["--plugin", plugin, "--image", _image, "--vision", _temp.Sub("nowhere")], "--vision: the tower folder"),
            (["--plugin", plain, "--prompt", "look: <image>"], "the prompt holds '<image>', but no image was given"),
            (["--plugin", plugin, "--image", _image, "--vision", WiringVisionTests.Tower("siglip_head")], "vision kind: plug-in expects clip, given siglip"),
        };
        File.WriteAllText(_temp.Sub("broken.png"), "not a png");
        cases = [.. cases, (["--plugin", plain, "--image", _temp.Sub("broken.png")], "broken.png")];
        foreach (var (args, message) in cases)
        {
            var (code, output, error) = Invoke(null, ["generate", "--model", _model, .. (args.Contains("--prompt") ? (string[])[] : ["--prompt", Prompt]), .. args]);
            Assert.Equal(1, code);
            Assert.Equal("", output);
            Assert.Contains(message, error);
            Assert.StartsWith("graft generate: ", error);
            Assert.Single(error.TrimEnd().Split('\n'));
        }
    }

    /// <summary>A plug-in made with a tower finds it where plugin.json says, with no --vision; several --image fill the prompt's placeholders in order.</summary>
    [Fact]
    public void Generate_finds_the_tower_a_plugin_records_and_takes_several_images()
    {
        string tower = WiringVisionTests.Tower("clip_vision");
        string plugin = NewPlugin("clip.graft", tower);
        Assert.Equal(Path.GetFullPath(tower), PluginFile.ReadManifest(plugin).Vision!.Folder);
        var given = Invoke(null, "generate", "--model", _model, "--plugin", plugin, "--vision", tower, "--image", WiringVisionTests.Photo, "--prompt", Prompt, "--max-tokens", "3");
        var found = Invoke(null, "generate", "--model", _model, "--plugin", plugin, "--image", WiringVisionTests.Photo, "--prompt", Prompt, "--max-tokens", "3");
        Assert.True(given.Code == 0 && found.Code == 0, given.Error + found.Error);
        Assert.Equal(given.Output, found.Output);

        string plain = NewPlugin("b.graft");
        var tokenizer = Tokenizer.FromFolder(_model);
        var two = Invoke(null, "generate", "--model", _model, "--plugin", plain, "--image", _image, "--image", _image, "--prompt", "<image> and <image>: " + Prompt, "--max-tokens", "2");
        Assert.True(two.Code == 0, two.Error);
        int expected = tokenizer.Encode("").Length + 16 + tokenizer.Encode(" and ", addSpecialTokens: false).Length + 16 + tokenizer.Encode(": " + Prompt, addSpecialTokens: false).Length;
        Assert.Contains($"[{expected} prompt + 2 completion tokens", two.Error);
        var mismatch = Invoke(null, "generate", "--model", _model, "--plugin", plain, "--image", _image, "--image", _image, "--prompt", "<image> " + Prompt);
        Assert.Equal(1, mismatch.Code);
        Assert.Contains("the prompt has 1 '<image>' placeholder(s) for 2 image(s)", mismatch.Error);
    }

    [Fact]
    public void Generate_runs_a_plugin_made_with_a_clip_tower_given_that_tower()
    {
        string plugin = NewPlugin("clip.graft", WiringVisionTests.Tower("clip_vision"));
        var (code, _, error) = Invoke(null, "generate", "--model", _model, "--plugin", plugin, "--vision", WiringVisionTests.Tower("clip_vision"),
            "--image", WiringVisionTests.Photo, "--prompt", Prompt, "--max-tokens", "2");
        Assert.True(code == 0, error);
        int prompt = Tokenizer.FromFolder(_model).Encode("\n" + Prompt).Length;
        Assert.Contains($"[{16 + prompt} prompt + 2 completion tokens", error);
    }

    [Fact]
    public void Chat_attaches_an_image_to_the_next_message_and_answers_as_generate_does()
    {
        string plugin = NewPlugin("b.graft");
        var (code, output, error) = Invoke($"/image {_image}\n{Prompt}\n/exit\n", "chat", "--model", _model, "--plugin", plugin, "--template", "llama2");
        Assert.True(code == 0, error);
        Assert.Contains($"(image {_image} attached to your next message)", output);
        var generated = Invoke(null, "generate", "--model", _model, "--plugin", plugin, "--image", _image, "--prompt", Prompt, "--template", "llama2", "--max-tokens", "1024");
        Assert.True(generated.Code == 0, generated.Error);
        string answer = output.ReplaceLineEndings("\n").Split("> ")[2].TrimEnd('\n');
        Assert.Equal(generated.Output.ReplaceLineEndings("\n").TrimEnd('\n'), answer);
    }

    [Fact]
    public void Chat_reports_image_problems_in_one_line_and_goes_on()
    {
        var (code, output, error) = Invoke($"/image {_image}\n/exit\n", "chat", "--model", _model, "--template", "llama2");
        Assert.Equal(0, code);
        Assert.Contains("/image needs a --plugin", error);
        string plugin = NewPlugin("b.graft");
        (code, output, error) = Invoke($"/image {_temp.Sub("missing.png")}\n/exit\n", "chat", "--model", _model, "--plugin", plugin, "--template", "llama2");
        Assert.Equal(0, code);
        Assert.Contains("missing.png", error);
        Assert.DoesNotContain("attached", output);
    }

    public static TheoryData<string, string[]> EveryDesign => new()
    {
        { Bridge.DesignName, [] },
        { Mma.DesignName, [] },
        { InnerAdaptor.DesignName, ["--own-norm"] },
        { Wings.DesignName, [] },
        { VisualExperts.DesignName, ["--attention-experts"] },
    };

    /// <summary>
    /// Each design end to end from the command line, with weights made random and non-zero after `plugin new` (so no part
    /// passes by starting as the identity): `generate` without an image prints exactly what the base prints; with one it
    /// prints the greedy tokens that recomputing the whole sequence through the library's host gives at every step (no
    /// cache), after a prompt of the length the design lays out; `chat` answers as `generate`; `logits` writes the host's
    /// logits with the image and the base's bytes without.
    /// </summary>
    [Theory]
    [MemberData(nameof(EveryDesign))]
    public void Every_design_generates_chats_and_writes_logits_from_the_cli(string design, string[] options)
    {
        string plugin = _temp.Sub(design + ".graft");
        var (code, _, error) = Invoke(null, ["plugin", "new", "--design", design, "--base", _model, .. (design == "visual-experts" ? (string[])[] : ["--vision", "patch-pixels:4:2"]), "--out", plugin, "--seed", "3", .. options]);
        Assert.True(code == 0, error);
        using (var model = DecoderModel.Load(_model))
        {
            var vision = VisionFrontEnds.ForPlugin(PluginFile.ReadManifest(plugin), plugin, null);
            var loaded = PluginFile.Load(plugin, model, vision);
            var random = new Random(17);
            foreach (var p in loaded.Parameters)
            {
                var span = p.Tensor.Span;
                for (int i = 0; i < span.Length; i++) span[i] += (float)(random.NextDouble() * 2 - 1) * 0.1f + (random.Next(2) == 0 ? -0.01f : 0.01f);
            }
            PluginFile.Save(loaded, plugin);
        }

        var alone = Invoke(null, "generate", "--model", _model, "--prompt", Prompt, "--max-tokens", "6");
        var textOnly = Invoke(null, "generate", "--model", _model, "--plugin", plugin, "--prompt", Prompt, "--max-tokens", "6");
        Assert.True(alone.Code == 0 && textOnly.Code == 0, alone.Error + textOnly.Error);
        Assert.Equal(alone.Output, textOnly.Output);

        const int steps = 6;
        var (expectedText, promptLength) = GreedyByRecomputation(plugin, design, steps);
        var generated = Invoke(null, "generate", "--model", _model, "--plugin", plugin, "--image", _image, "--prompt", Prompt, "--max-tokens", steps.ToString(), "--temperature", "0");
        Assert.True(generated.Code == 0, generated.Error);
        Assert.Equal(expectedText + "\n", generated.Output.ReplaceLineEndings("\n"));
        Assert.Contains($"[{promptLength} prompt + ", generated.Error);

        var chat = Invoke($"/image {_image}\n{Prompt}\n/exit\n", "chat", "--model", _model, "--plugin", plugin, "--template", "llama2");
        Assert.True(chat.Code == 0, chat.Error);
        var answer = Invoke(null, "generate", "--model", _model, "--plugin", plugin, "--image", _image, "--prompt", Prompt, "--template", "llama2", "--max-tokens", "1024");
        Assert.True(answer.Code == 0, answer.Error);
        Assert.Equal(answer.Output.ReplaceLineEndings("\n").TrimEnd('\n'), chat.Output.ReplaceLineEndings("\n").Split("> ")[2].TrimEnd('\n'));

        (code, _, error) = Invoke(null, "logits", "--model", _model, "--plugin", plugin, "--image", _image, "--ids", "5,image,42,9", "--out", _temp.Sub(design + ".safetensors"));
        Assert.True(code == 0, error);
        (code, _, error) = Invoke(null, "logits", "--model", _model, "--plugin", plugin, "--ids", "5,42,9", "--out", _temp.Sub(design + "-text.safetensors"));
        Assert.True(code == 0, error);
        (code, _, error) = Invoke(null, "logits", "--model", _model, "--ids", "5,42,9", "--out", _temp.Sub(design + "-base.safetensors"));
        Assert.True(code == 0, error);
        Assert.Equal(File.ReadAllBytes(_temp.Sub(design + "-base.safetensors")), File.ReadAllBytes(_temp.Sub(design + "-text.safetensors")));
        using var model2 = DecoderModel.Load(_model);
        var host = new PluginHost(model2);
        host.Attach("p", PluginFile.Load(plugin, model2, VisionFrontEnds.ForPlugin(PluginFile.ReadManifest(plugin), plugin, null)));
        // MMA: LaVIN's "Image: " and the image first (this tokenizer has no BOS), then the ids.
        var logits = host.Forward("p", new MultimodalPrompt(design == Mma.DesignName
            ? [new TextPart(Tokenizer.FromFolder(_model).Encode("Image: ", addSpecialTokens: false)), new ImagePart(ImageDecoder.Load(_image)), new TextPart([5, 42, 9])]
            : [new TextPart([5]), new ImagePart(ImageDecoder.Load(_image)), new TextPart([42, 9])]));
        using var written = SafeTensorsFile.Open(_temp.Sub(design + ".safetensors"));
        Assert.Equal(PluginFixtures.Bits(logits), PluginFixtures.Bits(Tensor.FromArray(written.ReadFloats("logits"), logits.Shape)));
    }

    /// <summary>
    /// The completion `generate --image` should print: the prompt laid out as the design's paper does (LLaVA's
    /// "&lt;image&gt;\n" before the text; LaVIN's "Image: " and the image before it for MMA), then greedy tokens, each from a
    /// forward over the whole sequence so far through a host (no cache); and the prepared prompt's length.
    /// </summary>
    private (string Text, int PromptLength) GreedyByRecomputation(string pluginFolder, string design, int steps)
    {
        using var model = DecoderModel.Load(_model);
        var tokenizer = Tokenizer.FromFolder(_model);
        var plugin = PluginFile.Load(pluginFolder, model, VisionFrontEnds.ForPlugin(PluginFile.ReadManifest(pluginFolder), pluginFolder, null));
        var host = new PluginHost(model);
        host.Attach("p", plugin);
        var eos = GenerationConfig.FromFolder(_model).EosTokenIds;
        var head = tokenizer.Encode(design == Mma.DesignName ? "Image: " : "", addSpecialTokens: true);
        List<PromptPart> parts = head.Length > 0 ? [new TextPart(head)] : [];
        parts.Add(new ImagePart(ImageDecoder.Load(_image)));
        var text = tokenizer.Encode(design == Mma.DesignName ? Prompt : "\n" + Prompt, addSpecialTokens: false);
        int promptLength;
        using (Autograd.NoGrad()) promptLength = plugin.Prepare(new MultimodalPrompt([.. parts, new TextPart(text)])).Length;
        var tokens = new List<int>();
        for (int step = 0; step < steps; step++)
        {
            var logits = host.Forward("p", new MultimodalPrompt([.. parts, new TextPart([.. text, .. tokens])]), lastPositionOnly: true);
            int next = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits.ToArray());
            if (eos.Contains(next)) break;
            tokens.Add(next);
        }
        return (tokenizer.Decode(tokens.ToArray(), skipSpecialTokens: true), promptLength);
    }

    /// <summary>"[P prompt + C completion tokens, finish: F" of a summary line, without the speed.</summary>
    private static string Counts(string summary) => summary[..summary.LastIndexOf(',')];
}
