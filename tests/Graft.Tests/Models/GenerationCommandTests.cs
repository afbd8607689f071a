using System.CommandLine;
using Graft.Cli;
using Graft.Models.Chat;
using Graft.Models.Tokenization;
using ScriptedModel = Graft.Tests.Models.GenerationTextGeneratorTests.ScriptedModel;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>`graft generate` and `graft chat` over a scripted model in a folder with the qwen2_style tokenizer.</summary>
public sealed class GenerationCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("graft-generate-").FullName;
    private readonly Tokenizer _tokenizer;
    private readonly int[] _answer;
    private readonly ScriptedModel _model;

    public GenerationCommandTests()
    {
        var source = Path.Combine(AppContext.BaseDirectory, "Golden", "tokenizer", "qwen2_style");
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" }) File.Copy(Path.Combine(source, file), Path.Combine(_dir, file));
        int endOfText = Tokenizer.FromFolder(_dir).TokenToId("<|endoftext|>")!.Value;
        File.WriteAllText(Path.Combine(_dir, "generation_config.json"), $$"""{"eos_token_id": [{{endOfText}}], "do_sample": false}""");
        _tokenizer = Tokenizer.FromFolder(_dir);
        _answer = _tokenizer.Encode("Hello world", addSpecialTokens: false);
        _model = new ScriptedModel([.. _answer, endOfText], _tokenizer.VocabSize);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (int Code, string Output, string Error) Run(Command command, params string[] args) =>
        CliRunner.Run([command], args);

    [Fact]
    public void GenerateStreamsTheCompletionAndSummarises()
    {
        var (code, output, error) = Run(GenerateCommand.Create((_, _) => _model), "generate", "--model", _dir, "--prompt", "Hi there");
        Assert.Equal(0, code);
        Assert.Equal("Hello world\n", output.ReplaceLineEndings("\n"));
        Assert.Contains("finish: stop", error);
        Assert.Equal(_tokenizer.Encode("Hi there"), _model.Appends[0]);
    }

    [Fact]
    public void GenerateWithChatRendersTheTemplate()
    {
        var (code, output, _) = Run(GenerateCommand.Create((_, _) => _model), "generate", "--model", _dir, "--prompt", "Hi", "--chat", "--max-tokens", "1");
        Assert.Equal(0, code);
        Assert.Equal(_tokenizer.Decode(_answer[..1]) + "\n", output.ReplaceLineEndings("\n"));
        var expected = new ChatMLTemplate().Render([ChatMessage.User("Hi")], addGenerationPrompt: true);
        Assert.Equal(_tokenizer.Encode(expected), _model.Appends[0]);

        Run(GenerateCommand.Create((_, _) => _model), "generate", "--model", _dir, "--prompt", "Hi", "--template", "llama3", "--max-tokens", "1");
        Assert.Equal(_tokenizer.Encode(new Llama3ChatTemplate().Render([ChatMessage.User("Hi")], true)), _model.Appends[^1]);
    }

    [Theory]
    [InlineData("--temperature", "-1", "Temperature")]
    [InlineData("--top-p", "0", "TopP")]
    [InlineData("--template", "alpaca", "known templates")]
    public void GenerateReportsBadOptions(string option, string value, string message)
    {
        var (code, output, error) = Run(GenerateCommand.Create((_, _) => _model), "generate", "--model", _dir, "--prompt", "Hi", option, value);
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Contains(message, error);
        Assert.Empty(_model.Appends);
    }

    [Fact]
    public void ChatKeepsHistoryUntilReset()
    {
        var command = ChatCommand.Create((_, _) => _model, () => new StringReader("Hi\nAgain\n/reset\nHi\n/exit\nnever read\n"));
        var (code, output, error) = Run(command, "chat", "--model", _dir);
        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Equal("> Hello world\n> Hello world\n> (history cleared)\n> Hello world\n> ", output.ReplaceLineEndings("\n"));

        var prompts = _model.Appends.Where(a => a.Length > 1).ToList();
        Assert.Equal(3, prompts.Count);
        var template = new ChatMLTemplate();
        Assert.Equal(_tokenizer.Encode(template.Render([ChatMessage.User("Hi")], true)), prompts[0]);
        Assert.Equal(_tokenizer.Encode(template.Render(
            [ChatMessage.User("Hi"), ChatMessage.Assistant("Hello world"), ChatMessage.User("Again")], true)), prompts[1]);
        Assert.Equal(prompts[0], prompts[2]);
    }

    [Fact]
    public void ChatRefusesATurnThatNoLongerFitsAndCarriesOn()
    {
        var small = new ScriptedModel(_model.Script, _tokenizer.VocabSize, maxSequenceLength: 12);
        var (code, output, error) = Run(ChatCommand.Create((_, _) => small, () => new StringReader("a long question that does not fit\n/reset\n/exit\n")), "chat", "--model", _dir);
        Assert.Equal(0, code);
        Assert.Contains("/reset", error);
        Assert.Contains("(history cleared)", output);
        Assert.Empty(small.Appends);
    }

    [Fact]
    public void ChatEndsAtEndOfInput()
    {
        var (code, output, _) = Run(ChatCommand.Create((_, _) => _model, () => new StringReader("Hi\n")), "chat", "--model", _dir);
        Assert.Equal(0, code);
        Assert.Equal("> Hello world\n> ", output.ReplaceLineEndings("\n"));
    }
}
