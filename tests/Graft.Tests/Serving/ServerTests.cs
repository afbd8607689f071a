using System.ClientModel;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Serving;
using OpenAI;
using OpenAI.Chat;
using ChatMessage = Graft.Models.Chat.ChatMessage;

namespace Graft.Tests.Serving;

/// <summary>The OpenAI-compatible server end to end on 127.0.0.1, driven by the official OpenAI .NET client and by plain HTTP.</summary>
[Collection(ServingCollection.Name)]
public sealed class ServerTests(ServingFixture fixture) : IAsyncLifetime
{
    private ChatServer _server = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _server = await ChatServer.StartAsync(fixture.Engine(new ServingOptions
        {
            ContextLength = 256,
            ImageLimits = new ImageLimits { MaxFileBytes = 8192, MaxPixels = 64 * 64 },
            MaxRequestBytes = 1 << 20,
        }));
        _http = new HttpClient { BaseAddress = _server.Address };
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
        await _server.Engine.DisposeAsync();
    }

    private ChatClient Client(string model) =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_server.Address, "v1") }).GetChatClient(model);

    private static SamplingOptions Greedy(int maxTokens) => new() { MaxTokens = maxTokens, Temperature = 0f };

    [Fact]
    public async Task Models_lists_the_base_and_one_model_per_plugin()
    {
        var client = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_server.Address, "v1") });
        var models = (await client.GetOpenAIModelClient().GetModelsAsync()).Value;
        Assert.Equal([ServingFixture.Base, ServingFixture.BlindModel, ServingFixture.PluginModel], models.Select(m => m.Id).Order(StringComparer.Ordinal));
        Assert.All(models, m => Assert.Equal("graft", m.OwnedBy));

        using var one = JsonDocument.Parse(await _http.GetStringAsync($"v1/models/{ServingFixture.PluginModel}"));
        Assert.Equal(ServingFixture.PluginModel, one.RootElement.GetProperty("id").GetString());
        await AssertError(await _http.GetAsync("v1/models/nope"), HttpStatusCode.NotFound, "invalid_request_error", "model", "model_not_found", "'nope' does not exist");
    }

    [Fact]
    public async Task A_text_chat_answers_what_the_base_generates_alone_with_usage()
    {
        var completion = (await Client(ServingFixture.Base).CompleteChatAsync(
            [new SystemChatMessage("Be brief."), new UserChatMessage("Hello there")],
            new ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 0f })).Value;
        var expected = fixture.Expected(null, [ChatMessage.System("Be brief."), ChatMessage.User("Hello there")], Greedy(12));
        Assert.Equal(expected.Text, completion.Content[0].Text);
        Assert.Equal(expected.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, completion.FinishReason);
        Assert.Equal(expected.PromptTokens, completion.Usage.InputTokenCount);
        Assert.Equal(expected.CompletionTokens, completion.Usage.OutputTokenCount);
        Assert.Equal(expected.PromptTokens + expected.CompletionTokens, completion.Usage.TotalTokenCount);
        Assert.Equal(ServingFixture.Base, completion.Model);
        Assert.StartsWith("chatcmpl-", completion.Id);
    }

    [Fact]
    public async Task An_image_chat_goes_through_the_plugin()
    {
        var image = ServingFixture.Image(1);
        var completion = (await Client(ServingFixture.PluginModel).CompleteChatAsync(
            [new UserChatMessage(ChatMessageContentPart.CreateTextPart("What is this?"), ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(PngEncoder.Encode(image)), "image/png"))],
            new ChatCompletionOptions { MaxOutputTokenCount = 10, Temperature = 0f })).Value;
        var expected = fixture.Expected(ServingFixture.Plugin, [ChatMessage.User("What is this?")], Greedy(10), [[image]]);
        Assert.Equal(expected.Text, completion.Content[0].Text);
        Assert.Equal(expected.PromptTokens, completion.Usage.InputTokenCount);
        // The image's positions count: the prompt is longer than its text alone.
        var textOnly = fixture.Expected(null, [ChatMessage.User("What is this?")], Greedy(1));
        Assert.True(completion.Usage.InputTokenCount > textOnly.PromptTokens);
    }

    [Fact]
    public async Task Streaming_gives_the_same_text_in_chunks_and_the_usage()
    {
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 16, Temperature = 0f };
        var pieces = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in Client(ServingFixture.Base).CompleteChatStreamingAsync([new UserChatMessage("Tell me more")], options))
        {
            foreach (var part in update.ContentUpdate) pieces.Append(part.Text);
            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }
        var expected = fixture.Expected(null, [ChatMessage.User("Tell me more")], Greedy(16));
        Assert.Equal(expected.Text, pieces.ToString());
        Assert.NotNull(finish);
        Assert.NotNull(usage);
        Assert.Equal(expected.PromptTokens, usage!.InputTokenCount);
        Assert.Equal(expected.CompletionTokens, usage.OutputTokenCount);
    }

    /// <summary>The raw server-sent events: role first, content deltas, the finish reason, the usage chunk (no choices), then [DONE].</summary>
    [Fact]
    public async Task Stream_events_follow_openai_chunk_format()
    {
        var body = $$$"""{"model":"{{{ServingFixture.Base}}}","messages":[{"role":"user","content":"Hi"}],"max_tokens":5,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}""";
        using var response = await _http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var text = await response.Content.ReadAsStringAsync();
        Assert.EndsWith("data: [DONE]\n\n", text);
        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement).ToArray();
        Assert.All(chunks, c =>
        {
            Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString());
            Assert.StartsWith("chatcmpl-", c.GetProperty("id").GetString());
            Assert.Equal(ServingFixture.Base, c.GetProperty("model").GetString());
        });
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        var first = chunks[0].GetProperty("choices")[0];
        Assert.Equal("assistant", first.GetProperty("delta").GetProperty("role").GetString());
        Assert.Equal(JsonValueKind.Null, first.GetProperty("finish_reason").ValueKind);
        Assert.Equal(JsonValueKind.Null, chunks[0].GetProperty("usage").ValueKind);
        var last = chunks[^1];
        Assert.Equal(0, last.GetProperty("choices").GetArrayLength());
        var expected = fixture.Expected(null, [ChatMessage.User("Hi")], Greedy(5));
        Assert.Equal(expected.PromptTokens, last.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(expected.CompletionTokens, last.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        var finish = chunks[^2].GetProperty("choices")[0];
        Assert.Equal(expected.FinishReason, finish.GetProperty("finish_reason").GetString());
        Assert.Empty(finish.GetProperty("delta").EnumerateObject());
        var content = string.Concat(chunks[1..^2].Select(c => c.GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString()));
        Assert.Equal(expected.Text, content);
    }

    /// <summary>Text-only requests to BASE+NAME are routed to the base alone: the same text as BASE, greedy and sampled with a seed.</summary>
    [Theory]
    [InlineData(0f, null)]
    [InlineData(0.9f, 17L)]
    public async Task A_text_only_request_to_a_plugin_model_returns_exactly_what_the_base_returns(float temperature, long? seed)
    {
#pragma warning disable OPENAI001 // Seed is marked experimental in the OpenAI client
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 20, Temperature = temperature, Seed = seed, TopP = 0.95f };
#pragma warning restore OPENAI001
        ChatMessage[] conversation = [ChatMessage.User("Name three colours")];
        var fromBase = (await Client(ServingFixture.Base).CompleteChatAsync([new UserChatMessage("Name three colours")], options)).Value;
        var fromPlugin = (await Client(ServingFixture.PluginModel).CompleteChatAsync([new UserChatMessage("Name three colours")], options)).Value;
        Assert.Equal(fromBase.Content[0].Text, fromPlugin.Content[0].Text);
        Assert.Equal(fromBase.Usage.OutputTokenCount, fromPlugin.Usage.OutputTokenCount);
        var sampling = Greedy(20) with { Temperature = temperature, TopP = 0.95f, Seed = seed is long s ? ChatRequest.SeedFrom(s) : 0 };
        if (seed is not null) Assert.Equal(fixture.Expected(null, conversation, sampling).Text, fromBase.Content[0].Text);
    }

    public static TheoryData<string, HttpStatusCode, string?, string, string> ClientMistakes => new()
    {
        // body, status, param, code, part of the message
        { "{\"model\": \"tiny\", \"messages\": [", HttpStatusCode.BadRequest, null, "invalid_json", "not valid JSON" },
        { "[1, 2]", HttpStatusCode.BadRequest, null, "invalid_json", "must be a JSON object" },
        { "{\"model\": \"gpt-4\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", HttpStatusCode.NotFound, "model", "model_not_found", "'gpt-4' does not exist" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", HttpStatusCode.BadRequest, "model", "missing_required_parameter", "'model' is required" },
        { "{\"model\": \"tiny\"}", HttpStatusCode.BadRequest, "messages", "missing_required_parameter", "'messages' is required" },
        { "{\"model\": \"tiny\", \"messages\": []}", HttpStatusCode.BadRequest, "messages", "invalid_value", "at least one message" },
        { "{\"model\": \"tiny\", \"messages\": \"hi\"}", HttpStatusCode.BadRequest, "messages", "invalid_type", "must be an array" },
        { "{\"model\": \"tiny\", \"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", HttpStatusCode.BadRequest, "messages[0].role", "invalid_value", "role 'tool'" },
        { "{\"model\": \"tiny\", \"messages\": [{\"role\": \"user\"}]}", HttpStatusCode.BadRequest, "messages[0].content", "missing_required_parameter", "is required" },
        { Chat("\"temperature\": 2.5"), HttpStatusCode.BadRequest, "temperature", "invalid_value", "between 0 and 2" },
        { Chat("\"temperature\": \"hot\""), HttpStatusCode.BadRequest, "temperature", "invalid_type", "must be a number" },
        { Chat("\"top_p\": 0"), HttpStatusCode.BadRequest, "top_p", "invalid_value", "in (0, 1]" },
        { Chat("\"max_tokens\": 0"), HttpStatusCode.BadRequest, "max_tokens", "invalid_value", "at least 1" },
        { Chat("\"max_completion_tokens\": 1.5"), HttpStatusCode.BadRequest, "max_completion_tokens", "invalid_type", "an integer" },
        { Chat("\"max_tokens\": 300"), HttpStatusCode.BadRequest, "max_tokens", "context_length_exceeded", "context length is 256 tokens" },
        { Chat("\"seed\": \"x\""), HttpStatusCode.BadRequest, "seed", "invalid_type", "an integer" },
        { Chat("\"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]"), HttpStatusCode.BadRequest, "stop", "invalid_value", "at most 4" },
        { Chat("\"stop\": \"\""), HttpStatusCode.BadRequest, "stop", "invalid_value", "must not be empty" },
        { Chat("\"n\": 2"), HttpStatusCode.BadRequest, "n", "unsupported_parameter", "must be 1" },
        { Chat("\"tools\": []"), HttpStatusCode.BadRequest, "tools", "unsupported_parameter", "not supported" },
        { Chat("\"stream_options\": {\"include_usage\": true}"), HttpStatusCode.BadRequest, "stream_options", "invalid_value", "only allowed when 'stream' is true" },
        { Chat("\"stream\": \"yes\""), HttpStatusCode.BadRequest, "stream", "invalid_type", "a boolean" },
        { Chat("\"presence_penalty\": 0.5"), HttpStatusCode.BadRequest, "presence_penalty", "unsupported_parameter", "not supported" },
        { $$"""{"model": "tiny", "messages": [{"role": "user", "content": "{{new string('x', 2000)}}"}]}""", HttpStatusCode.BadRequest, "messages", "context_length_exceeded", "context length is 256" },
        { Image("tiny", "data:image/png;base64,AAAA"), HttpStatusCode.BadRequest, "messages[0].content", "image_not_supported", "base alone, which cannot see images" },
        { Image("tiny+blind", "data:image/png;base64,AAAA"), HttpStatusCode.BadRequest, "messages[0].content", "image_not_supported", "'blind'" },
        { Image("tiny+bridge", "data:image/png;base64,!!!notbase64!!!"), HttpStatusCode.BadRequest, "messages[0].content[1].image_url.url", "invalid_base64", "not valid base64" },
        { Image("tiny+bridge", "data:image/png," + "abc"), HttpStatusCode.BadRequest, "messages[0].content[1].image_url.url", "invalid_base64", "must be base64-encoded" },
        { Image("tiny+bridge", "data:image/gif;base64,R0lGOD=="), HttpStatusCode.BadRequest, "messages[0].content[1].image_url.url", "invalid_image", "PNG or JPEG" },
        { Image("tiny+bridge", "data:image/png;base64," + Convert.ToBase64String(Encoding.ASCII.GetBytes("this is text, not pixels"))), HttpStatusCode.BadRequest, "messages[0].content[1].image_url.url", "invalid_image", "not a PNG or JPEG image" },
        { Image("tiny+bridge", "data:image/png;base64," + Convert.ToBase64String([.. PngEncoder.Encode(PluginFixturesImage(4))[..40]])), HttpStatusCode.BadRequest, "messages[0].content[1].image_url.url", "invalid_image", "cannot be decoded" },
        { Image("tiny+bridge", ServingFixture.DataUri(new RgbImage(100, 100, new byte[100 * 100 * 3]))), HttpStatusCode.BadRequest, "messages[0].content[1].image_url.url", "image_too_large", "over the limit of 4096" },
        { Image("tiny+bridge", "data:image/png;base64," + new string('A', 20000)), HttpStatusCode.BadRequest, "messages[0].content[1].image_url.url", "image_too_large", "over the limit of 8192" },
        { Image("tiny+bridge", "https://example.com/cat.png"), HttpStatusCode.BadRequest, "messages[0].content[1].image_url.url", "remote_image_url", "not fetched" },
        { Image("tiny+bridge", "file:///etc/hostname"), HttpStatusCode.BadRequest, "messages[0].content[1].image_url.url", "local_file_refused", "--allow-local-files" },
        { Image("tiny+bridge", "/etc/hostname"), HttpStatusCode.BadRequest, "messages[0].content[1].image_url.url", "local_file_refused", "--allow-local-files" },
        { """{"model": "tiny+bridge", "messages": [{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]}""", HttpStatusCode.BadRequest, "messages[0].content[0]", "invalid_value", "only accepted in user messages" },
        { """{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}""", HttpStatusCode.BadRequest, "messages[0].content[0].type", "invalid_value", "'input_audio' is not supported" },
    };

    private static RgbImage PluginFixturesImage(int seed) => ServingFixture.Image(seed);

    private static string Chat(string extra) => $$"""{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], {{extra}}}""";

    private static string Image(string model, string url) =>
        $$$"""{"model": "{{{model}}}", "messages": [{"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "{{{url}}}"}}]}]}""";

    [Theory]
    [MemberData(nameof(ClientMistakes))]
    public async Task Every_client_mistake_is_a_4xx_with_openai_error_json(string body, HttpStatusCode status, string? param, string code, string message)
    {
        using var response = await _http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        await AssertError(response, status, "invalid_request_error", param, code, message);
        // The server is still up and answers the next request.
        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync("health")).StatusCode);
    }

    [Fact]
    public async Task Wrong_methods_paths_and_bodies_are_openai_errors_too()
    {
        await AssertError(await _http.GetAsync("v1/chat/completions"), HttpStatusCode.MethodNotAllowed, "invalid_request_error", null, "method_not_allowed", "takes POST");
        await AssertError(await _http.GetAsync("v1/nothing"), HttpStatusCode.NotFound, "invalid_request_error", null, "unknown_url", "no endpoint");
        await AssertError(await _http.PostAsync("v1/chat/completions", new ByteArrayContent(new byte[2 << 20])), HttpStatusCode.RequestEntityTooLarge,
            "invalid_request_error", null, "request_too_large", "larger than this server's limit");
        var e = await Assert.ThrowsAsync<ClientResultException>(() => Client("gpt-4o").CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(404, e.Status);
        Assert.Contains("model_not_found", e.Message);
    }

    [Fact]
    public async Task Health_and_metrics_report_in_their_formats()
    {
        using var health = JsonDocument.Parse(await _http.GetStringAsync("health"));
        Assert.Equal("ok", health.RootElement.GetProperty("status").GetString());
        Assert.Equal(3, health.RootElement.GetProperty("models").GetArrayLength());

        await Client(ServingFixture.Base).CompleteChatAsync([new UserChatMessage("count")], new ChatCompletionOptions { MaxOutputTokenCount = 4, Temperature = 0f });
        await _http.PostAsync("v1/chat/completions", new StringContent("{", Encoding.UTF8, "application/json"));
        using var response = await _http.GetAsync("metrics");
        Assert.Equal("text/plain", response.Content.Headers.ContentType!.MediaType);
        var metrics = await response.Content.ReadAsStringAsync();
        foreach (var line in new[]
        {
            "# TYPE graft_requests_total counter", "graft_requests_total{status=\"400\"} ", "graft_requests_total{status=\"200\"} ",
            "# TYPE graft_time_to_first_token_seconds histogram", "graft_time_to_first_token_seconds_bucket{le=\"+Inf\"} ",
            "# TYPE graft_time_per_output_token_seconds histogram", "graft_time_per_output_token_seconds_count ",
            "graft_prompt_tokens_total ", "graft_completion_tokens_total ", "graft_queue_depth 0", "graft_running_requests 0",
            "# TYPE graft_batch_size histogram", "graft_completions_total{outcome=",
        })
            Assert.Contains(line, metrics);
        Assert.DoesNotContain("\r", metrics);
        Assert.Matches(@"graft_completion_tokens_total [1-9]", metrics);
    }

    internal static async Task AssertError(HttpResponseMessage response, HttpStatusCode status, string type, string? param, string code, string message)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {status}, got {response.StatusCode}: {body}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var document = JsonDocument.Parse(body);
        var error = document.RootElement.GetProperty("error");
        Assert.Equal(type, error.GetProperty("type").GetString());
        Assert.Equal(code, error.GetProperty("code").GetString());
        if (param is null) Assert.Equal(JsonValueKind.Null, error.GetProperty("param").ValueKind);
        else Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Contains(message, error.GetProperty("message").GetString());
    }

    internal static StringContent Json(string body) => new(body, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));
}
