using System.CommandLine;
using Graft.Cli;
using Graft.Models.Generation;
using Graft.Models.Tokenization;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>`graft generate|chat --plugin [--image] [--vision]` on the tiny qwen2 base with a byte-level tokenizer beside it.</summary>
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
        CliRunner.Run([GenerateCommand.Create(DecoderSequenceModel.Load), ChatCommand.Create(DecoderSequenceModel.Load, () => new StringReader(input ?? "")), PluginCommand.Create()], args);

    private string NewPlugin(string name, string? vision = null)
    {
        string folder = _temp.Sub(name);
        var (code, _, error) = vision is null
            ? Invoke(null, "plugin", "new", "--design", "bridge", "--base", _model, "--out", folder, "--seed", "2")
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
        var cases = new (string[] Args, string Message)[]
        {
            (["--image", _image], "--image needs a --plugin"),
            (["--plugin", plain, "--image", _temp.Sub("missing.png")], "missing.png"),
            (["--plugin", plugin, "--image", _image], "give its folder with --vision DIR"),
            (["--plugin", plugin, "--image", _image, "--vision", WiringVisionTests.Tower("siglip_head")], "vision kind: plug-in expects clip, given siglip"),
        };
        File.WriteAllText(_temp.Sub("broken.png"), "not a png");
        cases = [.. cases, (["--plugin", plain, "--image", _temp.Sub("broken.png")], "broken.png")];
        foreach (var (args, message) in cases)
        {
            var (code, output, error) = Invoke(null, ["generate", "--model", _model, "--prompt", Prompt, .. args]);
            Assert.Equal(1, code);
            Assert.Equal("", output);
            Assert.Contains(message, error);
            Assert.StartsWith("graft generate: ", error);
            Assert.Single(error.TrimEnd().Split('\n'));
        }
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

    /// <summary>"[P prompt + C completion tokens, finish: F" of a summary line, without the speed.</summary>
    private static string Counts(string summary) => summary[..summary.LastIndexOf(',')];
}
