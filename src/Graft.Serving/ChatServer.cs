using System.Buffers;
using System.Net;
using System.Text;
using System.Text.Json;
using Graft.Models.Generation;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Graft.Serving;

/// <summary>
/// The OpenAI-compatible HTTP server (Kestrel) over one <see cref="ChatEngine"/>: GET /v1/models, GET /v1/models/{id},
/// POST /v1/chat/completions (JSON or server-sent events), GET /health and GET /metrics (Prometheus text). Every client
/// mistake is a 4xx with OpenAI's error JSON, HTTP-level ones (a malformed chunked body, a body sent too slowly) included,
/// those logged once as a warning without a trace; a server fault is a 500 with the same shape and its trace in the log.
/// </summary>
public sealed class ChatServer : IAsyncDisposable
{
    private static readonly byte[] DoneEvent = "data: [DONE]\n\n"u8.ToArray();

    private readonly WebApplication _app;
    private readonly ChatEngine _engine;
    private readonly ILogger _logger;
    private readonly long _started = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private volatile bool _stopping;

    private ChatServer(WebApplication app, ChatEngine engine, ILogger logger)
    {
        _app = app;
        _engine = engine;
        _logger = logger;
    }

    /// <summary>Where the server listens (the port chosen when 0 was asked for).</summary>
    public Uri Address { get; private set; } = null!;

    public ChatEngine Engine => _engine;

    /// <summary>Starts listening on <paramref name="host"/>:<paramref name="port"/> (0: any free port; see <see cref="Address"/>).</summary>
    public static async Task<ChatServer> StartAsync(ChatEngine engine, string host = "127.0.0.1", int port = 0, ILoggerFactory? loggerFactory = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentOutOfRangeException.ThrowIfNegative(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        var address = host == "localhost" ? IPAddress.Loopback
            : IPAddress.TryParse(host, out var parsed) ? parsed : throw new ArgumentException($"--host '{ErrorText.Shown(host)}' is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1) or localhost");
        CheckCanListen(address, port, host);
        loggerFactory ??= NullLoggerFactory.Instance;
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "graft" });
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<ILoggerFactory>(new OneLineLogs(loggerFactory));
        // The command decides when to stop (Ctrl-C through its own cancellation), so the host does not listen for it too.
        builder.Services.AddSingleton<IHostLifetime, CommandLifetime>();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = engine.Options.ShutdownGrace + TimeSpan.FromSeconds(5));
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = engine.Options.MaxRequestBytes;
            kestrel.Limits.MinRequestBodyDataRate = engine.Options.MinRequestBodyBytesPerSecond > 0
                ? new Microsoft.AspNetCore.Server.Kestrel.Core.MinDataRate(engine.Options.MinRequestBodyBytesPerSecond, engine.Options.MinRequestBodyGrace) : null;
            kestrel.Listen(address, port);
        });
        var app = builder.Build();
        var server = new ChatServer(app, engine, loggerFactory.CreateLogger<ChatServer>());
        app.Use(server.Guard);
        app.Map("/v1/chat/completions", server.ChatCompletions);
        app.Map("/v1/models", server.Models);
        app.Map("/v1/models/{id}", server.Model);
        app.Map("/health", server.Health);
        app.Map("/metrics", server.Metrics);
        app.MapFallback(context => WriteError(context, 404, $"no endpoint at {ErrorText.Shown(context.Request.Method)} {ErrorText.Shown(context.Request.Path.ToString())}; this server has /v1/models, /v1/chat/completions, /health and /metrics",
            ChatRequestException.InvalidRequest, null, "unknown_url"));
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or InvalidOperationException && !cancellationToken.IsCancellationRequested)
        {
            // The port was taken between the check and the bind.
            await app.DisposeAsync();
            throw new IOException($"cannot listen on {host}:{port}: {e.Message}", e);
        }
        var bound = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        server.Address = new Uri(bound.Replace("[::]", "[::1]").Replace("0.0.0.0", "127.0.0.1"));
        return server;
    }

    /// <summary>
    /// Binds a socket where the server will listen and lets it go, so that a port in use, an address that is not this
    /// machine's or a privileged port is one clear error before anything starts (Kestrel's own failure is a long trace).
    /// </summary>
    private static void CheckCanListen(IPAddress address, int port, string host)
    {
        using var socket = new System.Net.Sockets.Socket(address.AddressFamily, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        // As Kestrel binds on Unix: connections of an earlier server still closing do not hold the port.
        if (!OperatingSystem.IsWindows()) socket.SetSocketOption(System.Net.Sockets.SocketOptionLevel.Socket, System.Net.Sockets.SocketOptionName.ReuseAddress, true);
        try
        {
            socket.Bind(new IPEndPoint(address, port));
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new IOException(e.SocketErrorCode switch
            {
                System.Net.Sockets.SocketError.AddressAlreadyInUse => $"cannot listen on {host}:{port}: the port is in use; choose another --port (or --port 0 for any free one)",
                System.Net.Sockets.SocketError.AddressNotAvailable => $"cannot listen on {host}: it is not an address of this machine (use 127.0.0.1, 0.0.0.0, ::1 or one of its network interfaces' addresses)",
                System.Net.Sockets.SocketError.AccessDenied => $"cannot listen on {host}:{port}: permission denied (ports below 1024 need privileges)",
                _ => $"cannot listen on {host}:{port}: {e.Message}",
            }, e);
        }
    }

    /// <summary>
    /// Graceful shutdown: the port closes, requests still waiting get 503, running ones may finish within
    /// <see cref="ServingOptions.ShutdownGrace"/> and are cancelled after it.
    /// </summary>
    public async Task StopAsync()
    {
        _stopping = true;
        var engineStopped = _engine.StopAsync();
        await _app.StopAsync();
        await engineStopped;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await _app.DisposeAsync();
    }

    /// <summary>Counts every answer by status; a fault no handler caught becomes a 500 with OpenAI's error shape and a logged trace.</summary>
    private async Task Guard(HttpContext context, RequestDelegate next)
    {
        try
        {
            await next(context);
        }
        catch (Exception e) when (context.RequestAborted.IsCancellationRequested)
        {
            _logger.LogDebug(e, "{Method} {Path}: the client went away", context.Request.Method, context.Request.Path);
            // The client closed the request (nginx's 499): nothing is sent.
            if (!context.Response.HasStarted) context.Response.StatusCode = 499;
        }
        catch (BadHttpRequestException e)
        {
            // Kestrel's own refusal of what the client sent (framing, size, a body too slow), wherever it surfaced.
            var (status, message, type, code) = HttpFailure(e);
            _logger.LogWarning("{Method} {Path}: {Status}, {Message}", context.Request.Method, ErrorText.Shown(context.Request.Path.ToString()), status, message);
            if (!context.Response.HasStarted) await WriteError(context, status, message, type, null, code);
        }
        catch (Exception e)
        {
            _logger.LogError(e, "{Method} {Path} failed", context.Request.Method, context.Request.Path);
            if (!context.Response.HasStarted)
                await WriteError(context, 500, "the server failed on this request; the error is in its log", "server_error", null, "internal_error");
        }
        _engine.Metrics.CountRequest(context.Response.StatusCode);
    }

    private async Task ChatCompletions(HttpContext context)
    {
        if (!HttpMethods.IsPost(context.Request.Method))
        {
            await MethodNotAllowed(context, "POST");
            return;
        }
        ChatJob job;
        OpenAiChatRequest request;
        try
        {
            var body = await ReadBody(context);
            request = OpenAiProtocol.ParseChatRequest(body, _engine.NewBudget(), _engine.CheckCanSee);
            job = await _engine.SubmitAsync(request.Request, context.RequestAborted);
            await job.Started;
        }
        catch (Exception e) when (!context.RequestAborted.IsCancellationRequested)
        {
            await WriteFailure(context, e);
            return;
        }
        if (request.Stream) await Stream(context, job, request.IncludeUsage);
        else
        {
            GenerationResult result;
            try
            {
                result = await job.Result;
            }
            catch (Exception e) when (!context.RequestAborted.IsCancellationRequested)
            {
                await WriteFailure(context, e);
                return;
            }
            await WriteJson(context, 200, json => OpenAiProtocol.WriteCompletion(json, job, result));
        }
    }

    /// <summary>
    /// Server-sent events in OpenAI's chunk format: the role, one chunk per text piece, the finish reason, the usage when
    /// asked for, then `data: [DONE]`. A failure after the stream began is sent as an error event before [DONE].
    /// </summary>
    private async Task Stream(HttpContext context, ChatJob job, bool includeUsage)
    {
        var response = context.Response;
        response.StatusCode = 200;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var aborted = context.RequestAborted;
        await Event(context, json => OpenAiProtocol.WriteChunk(json, job, includeUsage, "assistant", "", null), aborted);
        try
        {
            await foreach (var piece in job.Pieces.ReadAllAsync(aborted))
                await Event(context, json => OpenAiProtocol.WriteChunk(json, job, includeUsage, null, piece, null), aborted);
            var result = await job.Result;
            await Event(context, json => OpenAiProtocol.WriteChunk(json, job, includeUsage, null, null, result.FinishReason), aborted);
            if (includeUsage) await Event(context, json => OpenAiProtocol.WriteUsageChunk(json, job, result), aborted);
        }
        catch (Exception e) when (!aborted.IsCancellationRequested)
        {
            var (status, message, type, param, code) = Describe(e);
            if (status == 500) _logger.LogError(e, "a streamed completion failed");
            await Event(context, json => OpenAiProtocol.WriteError(json, message, type, param, code), aborted);
        }
        await response.Body.WriteAsync(DoneEvent, aborted);
        await response.Body.FlushAsync(aborted);
    }

    private async Task Models(HttpContext context)
    {
        if (!HttpMethods.IsGet(context.Request.Method))
        {
            await MethodNotAllowed(context, "GET");
            return;
        }
        await WriteJson(context, 200, json => OpenAiProtocol.WriteModels(json, _engine.ModelIds, _started));
    }

    private async Task Model(HttpContext context)
    {
        if (!HttpMethods.IsGet(context.Request.Method))
        {
            await MethodNotAllowed(context, "GET");
            return;
        }
        var id = (string)context.Request.RouteValues["id"]!;
        try
        {
            _engine.PluginOf(id);
        }
        catch (Exception e) when (!context.RequestAborted.IsCancellationRequested)
        {
            await WriteFailure(context, e);
            return;
        }
        await WriteJson(context, 200, json => OpenAiProtocol.WriteModel(json, id, _started));
    }

    private Task Health(HttpContext context) =>
        WriteJson(context, _stopping ? 503 : 200, json =>
        {
            json.WriteStartObject();
            json.WriteString("status", _stopping ? "stopping" : "ok");
            json.WriteStartArray("models");
            foreach (var id in _engine.ModelIds) json.WriteStringValue(id);
            json.WriteEndArray();
            json.WriteNumber("queue_depth", _engine.QueueDepth);
            json.WriteNumber("preparing", _engine.Preparing);
            json.WriteNumber("running", _engine.Running);
            json.WriteEndObject();
        });

    private async Task Metrics(HttpContext context)
    {
        context.Response.StatusCode = 200;
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await context.Response.WriteAsync(_engine.Metrics.Render(), Encoding.UTF8);
    }

    /// <summary>
    /// The whole body, held once: read in pieces as it arrives (a client that announces a large body and sends nothing
    /// holds no memory), then joined into one array of its exact size. Kestrel's refusals (a body over the size limit, a
    /// malformed chunked body, one that arrives too slowly) are the client's mistakes: logged once, without a trace.
    /// </summary>
    private async Task<ReadOnlyMemory<byte>> ReadBody(HttpContext context)
    {
        const int PieceSize = 1 << 20;
        var pieces = new List<byte[]>();
        long length = 0;
        try
        {
            var body = context.Request.Body;
            while (true)
            {
                var piece = ArrayPool<byte>.Shared.Rent(PieceSize);
                pieces.Add(piece);
                int filled = 0, read;
                while (filled < PieceSize && (read = await body.ReadAsync(piece.AsMemory(filled, PieceSize - filled), context.RequestAborted)) > 0) filled += read;
                length += filled;
                if (filled < PieceSize) break;
            }
            var whole = GC.AllocateUninitializedArray<byte>(checked((int)length));
            for (int i = 0; i < pieces.Count; i++)
                pieces[i].AsSpan(0, (int)Math.Min(PieceSize, length - (long)i * PieceSize)).CopyTo(whole.AsSpan(i * PieceSize));
            return whole;
        }
        catch (BadHttpRequestException e) when (!context.RequestAborted.IsCancellationRequested)
        {
            var (status, message, type, code) = HttpFailure(e);
            _logger.LogWarning("{Method} {Path}: {Status}, {Message}", context.Request.Method, context.Request.Path, status, message);
            throw new ChatRequestException(status, message, null, code, type);
        }
        finally
        {
            foreach (var piece in pieces) ArrayPool<byte>.Shared.Return(piece);
        }
    }

    /// <summary>Kestrel's refusal of a request as the status and OpenAI error the client gets.</summary>
    private static (int Status, string Message, string Type, string Code) HttpFailure(BadHttpRequestException e) => e.StatusCode switch
    {
        StatusCodes.Status413PayloadTooLarge => (413, $"the request body is larger than this server's limit ({e.Message})", ChatRequestException.InvalidRequest, "request_too_large"),
        StatusCodes.Status408RequestTimeout => (408, $"the request body arrived too slowly ({e.Message})", "timeout_error", "request_timeout"),
        >= 400 and < 500 => (e.StatusCode, $"the request is malformed at the HTTP level: {e.Message}", ChatRequestException.InvalidRequest, "invalid_http_request"),
        _ => (400, $"the request is malformed at the HTTP level: {e.Message}", ChatRequestException.InvalidRequest, "invalid_http_request"),
    };

    /// <summary>Writes the error for a failure before the response began (the client's mistake, a full queue, a timeout, or a server fault).</summary>
    private async Task WriteFailure(HttpContext context, Exception e)
    {
        var (status, message, type, param, code) = Describe(e);
        if (status == 500) _logger.LogError(e, "a chat completion failed");
        if (e is ServerBusyException { RetryAfter: { } retry }) context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retry.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        await WriteError(context, status, message, type, param, code);
    }

    private static (int Status, string Message, string Type, string? Param, string Code) Describe(Exception e) => e switch
    {
        ChatRequestException r => (r.Status, r.Message, r.Type, r.Param, r.Code),
        ServerBusyException { Status: 429 } b => (429, b.Message, "rate_limit_error", null, b.Code),
        ServerBusyException b => (b.Status, b.Message, "server_error", null, b.Code),
        TimeoutException t => (408, t.Message, "timeout_error", null, "request_timeout"),
        _ => (500, "the server failed on this request; the error is in its log", "server_error", null, "internal_error"),
    };

    private static Task MethodNotAllowed(HttpContext context, string allowed)
    {
        context.Response.Headers.Allow = allowed;
        return WriteError(context, 405, $"{context.Request.Path} takes {allowed}, not {context.Request.Method}", ChatRequestException.InvalidRequest, null, "method_not_allowed");
    }

    private static Task WriteError(HttpContext context, int status, string message, string type, string? param, string? code) =>
        WriteJson(context, status, json => OpenAiProtocol.WriteError(json, message, type, param, code));

    private static async Task WriteJson(HttpContext context, int status, Action<Utf8JsonWriter> write)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(Serialize(write));
    }

    private static async Task Event(HttpContext context, Action<Utf8JsonWriter> write, CancellationToken cancellationToken)
    {
        var body = context.Response.Body;
        await body.WriteAsync("data: "u8.ToArray(), cancellationToken);
        await body.WriteAsync(Serialize(write), cancellationToken);
        await body.WriteAsync("\n\n"u8.ToArray(), cancellationToken);
        await body.FlushAsync(cancellationToken);
    }

    private static ReadOnlyMemory<byte> Serialize(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            write(json);
        return buffer.WrittenMemory;
    }

    /// <summary>
    /// The framework's (Kestrel's, the host's) logging through the caller's logger factory, one line per message: an
    /// exception attached to one is reduced to its type and message. Its trace is inside the framework and tells an
    /// operator nothing; the server's own faults are logged with theirs by the server's logger, which is not wrapped.
    /// </summary>
    private sealed class OneLineLogs(ILoggerFactory inner) : ILoggerFactory
    {
        public ILogger CreateLogger(string categoryName) => new Logger(inner.CreateLogger(categoryName));

        public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

        /// <summary>The factory is the caller's; it outlives the server.</summary>
        public void Dispose()
        {
        }

        private sealed class Logger(ILogger inner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => inner.BeginScope(state);

            public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (exception is null) inner.Log(logLevel, eventId, state, null, formatter);
                else inner.Log(logLevel, eventId, state, null, (s, _) => $"{formatter(s, exception)} ({exception.GetType().Name}: {exception.Message})");
            }
        }
    }

    /// <summary>A host lifetime that leaves Ctrl-C to the command, which stops the server gracefully itself.</summary>
    private sealed class CommandLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
