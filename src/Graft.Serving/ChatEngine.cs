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
/// and BASE+NAME), and one scheduler thread that runs every request. A request is checked and prepared before it is
/// queued, on the caller's side: its budget (text, image count, pixels and bytes) first, then its prompt tokenized and,
/// for one with images, the images decoded and encoded by its plug-in on a worker thread (a few requests at a time, under
/// the request's time limit and cancellation), so a request refused for its size costs nothing and a heavy one never
/// holds up the scheduler. Prepared requests wait in a bounded queue; on each turn the scheduler admits at most one (its
/// prefill runs alone, into a KV cache of its own), then runs one batched decode step of every admitted sequence
/// (<see cref="SequenceBatch.Step"/>: one pass over the weights for all of them, each with its own cache and hooks).
/// Requests join and leave the running batch between steps (continuous batching), and a sequence decodes in the batch
/// exactly as it would alone.
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
    private readonly SemaphoreSlim _imageWork;
    private int _preparing;
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
        _imageWork = new SemaphoreSlim(options.ImageWorkers, options.ImageWorkers);
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
        int longestToken = Enumerable.Range(0, tokenizer.VocabSize).Max(id => tokenizer.IdToToken(id)?.Length ?? 1);
        MaxTextCharacters = 2L * ContextLength * Math.Max(1, longestToken);
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

    /// <summary>
    /// The most characters of text one request may hold, all its messages together: twice what its context could hold if
    /// every token were the vocabulary's longest (the margin covers normalizers that shorten text). Longer text cannot
    /// fit, and is refused before it is tokenized, so tokenizing a request costs at most this much.
    /// </summary>
    public long MaxTextCharacters { get; }

    /// <summary>Requests waiting for a place in the running batch.</summary>
    public int QueueDepth
    {
        get { lock (_lock) return _waiting.Count; }
    }

    /// <summary>Requests in the running batch.</summary>
    public int Running => Volatile.Read(ref _running);

    /// <summary>Requests whose images are being decoded and encoded, or waiting for a worker to do it.</summary>
    public int Preparing => Volatile.Read(ref _preparing);

    /// <summary>A new budget for one request's text and images, for a protocol that counts them while it reads the request.</summary>
    internal RequestBudget NewBudget() => new(Options, MaxTextCharacters);

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
            : throw new ChatRequestException(404, $"the model '{(modelId is null ? "" : ErrorText.Shown(modelId))}' does not exist; this server has {string.Join(", ", ModelIds)}", "model", "model_not_found");

    /// <summary>
    /// Checks the request, prepares its prompt (images decoded and encoded off the scheduler) and queues it. Throws
    /// <see cref="ChatRequestException"/> for the client's mistakes, <see cref="ServerBusyException"/> when the queue is
    /// full or the engine is stopping, and <see cref="TimeoutException"/> when preparing it took the request's whole time
    /// limit. Cancelling <paramref name="cancellationToken"/> (the client went away) drops the request wherever it is.
    /// </summary>
    public async Task<ChatJob> SubmitAsync(ChatRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        long arrival = Stopwatch.GetTimestamp();
        var plugin = PluginOf(request.Model);
        var (messages, images) = Conversation(request);
        var sampling = Sampling(request);
        if (request.MaxTokens is int maxTokens && maxTokens >= ContextLength)
            throw new ChatRequestException(400, $"this server's context length is {ContextLength} tokens, but {maxTokens} completion tokens were requested, leaving no room for the prompt",
                "max_tokens", "context_length_exceeded");
        CheckAccepting();
        var (_, session, template) = _models[request.Model];
        int limit = request.MaxTokens ?? Options.DefaultMaxTokens;
        PluginRequest prepared;
        if (images.All(list => list.Count == 0))
            prepared = Prepare(session, plugin, template, messages, [.. images.Select(_ => (IReadOnlyList<RgbImage>)[])], limit, request.MaxTokens);
        else
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var left = Options.RequestTimeout - Stopwatch.GetElapsedTime(arrival);
            deadline.CancelAfter(left < MaxTimer ? left : MaxTimer);
            Interlocked.Increment(ref _preparing);
            try
            {
                prepared = await PrepareImages(session, plugin, template, messages, images, limit, request.MaxTokens, deadline.Token);
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested)
            {
                Metrics.CountCompletion(cancellationToken.IsCancellationRequested ? "cancelled" : "timeout", 0, 0);
                if (cancellationToken.IsCancellationRequested) throw new OperationCanceledException("the client cancelled the request", cancellationToken);
                throw new TimeoutException($"the request took longer than the server's limit of {Options.RequestTimeout.TotalSeconds:0.###} s");
            }
            catch (ChatRequestException)
            {
                Metrics.CountCompletion("rejected", 0, 0);
                throw;
            }
            catch (Exception e) when (e is not ServerBusyException)
            {
                _logger.LogError(e, "preparing the images of a request for {Model} failed", request.Model);
                Metrics.CountCompletion("error", 0, 0);
                throw;
            }
            finally
            {
                Interlocked.Decrement(ref _preparing);
            }
        }
        var job = new ChatJob(request.Model, prepared, sampling, request.MaxTokens, arrival, cancellationToken);
        lock (_lock)
        {
            CheckAcceptingLocked();
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

    /// <summary>CancellationTokenSource.CancelAfter's longest wait.</summary>
    private static readonly TimeSpan MaxTimer = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    /// <summary>Refuses a request before any work is done for it when the queue is full or the engine is stopping.</summary>
    private void CheckAccepting()
    {
        lock (_lock) CheckAcceptingLocked();
    }

    private void CheckAcceptingLocked()
    {
        if (!_accepting) throw new ServerBusyException(503, "the server is shutting down", "server_shutting_down", null);
        // Requests whose images are being prepared count as waiting: they are on their way to the queue.
        if (_waiting.Count + Volatile.Read(ref _preparing) >= Options.MaxQueue)
            throw new ServerBusyException(429, $"the server is busy: {Options.MaxQueue} requests are already waiting; retry shortly", "queue_full", TimeSpan.FromSeconds(1));
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
        _imageWork.Dispose();
        _owned?.Dispose();
    }

    /// <summary>
    /// The conversation's messages and images, checked: roles, images only in user messages of a model that sees, and the
    /// request's budget (text characters, image count, pixels and bytes) before anything is tokenized or decoded.
    /// </summary>
    private (List<ChatMessage> Messages, List<IReadOnlyList<ChatImage>> Images) Conversation(ChatRequest request)
    {
        const string param = "messages";
        if (request.Messages is null || request.Messages.Count == 0)
            throw new ChatRequestException(400, $"'{param}' must hold at least one message", param, "missing_required_parameter");
        var budget = NewBudget();
        var messages = new List<ChatMessage>(request.Messages.Count);
        var images = new List<IReadOnlyList<ChatImage>>(request.Messages.Count);
        for (int i = 0; i < request.Messages.Count; i++)
        {
            var turn = request.Messages[i] ?? throw ChatRequestException.Invalid($"message {i} is null", $"{param}[{i}]");
            if (turn.Role is not (ChatRole.System or ChatRole.User or ChatRole.Assistant))
                throw ChatRequestException.Invalid($"role '{ErrorText.Shown(turn.Role ?? "")}' is not one this server takes (system, user, assistant)", $"{param}[{i}].role");
            budget.AddText(turn.Text?.Length ?? 0, $"{param}[{i}].content");
            var turnImages = turn.Images ?? [];
            if (turnImages.Count > 0)
            {
                CheckCanSee(request.Model, $"{param}[{i}].content");
                if (turn.Role != ChatRole.User)
                    throw ChatRequestException.Invalid("images are only accepted in user messages", $"{param}[{i}].content");
                foreach (var image in turnImages) budget.AddImage(image ?? throw ChatRequestException.Invalid("an image is null", $"{param}[{i}].content"), image.Param ?? $"{param}[{i}].content");
            }
            messages.Add(new ChatMessage(turn.Role, turn.Text ?? ""));
            images.Add(turnImages);
        }
        foreach (var stop in request.Stop ?? []) budget.AddText(stop?.Length ?? 0, "stop");
        return (messages, images);
    }

    /// <summary>
    /// Decodes the images and prepares the prompt on a worker (at most <see cref="ServingOptions.ImageWorkers"/> requests at once), checking
    /// the cheapest bound first: every image takes at least one position, so a prompt whose text and image count alone
    /// fill the context is refused before its plug-in encodes any image.
    /// </summary>
    private async Task<PluginRequest> PrepareImages(PluginSession session, string? plugin, ChatTemplate template, List<ChatMessage> messages, List<IReadOnlyList<ChatImage>> images,
        int limit, int? maxTokens, CancellationToken cancellationToken)
    {
        await _imageWork.WaitAsync(cancellationToken);
        try
        {
            return await Task.Run(() =>
            {
                var decoded = new List<IReadOnlyList<RgbImage>>(images.Count);
                foreach (var list in images)
                {
                    var pixels = new RgbImage[list.Count];
                    for (int i = 0; i < pixels.Length; i++)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        pixels[i] = list[i].Decode(Options.ImageLimits, cancellationToken);
                    }
                    decoded.Add(pixels);
                }
                cancellationToken.ThrowIfCancellationRequested();
                var prepared = Prepare(session, plugin, template, messages, decoded, limit, maxTokens, cancellationToken);
                // Encoding cannot be interrupted; a request whose client left or whose time ran out meanwhile goes no further.
                cancellationToken.ThrowIfCancellationRequested();
                return prepared;
            }, cancellationToken);
        }
        finally
        {
            _imageWork.Release();
        }
    }

    /// <summary>The conversation as the plug-in's prompt, checked against the context, then prepared (images encoded).</summary>
    private PluginRequest Prepare(PluginSession session, string? plugin, ChatTemplate template, List<ChatMessage> messages, List<IReadOnlyList<RgbImage>> images, int limit, int? maxTokens,
        CancellationToken cancellationToken = default)
    {
        MultimodalPrompt prompt;
        try
        {
            prompt = PluginDeployment.ChatPrompt(plugin is null ? null : _host.Plugin(plugin), _tokenizer, template, messages, images);
        }
        catch (ArgumentException e) when (e is not ChatRequestException)
        {
            throw ChatRequestException.Invalid($"the conversation does not fit the {template.Name} chat template: {e.Message}", "messages");
        }
        int textTokens = prompt.Parts.OfType<TextPart>().Sum(p => p.Ids.Length);
        int imageCount = prompt.Parts.Count(p => p is not TextPart);
        if (imageCount == 0) CheckContext(textTokens, maxTokens);
        else if ((long)textTokens + imageCount >= ContextLength)
            throw new ChatRequestException(400, $"the prompt has {textTokens} tokens of text and {imageCount} images of at least one position each; this server's context length is {ContextLength} tokens",
                "messages", "context_length_exceeded");
        cancellationToken.ThrowIfCancellationRequested();
        var prepared = session.Request(prompt, limit);
        CheckContext(prepared.PromptIds.Count, maxTokens);
        return prepared;
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
        if (maxTokens is int m && (long)promptTokens + m > ContextLength)
            throw new ChatRequestException(400, $"this server's context length is {ContextLength} tokens, but {(long)promptTokens + m} were requested ({promptTokens} in the messages, {m} in the completion)",
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
            var request = job.Request;
            int promptTokens = request.PromptIds.Count;
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
