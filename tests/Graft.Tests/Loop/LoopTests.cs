using System.ClientModel;
using System.CommandLine;
using System.Text.Json;
using Graft.Cli;
using Graft.Data;
using Graft.Demo;
using Graft.Eval;
using Graft.Models.Generation;
using Graft.Serving;
using Graft.Tests.Plugins;
using Graft.Tests.Support;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using AiChatRole = Microsoft.Extensions.AI.ChatRole;

namespace Graft.Tests.Loop;

/// <summary>
/// The loop a user runs: the demo's base and tower, shapes scenes generated, every design trained for a few steps with
/// `graft train` (its preset), all five plug-ins served together by one engine with no --vision (each finds the tower its
/// plugin.json records, MMA's among them). Made once for the loop tests.
/// </summary>
public sealed class LoopFixture : IAsyncLifetime
{
    public static readonly IReadOnlyList<string> Designs = ["bridge", "mma", "inner-adaptor", "wings", "visual-experts"];

    /// <summary>Greedy answer length everywhere (eval's --max-new-tokens, chat's and generate's --max-tokens, the server's max_tokens).</summary>
    public const int AnswerTokens = 8;

    private readonly TempFolder _temp = new();

    public string Base { get; private set; } = "";
    public string Tower { get; private set; } = "";
    public string Train { get; private set; } = "";
    public string Test { get; private set; } = "";
    public IReadOnlyDictionary<string, string> Plugins { get; private set; } = new Dictionary<string, string>();
    public ChatEngine Engine { get; private set; } = null!;
    public ChatServer Server { get; private set; } = null!;

    public string Sub(string name) => _temp.Sub(name);

    public static (int Code, string Output, string Error) Cli(string? input, params string[] args) =>
        CliRunner.Run([
            TrainCommand.Create(() => CancellationToken.None), EvalCommand.Create(), GenerateCommand.Create(Graft.Models.Generation.DecoderSequenceModel.Load),
            ChatCommand.Create(Graft.Models.Generation.DecoderSequenceModel.Load, () => new StringReader(input ?? "")),
        ], args);

    public async Task InitializeAsync()
    {
        var assets = DemoAssetFolders.Open(Path.Combine(AppContext.BaseDirectory, "DemoAssets"));
        Base = assets.Base;
        Tower = assets.Vision;
        Train = _temp.Sub("shapes-train");
        Test = _temp.Sub("shapes-test");
        ShapesWorld.Write(new DataOutput(Train, force: false, ShapesWorld.OutputNames), 16, seed: 11, assets.Shapes);
        ShapesWorld.Write(new DataOutput(Test, force: false, ShapesWorld.OutputNames), 2, seed: 12, assets.Shapes);
        string text = _temp.Sub("text");
        TextWorld.Write(new DataOutput(text, force: false, TextWorld.OutputNames), 4, seed: 13);
        var plugins = new Dictionary<string, string>();
        foreach (var design in Designs)
        {
            string run = _temp.Sub("runs/" + design);
            // MMA and WINGS mix text into training (their presets' text share): Alpaca, as a conversation in the base's template.
            string[] data = design is "mma" or "wings" ? ["--data", "shapes:" + Train, "--data", $"alpaca:{text}/alpaca.json"] : ["--data", "shapes:" + Train];
            string[] vision = design == "visual-experts" ? [] : ["--vision", Tower];
            var (code, _, error) = Cli(null, ["train", "--recipe", "preset:" + design, "--model", Base, .. vision, .. data, "--out", run, "--steps", "3", "--seed", "1"]);
            Assert.True(code == 0, $"{design}: {error}");
            plugins[design] = Path.Combine(run, design + ".graft");
        }
        Plugins = plugins;
        // As `graft serve --model BASE --plugin NAME=... ` opens it: every tower found from its plug-in's plugin.json.
        Engine = ChatEngine.Open(Base, Designs.Select(d => KeyValuePair.Create(d, plugins[d])).ToList(), (Graft.Plugins.VisionOverrides?)null);
        Server = await ChatServer.StartAsync(Engine);
    }

    public async Task DisposeAsync()
    {
        if (Server is not null) await Server.DisposeAsync();
        if (Engine is not null) await Engine.DisposeAsync();
        _temp.Dispose();
    }
}

/// <summary>
/// A trained plug-in answers held-out image questions the same way wherever it is asked: `graft eval` (as it scored them),
/// `graft generate --chat`, `graft chat` driven through its standard input, the OpenAI-compatible server through the
/// official OpenAI client, and the in-process IChatClient all give the same answer text, from the same prompt tokens. One
/// case per design.
/// </summary>
public sealed class LoopTests(LoopFixture loop) : IClassFixture<LoopFixture>
{
    public static TheoryData<string> Designs => new(LoopFixture.Designs);

    /// <summary>An item of the held-out set: the conversation so far (gold answers as history), the question's image, and eval's answer and verdict.</summary>
    private sealed record Item(string Id, Conversation Conversation, int Turn, string Answer, string Expected, bool Correct);

    [Theory]
    [MemberData(nameof(Designs))]
    public async Task A_trained_plugin_answers_alike_in_eval_generate_chat_the_server_and_the_chat_client(string design)
    {
        string plugin = loop.Plugins[design];
        string answersFile = loop.Sub($"answers-{design}.jsonl");
        var (code, output, error) = LoopFixture.Cli(null, "eval", "--model", loop.Base, "--plugin", plugin, "--bench", "shapes:" + loop.Test,
            "--max-new-tokens", LoopFixture.AnswerTokens.ToString(), "--answers", answersFile, "--json", "--quiet");
        Assert.True(code == 0, error);
        using var scored = JsonDocument.Parse(output);
        var bench = scored.RootElement.GetProperty("benchmarks")[0];
        var conversations = LlavaReader.Read(Path.Combine(loop.Test, "llava.json"), Path.Combine(loop.Test, "images")).ToDictionary(c => c.Id);
        var items = File.ReadAllLines(answersFile).Select(line =>
        {
            var e = JsonDocument.Parse(line).RootElement;
            string id = e.GetProperty("id").GetString()!;
            int hash = id.LastIndexOf('#');
            return new Item(id, conversations[id[..hash]], int.Parse(id[(hash + 1)..]), e.GetProperty("answer").GetString()!,
                e.GetProperty("expected").GetString()!, e.GetProperty("correct").GetBoolean());
        }).ToList();
        Assert.Equal(bench.GetProperty("overall").GetProperty("total").GetInt32(), items.Count);
        Assert.Equal(bench.GetProperty("overall").GetProperty("correct").GetInt32(), items.Count(i => i.Correct));
        Assert.True(items.Count >= 4);
        var first = items.Where(i => i.Turn == 1).ToList();
        Assert.Equal(conversations.Count, first.Count);

        // generate --chat: one user turn with the image, as the first question of each held-out conversation.
        foreach (var item in first)
        {
            var (image, question) = FirstQuestion(item.Conversation);
            var generated = LoopFixture.Cli(null, "generate", "--model", loop.Base, "--plugin", plugin, "--chat", "--image", image, "--prompt", question,
                "--max-tokens", LoopFixture.AnswerTokens.ToString());
            Assert.True(generated.Code == 0, generated.Error);
            Assert.Equal(item.Answer + "\n", generated.Output);
        }

        // chat, driven through its standard input: each question with its image, the history reset in between.
        string script = string.Concat(first.Select(item =>
        {
            var (image, question) = FirstQuestion(item.Conversation);
            return $"/image {image}\n{question}\n/reset\n";
        })) + "/exit\n";
        var chat = LoopFixture.Cli(script, "chat", "--model", loop.Base, "--plugin", plugin, "--max-tokens", LoopFixture.AnswerTokens.ToString());
        Assert.True(chat.Code == 0, chat.Error);
        Assert.Contains("chat template plain", chat.Output);
        Assert.Equal(first.Select(i => i.Answer), ChatAnswers(chat.Output));

        // The server (official OpenAI client) and the IChatClient, every item, the earlier turns' gold answers as history.
        var client = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(loop.Server.Address, "v1") })
            .GetChatClient(loop.Engine.BaseName + "+" + design);
        using var inProcess = new GraftChatClient(loop.Engine);
        foreach (var item in items)
        {
            var served = (await client.CompleteChatAsync(OpenAiMessages(item), new ChatCompletionOptions { MaxOutputTokenCount = LoopFixture.AnswerTokens, Temperature = 0f })).Value;
            Assert.Equal(item.Answer, served.Content.Count == 0 ? "" : served.Content[0].Text);
            var response = await inProcess.GetResponseAsync(AiMessages(item),
                new ChatOptions { ModelId = loop.Engine.BaseName + "+" + design, MaxOutputTokens = LoopFixture.AnswerTokens, Temperature = 0f });
            Assert.Equal(item.Answer, response.Text);
            Assert.Equal(served.Usage.InputTokenCount, response.Usage!.InputTokenCount);
            Assert.Equal(served.Usage.OutputTokenCount, response.Usage.OutputTokenCount);
            // Scored as eval scored it: the first line of that answer against the gold one.
            Assert.Equal(item.Correct, AnswerParsing.ExactMatch(AnswerParsing.FirstLine(response.Text), item.Expected));
        }
    }

    /// <summary>The first question's image file and its text without the image placeholder (chat, generate and the server attach the image).</summary>
    private static (string Image, string Question) FirstQuestion(Conversation conversation) =>
        (conversation.ImagePaths.Single(), conversation.Turns[0].Text.Replace(PromptFormats.ImagePlaceholder + "\n", "", StringComparison.Ordinal));

    /// <summary>The answers chat printed, in order: what follows each prompt "> " that is not one of its notices.</summary>
    private static List<string> ChatAnswers(string output)
    {
        string text = output.ReplaceLineEndings("\n");
        text = text[(text.IndexOf('\n', text.IndexOf('\n') + 1) + 1)..];   // after the two-line banner
        return text.Split("> ").Where(s => s.Length > 0 && !s.StartsWith("(image ", StringComparison.Ordinal) && s != "(history cleared)\n")
            .Select(s => s[..^1]).ToList();
    }

    private static List<OpenAI.Chat.ChatMessage> OpenAiMessages(Item item)
    {
        var messages = new List<OpenAI.Chat.ChatMessage>();
        for (int t = 0; t < item.Turn; t++)
        {
            var turn = item.Conversation.Turns[t];
            if (turn.Role == Role.Assistant) messages.Add(new AssistantChatMessage(turn.Text));
            else if (t == 0)
            {
                var (image, question) = FirstQuestion(item.Conversation);
                messages.Add(new UserChatMessage(ChatMessageContentPart.CreateTextPart(question),
                    ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(File.ReadAllBytes(image)), "image/png")));
            }
            else messages.Add(new UserChatMessage(turn.Text));
        }
        return messages;
    }

    private static List<AiChatMessage> AiMessages(Item item)
    {
        var messages = new List<AiChatMessage>();
        for (int t = 0; t < item.Turn; t++)
        {
            var turn = item.Conversation.Turns[t];
            if (turn.Role == Role.Assistant) messages.Add(new AiChatMessage(AiChatRole.Assistant, turn.Text));
            else if (t == 0)
            {
                var (image, question) = FirstQuestion(item.Conversation);
                messages.Add(new AiChatMessage(AiChatRole.User, [new TextContent(question), new DataContent(File.ReadAllBytes(image), "image/png")]));
            }
            else messages.Add(new AiChatMessage(AiChatRole.User, turn.Text));
        }
        return messages;
    }
}
