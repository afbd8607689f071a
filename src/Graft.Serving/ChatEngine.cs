using System.Diagnostics;
using Graft.Models.Chat;
using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Graft.Serving;

/// <summary>
/// The request engine behind the HTTP server and the in-process chat client: one base with its plug-ins (model ids BASE
/// and BASE+NAME), and one scheduler thread that runs every request. Requests wait in a bounded queue; on each turn the
/// scheduler admits at most one (its prefill runs alone: the prompt, with images encoded by its plug-in, into a KV cache of
/// its own), then runs one batched decode step of every admitted sequence (<see cref="SequenceBatch.Step"/>: one pass over
/// the weights for all of them, each with its own cache and hooks). Requests join and leave the running batch between
/// steps (continuous batching), and a sequence decodes in the batch exactly as it would alone.
/// </summary>
public sealed class ChatEngine : IAsyncDisposable
{
    /// <summary>Between the base's id and a plug-in's name in a model id: BASE+NAME.</summary>
    public const char PluginSeparator = '+';

    private static readonly TimeSpan IdleWait = TimeSpan.FromMilliseconds(50);

    private readonly PluginHost _host;
    private readonly Tokenizer _tokenizer;
    private readonly GenerationConfig _generation;
    private readonly IReadOnlySet<int> _eos;
    private readonly Dictionary<string, (string? Plugin, PluginSession Session, ChatTemplate Template)> _models;
    private readonly IDisposable? _owned;
    private readonly ILogger _logger;
    private readonly object _lock = new();
    private readonly LinkedList<ChatJob> _waiting = new();
    private readonly AutoResetEvent _wake = new(false);
    private readonly Thread _scheduler;
    private readonly TaskCompletionSource _schedulerDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _accepting = true;
    private volatile bool _cancelRunning;
    private int _running;
    private int _disposed;

    /// <param name="baseName">The base's model id.</param>
    /// <param name="owned">Disposed with the engine (the deployment it was opened from).</param>
    public ChatEngine(PluginHost host, Tokenizer tokenizer, ChatTemplate template, GenerationConfig generation, string baseName,
        ServingOptions? options = null, ILogger? logger = null, IDisposable? owned = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(generation);
        options ??= new ServingOptions();
        options = options with { Name = baseName };
        options.Validate();
        _host = host;
        _tokenizer = tokenizer;
        _generation = generation;
        _eos = TextGenerator.EosTokensOf(tokenizer, generation.EosTokenIds);
        _owned = owned;
        _logger = logger ?? NullLogger.Instance;
        Options = options;
        BaseName = baseName;
        _models = new Dictionary<string, (string?, PluginSession, ChatTemplate)>(StringComparer.Ordinal)
        {
            [baseName] = (null, new PluginSession(host, null, options.ContextLength), template),
        };
        foreach (var name in host.PluginNames.Order(StringComparer.Ordinal))
        {
            if (name.Length == 0 || name.Contains(PluginSeparator) || name.Any(char.IsWhiteSpace))
                throw new ArgumentException($"plug-in name '{name}' must be non-empty, without spaces or '{PluginSeparator}'");
            // A plug-in's requests are laid out in the chat template it was trained in; the base keeps its own.
            _models[baseName + PluginSeparator + name] = (name, new PluginSession(host, name, options.ContextLength),
                PluginDeployment.TemplateFor(host.Plugin(name), template, tokenizer));
        }
        ContextLength = _models[baseName].Session.MaxSequenceLength;
        ModelIds = [.. _models.Keys];
        Metrics.Load = () =>
        {
            lock (_lock) return (_waiting.Count, Volatile.Read(ref _running));
        };
        _scheduler = new Thread(Schedule) { IsBackground = true, Name = "graft scheduler" };
        _scheduler.Start();
    }

    /// <summary>
    /// Opens the checkpoint of <paramref name="modelFolder"/> (weights, tokenizer, chat template, generation defaults) with
    /// each plug-in folder attached under its name; the base's id is <see cref="ServingOptions.Name"/> or the folder's name.
    /// Each plug-in's tower is the folder its plugin.json records unless <paramref name="vision"/> names another (a folder
    /// given as a string is for every plug-in made with a tower; see <see cref="PluginDeployment.Open"/>).
    /// </summary>
    public static ChatEngine Open(string modelFolder, IReadOnlyList<KeyValuePair<string, string>> plugins, VisionOverrides? vision,
        ServingOptions? options = null, string? templateName = null, ILogger? logger = null)
    {
        options ??= new ServingOptions();
        options.Validate();
        var tokenizer = Tokenizer.FromFolder(modelFolder);
        var template = ChatTemplates.ForCheckpoint(modelFolder, tokenizer, templateName);
        var generation = GenerationConfig.FromFolder(modelFolder);
        var deployment = PluginDeployment.Open(modelFolder, plugins, vision);
        try
        {
            string name = options.Name ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelFolder)));
            return new ChatEngine(deployment.Host, tokenizer, template, generation, name, options, logger, deployment);
        }
        catch
        {
            deployment.Dispose();
            throw;
        }
    }

    public ServingOptions Options { get; }
    public ServerMetrics Metrics { get; } = new();
    public string BaseName { get; }

    /// <summary>BASE, then BASE+NAME for each plug-in.</summary>
    public IReadOnlyList<string> ModelIds { get; }

    /// <summary>Tokens a request holds, prompt and completion together (the option, capped at the model's limit).</summary>
    public int ContextLength { get; }

    /// <summary>Requests waiting for a place in the running batch.</summary>
    public int QueueDepth
    {
        get { lock (_lock) return _waiting.Count; }
    }

    /// <summary>Requests in the running batch.</summary>
    public int Running => Volatile.Read(ref _running);

    /// <summary>The chat template requests to <paramref name="modelId"/> are laid out with: a plug-in's own (the one it was trained in), or the base's.</summary>
    public ChatTemplate TemplateOf(string modelId)
    {
        PluginOf(modelId);
        return _models[modelId].Template;
    }

    /// <summary>Whether <paramref name="modelId"/> takes images (a plug-in that can encode pixels).</summary>
    public bool CanSee(string modelId) => PluginOf(modelId) is { } name && _host.Plugin(name).CanEncodePixels;

    /// <summary>Throws <see cref="ChatRequestException"/>, saying why, when <paramref name="modelId"/> takes no images (<paramref name="param"/>: where the image was).</summary>
    public void CheckCanSee(string modelId, string param)
    {
        if (PluginOf(modelId) is not { } plugin)
            throw ChatRequestException.Invalid($"the model '{modelId}' is the base alone, which cannot see images; send images to a model with a plug-in ({string.Join(", ", ModelIds.Where(CanSee).DefaultIfEmpty("none on this server"))})",
                param, "image_not_supported");
        if (!_host.Plugin(plugin).CanEncodePixels)
            throw ChatRequestException.Invalid($"the plug-in '{plugin}' of model '{modelId}' cannot see: it has no vision front end to encode images", param, "image_not_supported");
    }

    /// <summary>The plug-in a model id names, null for the base; an unknown id is the client's mistake (404).</summary>
    public string? PluginOf(string modelId) =>
        modelId is not null && _models.TryGetValue(modelId, out var model) ? model.Plugin
            : throw new ChatRequestException(404, $"the model '{modelId}' does not exist; this server has {string.Join(", ", ModelIds)}", "model", "model_not_found");

    /// <summary>
    /// Checks the request, lays out its prompt and queues it. Throws <see cref="ChatRequestException"/> for the client's
    /// mistakes and <see cref="ServerBusyException"/> when the queue is full or the engine is stopping. Cancelling
    /// <paramref name="cancellationToken"/> (the client went away) drops the request wherever it is.
    /// </summary>
    public ChatJob Submit(ChatRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var plugin = PluginOf(request.Model);
        var (prompt, promptTokens) = Prompt(request, plugin);
        var sampling = Sampling(request);
        if (promptTokens is int count)
            CheckContext(count, request.MaxTokens);
        var job = new ChatJob(request.Model, _models[request.Model].Session, prompt, sampling, request.MaxTokens, cancellationToken);
        lock (_lock)
        {
            if (!_accepting) throw new ServerBusyException(503, "the server is shutting down", "server_shutting_down", null);
            if (_waiting.Count >= Options.MaxQueue)
                throw new ServerBusyException(429, $"the server is busy: {Options.MaxQueue} requests are already waiting; retry shortly", "queue_full", TimeSpan.FromSeconds(1));
            job.Node = _waiting.AddLast(job);
        }
        job.OnCancelled(() =>
        {
            lock (_lock)
            {
                if (job.Node?.List is null) return;
                _waiting.Remove(job.Node);
                job.Node = null;
            }
            Fail(job, job.CancellationReason(Options.RequestTimeout), "cancelled");
        });
        _wake.Set();
        return job;
    }

    /// <summary>
    /// Stops taking requests (new ones and those still waiting get 503), lets running ones finish for up to
    /// <see cref="ServingOptions.ShutdownGrace"/>, cancels what is left, and ends the scheduler.
    /// </summary>
    public async Task StopAsync()
    {
        if (_schedulerDone.Task.IsCompleted) return;
        List<ChatJob> waiting;
        lock (_lock)
        {
            _accepting = false;
            waiting = [.. _waiting];
            _waiting.Clear();
            foreach (var job in waiting) job.Node = null;
        }
        foreach (var job in waiting) Fail(job, new ServerBusyException(503, "the server is shutting down", "server_shutting_down", null), "cancelled");
        var grace = Stopwatch.StartNew();
        while (Running > 0 && grace.Elapsed < Options.ShutdownGrace) await Task.Delay(20);
        _cancelRunning = true;
        _wake.Set();
        await _schedulerDone.Task;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        await StopAsync();
        _wake.Dispose();
        _owned?.Dispose();
    }

    /// <summary>The conversation as the plug-in's prompt; the token count when it is text only (an image's is known once its plug-in prepares it).</summary>
    private (MultimodalPrompt Prompt, int? Tokens) Prompt(ChatRequest request, string? plugin)
    {
        const string param = "messages";
        if (request.Messages is null || request.Messages.Count == 0)
            throw new ChatRequestException(400, $"'{param}' must hold at least one message", param, "missing_required_parameter");
        var messages = new List<ChatMessage>(request.Messages.Count);
        var images = new List<IReadOnlyList<RgbImage>>(request.Messages.Count);
        for (int i = 0; i < request.Messages.Count; i++)
        {
            var turn = request.Messages[i];
            if (turn.Role is not (ChatRole.System or ChatRole.User or ChatRole.Assistant))
                throw ChatRequestException.Invalid($"role '{turn.Role}' is not one this server takes (system, user, assistant)", $"{param}[{i}].role");
            if (turn.Images.Count > 0)
            {
                CheckCanSee(request.Model, $"{param}[{i}].content");
                if (turn.Role != ChatRole.User)
                    throw ChatRequestException.Invalid("images are only accepted in user messages", $"{param}[{i}].content");
            }
            messages.Add(new ChatMessage(turn.Role, turn.Text));
            images.Add(turn.Images);
        }
        var template = _models[request.Model].Template;
        try
        {
            var prompt = PluginDeployment.ChatPrompt(plugin is null ? null : _host.Plugin(plugin), _tokenizer, template, messages, images);
            return (prompt, prompt.HasImage ? null : prompt.Parts.Sum(p => ((TextPart)p).Ids.Length));
        }
        catch (ArgumentException e)
        {
            throw ChatRequestException.Invalid($"the conversation does not fit the {template.Name} chat template: {e.Message}", param);
        }
    }

    /// <summary>The checkpoint's defaults (greedy unless its generation_config.json samples) with the request's choices over them.</summary>
    private SamplingOptions Sampling(ChatRequest request)
    {
        var options = _generation.ToSamplingOptions(maxTokens: 1) with { StopStrings = request.Stop, Seed = request.Seed ?? Random.Shared.Next() };
        if (request.Temperature is { } temperature) options = options with { Temperature = temperature };
        if (request.TopP is { } topP) options = options with { TopP = topP };
        if (request.TopK is { } topK) options = options with { TopK = topK };
        if (request.MaxTokens is { } maxTokens && maxTokens < 1)
            throw ChatRequestException.Invalid($"the completion token limit must be at least 1, got {maxTokens}", "max_tokens");
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw ChatRequestException.Invalid(e.Message, e.ParamName switch
            {
                nameof(SamplingOptions.Temperature) => "temperature",
                nameof(SamplingOptions.TopP) => "top_p",
                nameof(SamplingOptions.TopK) => "top_k",
                nameof(SamplingOptions.StopStrings) => "stop",
                _ => null,
            });
        }
        return options;
    }

    private void CheckContext(int promptTokens, int? maxTokens)
    {
        if (promptTokens >= ContextLength)
            throw new ChatRequestException(400, $"the prompt has {promptTokens} tokens; this server's context length is {ContextLength} tokens, leaving no room for a completion",
                "messages", "context_length_exceeded");
        if (maxTokens is int m && promptTokens + m > ContextLength)
            throw new ChatRequestException(400, $"this server's context length is {ContextLength} tokens, but {promptTokens + m} were requested ({promptTokens} in the messages, {m} in the completion)",
                "max_tokens", "context_length_exceeded");
    }

    private sealed record Active(ChatJob Job, ISequenceState State, Completion Completion);

    /// <summary>The scheduler thread: drop what was cancelled, admit one waiting request, step every running one; repeat.</summary>
    private void Schedule()
    {
        var running = new List<Active>();
        while (true)
        {
            try
            {
                DropFinished(running);
                if (_cancelRunning)
                {
                    foreach (var active in running) End(active, new ServerBusyException(503, "the server shut down before the request finished", "server_shutting_down", null), "cancelled");
                    running.Clear();
                    Volatile.Write(ref _running, 0);
                    _schedulerDone.TrySetResult();
                    return;
                }
                if (running.Count < Options.MaxBatch && Dequeue() is { } job)
                {
                    // Counted as running while its prefill runs, so a shutdown waits for it too.
                    Volatile.Write(ref _running, running.Count + 1);
                    Admit(job, running);
                    Volatile.Write(ref _running, running.Count);
                }
                if (running.Count > 0) Step(running);
                else if (QueueDepth == 0) _wake.WaitOne(IdleWait);
                Volatile.Write(ref _running, running.Count);
            }
            catch (Exception e)
            {
                // A fault of the scheduler itself ends the requests it was running, not the engine: the next turn starts clean.
                _logger.LogError(e, "the scheduler failed; ending the {Count} running requests", running.Count);
                foreach (var active in running) End(active, e, "error");
                running.Clear();
                Volatile.Write(ref _running, 0);
            }
        }
    }

    private ChatJob? Dequeue()
    {
        lock (_lock)
        {
            // Requests past their time limit leave the queue without waiting for a place.
            for (var node = _waiting.First; node is not null;)
            {
                var next = node.Next;
                if (node.Value.IsExpired(Options.RequestTimeout))
                {
                    _waiting.Remove(node);
                    node.Value.Node = null;
                    Fail(node.Value, node.Value.CancellationReason(Options.RequestTimeout), "timeout");
                }
                node = next;
            }
            if (_waiting.First is not { } first) return null;
            _waiting.RemoveFirst();
            first.Value.Node = null;
            return first.Value;
        }
    }

    /// <summary>Ends running requests whose client went away or whose time ran out.</summary>
    private void DropFinished(List<Active> running)
    {
        for (int i = running.Count - 1; i >= 0; i--)
        {
            var job = running[i].Job;
            if (!job.IsCancelled && !job.IsExpired(Options.RequestTimeout)) continue;
            End(running[i], job.CancellationReason(Options.RequestTimeout), job.IsCancelled ? "cancelled" : "timeout");
            running.RemoveAt(i);
        }
    }

    /// <summary>Prefills one request alone and chooses its first token; it joins the running batch unless that token ended it.</summary>
    private void Admit(ChatJob job, List<Active> running)
    {
        if (job.IsCancelled || job.IsExpired(Options.RequestTimeout))
        {
            Fail(job, job.CancellationReason(Options.RequestTimeout), job.IsCancelled ? "cancelled" : "timeout");
            return;
        }
        ISequenceState? state = null;
        try
        {
            int limit = job.MaxTokens ?? Options.DefaultMaxTokens;
            var request = job.Session.Request(job.Prompt, limit);
            int promptTokens = request.PromptIds.Count;
            CheckContext(promptTokens, job.MaxTokens);
            var sampling = job.Sampling with { MaxTokens = Math.Min(limit, ContextLength - promptTokens) };
            var completion = new Completion(_tokenizer, _eos, sampling, request.VocabSize, request.MaxSequenceLength, request.PromptIds);
            state = request.CreateState();
            var logits = state.Append(request.PromptIds.ToArray()).ToArray();
            var piece = completion.Step(logits);
            job.Start(promptTokens);
            Metrics.ObserveTimeToFirstToken(job.SinceArrival.TotalSeconds);
            var active = new Active(job, state, completion);
            job.Emit(piece);
            if (completion.IsFinished) Complete(active);
            else running.Add(active);
        }
        catch (ChatRequestException e)
        {
            state?.Dispose();
            Fail(job, e, "rejected");
        }
        catch (Exception e)
        {
            state?.Dispose();
            _logger.LogError(e, "admitting a request for {Model} failed", job.Model);
            Fail(job, e, "error");
        }
    }

    /// <summary>One batched decode step: the next token of every running sequence.</summary>
    private void Step(List<Active> running)
    {
        var states = running.Select(a => a.State).ToArray();
        var tokens = running.Select(a => a.Completion.NextToken).ToArray();
        Graft.Tensors.Tensor logits;
        try
        {
            logits = SequenceBatch.Step(states, tokens);
        }
        catch (Exception e)
        {
            _logger.LogError(e, "a decode step of {Count} sequences failed", running.Count);
            foreach (var active in running) End(active, e, "error");
            running.Clear();
            return;
        }
        Metrics.ObserveBatchSize(running.Count);
        int vocabulary = logits.Shape[1];
        var finished = new List<Active>();
        for (int b = 0; b < running.Count; b++)
        {
            var active = running[b];
            try
            {
                var piece = active.Completion.Step(logits.Span.Slice(b * vocabulary, vocabulary));
                Metrics.ObserveTimePerToken(active.Job.SinceLastToken().TotalSeconds);
                active.Job.Emit(piece);
                if (active.Completion.IsFinished)
                {
                    Complete(active);
                    finished.Add(active);
                }
            }
            catch (Exception e)
            {
                _logger.LogError(e, "sampling a token for {Model} failed", active.Job.Model);
                End(active, e, "error");
                finished.Add(active);
            }
        }
        foreach (var active in finished) running.Remove(active);
    }

    private void Complete(Active active)
    {
        active.State.Dispose();
        var result = active.Completion.Result!;
        Metrics.CountCompletion(result.FinishReason, result.PromptTokens, result.CompletionTokens);
        active.Job.Complete(result);
    }

    private void End(Active active, Exception reason, string outcome)
    {
        active.State.Dispose();
        Metrics.CountCompletion(outcome, active.Job.PromptTokens, active.Completion.CompletionTokens);
        active.Job.Fail(reason);
    }

    private void Fail(ChatJob job, Exception reason, string outcome)
    {
        Metrics.CountCompletion(outcome, 0, 0);
        job.Fail(reason);
    }
}
