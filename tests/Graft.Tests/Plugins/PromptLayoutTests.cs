using Graft.Cli;
using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Eval;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

public sealed class PromptLayoutTests
{
    private static readonly PromptLayout Lavin = Mma.LaVinLayout;

    /// <summary>Each piece's text and the images after it.</summary>
    private static (string, int)[] Cut(LaidOutPrompt laid) => laid.Pieces.Select((p, i) => (laid.Piece(i), p.ImagesAfter)).ToArray();

    [Fact]
    public void Llava_layout_keeps_each_image_at_its_placeholder_and_text_as_it_is()
    {
        var laid = PromptLayout.AtPlaceholders.Arrange("Q: <image>\nWhat? <image>", 2, throughPlugin: true);
        Assert.Equal("Q: <image>\nWhat? <image>", laid.Text);
        Assert.Equal([("Q: ", 1), ("\nWhat? ", 1), ("", 0)], Cut(laid));
        Assert.Equal(7, laid.Position(7));
        Assert.Equal([("plain", 0)], Cut(PromptLayout.AtPlaceholders.Arrange("plain", 0, throughPlugin: true)));
        Assert.Contains("1 '<image>' placeholder(s) for 2 image(s)",
            Assert.Throws<ArgumentException>(() => PromptLayout.AtPlaceholders.Arrange("<image>", 2, throughPlugin: true)).Message);
    }

    [Fact]
    public void Lavin_layout_puts_image_colon_and_the_image_first_and_drops_the_placeholders_with_their_line_breaks()
    {
        var laid = Lavin.Arrange("Question: <image>\nWhat colour?\nAnswer: red", 1, throughPlugin: true);
        Assert.Equal("Image: Question: What colour?\nAnswer: red", laid.Text);
        Assert.Equal([("Image: ", 1), ("Question: What colour?\nAnswer: red", 0)], Cut(laid));
        Assert.Equal(laid.Text.IndexOf("red", StringComparison.Ordinal), laid.Position("Question: <image>\nWhat colour?\nAnswer: red".IndexOf("red", StringComparison.Ordinal)));
        Assert.Equal(laid.Text.IndexOf("Question", StringComparison.Ordinal), laid.Position(0));

        Assert.Equal([("Image: ", 1), ("What?", 0)], Cut(Lavin.Arrange("What?\n<image>", 1, throughPlugin: false)));
        Assert.Equal([("Image: ", 2), ("Q", 0)], Cut(Lavin.Arrange("<image>\n<image>\nQ", 2, throughPlugin: false)));

        // A text-only request: "Image: N/A" through the plug-in, untouched on the base route.
        Assert.Equal([("Image: N/A", 0), ("Question: x", 0)], Cut(Lavin.Arrange("Question: x", 0, throughPlugin: true)));
        Assert.Equal([("Question: x", 0)], Cut(Lavin.Arrange("Question: x", 0, throughPlugin: false)));

        // A beginning-of-sequence token a chat template writes stays first.
        var chat = Lavin.Arrange("<s>[INST] <image>\nHi [/INST]", 1, throughPlugin: true, leadAfter: 3);
        Assert.Equal([("<s>Image: ", 1), ("[INST] Hi [/INST]", 0)], Cut(chat));
    }

    [Fact]
    public void Lavin_layout_of_token_ids_puts_the_lead_after_bos_and_the_image_behind_it()
    {
        var tokenizer = Tokenizer.FromJson(EvalFixtures.TokenizerJson(mergeLetters: false, bos: true), """{"bos_token": "<|endoftext|>"}""");
        int bos = tokenizer.BosTokenId!.Value;
        int[] Encode(string text) => tokenizer.Encode(text, addSpecialTokens: false);
        var image = new ImagePart(PluginFixtures.Image(1));
        var prompt = new MultimodalPrompt([new TextPart([bos, 40]), image, new TextPart([41, 42])]);
        var laid = Lavin.Arrange(prompt, () => tokenizer, throughPlugin: false);
        Assert.Equal([bos, .. Encode("Image: ")], ((TextPart)laid.Parts[0]).Ids);
        Assert.Same(image, laid.Parts[1]);
        Assert.Equal([[40], [41, 42]], laid.Parts.Skip(2).Select(p => ((TextPart)p).Ids));

        var text = MultimodalPrompt.FromIds([40, 41]);
        Assert.Equal([[.. Encode("Image: N/A")], [40, 41]], Lavin.Arrange(text, () => tokenizer, throughPlugin: true).Parts.Select(p => ((TextPart)p).Ids));
        Assert.Same(text, Lavin.Arrange(text, () => throw new InvalidOperationException("no tokenizer is needed"), throughPlugin: false));
        Assert.Same(prompt, PromptLayout.AtPlaceholders.Arrange(prompt, () => throw new InvalidOperationException("no tokenizer is needed"), throughPlugin: true));
    }

    /// <summary>
    /// `graft logits` and `graft generate` with an MMA feed the model LaVIN's sequence, built here by hand: [BOS] "Image: "
    /// [image] prompt, and [BOS] "Image: N/A" prompt for text routed through the plug-in; text on the base route is the base's.
    /// </summary>
    [Fact]
    public void Mma_from_the_cli_feeds_lavins_tokens()
    {
        using var temp = new TempFolder();
        using var copy = new Eval.TempFolder();
        string model = EvalFixtures.ModelFolder(copy, mergeLetters: false, bos: true);
        File.WriteAllText(Path.Combine(model, "tokenizer_config.json"), """{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}""");
        var tokenizer = Tokenizer.FromFolder(model);
        int bos = tokenizer.BosTokenId!.Value;
        int[] Encode(string text) => tokenizer.Encode(text, addSpecialTokens: false);
        string plugin = temp.Sub("mma.graft");
        var (code, _, error) = Cli("plugin", "new", "--design", "mma", "--base", model, "--vision", "patch-pixels:4:2", "--out", plugin, "--seed", "3");
        Assert.True(code == 0, error);
        string imageFile = temp.Sub("image.ppm");
        File.WriteAllBytes(imageFile, [.. "P6\n4 4\n255\n"u8.ToArray(), .. Enumerable.Range(0, 48).Select(i => (byte)(i * 5))]);

        (code, _, error) = Cli("logits", "--model", model, "--plugin", plugin, "--image", imageFile, "--ids", $"{bos},image,42,9", "--out", temp.Sub("image.safetensors"));
        Assert.True(code == 0, error);
        (code, _, error) = Cli("logits", "--model", model, "--plugin", plugin, "--ids", $"{bos},42,9", "--text-route", "plugin", "--out", temp.Sub("routed.safetensors"));
        Assert.True(code == 0, error);
        (code, _, error) = Cli("logits", "--model", model, "--plugin", plugin, "--ids", $"{bos},42,9", "--out", temp.Sub("text.safetensors"));
        Assert.True(code == 0, error);
        (code, _, error) = Cli("generate", "--model", model, "--plugin", plugin, "--image", imageFile, "--prompt", "Question: hi", "--max-tokens", "1");
        Assert.True(code == 0, error);

        using var baseModel = DecoderModel.Load(model);
        var mma = PluginFile.Load(plugin, baseModel, VisionFrontEnds.ForPlugin(PluginFile.ReadManifest(plugin), plugin, null));
        var host = new PluginHost(baseModel);
        host.Attach("mma", mma, TextRoute.Plugin);
        var image = new ImagePart(ImageDecoder.Load(imageFile));
        Tensor Expected(params PromptPart[] parts) => host.Forward("mma", new MultimodalPrompt(parts));
        AssertWritten(temp.Sub("image.safetensors"), Expected(new TextPart([bos, .. Encode("Image: ")]), image, new TextPart([42, 9])));
        AssertWritten(temp.Sub("routed.safetensors"), Expected(new TextPart([bos, .. Encode("Image: N/A")]), new TextPart([42, 9])));
        AssertWritten(temp.Sub("text.safetensors"), baseModel.Forward([bos, 42, 9]));

        PreparedInput prepared;
        using (Autograd.NoGrad()) prepared = mma.Prepare(new MultimodalPrompt([new TextPart([bos, .. Encode("Image: ")]), image, new TextPart(Encode("Question: hi"))]));
        // The modality token, BOS, "Image: ", the image's tokens, "Question: hi" (one token a byte here).
        Assert.Equal(1 + 1 + 7 + prepared.ImageMask.Count(m => m) + 12, prepared.Length);
        Assert.Contains($"[{prepared.Length} prompt + ", error);
    }

    private static void AssertWritten(string file, Tensor expected)
    {
        using var written = SafeTensorsFile.Open(file);
        Assert.Equal(expected.Shape, written.Info("logits").Shape);
        Assert.Equal(PluginFixtures.Bits(expected), PluginFixtures.Bits(Tensor.FromArray(written.ReadFloats("logits"), expected.Shape)));
    }

    private static (int Code, string Output, string Error) Cli(params string[] args) =>
        CliRunner.Run([PluginCommand.Create(), LogitsCommand.Create(), GenerateCommand.Create(DecoderSequenceModel.Load)], args);
}
