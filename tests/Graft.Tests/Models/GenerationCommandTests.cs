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

    /// <summary>What chat printed after its two-line banner (which names the model and the template).</summary>
    private static string Conversation(string output)
    {
        var text = output.ReplaceLineEndings("\n");
        Assert.StartsWith("graft chat: model ", text);
        Assert.Contains("chat template chatml", text.Split('\n')[0]);
        int second = text.IndexOf('\n', text.IndexOf('\n') + 1);
        return text[(second + 1)..];
    }

    [Fact]
    public void ChatKeepsHistoryUntilReset()
    {
        var command = ChatCommand.Create((_, _) => _model, () => new StringReader("Hi\nAgain\n/reset\nHi\n/exit\nnever read\n"));
        var (code, output, error) = Run(command, "chat", "--model", _dir);
        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Equal("> Hello world\n> Hello world\n> (history cleared)\n> Hello world\n> ", Conversation(output));

        var prompts = _model.Appends.Where(a => a.Length > 1).ToList();
        Assert.Equal(3, prompts.Count);
        var template = new ChatMLTemplate();
        Assert.Equal(_tokenizer.Encode(template.Render([ChatMessage.User("Hi")], true)), prompts[0]);
        Assert.Equal(_tokenizer.Encode(template.Render(
            [ChatMessage.User("Hi"), ChatMessage.Assistant("Hello world"), ChatMessage.User("Again")], true)), prompts[1]);
        Assert.Equal(prompts[0], prompts[2]);
    }

    [Fact]
    public void ChatRefusesAMessageThatCannotFitAndCarriesOn()
    {
        var small = new ScriptedModel(_model.Script, _tokenizer.VocabSize, maxSequenceLength: 12);
        var (code, output, error) = Run(ChatCommand.Create((_, _) => small, () => new StringReader("a long question that does not fit\n/reset\n/exit\n")), "chat", "--model", _dir);
        Assert.Equal(0, code);
        Assert.Contains("graft chat: the message takes", error);
        Assert.Contains("send a shorter one", error);
        Assert.Single(error.TrimEnd().Split('\n'));
        Assert.Contains("(history cleared)", output);
        Assert.Empty(small.Appends);
    }

    /// <summary>When the history outgrows the context, the oldest exchange goes (with a notice) and the answer still comes.</summary>
    [Fact]
    public void ChatDropsTheOldestTurnsWhenTheHistoryOutgrowsTheContext()
    {
        int one = _tokenizer.Encode(new ChatMLTemplate().Render([ChatMessage.User("Hi")], true)).Length;
        int two = _tokenizer.Encode(new ChatMLTemplate().Render([ChatMessage.User("Hi"), ChatMessage.Assistant("Hello world"), ChatMessage.User("Hi")], true)).Length;
        // Room for one exchange and an answer, not two: the second question must drop the first exchange.
        int context = one + 4 * 3;
        Assert.True(two + context / 4 > context, "the test's context must not hold two exchanges");
        var small = new ScriptedModel(_model.Script, _tokenizer.VocabSize, maxSequenceLength: context);
        var (code, output, error) = Run(ChatCommand.Create((_, _) => small, () => new StringReader("Hi\nHi\n/exit\n")), "chat", "--model", _dir, "--max-tokens", "3");
        Assert.Equal(0, code);
        Assert.Equal($"(dropped the oldest 2 messages to fit the context of {context} tokens)\n", error.ReplaceLineEndings("\n"));
        var prompts = small.Appends.Where(a => a.Length > 1).ToList();
        Assert.Equal(2, prompts.Count);
        Assert.Equal(prompts[0], prompts[1]);
        Assert.Equal("> Hello world\n> Hello world\n> ", Conversation(output));
    }

    [Fact]
    public void ChatEndsAtEndOfInput()
    {
        var (code, output, _) = Run(ChatCommand.Create((_, _) => _model, () => new StringReader("Hi\n")), "chat", "--model", _dir);
        Assert.Equal(0, code);
        Assert.Equal("> Hello world\n> ", Conversation(output));
    }

    /// <summary>--system opens the conversation and survives /reset; --seed, --temperature and --top-p reach the sampler; /help lists the commands.</summary>
    [Fact]
    public void ChatTakesASystemMessageSamplingOptionsAndHelp()
    {
        var (code, output, error) = Run(ChatCommand.Create((_, _) => _model, () => new StringReader("/help\nHi\n/reset\nHi\n/nonsense\n")),
            "chat", "--model", _dir, "--system", "Be brief.", "--temperature", "0.5", "--top-p", "0.9", "--seed", "7", "--max-tokens", "2");
        Assert.Equal(0, code);
        var text = Conversation(output);
        Assert.Contains("/image PATH", text);
        Assert.Contains("/reset", text);
        Assert.Contains("Ctrl-C", text);
        Assert.Contains("graft chat: unknown command /nonsense", error);
        var prompts = _model.Appends.Where(a => a.Length > 1).ToList();
        var expected = _tokenizer.Encode(new ChatMLTemplate().Render([ChatMessage.System("Be brief."), ChatMessage.User("Hi")], true));
        Assert.Equal([expected, expected], prompts);
        // --max-tokens 2: each answer stops after its second token, which is never fed back (one single-token step per answer).
        Assert.Equal(2, _model.Appends.Count(a => a.Length == 1));
        Assert.Contains("Hello world", text);
    }

    /// <summary>
    /// Ctrl-C while an answer streams stops it and returns to the prompt (the partial answer stays in the history); at the
    /// prompt, one Ctrl-C asks for another, and the second quits.
    /// </summary>
    [Fact]
    public void ChatStopsAnAnswerOnCtrlCAndQuitsOnTwoAtThePrompt()
    {
        var interrupts = new ChatInterrupts();
        var slow = new ScriptedModel([.. _answer, .. _answer, .. _answer, _tokenizer.TokenToId("<|endoftext|>")!.Value], _tokenizer.VocabSize);
        var output = new InterruptingWriter(interrupts);
        var reader = new InterruptingReader(["Hi", "Again"], interrupts);
        var root = new RootCommand();
        root.Subcommands.Add(ChatCommand.Create((_, _) => slow, () => reader, interrupts));
        var error = new StringWriter();
        int code = root.Parse(["chat", "--model", _dir]).Invoke(new InvocationConfiguration { Output = output, Error = error });
        Assert.Equal(0, code);
        var text = Conversation(output.ToString());
        // The first answer stopped after its first piece; the second question saw that piece as the answer.
        Assert.StartsWith("> " + _tokenizer.Decode(_answer[..1]) + " (stopped)\n> ", text);
        var prompts = slow.Appends.Where(a => a.Length > 1).ToList();
        Assert.Equal(_tokenizer.Encode(new ChatMLTemplate().Render(
            [ChatMessage.User("Hi"), ChatMessage.Assistant(_tokenizer.Decode(_answer[..1])), ChatMessage.User("Again")], true)), prompts[1]);
        Assert.Contains("(Ctrl-C again to quit, or /exit)", error.ToString());
        Assert.True(reader.Exhausted);
    }

    /// <summary>Raises Ctrl-C when the first answer's first piece is written.</summary>
    private sealed class InterruptingWriter(ChatInterrupts interrupts) : StringWriter
    {
        private bool _raised;

        public override Task WriteAsync(string? value)
        {
            var written = base.WriteAsync(value);
            if (!_raised && value is { Length: > 0 } && value != "> " && ToString().Contains("> ", StringComparison.Ordinal))
            {
                _raised = true;
                Assert.True(interrupts.Raise());
            }
            return written;
        }
    }

    /// <summary>Gives its lines; after the last, Ctrl-C twice at the prompt (the first is answered with a hint, the second quits).</summary>
    private sealed class InterruptingReader(string[] lines, ChatInterrupts interrupts) : TextReader
    {
        private int _next;

        public bool Exhausted { get; private set; }

        public override ValueTask<string?> ReadLineAsync(CancellationToken cancellationToken)
        {
            if (_next < lines.Length) return ValueTask.FromResult<string?>(lines[_next++]);
            Exhausted = true;
            Assert.True(interrupts.Raise());
            Assert.True(interrupts.Raise());
            cancellationToken.ThrowIfCancellationRequested();
            return ValueTask.FromResult<string?>("never answered");
        }
    }
}
