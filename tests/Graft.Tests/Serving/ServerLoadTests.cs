using System.Net;
using System.Text;
using System.Text.Json;
using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Serving;
using Graft.Tests.Plugins;
using Microsoft.Extensions.Logging;
using ChatMessage = Graft.Models.Chat.ChatMessage;

namespace Graft.Tests.Serving;

/// <summary>The server under several requests at once: batching, the bounded queue, disconnects, time limits and shutdown.</summary>
[Collection(ServingCollection.Name)]
public sealed class ServerLoadTests(ServingFixture fixture)
{
    private static string Body(string model, string prompt, int maxTokens, float temperature = 0f, int seed = 0, bool stream = false) =>
        JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["model"] = model,
            ["messages"] = new[] { new Dictionary<string, string> { ["role"] = "user", ["content"] = prompt } },
            ["max_tokens"] = maxTokens,
            ["temperature"] = temperature,
            ["seed"] = seed,
            ["stream"] = stream,
        });

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>
    /// 32 clients at once against a batch of 4 and a queue of 6: every request is either answered with exactly the text it
    /// gets when generated alone (greedy or sampled with its own seed, text-only or through the plug-in with an image), or
    /// refused with 429 and Retry-After; none is lost or answered with another's text, and decode steps really ran batched.
    /// </summary>
    [Fact]
    public async Task Many_clients_at_once_are_each_answered_alone_or_refused()
    {
        await using var engine = fixture.Engine(new ServingOptions { MaxBatch = 4, MaxQueue = 6 });
        await using var server = await ChatServer.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        const int clients = 32;
        var requests = Enumerable.Range(0, clients).Select(i =>
        {
            string prompt = $"Request {i}: {new string((char)('a' + i % 26), 1 + i % 5)}";
            float temperature = i % 3 == 0 ? 0f : 0.8f;
            int maxTokens = 4 + i % 7;
            bool image = i % 4 == 1;
            var options = new SamplingOptions { MaxTokens = maxTokens, Temperature = temperature, Seed = 100 + i };
            var expected = image
                ? fixture.Expected(ServingFixture.Plugin, [ChatMessage.User(prompt)], options, [[ServingFixture.Image(i)]])
                : fixture.Expected(i % 2 == 0 ? null : ServingFixture.Plugin, [ChatMessage.User(prompt)], options);
            string body = image
                ? JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["model"] = ServingFixture.PluginModel,
                    ["messages"] = new[] { new Dictionary<string, object> { ["role"] = "user", ["content"] = new object[]
                    {
                        new Dictionary<string, object> { ["type"] = "text", ["text"] = prompt },
                        new Dictionary<string, object> { ["type"] = "image_url", ["image_url"] = new Dictionary<string, string> { ["url"] = ServingFixture.DataUri(ServingFixture.Image(i)) } },
                    } } },
                    ["max_tokens"] = maxTokens, ["temperature"] = temperature, ["seed"] = 100 + i,
                })
                : Body(i % 2 == 0 ? ServingFixture.Base : ServingFixture.PluginModel, prompt, maxTokens, temperature, 100 + i);
            return (Body: body, Expected: expected);
        }).ToArray();

        using var start = new SemaphoreSlim(0);
        var calls = requests.Select(async r =>
        {
            await start.WaitAsync();
            using var response = await http.PostAsync("v1/chat/completions", Json(r.Body));
            return (response.StatusCode, Retry: response.Headers.RetryAfter, Body: await response.Content.ReadAsStringAsync());
        }).ToArray();
        start.Release(clients);
        var answers = await Task.WhenAll(calls);

        int answered = 0;
        for (int i = 0; i < clients; i++)
        {
            var (status, retry, body) = answers[i];
            using var document = JsonDocument.Parse(body);
            if (status == HttpStatusCode.TooManyRequests)
            {
                Assert.NotNull(retry);
                Assert.Equal("queue_full", document.RootElement.GetProperty("error").GetProperty("code").GetString());
                continue;
            }
            Assert.True(status == HttpStatusCode.OK, $"request {i}: {status} {body}");
            answered++;
            var choice = document.RootElement.GetProperty("choices")[0];
            Assert.Equal(requests[i].Expected.Text, choice.GetProperty("message").GetProperty("content").GetString());
            Assert.Equal(requests[i].Expected.FinishReason, choice.GetProperty("finish_reason").GetString());
            Assert.Equal(requests[i].Expected.CompletionTokens, document.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        }
        Assert.True(answered >= 4, $"only {answered} of {clients} requests were answered");
        var metrics = engine.Metrics.Render();
        Assert.Matches(@"graft_batch_size_bucket\{le=""1""\} \d+\ngraft_batch_size_bucket\{le=""2""\} \d+", metrics);
        Assert.True(BatchedSteps(metrics) > 0, "no decode step ran more than one sequence:\n" + metrics);
        Assert.Equal(0, engine.QueueDepth);
    }

    /// <summary>Steps that ran two or more sequences: all steps minus those of one.</summary>
    private static long BatchedSteps(string metrics)
    {
        long Value(string pattern) => long.Parse(System.Text.RegularExpressions.Regex.Match(metrics, pattern).Groups[1].Value);
        return Value(@"graft_batch_size_count (\d+)") - Value(@"graft_batch_size_bucket\{le=""1""\} (\d+)");
    }

    /// <summary>One request running, one waiting: a third is refused at once with 429 and Retry-After; then the queue frees.</summary>
    [Fact]
    public async Task A_full_queue_is_a_429_with_retry_after()
    {
        await using var engine = fixture.Engine(new ServingOptions { MaxBatch = 1, MaxQueue = 1, ContextLength = 8192 });
        await using var server = await ChatServer.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        var first = await StartStream(http, Body(ServingFixture.Base, "long", 8000, stream: true), CancellationToken.None);
        var waiting = http.PostAsync("v1/chat/completions", Json(Body(ServingFixture.Base, "short", 3)));
        await Until(() => engine.QueueDepth == 1);

        using var refused = await http.PostAsync("v1/chat/completions", Json(Body(ServingFixture.Base, "third", 3)));
        await ServerTests.AssertError(refused, HttpStatusCode.TooManyRequests, "rate_limit_error", null, "queue_full", "1 requests are already waiting");
        Assert.Equal(TimeSpan.FromSeconds(1), refused.Headers.RetryAfter!.Delta);

        // The first client leaves; its place goes to the waiting request.
        first.Dispose();
        using var answer = await waiting;
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
    }

    /// <summary>A client that goes away mid-stream cancels its request: it leaves the batch long before its token limit.</summary>
    [Fact]
    public async Task A_client_disconnect_cancels_its_request()
    {
        await using var engine = fixture.Engine(new ServingOptions { ContextLength = 8192 });
        await using var server = await ChatServer.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        using (var cancel = new CancellationTokenSource())
        {
            using var stream = await StartStream(http, Body(ServingFixture.Base, "go on and on", 8000, stream: true), cancel.Token);
            Assert.Equal(1, engine.Running);
            await cancel.CancelAsync();
        }
        await Until(() => engine.Metrics.Completions("cancelled") == 1 && engine.Running == 0);
        var tokens = long.Parse(System.Text.RegularExpressions.Regex.Match(engine.Metrics.Render(), @"graft_completion_tokens_total (\d+)").Groups[1].Value);
        Assert.True(tokens < 8000, $"{tokens} tokens were generated for a client that left");
    }

    /// <summary>Past the time limit a waiting request is answered 408, and a running stream ends with an error event.</summary>
    [Fact]
    public async Task The_request_time_limit_ends_running_and_waiting_requests()
    {
        await using var engine = fixture.Engine(new ServingOptions { MaxBatch = 1, ContextLength = 8192, RequestTimeout = TimeSpan.FromSeconds(1) });
        await using var server = await ChatServer.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        var streamed = http.PostAsync("v1/chat/completions", Json(Body(ServingFixture.Base, "long", 8000, stream: true)));
        await Until(() => engine.Running == 1);
        using var waited = await http.PostAsync("v1/chat/completions", Json(Body(ServingFixture.Base, "queued", 8000)));
        await ServerTests.AssertError(waited, HttpStatusCode.RequestTimeout, "timeout_error", null, "request_timeout", "limit of 1 s");

        using var stream = await streamed;
        var text = await stream.Content.ReadAsStringAsync();
        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        using var error = JsonDocument.Parse(events[^2]["data: ".Length..]);
        Assert.Equal("request_timeout", error.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(2, engine.Metrics.Completions("timeout"));
    }

    /// <summary>Stopping: a running stream finishes normally within the grace, and the port is closed afterwards.</summary>
    [Fact]
    public async Task Shutdown_lets_running_requests_finish_and_closes_the_port()
    {
        await using var engine = fixture.Engine(new ServingOptions { ShutdownGrace = TimeSpan.FromSeconds(20) });
        var server = await ChatServer.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        var expected = fixture.Expected(null, [ChatMessage.User("finish me")], new SamplingOptions { MaxTokens = 40, Temperature = 0f });
        using var stream = await StartStream(http, Body(ServingFixture.Base, "finish me", 40, stream: true), CancellationToken.None);
        var stopping = server.StopAsync();
        var text = await new StreamReader(await stream.Content.ReadAsStreamAsync()).ReadToEndAsync();
        await stopping;
        Assert.EndsWith("data: [DONE]\n\n", text);
        var content = string.Concat(text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)[..^1]
            .Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices"))
            .Where(c => c.GetArrayLength() > 0 && c[0].GetProperty("delta").TryGetProperty("content", out _))
            .Select(c => c[0].GetProperty("delta").GetProperty("content").GetString()));
        Assert.Equal(expected.Text, content);
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync("health"));
        await server.DisposeAsync();
        var late = await Assert.ThrowsAsync<ServerBusyException>(() => engine.SubmitAsync(new ChatRequest { Model = ServingFixture.Base, Messages = [new ChatTurn("user", "late", [])] }));
        Assert.Equal(503, late.Status);
    }

    /// <summary>Posts a streaming request and returns once its first event (the role chunk) has arrived: it is admitted and running.</summary>
    private static async Task<HttpResponseMessage> StartStream(HttpClient http, string body, CancellationToken cancellationToken)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Json(body) };
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return response;
    }

    private static async Task Until(Func<bool> condition)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(20)) throw new TimeoutException("the server never reached the expected state");
            await Task.Delay(5);
        }
    }
}

/// <summary>Images as JPEG data URIs and, with local files allowed, as file:// URLs and absolute paths.</summary>
[Collection(ServingCollection.Name)]
public sealed class ServerImageSourceTests(ServingFixture fixture)
{
    [Fact]
    public async Task Jpeg_data_uris_and_allowed_local_files_are_read_as_the_same_image()
    {
        await using var engine = fixture.Engine(new ServingOptions { AllowLocalFiles = true });
        await using var server = await ChatServer.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        var path = Path.Combine(Graft.Tests.Support.GoldenCase.Folder("images"), "jpeg_420_q50.jpg");
        var expected = fixture.Expected(ServingFixture.Plugin, [ChatMessage.User("see")], new SamplingOptions { MaxTokens = 6, Temperature = 0f }, [[ImageDecoder.Load(path)]]);
        foreach (var url in new[] { "data:image/jpeg;base64," + Convert.ToBase64String(File.ReadAllBytes(path)), new Uri(path).AbsoluteUri, path })
        {
            string body = $$$"""{"model": "tiny+bridge", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "{{{url}}}"}}]}]}""";
            using var response = await http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, text);
            using var document = JsonDocument.Parse(text);
            Assert.Equal(expected.Text, document.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
            Assert.Equal(expected.PromptTokens, document.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        }
        string missing = $$$"""{"model": "tiny+bridge", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "{{{path}}}.missing"}}]}]}""";
        await ServerTests.AssertError(await http.PostAsync("v1/chat/completions", new StringContent(missing, Encoding.UTF8, "application/json")),
            HttpStatusCode.BadRequest, "invalid_request_error", "messages[0].content[0].image_url.url", "invalid_value", "there is no file");
    }
}

/// <summary>A server fault: a 500 in OpenAI's error shape, the trace in the log, and the server goes on serving.</summary>
[Collection(ServingCollection.Name)]
public sealed class ServerFaultTests(ServingFixture fixture)
{
    [Fact]
    public async Task A_server_bug_is_a_500_with_a_logged_trace_and_the_server_stays_up()
    {
        var log = new ListLogger();
        await using var engine = fixture.Engine(logger: log, broken: model => new FailingPlugin(PluginFixtures.RandomBridge(model, seed: 9)));
        await using var server = await ChatServer.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        string body = $$$"""{"model": "tiny+broken", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "{{{ServingFixture.DataUri(ServingFixture.Image(2))}}}"}}]}]}""";
        using var response = await http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        await ServerTests.AssertError(response, HttpStatusCode.InternalServerError, "server_error", null, "internal_error", "the error is in its log");
        Assert.Contains(log.Entries, e => e.Level == LogLevel.Error && e.Exception is InvalidOperationException { Message: FailingPlugin.Failure });
        Assert.Equal(1, engine.Metrics.Completions("error"));
        using var next = await http.PostAsync("v1/chat/completions", new StringContent(
            """{"model": "tiny", "messages": [{"role": "user", "content": "still there?"}], "max_tokens": 2}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
    }

    /// <summary>A Bridge whose preparation of a prompt fails as a bug would.</summary>
    private sealed class FailingPlugin(IPlugin inner) : IPlugin
    {
        public const string Failure = "a bug in the plug-in";
        public string Design => inner.Design;
        public PluginManifest Manifest => inner.Manifest;
        public DecoderModel Base => inner.Base;
        public IReadOnlyList<PluginParameter> Parameters => inner.Parameters;
        public bool CanRouteText => inner.CanRouteText;
        public bool CanEncodePixels => true;
        public PromptLayout Layout => inner.Layout;
        public PreparedInput Prepare(MultimodalPrompt prompt) => throw new InvalidOperationException(Failure);
    }

    private sealed class ListLogger : ILogger
    {
        public List<(LogLevel Level, Exception? Exception)> Entries { get; } = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Entries) Entries.Add((logLevel, exception));
        }
    }
}
