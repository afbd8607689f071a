using System.CommandLine;
using Graft.Models.Chat;
using Graft.Models.Imaging;
using Graft.Plugins;
using Graft.Serving;
using Microsoft.Extensions.Logging;

namespace Graft.Cli;

/// <summary>
/// `graft serve --model DIR [--plugin NAME=PATH.graft ...] [--vision [NAME=]DIR ...] [--host H] [--port N] ...`: the OpenAI-compatible
/// server. One base in memory serves BASE (text only, the base alone) and BASE+NAME for each plug-in; requests are queued
/// (429 when the queue is full), their decode steps batched, and Ctrl-C stops it gracefully: the port closes, running
/// requests get up to --shutdown-grace seconds to finish.
/// </summary>
public static class ServeCommand
{
    /// <summary>How long the process may take to stop after Ctrl-C (Program.cs gives System.CommandLine this): the grace and a margin.</summary>
    public static readonly TimeSpan ProcessShutdownLimit = TimeSpan.FromSeconds(90);

    public static Command Create()
    {
        var defaults = new ServingOptions();
        var model = new Option<string>("--model") { Description = "Hugging Face model folder (the base)", Required = true };
        var plugins = new Option<string[]>("--plugin") { Description = "NAME=PATH.graft (or PATH.graft, named after its folder); repeat for several", AllowMultipleArgumentsPerToken = false };
        var vision = new Option<string[]>("--vision") { Description = "NAME=DIR: the CLIP/SigLIP folder for plug-in NAME instead of the one its plugin.json records (checked against its fingerprint); DIR alone: for every plug-in made with a tower", AllowMultipleArgumentsPerToken = false };
        var host = new Option<string>("--host") { Description = "Address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port to listen on (0: any free port)", DefaultValueFactory = _ => 8000 };
        var name = new Option<string?>("--name") { Description = "The base's model id (default: the model folder's name)" };
        var template = new Option<string?>("--template") { Description = $"Chat template of the base ({string.Join(", ", ChatTemplates.Names)}); default: the checkpoint's. Plug-ins use the one they were trained in" };
        var allowLocalFiles = new Option<bool>("--allow-local-files") { Description = "Let image URLs name files on this machine (file:// or an absolute path)" };
        var maxQueue = new Option<int>("--max-queue") { Description = "Requests that may wait for a place in the batch; more get 429", DefaultValueFactory = _ => defaults.MaxQueue };
        var maxBatch = new Option<int>("--max-batch") { Description = "Sequences decoded together in one step", DefaultValueFactory = _ => defaults.MaxBatch };
        var timeout = new Option<double>("--request-timeout") { Description = "Seconds a request may take, queue included", DefaultValueFactory = _ => defaults.RequestTimeout.TotalSeconds };
        var context = new Option<int>("--context-length") { Description = "Tokens per request, prompt and completion (capped at the model's)", DefaultValueFactory = _ => defaults.ContextLength };
        var maxTokens = new Option<int>("--default-max-tokens") { Description = "Completion tokens when a request sets no limit", DefaultValueFactory = _ => defaults.DefaultMaxTokens };
        var imageBytes = new Option<long>("--max-image-bytes") { Description = "Largest encoded image", DefaultValueFactory = _ => defaults.ImageLimits.MaxFileBytes };
        var imagePixels = new Option<long>("--max-image-pixels") { Description = "Largest image, width x height", DefaultValueFactory = _ => defaults.ImageLimits.MaxPixels };
        var maxImages = new Option<int>("--max-images") { Description = "Images one request may carry", DefaultValueFactory = _ => defaults.MaxImagesPerRequest };
        var requestPixels = new Option<long>("--max-request-image-pixels") { Description = "Pixels of all of one request's images together", DefaultValueFactory = _ => defaults.MaxRequestImagePixels };
        var requestImageBytes = new Option<long>("--max-request-image-bytes") { Description = "Encoded bytes of all of one request's images together", DefaultValueFactory = _ => defaults.MaxRequestImageBytes };
        var requestBytes = new Option<long>("--max-request-bytes") { Description = "Largest request body (413 over it)", DefaultValueFactory = _ => defaults.MaxRequestBytes };
        var imageWorkers = new Option<int>("--image-workers") { Description = "Requests whose images are decoded and encoded at the same time", DefaultValueFactory = _ => defaults.ImageWorkers };
        var minBodyRate = new Option<double>("--min-body-rate") { Description = "Bytes per second a request body must arrive at after 5 s (slower: 408); 0 = off", DefaultValueFactory = _ => defaults.MinRequestBodyBytesPerSecond };
        var grace = new Option<double>("--shutdown-grace") { Description = "Seconds running requests may go on after Ctrl-C", DefaultValueFactory = _ => defaults.ShutdownGrace.TotalSeconds };
        var command = new Command("serve", "Serve the base and its plug-ins over an OpenAI-compatible HTTP API");
        foreach (var option in new Option[] { model, plugins, vision, host, port, name, template, allowLocalFiles, maxQueue, maxBatch, timeout, context, maxTokens, imageBytes, imagePixels,
                     maxImages, requestPixels, requestImageBytes, requestBytes, imageWorkers, minBodyRate, grace })
            command.Options.Add(option);
        command.SetAction(async (parseResult, cancellationToken) =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var error = parseResult.InvocationConfiguration.Error;
            using var loggers = LoggerFactory.Create(b => b
                .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; })
                .AddFilter("Microsoft", LogLevel.Warning)
                .SetMinimumLevel(LogLevel.Information));
            try
            {
                double graceSeconds = parseResult.GetValue(grace), timeoutSeconds = parseResult.GetValue(timeout);
                if (!(graceSeconds >= 0 && graceSeconds < ProcessShutdownLimit.TotalSeconds - 10))
                    throw new ArgumentException($"--shutdown-grace must be between 0 and {ProcessShutdownLimit.TotalSeconds - 10} seconds, got {graceSeconds}");
                if (!(timeoutSeconds > 0 && timeoutSeconds <= TimeSpan.MaxValue.TotalSeconds / 2))
                    throw new ArgumentException($"--request-timeout must be a positive number of seconds, got {timeoutSeconds}");
                var options = new ServingOptions
                {
                    Name = parseResult.GetValue(name),
                    MaxQueue = parseResult.GetValue(maxQueue),
                    MaxBatch = parseResult.GetValue(maxBatch),
                    RequestTimeout = TimeSpan.FromSeconds(timeoutSeconds),
                    ContextLength = parseResult.GetValue(context),
                    DefaultMaxTokens = parseResult.GetValue(maxTokens),
                    AllowLocalFiles = parseResult.GetValue(allowLocalFiles),
                    ImageLimits = new ImageLimits { MaxFileBytes = parseResult.GetValue(imageBytes), MaxPixels = parseResult.GetValue(imagePixels) },
                    MaxImagesPerRequest = parseResult.GetValue(maxImages),
                    MaxRequestImagePixels = parseResult.GetValue(requestPixels),
                    MaxRequestImageBytes = parseResult.GetValue(requestImageBytes),
                    MaxRequestBytes = parseResult.GetValue(requestBytes),
                    ImageWorkers = parseResult.GetValue(imageWorkers),
                    MinRequestBodyBytesPerSecond = parseResult.GetValue(minBodyRate),
                    ShutdownGrace = TimeSpan.FromSeconds(graceSeconds),
                };
                options.Validate();
                var attached = ParsePlugins(parseResult.GetValue(plugins) ?? []);
                var towers = VisionOverrides.Parse(parseResult.GetValue(vision) ?? [], attached.Select(p => p.Key).ToList());
                await using var engine = ChatEngine.Open(parseResult.GetRequiredValue(model), attached, towers, options,
                    parseResult.GetValue(template), loggers.CreateLogger<ChatEngine>());
                await using var server = await ChatServer.StartAsync(engine, parseResult.GetRequiredValue(host), parseResult.GetValue(port), loggers, cancellationToken);
                await output.WriteLineAsync($"graft serve: listening on {server.Address} (models: {string.Join(", ", engine.ModelIds)}); Ctrl-C stops");
                await output.FlushAsync(CancellationToken.None);
                try
                {
                    await Task.Delay(Timeout.Infinite, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                }
                await output.WriteLineAsync($"graft serve: stopping; running requests have {options.ShutdownGrace.TotalSeconds:0.#} s to finish");
                await server.StopAsync();
                return 0;
            }
            catch (Exception e) when (GenerateCommand.IsUserError(e) || PluginDeployment.IsUserError(e) || e is IOException)
            {
                await error.WriteLineAsync("graft serve: " + e.Message);
                return 1;
            }
        });
        return command;
    }

    /// <summary>NAME=PATH, or PATH named after its folder (without .graft); names are unique, without spaces or '+'.</summary>
    internal static IReadOnlyList<KeyValuePair<string, string>> ParsePlugins(IEnumerable<string> specs)
    {
        var plugins = new List<KeyValuePair<string, string>>();
        foreach (var spec in specs)
        {
            int equals = spec.IndexOf('=');
            string path = equals < 0 ? spec : spec[(equals + 1)..];
            string name = equals < 0 ? Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(path)) : spec[..equals];
            if (path.Length == 0) throw new ArgumentException($"--plugin '{spec}' names no folder: use NAME=PATH.graft");
            if (name.Length == 0 || name.Contains(ChatEngine.PluginSeparator) || name.Any(char.IsWhiteSpace))
                throw new ArgumentException($"--plugin '{spec}': the name '{name}' must be non-empty, without spaces or '{ChatEngine.PluginSeparator}'");
            if (plugins.Any(p => p.Key == name)) throw new ArgumentException($"--plugin: the name '{name}' is given twice");
            plugins.Add(KeyValuePair.Create(name, path));
        }
        return plugins;
    }
}
