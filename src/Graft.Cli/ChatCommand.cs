using System.CommandLine;
using Graft.Models.Chat;
using Graft.Models.Generation;
using Graft.Models.Tokenization;

namespace Graft.Cli;

/// <summary>
/// `graft chat --model DIR [--template NAME]`: an interactive conversation, answers streamed as they come.
/// `/reset` forgets the history, `/exit` or end of input quits. Each turn renders the whole history through
/// the chat template and generates from it with the checkpoint's generation_config.json defaults.
/// </summary>
public static class ChatCommand
{
    private const int MaxAnswerTokens = 1024;

    /// <summary>The longest conversation (in tokens) a session holds; the model's own limit may be lower.</summary>
    private const int ContextTokens = 4096;

    /// <param name="loadModel">Opens the model of a Hugging Face folder for sequences of up to the given number of
    /// tokens (fewer when the model's own limit is lower); disposed after use when disposable.</param>
    /// <param name="input">Where the user's lines come from (standard input by default).</param>
    public static Command Create(Func<string, int, ITokenSequenceModel> loadModel, Func<TextReader>? input = null)
    {
        ArgumentNullException.ThrowIfNull(loadModel);
        var model = new Option<string>("--model") { Description = "Hugging Face model folder", Required = true };
        var template = new Option<string?>("--template") { Description = $"Chat template ({string.Join(", ", ChatTemplates.Names)}); default: the checkpoint's" };
        var command = new Command("chat", "Chat with a model interactively (/reset clears the history, /exit quits)");
        command.Options.Add(model);
        command.Options.Add(template);
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
                var sequenceModel = loadModel(folder, ContextTokens);
                try
                {
                    var generator = new TextGenerator(tokenizer, sequenceModel, config.EosTokenIds);
                    await Converse(reader, output, error, tokenizer, chatTemplate, generator, config, cancellationToken);
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
            catch (Exception e) when (GenerateCommand.IsUserError(e))
            {
                await error.WriteLineAsync("graft chat: " + e.Message);
                return 1;
            }
        });
        return command;
    }

    private static async Task Converse(TextReader reader, TextWriter output, TextWriter error, Tokenizer tokenizer, ChatTemplate template,
        TextGenerator generator, GenerationConfig config, CancellationToken cancellationToken)
    {
        var history = new List<ChatMessage>();
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
                await output.WriteLineAsync("(history cleared)");
                continue;
            }
            if (line.Trim().Length == 0) continue;

            history.Add(ChatMessage.User(line));
            var ids = template.Encode(tokenizer, history, addGenerationPrompt: true);
            // A new seed per turn, so repeating a question need not repeat the answer, yet a session replays exactly.
            var options = config.ToSamplingOptions(MaxAnswerTokens) with { Seed = turn++ };
            GenerationResult? result = null;
            try
            {
                await foreach (var piece in generator.GenerateAsync(ids, options, r => result = r, cancellationToken))
                {
                    await output.WriteAsync(piece);
                    await output.FlushAsync(CancellationToken.None);
                }
            }
            catch (ArgumentException e)
            {
                history.RemoveAt(history.Count - 1);
                await error.WriteLineAsync($"graft chat: {e.Message} (use /reset to start over)");
                continue;
            }
            await output.WriteLineAsync();
            history.Add(ChatMessage.Assistant(result!.Text));
        }
    }
}
