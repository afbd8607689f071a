using Graft.Cli;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Eval;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>`graft plugin new` with each design's options: recorded in plugin.json, the papers' defaults scaled to the base, bad values refused by name.</summary>
public class PluginNewOptionsTests
{
    private static readonly string Llama = PluginFixtures.ModelFolder("llama");
    private static readonly string Clip = WiringVisionTests.Tower("clip_vision");

    private static (int Code, string Output, string Error) Invoke(params string[] args) =>
        CliRunner.Run([PluginCommand.Create(), LogitsCommand.Create()], args);

    /// <summary>Runs `plugin new` on the tiny Llama (64 wide, 3 layers) and returns plugin.json.</summary>
    private static PluginManifest New(TempFolder temp, string design, params string[] options)
    {
        string folder = temp.Sub(design + ".graft");
        // Every design but visual-experts needs a front end; patch-pixels unless the test names one.
        string[] vision = design == "visual-experts" || options.Contains("--vision") ? [] : ["--vision", "patch-pixels:4:2"];
        var (code, output, error) = Invoke(["plugin", "new", "--design", design, "--base", Llama, .. vision, "--out", folder, .. options]);
        Assert.True(code == 0, error);
        Assert.Contains("hyper-parameters: {", output);
        return PluginFile.ReadManifest(folder);
    }

    private static T Hyper<T>(PluginManifest manifest, string name) => manifest.HyperParameter<T>(name, "test");

    [Fact]
    public void Unset_options_take_the_papers_values_scaled_to_the_base()
    {
        using var temp = new TempFolder();
        var bridge = New(temp, "bridge");
        Assert.Equal("projector", Hyper<string>(bridge, "tune"));

        var mma = New(temp, "mma");
        Assert.Equal((8, 2, 5f, 1f, 0.1f, 128), (Hyper<int>(mma, "adapter_rank"), Hyper<int>(mma, "adapter_groups"), Hyper<float>(mma, "temperature"),
            Hyper<float>(mma, "adapter_scale"), Hyper<float>(mma, "adapter_dropout"), Hyper<int>(mma, "projection_width")));
        Assert.Equal(0, Hyper<int>(mma, "vision_blocks"));

        var iaa = New(temp, "inner-adaptor");
        Assert.Equal("iaa-14", Hyper<string>(iaa, "preset"));
        Assert.Equal([0, 1, 2], iaa.HyperParameters["insert_after"]!.AsArray().Select(n => n!.GetValue<int>()));
        Assert.Equal([false, false, false], new[] { "own_embedding", "own_norm", "own_head" }.Select(f => Hyper<bool>(iaa, f)));

        var wings = New(temp, "wings");
        Assert.Equal((4, "image-text-mass", 4096), (Hyper<int>(wings, "rank"), Hyper<string>(wings, "router_input"), Hyper<int>(wings, "router_row_length")));

        var experts = New(temp, "visual-experts");
        Assert.Equal((14, 56, 64, 12, false), (Hyper<int>(experts, "patch_size"), Hyper<int>(experts, "image_size"), Hyper<int>(experts, "vision_width"),
            Hyper<int>(experts, "max_tiles"), Hyper<bool>(experts, "attention_experts")));
    }

    [Fact]
    public void Given_options_are_recorded_in_plugin_json_and_the_plugin_loads_with_them()
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(Llama);

        var bridge = New(temp, "bridge", "--tune", "full", "--vision", Clip, "--feature-layer", "-1", "--keep-class-token", "--pad-to-square", "off");
        Assert.Equal("full", Hyper<string>(bridge, "tune"));
        Assert.Equal(("layer:-1:class", "false", 17), (bridge.Vision!.Summary["features"], bridge.Vision.Summary["pad_to_square"], bridge.Vision.TokensPerImage));

        var mma = New(temp, "mma", "--adapter-rank", "4", "--adapter-groups", "4", "--temperature", "7", "--adapter-scale", "0.5", "--adapter-dropout", "0", "--projection-width", "16");
        Assert.Equal((4, 4, 7f, 0.5f, 0f, 16), (Hyper<int>(mma, "adapter_rank"), Hyper<int>(mma, "adapter_groups"), Hyper<float>(mma, "temperature"),
            Hyper<float>(mma, "adapter_scale"), Hyper<float>(mma, "adapter_dropout"), Hyper<int>(mma, "projection_width")));
        var loadedMma = Assert.IsType<Mma>(PluginFile.Load(temp.Sub("mma.graft"), model));
        Assert.Equal([4, 64], loadedMma.LlmAdapters[0].A.Shape);

        var iaa = New(temp, "inner-adaptor", "--layers", "0,2", "--own-embedding", "--own-head");
        Assert.Equal("custom", Hyper<string>(iaa, "preset"));
        Assert.Equal([true, false, true], new[] { "own_embedding", "own_norm", "own_head" }.Select(f => Hyper<bool>(iaa, f)));
        var loadedIaa = Assert.IsType<InnerAdaptor>(PluginFile.Load(temp.Sub("inner-adaptor.graft"), model));
        Assert.Equal([0, 2], loadedIaa.InsertAfter);
        Assert.Equal(InnerAdaptor.PresetLayers(InnerAdaptor.Iaa8, 3), New(temp, "inner-adaptor", "--preset", "iaa-8").HyperParameters["insert_after"]!.AsArray().Select(n => n!.GetValue<int>()));

        var wings = New(temp, "wings", "--rank", "6", "--router", "attention-row", "--router-row-length", "64");
        Assert.Equal((6, "attention-row", 64), (Hyper<int>(wings, "rank"), Hyper<string>(wings, "router_input"), Hyper<int>(wings, "router_row_length")));
        var loadedWings = Assert.IsType<Wings>(PluginFile.Load(temp.Sub("wings.graft"), model));
        Assert.Equal([2, 64], loadedWings.Layers[0].Router.Weight.Shape);

        var experts = New(temp, "visual-experts", "--attention-experts", "--patch-size", "7", "--image-size", "28", "--vision-width", "16", "--max-tiles", "2");
        Assert.Equal((7, 28, 16, 2, true), (Hyper<int>(experts, "patch_size"), Hyper<int>(experts, "image_size"), Hyper<int>(experts, "vision_width"),
            Hyper<int>(experts, "max_tiles"), Hyper<bool>(experts, "attention_experts")));
        var loadedExperts = Assert.IsType<VisualExperts>(PluginFile.Load(temp.Sub("visual-experts.graft"), model));
        Assert.Equal(3, loadedExperts.AttentionExperts!.Count);
        Assert.Equal(4, loadedExperts.TokensPerTile);
    }

    public static TheoryData<string[], string> BadOptions => new()
    {
        { ["--design", "bridge", "--rank", "4"], "--rank: a wings option; --design bridge does not take it" },
        { ["--design", "mma", "--tune", "full"], "--tune: a bridge option" },
        { ["--design", "wings", "--own-head"], "--own-head: a inner-adaptor option" },
        { ["--design", "visual-experts", "--vision", "patch-pixels:2:2"], "--vision: visual-experts has its own trainable patch embedding" },
        { ["--design", "inner-adaptor", "--attention-experts"], "--attention-experts: a visual-experts option" },
        { ["--design", "bridge", "--tune", "half"], "--tune: 'half' is not projector or full" },
        { ["--design", "bridge", "--vision", "patch-pixels:4:2", "--feature-layer", "-2"], "--feature-layer: needs a CLIP/SigLIP --vision folder" },
        { ["--design", "bridge", "--feature-layer", "-2"], "--vision: a bridge plug-in sees through a vision front end; give a CLIP/SigLIP folder" },
        { ["--design", "wings"], "--vision: a wings plug-in sees through a vision front end" },
        { ["--design", "bridge", "--vision", Clip, "--feature-layer", "5"], "--feature-layer: hidden state 5 does not exist in a tower of 3 layers" },
        { ["--design", "wings", "--vision", WiringVisionTests.Tower("siglip_head"), "--keep-class-token"], "--keep-class-token: a Siglip tower has no class token" },
        { ["--design", "bridge", "--vision", Clip, "--pad-to-square", "maybe"], "--pad-to-square: 'maybe' is not on or off" },
        { ["--design", "mma", "--adapter-rank", "7"], "--adapter-rank: 7 is not a multiple of --adapter-groups 2" },
        { ["--design", "mma", "--adapter-groups", "3", "--adapter-rank", "6"], "--adapter-groups: the base's hidden size 64 is not a multiple of 3" },
        { ["--design", "mma", "--temperature", "0"], "--temperature: 0 is not positive and finite" },
        { ["--design", "mma", "--adapter-dropout", "1"], "--adapter-dropout: 1 is not in [0, 1)" },
        { ["--design", "mma", "--projection-width", "0"], "--projection-width: 0 is not a positive integer" },
        { ["--design", "mma", "--vision", "patch-pixels:4:2", "--class-tokens", "2"], "--class-tokens: needs a CLIP/SigLIP --vision folder" },
        { ["--design", "mma", "--vision", Clip, "--class-tokens", "2"], "--class-tokens: 2 does not divide the tower's 3 blocks" },
        { ["--design", "mma", "--vision", WiringVisionTests.Tower("siglip_head")], "--vision: MMA reads class tokens, so it needs a CLIP tower" },
        { ["--design", "mma", "--vision", Clip, "--vit-adapters", "yes"], "--vit-adapters: 'yes' is not on or off" },
        { ["--design", "inner-adaptor", "--preset", "iaa-3"], "--preset: 'iaa-3' is not iaa-14 or iaa-8" },
        { ["--design", "inner-adaptor", "--preset", "iaa-8", "--layers", "0"], "--layers: give --preset or --layers, not both" },
        { ["--design", "inner-adaptor", "--layers", "0,3"], "--layers: layer 3 is outside the base's 3 layers" },
        { ["--design", "inner-adaptor", "--layers", "1,1"], "--layers: layers must be strictly increasing" },
        { ["--design", "inner-adaptor", "--layers", "0,x"], "--layers: 'x' (item 2) is not a layer index" },
        { ["--design", "wings", "--rank", "0"], "--rank: 0 is not a positive integer" },
        { ["--design", "wings", "--router", "mass"], "--router: 'mass' is not image-text-mass or attention-row" },
        { ["--design", "wings", "--router-row-length", "64"], "--router-row-length: applies to --router attention-row only" },
        { ["--design", "visual-experts", "--image-size", "30"], "--image-size: 30 is not a positive multiple of 2 x --patch-size = 28" },
        { ["--design", "visual-experts", "--patch-size", "0"], "--patch-size: 0 is not a positive integer" },
        { ["--design", "visual-experts", "--max-tiles", "0"], "--max-tiles: 0 is not a positive integer" },
        { ["--design", "visual-experts", "--vision-width", "-1"], "--vision-width: -1 is not a positive integer" },
        { ["--design", "painting"], "--design: 'painting' is not a design this build creates" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void Bad_options_are_refused_in_one_line_that_names_the_option_and_nothing_is_written(string[] args, string message)
    {
        using var temp = new TempFolder();
        string folder = temp.Sub("x.graft");
        var (code, output, error) = Invoke(["plugin", "new", "--base", Llama, "--out", folder, .. args]);
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Contains(message, error);
        Assert.Single(error.TrimEnd().Split('\n'));
        Assert.False(Directory.Exists(folder));
    }

    /// <summary>
    /// MMA on a CLIP folder: the ViT adapters are tensors of the plug-in (a part of their own), plugin.json names the tower by
    /// its class-token front end, and `graft logits --vision` opens that tower and runs the adapters inside it: the CLI's
    /// logits are the library's, and change when only the ViT adapters change.
    /// </summary>
    [Fact]
    public void Mma_made_on_a_clip_folder_carries_its_vit_adapters_and_the_cli_runs_them()
    {
        using var temp = new TempFolder();
        string folder = temp.Sub("mma.graft");
        var (code, output, error) = Invoke("plugin", "new", "--design", "mma", "--base", Llama, "--vision", Clip, "--out", folder);
        Assert.True(code == 0, error);
        Assert.Contains("vision: clip-class-tokens (3 tokens x 32)", output);
        var manifest = PluginFile.ReadManifest(folder);
        Assert.Equal(3, Hyper<int>(manifest, "vision_blocks"));
        Assert.Equal("3", manifest.Vision!.Summary["class_tokens"]);
        (code, output, error) = Invoke("plugin", "inspect", folder);
        Assert.True(code == 0, error);
        Assert.Contains("  vision_adapters: ", output);

        // Random, non-zero weights everywhere (the adapters start as the identity), saved as the plug-in.
        using var model = DecoderModel.Load(Llama);
        using (var vision = MmaClipFrontEnd.Load(Clip))
        {
            var mma = Assert.IsType<Mma>(PluginFile.Load(folder, model, vision));
            var random = new Random(4);
            foreach (var p in mma.Parameters)
            {
                var span = p.Tensor.Span;
                for (int i = 0; i < span.Length; i++) span[i] = (float)(random.NextDouble() * 2 - 1) * 0.2f;
            }
            PluginFile.Save(mma, folder);
        }
        string image = temp.Sub("image.ppm");
        File.WriteAllBytes(image, [.. "P6\n4 4\n255\n"u8.ToArray(), .. Enumerable.Range(0, 48).Select(i => (byte)(i * 5))]);
        // The same tiny Llama with a byte-level tokenizer beside it, which LaVIN's "Image: " needs.
        using var copy = new Eval.TempFolder();
        string llama = EvalFixtures.ModelFolder(copy, mergeLetters: false);
        (code, _, error) = Invoke("logits", "--model", llama, "--plugin", folder, "--vision", Clip, "--image", image, "--ids", "1,image,42,9", "--out", temp.Sub("cli.safetensors"));
        Assert.True(code == 0, error);
        using var written = SafeTensorsFile.Open(temp.Sub("cli.safetensors"));
        var cli = written.ReadFloats("logits");
        var lead = Graft.Models.Tokenization.Tokenizer.FromFolder(llama).Encode("Image: ", addSpecialTokens: false);
        Assert.Equal(1 + lead.Length + 3 + 3, written.Info("logits").Shape[0]);   // modality token, "Image: ", 3 class tokens, 3 ids

        using var reopened = MmaClipFrontEnd.Load(Clip);
        var loaded = Assert.IsType<Mma>(PluginFile.Load(folder, model, reopened));
        var host = new PluginHost(model);
        host.Attach("mma", loaded);
        var prompt = new MultimodalPrompt([new TextPart(lead), new ImagePart(ImageDecoder.Load(image)), new TextPart([1, 42, 9])]);
        Assert.Equal(PluginFixtures.Bits(Tensor.FromArray(cli, cli.Length)), PluginFixtures.Bits(host.Forward("mma", prompt).Reshape(cli.Length)));
        foreach (var adapter in loaded.VisionAdapters)
        {
            adapter.B.Span.Clear();
            adapter.D.Span.Clear();
            adapter.BBias.Span.Clear();
            adapter.DBias.Span.Clear();
        }
        Assert.NotEqual(PluginFixtures.Bits(Tensor.FromArray(cli, cli.Length)), PluginFixtures.Bits(host.Forward("mma", prompt).Reshape(cli.Length)));

        // Without --vision the tower is the folder plugin.json records it was made with; off, the plug-in holds no ViT
        // adapters and reads the class tokens plainly.
        Assert.Equal(Path.GetFullPath(Clip), manifest.Vision.Folder);
        (code, _, error) = Invoke("logits", "--model", llama, "--plugin", folder, "--image", image, "--ids", "1,image,42,9", "--out", temp.Sub("found.safetensors"));
        Assert.True(code == 0, error);
        using (var found = SafeTensorsFile.Open(temp.Sub("found.safetensors"))) Assert.Equal(cli, found.ReadFloats("logits"));
        var off = New(temp, "mma", "--vision", Clip, "--vit-adapters", "off", "--class-tokens", "1");
        Assert.Equal((0, "clip", "class-tokens:1"), (Hyper<int>(off, "vision_blocks"), off.Vision!.Kind, off.Vision.Summary["features"]));
    }

    [Fact]
    public void Mma_clip_front_end_from_a_folder_matches_one_built_from_the_tower_and_refuses_a_siglip_folder()
    {
        using var loaded = MmaClipFrontEnd.Load(Clip);
        using var tower = Graft.Models.Vision.VisionEncoder.Load(Clip);
        var built = new MmaClipFrontEnd(tower, ImageProcessorConfig.Load(Path.Combine(Clip, "preprocessor_config.json")));
        Assert.Equal(built.Fingerprint, loaded.Fingerprint);
        var image = ImageDecoder.Load(WiringVisionTests.Photo);
        Assert.Equal(PluginFixtures.Bits(built.Encode(image)), PluginFixtures.Bits(loaded.Encode(image)));
        Assert.Contains("needs a CLIP tower", Assert.Throws<Graft.Models.Vision.VisionModelException>(() => MmaClipFrontEnd.Load(WiringVisionTests.Tower("siglip_head"))).Message);
    }
}
