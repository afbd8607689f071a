using System.CommandLine;
using System.Diagnostics;
using Graft.Models.Chat;
using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Models.Tokenization;
using Graft.Plugins;

namespace Graft.Cli;

/// <summary>
/// `graft generate --model DIR --prompt TEXT [--max-tokens N] [--temperature T] [--seed S] [--chat] [--top-k K]
/// [--top-p P] [--template NAME] [--system TEXT]`: streams the completion to stdout and a one-line summary to stderr.
/// Sampling defaults come from the checkpoint's generation_config.json (greedy unless it sets do_sample); flags override
/// them. --chat wraps the prompt as one user turn of the chat template (a plug-in's: the one it was trained in; else the
/// checkpoint's); --template names the template and implies --chat. With --plugin NAME.graft the request goes through a
/// host holding the base and that plug-in: each --image FILE goes to the prompt's next `&lt;image&gt;` placeholder (before the
/// text when it has none), placed as the design places images; the plug-in's tower is the folder its plugin.json records
/// unless --vision DIR names another. Without --image the base alone runs, token for token as without --plugin; a
/// placeholder without an image is an error.
/// </summary>
public static class GenerateCommand
{
    /// <summary>The name the one plug-in of `generate` and `chat` is attached under.</summary>
    internal const string PluginName = "plugin";

    /// <param name="loadModel">Opens the model of a Hugging Face folder for sequences of up to the given number of
    /// tokens (fewer when the model's own limit is lower); disposed after use when disposable.</param>
    public static Command Create(Func<string, int, ITokenSequenceModel> loadModel)
    {
        ArgumentNullException.ThrowIfNull(loadModel);
        var model = new Option<string>("--model") { Description = "Hugging Face model folder", Required = true };
        var prompt = new Option<string>("--prompt") { Description = "Prompt text", Required = true };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens to generate", DefaultValueFactory = _ => 256 };
        var temperature = new Option<float?>("--temperature") { Description = "0 = greedy (default: the checkpoint's generation_config.json)" };
        var seed = new Option<int>("--seed") { Description = "Seed of the sampler", DefaultValueFactory = _ => 0 };
        var chat = new Option<bool>("--chat") { Description = "Wrap the prompt in the checkpoint's chat template as a user turn" };
        var topK = new Option<int?>("--top-k") { Description = "Keep the K most likely tokens (0 = off)" };
        var topP = new Option<float?>("--top-p") { Description = "Nucleus sampling threshold in (0, 1] (1 = off)" };
        var template = new Option<string?>("--template") { Description = $"Chat template ({string.Join(", ", ChatTemplates.Names)}); implies --chat; default: the plug-in's, else the checkpoint's" };
        var system = new Option<string?>("--system") { Description = "A system message before the prompt; implies --chat" };
        var plugin = new Option<string?>("--plugin") { Description = "A plug-in folder (NAME.graft) for this model" };
        var image = new Option<string[]>("--image") { Description = "An image for the plug-in (PNG, JPEG, PNM), repeatable: each goes to the next <image> in the prompt, or before the text when it has none", AllowMultipleArgumentsPerToken = false };
        var vision = new Option<string?>("--vision") { Description = "The plug-in's CLIP/SigLIP folder, instead of the one its plugin.json records (checked against its fingerprint)" };
        var command = new Command("generate", "Generate a completion, streamed to stdout");
        foreach (var option in new Option[] { model, prompt, maxTokens, temperature, seed, chat, topK, topP, template, system, plugin, image, vision }) command.Options.Add(option);
        command.SetAction(async (parseResult, cancellationToken) =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var error = parseResult.InvocationConfiguration.Error;
            try
            {
                var folder = parseResult.GetRequiredValue(model);
                var tokenizer = Tokenizer.FromFolder(folder);
                var config = GenerationConfig.FromFolder(folder);
                var options = config.ToSamplingOptions(parseResult.GetValue(maxTokens)) with { Seed = parseResult.GetValue(seed) };
                if (parseResult.GetValue(temperature) is { } t) options = options with { Temperature = t };
                if (parseResult.GetValue(topK) is { } k) options = options with { TopK = k };
                if (parseResult.GetValue(topP) is { } p) options = options with { TopP = p };
                options.Validate();
                var text = parseResult.GetRequiredValue(prompt);
                var templateName = parseResult.GetValue(template);
                var systemText = parseResult.GetValue(system);
                bool asChat = parseResult.GetValue(chat) || templateName is not null || systemText is not null;
                var pluginFolder = parseResult.GetValue(plugin);
                var imagePaths = parseResult.GetValue(image) ?? [];
                ChatMessage[] messages = systemText is null ? [ChatMessage.User(text)] : [ChatMessage.System(systemText), ChatMessage.User(text)];
                if (pluginFolder is null)
                {
                    if (imagePaths.Length > 0) throw new ArgumentException("--image needs a --plugin to turn it into embeddings");
                    if (parseResult.GetValue(vision) is not null) throw new ArgumentException("--vision needs a --plugin that uses it");
                    if (text.Contains(PromptLayout.Placeholder, StringComparison.Ordinal))
                        throw new ArgumentException($"the prompt holds '{PromptLayout.Placeholder}', but no image was given; images need a --plugin and --image FILE");
                    int[] ids = asChat
                        ? ChatTemplates.ForCheckpoint(folder, tokenizer, templateName).Encode(tokenizer, messages, addGenerationPrompt: true)
                        : tokenizer.Encode(text);
                    var sequenceModel = loadModel(folder, ids.Length + options.MaxTokens);
                    try
                    {
                        await Stream(new TextGenerator(tokenizer, sequenceModel, config.EosTokenIds), ids, options, output, error, cancellationToken);
                    }
                    finally
                    {
                        (sequenceModel as IDisposable)?.Dispose();
                    }
                    return 0;
                }

                if (imagePaths.Length == 0 && text.Contains(PromptLayout.Placeholder, StringComparison.Ordinal))
                    throw new ArgumentException($"the prompt holds '{PromptLayout.Placeholder}', but no image was given; give one with --image FILE, or leave the placeholder out");
                RgbImage[] images = imagePaths.Select(path => ImageDecoder.Load(path)).ToArray();
                // No session-wide limit: the request sizes its cache to the prompt and --max-tokens, capped as the base is.
                using var deployment = PluginDeployment.Open(folder, [KeyValuePair.Create(PluginName, pluginFolder)], parseResult.GetValue(vision));
                var attached = deployment.Host.Plugin(PluginName);
                var session = new PluginSession(deployment.Host, PluginName, int.MaxValue);
                var request = session.Request(asChat
                    ? PluginDeployment.ChatPrompt(attached, tokenizer, TemplateFor(folder, tokenizer, templateName, attached), messages,
                        messages.Select(m => m.Role == ChatRole.User ? images : (IReadOnlyList<RgbImage>)[]).ToArray())
                    : PluginDeployment.PlainPrompt(attached, tokenizer, text, images), options.MaxTokens);
                await Stream(new TextGenerator(tokenizer, request, config.EosTokenIds), request.PromptIds, options, output, error, cancellationToken);
                return 0;
            }
            catch (OperationCanceledException)
            {
                await error.WriteLineAsync("graft generate: cancelled");
                return 130;
            }
            catch (Exception e) when (IsUserError(e) || PluginDeployment.IsUserError(e))
            {
                await error.WriteLineAsync("graft generate: " + e.Message);
                return 1;
            }
        });
        return command;
    }

    private static async Task Stream(TextGenerator generator, IReadOnlyList<int> ids, SamplingOptions options, TextWriter output, TextWriter error,
        CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        GenerationResult? result = null;
        await foreach (var piece in generator.GenerateAsync(ids, options, r => result = r, cancellationToken))
        {
            await output.WriteAsync(piece);
            await output.FlushAsync(CancellationToken.None);
        }
        await output.WriteLineAsync();
        await error.WriteLineAsync(Summary(result!, clock.Elapsed));
    }

    /// <summary>
    /// The chat template a plug-in's requests are laid out with: the one it was trained in (plugin.json), else the checkpoint's
    /// (or <paramref name="overrideName"/>). Naming another template than the plug-in's is refused: it would ask the plug-in
    /// in a format it never learned.
    /// </summary>
    internal static ChatTemplate TemplateFor(string folder, Tokenizer tokenizer, string? overrideName, IPlugin plugin)
    {
        if (plugin.Manifest.ChatTemplate is not { } recorded) return ChatTemplates.ForCheckpoint(folder, tokenizer, overrideName);
        if (overrideName is not null && !string.Equals(overrideName, recorded.Name, StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"--template {overrideName}: the plug-in was trained in the {recorded.Name} chat template and is asked in it; leave --template out");
        return ChatTemplates.FromRecord(recorded.Name, recorded.Source, tokenizer.BosToken, tokenizer.EosToken);
    }

    internal static string Summary(GenerationResult result, TimeSpan elapsed) =>
        $"[{result.PromptTokens} prompt + {result.CompletionTokens} completion tokens, finish: {result.FinishReason}, "
        + $"{result.CompletionTokens / Math.Max(elapsed.TotalSeconds, 1e-9):F1} tokens/s]";

    /// <summary>Bad input (files, formats, options, a conversation the template refuses), reported without a stack trace.</summary>
    internal static bool IsUserError(Exception e) =>
        e is IOException or FormatException or NotSupportedException or UnauthorizedAccessException or ArgumentException or InvalidOperationException;
}
