using System.CommandLine;
using Graft.Models.Chat;
using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Models.Tokenization;
using Graft.Plugins;

namespace Graft.Cli;

/// <summary>
/// `graft chat --model DIR [--template NAME] [--plugin NAME.graft [--vision DIR]]`: an interactive conversation, answers
/// streamed as they come. `/reset` forgets the history, `/exit` or end of input quits, and with a plug-in `/image PATH`
/// attaches an image to the next user message (placed at the design's placeholder, or before its text). Each turn
/// renders the whole history, images included, through the chat template and generates from it with the checkpoint's
/// generation_config.json defaults; a conversation without images runs on the base alone.
/// </summary>
public static class ChatCommand
{
    private const int MaxAnswerTokens = 1024;

    /// <summary>The longest conversation (in tokens) a session holds; the model's own limit may be lower.</summary>
    private const int ContextTokens = 4096;

    /// <summary>The model and prompt ids for a conversation: user and assistant messages, and the images of each.</summary>
    private delegate (ITokenSequenceModel Model, IReadOnlyList<int> Ids) Prompter(IReadOnlyList<ChatMessage> history, IReadOnlyList<IReadOnlyList<RgbImage>> images);

    /// <param name="loadModel">Opens the model of a Hugging Face folder for sequences of up to the given number of
    /// tokens (fewer when the model's own limit is lower); disposed after use when disposable.</param>
    /// <param name="input">Where the user's lines come from (standard input by default).</param>
    public static Command Create(Func<string, int, ITokenSequenceModel> loadModel, Func<TextReader>? input = null)
    {
        ArgumentNullException.ThrowIfNull(loadModel);
        var model = new Option<string>("--model") { Description = "Hugging Face model folder", Required = true };
        var template = new Option<string?>("--template") { Description = $"Chat template ({string.Join(", ", ChatTemplates.Names)}); default: the checkpoint's" };
        var plugin = new Option<string?>("--plugin") { Description = "A plug-in folder (NAME.graft) for this model; /image PATH then attaches an image" };
        var vision = new Option<string?>("--vision") { Description = "The CLIP/SigLIP folder the plug-in was made with, for plug-ins that need a tower" };
        var command = new Command("chat", "Chat with a model interactively (/reset clears the history, /exit quits, /image PATH with a plug-in)");
        foreach (var option in new Option[] { model, template, plugin, vision }) command.Options.Add(option);
        command.SetAction(async (parseResult, cancellationToken) =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var error = parseResult.InvocationConfiguration.Error;
            var reader = input?.Invoke() ?? Console.In;
            try
            {
                var folder = parseResult.GetRequiredValue(model);
                var tokenizer = Tokenizer.FromFolder(folder);
                var chatTemplate = ChatTemplates.ForCheckpoint(folder, tokenizer, parseResult.GetValue(template));
                var config = GenerationConfig.FromFolder(folder);
                if (parseResult.GetValue(plugin) is { } pluginFolder)
                {
                    using var deployment = PluginDeployment.Open(folder, [KeyValuePair.Create(GenerateCommand.PluginName, pluginFolder)], parseResult.GetValue(vision));
                    var session = new PluginSession(deployment.Host, GenerateCommand.PluginName, ContextTokens);
                    await Converse(reader, output, error, tokenizer, config, acceptsImages: true, (history, images) =>
                    {
                        var request = session.Request(PluginDeployment.ChatPrompt(deployment.Host.Plugin(GenerateCommand.PluginName), tokenizer, chatTemplate, history, images));
                        return (request, request.PromptIds);
                    }, cancellationToken);
                    return 0;
                }
                if (parseResult.GetValue(vision) is not null) throw new ArgumentException("--vision needs a --plugin that uses it");
                var sequenceModel = loadModel(folder, ContextTokens);
                try
                {
                    await Converse(reader, output, error, tokenizer, config, acceptsImages: false,
                        (history, _) => (sequenceModel, chatTemplate.Encode(tokenizer, history, addGenerationPrompt: true)), cancellationToken);
                }
                finally
                {
                    (sequenceModel as IDisposable)?.Dispose();
                }
                return 0;
            }
            catch (OperationCanceledException)
            {
                await error.WriteLineAsync("graft chat: cancelled");
                return 130;
            }
            catch (Exception e) when (GenerateCommand.IsUserError(e) || PluginDeployment.IsUserError(e))
            {
                await error.WriteLineAsync("graft chat: " + e.Message);
                return 1;
            }
        });
        return command;
    }

    private static async Task Converse(TextReader reader, TextWriter output, TextWriter error, Tokenizer tokenizer, GenerationConfig config,
        bool acceptsImages, Prompter prompter, CancellationToken cancellationToken)
    {
        var history = new List<ChatMessage>();
        var images = new List<IReadOnlyList<RgbImage>>();
        var pending = new List<RgbImage>();
        int turn = 0;
        while (true)
        {
            await output.WriteAsync("> ");
            await output.FlushAsync(CancellationToken.None);
            var line = await reader.ReadLineAsync(cancellationToken);
            if (line is null || line.Trim() == "/exit") return;
            if (line.Trim() == "/reset")
            {
                history.Clear();
                images.Clear();
                pending.Clear();
                await output.WriteLineAsync("(history cleared)");
                continue;
            }
            if (line.TrimStart().StartsWith("/image", StringComparison.Ordinal) && (line.Trim().Length == 6 || char.IsWhiteSpace(line.TrimStart()[6])))
            {
                await Attach(line.Trim()[6..].Trim(), acceptsImages, pending, output, error);
                continue;
            }
            if (line.Trim().Length == 0) continue;

            history.Add(ChatMessage.User(line));
            images.Add(pending.ToArray());
            pending.Clear();
            // A new seed per turn, so repeating a question need not repeat the answer, yet a session replays exactly.
            var options = config.ToSamplingOptions(MaxAnswerTokens) with { Seed = turn++ };
            GenerationResult? result = null;
            try
            {
                var (model, ids) = prompter(history, images);
                var generator = new TextGenerator(tokenizer, model, config.EosTokenIds);
                await foreach (var piece in generator.GenerateAsync(ids, options, r => result = r, cancellationToken))
                {
                    await output.WriteAsync(piece);
                    await output.FlushAsync(CancellationToken.None);
                }
            }
            catch (ArgumentException e)
            {
                history.RemoveAt(history.Count - 1);
                images.RemoveAt(images.Count - 1);
                await error.WriteLineAsync($"graft chat: {e.Message} (use /reset to start over)");
                continue;
            }
            await output.WriteLineAsync();
            history.Add(ChatMessage.Assistant(result!.Text));
            images.Add([]);
        }
    }

    /// <summary>`/image PATH`: decodes the image now, so a bad file is reported at once and the conversation goes on.</summary>
    private static async Task Attach(string path, bool acceptsImages, List<RgbImage> pending, TextWriter output, TextWriter error)
    {
        if (!acceptsImages)
        {
            await error.WriteLineAsync("graft chat: /image needs a --plugin to turn images into embeddings");
            return;
        }
        if (path.Length == 0)
        {
            await error.WriteLineAsync("graft chat: /image needs a file: /image PATH");
            return;
        }
        try
        {
            pending.Add(ImageDecoder.Load(path));
            await output.WriteLineAsync($"(image {path} attached to your next message)");
        }
        catch (Exception e) when (e is ImageFormatException or IOException or UnauthorizedAccessException)
        {
            await error.WriteLineAsync($"graft chat: {e.Message}");
        }
    }
}
