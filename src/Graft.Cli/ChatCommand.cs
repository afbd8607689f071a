using System.CommandLine;
using System.Text;
using Graft.Models.Chat;
using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Models.Tokenization;
using Graft.Plugins;

namespace Graft.Cli;

/// <summary>
/// Where `graft chat` hears Ctrl-C: the console by default; tests raise it themselves. A handler returns whether it dealt
/// with the interrupt; when none did, the process ends as Ctrl-C normally ends it.
/// </summary>
public sealed class ChatInterrupts
{
    private Func<bool>? _handler;

    /// <summary>Ctrl-C on the console.</summary>
    public static ChatInterrupts Console()
    {
        var interrupts = new ChatInterrupts();
        System.Console.CancelKeyPress += (_, e) => e.Cancel = interrupts.Raise();
        return interrupts;
    }

    internal void Handle(Func<bool>? handler) => _handler = handler;

    /// <summary>One Ctrl-C; returns whether the chat dealt with it (false: the process should end).</summary>
    public bool Raise() => _handler?.Invoke() ?? false;
}

/// <summary>
/// `graft chat --model DIR [--plugin NAME.graft [--vision DIR]] [--template NAME] [--system TEXT] [--max-tokens N]
/// [--temperature T] [--top-p P] [--top-k K] [--seed S]`: an interactive conversation, answers streamed as they come. A
/// banner names the model, the plug-in and the chat template; `/help` lists the commands: `/image PATH` attaches an image
/// to the next message (placed as the plug-in's design places it), `/reset` forgets the history, `/exit` (or end of input,
/// or Ctrl-C twice at the prompt) quits; Ctrl-C during an answer stops it and returns to the prompt. A plug-in's
/// conversation is laid out in the chat template it was trained in, its tower found where its plugin.json says. When the
/// history no longer fits the context, the oldest turns are dropped, with a notice. Sampling defaults come from the
/// checkpoint's generation_config.json; turn t samples with seed S + t, so a session replays exactly.
/// </summary>
public static class ChatCommand
{
    /// <summary>The longest conversation (in tokens) a session holds; the model's own limit may be lower.</summary>
    private const int ContextTokens = 4096;

    private const string Help =
        "/image PATH  attach an image (PNG, JPEG, PNM) to your next message (with a plug-in)\n"
        + "/reset       forget the conversation (the --system message stays)\n"
        + "/help        this list\n"
        + "/exit        quit (also: end of input, or Ctrl-C twice at the prompt)\n"
        + "Ctrl-C while an answer streams stops it and returns to the prompt.";

    /// <summary>The model and prompt ids for a conversation: its messages, and the images of each.</summary>
    private delegate (ITokenSequenceModel Model, IReadOnlyList<int> Ids) Prompter(IReadOnlyList<ChatMessage> history, IReadOnlyList<IReadOnlyList<RgbImage>> images);

    /// <param name="loadModel">Opens the model of a Hugging Face folder for sequences of up to the given number of
    /// tokens (fewer when the model's own limit is lower); disposed after use when disposable.</param>
    /// <param name="input">Where the user's lines come from (standard input by default).</param>
    /// <param name="interrupts">Where Ctrl-C comes from (the console by default).</param>
    public static Command Create(Func<string, int, ITokenSequenceModel> loadModel, Func<TextReader>? input = null, ChatInterrupts? interrupts = null)
    {
        ArgumentNullException.ThrowIfNull(loadModel);
        var model = new Option<string>("--model") { Description = "Hugging Face model folder", Required = true };
        var template = new Option<string?>("--template") { Description = $"Chat template ({string.Join(", ", ChatTemplates.Names)}); default: the plug-in's (the one it was trained in), else the checkpoint's" };
        var plugin = new Option<string?>("--plugin") { Description = "A plug-in folder (NAME.graft) for this model; /image PATH then attaches an image" };
        var vision = new Option<string?>("--vision") { Description = "The plug-in's CLIP/SigLIP folder, instead of the one its plugin.json records (checked against its fingerprint)" };
        var system = new Option<string?>("--system") { Description = "A system message that opens the conversation" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens per answer", DefaultValueFactory = _ => 512 };
        var temperature = new Option<float?>("--temperature") { Description = "0 = greedy (default: the checkpoint's generation_config.json)" };
        var topP = new Option<float?>("--top-p") { Description = "Nucleus sampling threshold in (0, 1] (1 = off)" };
        var topK = new Option<int?>("--top-k") { Description = "Keep the K most likely tokens (0 = off)" };
        var seed = new Option<int>("--seed") { Description = "Seed of the sampler (answer t uses seed + t)", DefaultValueFactory = _ => 0 };
        var command = new Command("chat", "Chat with a model interactively (/help lists the commands)");
        foreach (var option in new Option[] { model, template, plugin, vision, system, maxTokens, temperature, topP, topK, seed }) command.Options.Add(option);
        command.SetAction(async (parseResult, cancellationToken) =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var error = parseResult.InvocationConfiguration.Error;
            var reader = input?.Invoke() ?? System.Console.In;
            try
            {
                var folder = parseResult.GetRequiredValue(model);
                var tokenizer = Tokenizer.FromFolder(folder);
                var config = GenerationConfig.FromFolder(folder);
                var options = config.ToSamplingOptions(parseResult.GetValue(maxTokens));
                if (parseResult.GetValue(temperature) is { } t) options = options with { Temperature = t };
                if (parseResult.GetValue(topP) is { } p) options = options with { TopP = p };
                if (parseResult.GetValue(topK) is { } k) options = options with { TopK = k };
                options.Validate();
                var session = new Session(reader, output, error, tokenizer, config, options, parseResult.GetValue(seed), parseResult.GetValue(system),
                    interrupts ?? (input is null ? ChatInterrupts.Console() : new ChatInterrupts()));
                if (parseResult.GetValue(plugin) is { } pluginFolder)
                {
                    using var deployment = PluginDeployment.Open(folder, [KeyValuePair.Create(GenerateCommand.PluginName, pluginFolder)], parseResult.GetValue(vision));
                    var attached = deployment.Host.Plugin(GenerateCommand.PluginName);
                    var chatTemplate = GenerateCommand.TemplateFor(folder, tokenizer, parseResult.GetValue(template), attached);
                    var requests = new PluginSession(deployment.Host, GenerateCommand.PluginName, ContextTokens);
                    await session.Banner(folder, $"plug-in {pluginFolder} ({Describe(attached)})", chatTemplate);
                    await session.Converse(requests.MaxSequenceLength, acceptsImages: attached.CanEncodePixels, (history, images) =>
                    {
                        var request = requests.Request(PluginDeployment.ChatPrompt(attached, tokenizer, chatTemplate, history, images));
                        return (request, request.PromptIds);
                    }, cancellationToken);
                    return 0;
                }
                if (parseResult.GetValue(vision) is not null) throw new ArgumentException("--vision needs a --plugin that uses it");
                var baseTemplate = ChatTemplates.ForCheckpoint(folder, tokenizer, parseResult.GetValue(template));
                var sequenceModel = loadModel(folder, ContextTokens);
                try
                {
                    await session.Banner(folder, "no plug-in", baseTemplate);
                    await session.Converse(sequenceModel.MaxSequenceLength, acceptsImages: false,
                        (history, _) => (sequenceModel, baseTemplate.Encode(tokenizer, history, addGenerationPrompt: true)), cancellationToken);
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

    private static string Describe(IPlugin plugin)
    {
        var vision = plugin.Manifest.Vision;
        string tower = vision is null ? "its own patch embedding"
            : VisionFrontEnds.ReadsTowerFolder(vision) ? $"{vision.Kind} tower" : vision.Kind;
        return $"{plugin.Design}, {tower}";
    }

    /// <summary>One conversation: its history, the images of each message, and the Ctrl-C state.</summary>
    private sealed class Session(TextReader reader, TextWriter output, TextWriter error, Tokenizer tokenizer, GenerationConfig config,
        SamplingOptions sampling, int seed, string? system, ChatInterrupts interrupts)
    {
        private readonly List<ChatMessage> _history = [];
        private readonly List<IReadOnlyList<RgbImage>> _images = [];
        private readonly List<RgbImage> _pending = [];
        private readonly object _lock = new();
        private CancellationTokenSource? _answer;
        private bool _armed;
        private readonly CancellationTokenSource _quit = new();

        public async Task Banner(string folder, string plugin, ChatTemplate template)
        {
            string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)));
            await output.WriteLineAsync($"graft chat: model {name} ({folder}), {plugin}, chat template {template.Name}");
            await output.WriteLineAsync("/help lists the commands; /exit or Ctrl-C twice quits");
        }

        public async Task Converse(int contextLength, bool acceptsImages, Prompter prompter, CancellationToken cancellationToken)
        {
            interrupts.Handle(OnInterrupt);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _quit.Token);
            try
            {
                Reset();
                int turn = 0;
                while (true)
                {
                    await output.WriteAsync("> ");
                    await output.FlushAsync(CancellationToken.None);
                    string? line;
                    try
                    {
                        line = await reader.ReadLineAsync(linked.Token);
                    }
                    catch (OperationCanceledException) when (_quit.IsCancellationRequested)
                    {
                        await output.WriteLineAsync();
                        return;
                    }
                    if (_quit.IsCancellationRequested) return;
                    lock (_lock) _armed = false;
                    if (line is null || line.Trim() == "/exit") return;
                    string trimmed = line.Trim();
                    if (trimmed == "/reset")
                    {
                        Reset();
                        await output.WriteLineAsync("(history cleared)");
                        continue;
                    }
                    if (trimmed == "/help")
                    {
                        await output.WriteLineAsync(Help);
                        continue;
                    }
                    if (trimmed.StartsWith("/image", StringComparison.Ordinal) && (trimmed.Length == 6 || char.IsWhiteSpace(trimmed[6])))
                    {
                        await Attach(trimmed[6..].Trim(), acceptsImages);
                        continue;
                    }
                    if (trimmed.StartsWith('/') && !trimmed.Contains(' ', StringComparison.Ordinal))
                    {
                        await error.WriteLineAsync($"graft chat: unknown command {trimmed}; /help lists the commands");
                        continue;
                    }
                    if (trimmed.Length == 0) continue;
                    if (line.Contains(PromptLayout.Placeholder, StringComparison.Ordinal) && _pending.Count == 0)
                    {
                        await error.WriteLineAsync($"graft chat: your message holds '{PromptLayout.Placeholder}' but no image is attached; attach one with /image PATH first");
                        continue;
                    }
                    _history.Add(ChatMessage.User(line));
                    _images.Add(_pending.ToArray());
                    _pending.Clear();
                    await Answer(contextLength, prompter, sampling with { Seed = seed + turn++ }, cancellationToken);
                }
            }
            finally
            {
                interrupts.Handle(null);
            }
        }

        /// <summary>Streams the answer to the last message; a stopped answer stays in the history as far as it went.</summary>
        private async Task Answer(int contextLength, Prompter prompter, SamplingOptions options, CancellationToken cancellationToken)
        {
            (ITokenSequenceModel Model, IReadOnlyList<int> Ids) prompt;
            try
            {
                prompt = await Fit(contextLength, options.MaxTokens, prompter);
            }
            catch (ArgumentException e)
            {
                _history.RemoveAt(_history.Count - 1);
                _images.RemoveAt(_images.Count - 1);
                await error.WriteLineAsync($"graft chat: {e.Message}");
                return;
            }
            var text = new StringBuilder();
            using var answer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            lock (_lock) _answer = answer;
            bool stopped = false;
            try
            {
                var generator = new TextGenerator(tokenizer, prompt.Model, config.EosTokenIds);
                await foreach (var piece in generator.GenerateAsync(prompt.Ids, options, answer.Token))
                {
                    text.Append(piece);
                    await output.WriteAsync(piece);
                    await output.FlushAsync(CancellationToken.None);
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                stopped = true;
            }
            finally
            {
                lock (_lock) _answer = null;
            }
            await output.WriteLineAsync(stopped ? " (stopped)" : "");
            _history.Add(ChatMessage.Assistant(text.ToString()));
            _images.Add([]);
        }

        /// <summary>
        /// The prompt of the history; while it leaves no room for an answer (--max-tokens, or a quarter of the context when
        /// that is more), the oldest exchange is dropped, with a notice. The last message alone not fitting is an error.
        /// </summary>
        private async Task<(ITokenSequenceModel, IReadOnlyList<int>)> Fit(int contextLength, int maxTokens, Prompter prompter)
        {
            int room = Math.Max(1, Math.Min(maxTokens, contextLength / 4));
            int dropped = 0;
            while (true)
            {
                var prompt = prompter(_history, _images);
                if (prompt.Ids.Count + room <= contextLength)
                {
                    if (dropped > 0)
                        await error.WriteLineAsync($"(dropped the oldest {dropped} message{(dropped == 1 ? "" : "s")} to fit the context of {contextLength} tokens)");
                    return prompt;
                }
                int first = _history.Count > 0 && _history[0].Role == ChatRole.System ? 1 : 0;
                if (_history.Count - first <= 1)
                    throw new ArgumentException($"the message takes {prompt.Ids.Count} tokens, which leaves no room for an answer of up to {room} in the context of {contextLength}; send a shorter one");
                // The oldest user message and the answer to it go together, so the history still alternates.
                int count = _history.Count - first >= 3 && _history[first + 1].Role == ChatRole.Assistant ? 2 : 1;
                _history.RemoveRange(first, count);
                _images.RemoveRange(first, count);
                dropped += count;
            }
        }

        /// <summary>Ctrl-C: stops a streaming answer; at the prompt, the first asks for a second, which quits.</summary>
        private bool OnInterrupt()
        {
            lock (_lock)
            {
                if (_answer is { } answer)
                {
                    answer.Cancel();
                    return true;
                }
                if (_armed)
                {
                    _quit.Cancel();
                    return reader != System.Console.In;
                }
                _armed = true;
            }
            error.WriteLine();
            error.WriteLine("(Ctrl-C again to quit, or /exit)");
            return true;
        }

        private void Reset()
        {
            _history.Clear();
            _images.Clear();
            _pending.Clear();
            if (system is not null)
            {
                _history.Add(ChatMessage.System(system));
                _images.Add([]);
            }
        }

        /// <summary>`/image PATH`: decodes the image now, so a bad file is reported at once and the conversation goes on.</summary>
        private async Task Attach(string path, bool acceptsImages)
        {
            if (!acceptsImages)
            {
                await error.WriteLineAsync("graft chat: /image needs a --plugin that can see to turn images into embeddings");
                return;
            }
            if (path.Length == 0)
            {
                await error.WriteLineAsync("graft chat: /image needs a file: /image PATH");
                return;
            }
            try
            {
                _pending.Add(ImageDecoder.Load(path));
                await output.WriteLineAsync($"(image {path} attached to your next message)");
            }
            catch (Exception e) when (e is ImageFormatException or IOException or UnauthorizedAccessException)
            {
                await error.WriteLineAsync($"graft chat: {e.Message}");
            }
        }
    }
}
