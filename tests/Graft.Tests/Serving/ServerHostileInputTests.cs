using System.Net;
using System.Text;
using System.Text.Json;
using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Serving;
using Graft.Tests.Plugins;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using static Graft.Tests.Serving.ServingTestKit;
using ChatMessage = Graft.Models.Chat.ChatMessage;

namespace Graft.Tests.Serving;

/// <summary>
/// Issue #14's server rows, each through HTTP on 127.0.0.1: what a hostile client sends is a 4xx with OpenAI's error JSON
/// (or a quiet close), its cost is bounded before anything expensive is done, and it holds up no one else. Bounded in
/// time and count for CI; the long fuzz run is <see cref="ServerRequestFuzzTests"/>.
/// </summary>
[Collection(ServingCollection.Name)]
public sealed class ServerHostileInputTests(ServingFixture fixture) : IAsyncLifetime
{
    private const string Gated = ServingFixture.Base + "+broken";

    private readonly LogCapture _log = new();
    private readonly ManualResetEventSlim _gate = new(true);
    private GatedPlugin _gated = null!;
    private ChatServer _server = null!;
    private HttpClient _http = null!;

    private static ServingOptions Options => new()
    {
        ContextLength = 256,
        MaxRequestBytes = 64L << 20,
        ImageLimits = new ImageLimits { MaxFileBytes = 64 << 10, MaxPixels = 16L << 20 },
        MaxImagesPerRequest = 16,
        MaxRequestImagePixels = 32L << 20,
        ImageWorkers = 1,
        MinRequestBodyBytesPerSecond = 240,
        MinRequestBodyGrace = TimeSpan.FromSeconds(1.5),
    };

    public async Task InitializeAsync()
    {
        var engine = fixture.Engine(Options, _log.CreateLogger("engine"), model => _gated = new GatedPlugin(PluginFixtures.RandomBridge(model, seed: 9), _gate));
        _server = await ChatServer.StartAsync(engine, loggerFactory: _log);
        _http = new HttpClient { BaseAddress = _server.Address, Timeout = TimeSpan.FromSeconds(60) };
    }

    public async Task DisposeAsync()
    {
        _gate.Set();
        _http.Dispose();
        await _server.DisposeAsync();
        await _server.Engine.DisposeAsync();
        _gate.Dispose();
    }

    private Task<HttpResponseMessage> Post(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        return _http.PostAsync("v1/chat/completions", content);
    }

    private Task<HttpResponseMessage> Post(string body) => Post(Encoding.UTF8.GetBytes(body));

    private async Task AssertStillServing()
    {
        using var response = await Post($$"""{"model": "{{ServingFixture.Base}}", "messages": [{"role": "user", "content": "still there?"}], "max_tokens": 2}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    /// <summary>A request with one string replaced by raw bytes (the body is otherwise ASCII).</summary>
    private static byte[] WithRaw(string template, byte[] raw)
    {
        int at = template.IndexOf("@@", StringComparison.Ordinal);
        return [.. Encoding.ASCII.GetBytes(template[..at]), .. raw, .. Encoding.ASCII.GetBytes(template[(at + 2)..])];
    }

    private const string InModel = """{"model": "@@", "messages": [{"role": "user", "content": "hi"}]}""";
    private const string InRole = """{"model": "tiny", "messages": [{"role": "@@", "content": "hi"}]}""";
    private const string InContent = """{"model": "tiny", "messages": [{"role": "user", "content": "a@@b"}]}""";
    private const string InPart = """{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "@@"}]}]}""";
    private const string InStop = """{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stop": ["x", "@@"]}""";
    private const string InName = """{"model": "tiny", "messages": [{"role": "user", "content": "hi", "n@@e": 1}]}""";
    private const string InUrl = """{"model": "tiny+bridge", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}]}""";

    public static TheoryData<string, string, string> BadText => new()
    {
        // where the bytes go, the bytes (hex, or an escape written as JSON text), the param of a lone surrogate
        { InModel, "FF", "model" },
        { InRole, "C0AF", "messages[0].role" },
        { InContent, "EDA080", "messages[0].content" },
        { InPart, "F8888080", "messages[0].content[0].text" },
        { InStop, "E282", "stop[1]" },
        { InUrl, "80", "messages[0].content[0].image_url.url" },
        { InModel, @"\ud800", "model" },
        { InRole, @"\udfff", "messages[0].role" },
        { InContent, @"\ud800\u0041", "messages[0].content" },
        { InPart, @"x\udc00", "messages[0].content[0].text" },
        { InStop, @"\ud800", "stop[1]" },
        { InUrl, @"\ud800", "messages[0].content[0].image_url.url" },
        { InName, @"\ud83d", @"messages[0].n\ud83de" },
    };

    /// <summary>
    /// Invalid UTF-8 (a stray byte, an overlong "/", an encoded surrogate, a 5-byte form, a cut sequence) anywhere in the
    /// body is a 400 invalid_json naming its byte offset; a lone surrogate escape is a 400 naming the field.
    /// </summary>
    [Theory]
    [MemberData(nameof(BadText))]
    public async Task Invalid_utf8_and_lone_surrogates_are_400_naming_where(string template, string bytes, string param)
    {
        bool escape = bytes.StartsWith('\\') || bytes.StartsWith('x');
        var body = WithRaw(template, escape ? Encoding.ASCII.GetBytes(bytes) : Convert.FromHexString(bytes));
        using var response = await Post(body);
        if (escape)
            await ServerTests.AssertError(response, HttpStatusCode.BadRequest, "invalid_request_error", param, "invalid_value", "unpaired surrogate");
        else
            await ServerTests.AssertError(response, HttpStatusCode.BadRequest, "invalid_request_error", null, "invalid_json",
                $"not valid UTF-8: the bytes at offset {template.IndexOf("@@", StringComparison.Ordinal)} ");
        await AssertStillServing();
    }

    /// <summary>A temperature so small that logits over it overflow (1e-45 is a float denormal) samples as greedy does.</summary>
    [Fact]
    public async Task A_denormal_temperature_answers_the_greedy_text()
    {
        using var response = await Post($$"""{"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8, "temperature": 1e-45, "seed": 3}""");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        var greedy = fixture.Expected(null, [ChatMessage.User("Hello")], new SamplingOptions { MaxTokens = 8, Temperature = 0f });
        using var document = JsonDocument.Parse(text);
        Assert.Equal(greedy.Text, document.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    [Theory]
    [InlineData("max_tokens")]
    [InlineData("max_completion_tokens")]
    public async Task The_largest_max_tokens_is_context_length_exceeded_without_overflow(string name)
    {
        using var response = await Post($$"""{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "{{name}}": 2147483647}""");
        await ServerTests.AssertError(response, HttpStatusCode.BadRequest, "invalid_request_error", "max_tokens", "context_length_exceeded", "2147483647 completion tokens");
        // Just over the context with the prompt, far from int's end: the sum is still checked exactly.
        using var near = await Post("""{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 250}""");
        await ServerTests.AssertError(near, HttpStatusCode.BadRequest, "invalid_request_error", "max_tokens", "context_length_exceeded", "context length is 256 tokens, but 2");
    }

    /// <summary>
    /// One 50 MB message is refused from its raw length before it is read into a string or tokenized ("at least"); text
    /// just over the limit is counted exactly; the in-process client refuses the same before tokenizing.
    /// </summary>
    [Fact]
    public async Task Text_longer_than_the_context_can_hold_is_refused_before_tokenizing()
    {
        long limit = _server.Engine.MaxTextCharacters;
        Assert.Equal(2L * 256 * 38, limit);   // the qwen2_style vocabulary's longest token is 38 characters
        var head = Encoding.ASCII.GetBytes("""{"model": "tiny", "messages": [{"role": "user", "content": " """.TrimEnd());
        var tail = Encoding.ASCII.GetBytes("\"}]}");
        var body = new byte[head.Length + (50 << 20) + tail.Length];
        head.CopyTo(body, 0);
        body.AsSpan(head.Length, 50 << 20).Fill((byte)'a');
        tail.CopyTo(body, body.Length - tail.Length);
        using (var response = await Post(body))
            await ServerTests.AssertError(response, HttpStatusCode.BadRequest, "invalid_request_error", "messages[0].content", "context_length_exceeded",
                $"the messages hold at least {(50 << 20) / 6} characters");

        // Just over the limit, the raw bound (6 bytes per character at most) lets it through and the exact count refuses it.
        using (var response = await Post($$"""{"model": "tiny", "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "{{new string('a', (int)limit)}}"}]}"""))
            await ServerTests.AssertError(response, HttpStatusCode.BadRequest, "invalid_request_error", "messages[1].content", "context_length_exceeded", $"hold {limit + 1} characters");

        using var client = new GraftChatClient(_server.Engine);
        var e = await Assert.ThrowsAsync<ChatRequestException>(() => client.GetResponseAsync([new Microsoft.Extensions.AI.ChatMessage(ChatRole.User, new string('b', 10_000_000))]));
        Assert.Equal("context_length_exceeded", e.Code);
        await AssertStillServing();
    }

    /// <summary>
    /// 20 PNG bombs (4096x4096 at 1 bit, 2 KB each, 48 MiB of RGB each): the request's pixel budget is spent by the second,
    /// so the third is refused from its header. The same bombs with garbage where their pixels should be get the same
    /// answer: nothing was decoded before the budget said no.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Png_bombs_are_refused_from_their_headers_before_any_is_decoded(bool corruptData)
    {
        var bomb = PngBomb(4096, 4096, corruptData);
        Assert.True(bomb.Length < 4096, $"the bomb is {bomb.Length} bytes");
        using var response = await Post(ImageRequest(ServingFixture.PluginModel, Enumerable.Repeat(DataUri(bomb), 20)));
        await ServerTests.AssertError(response, HttpStatusCode.BadRequest, "invalid_request_error", "messages[0].content[3].image_url.url", "image_too_large",
            $"the request's images are {3L * 4096 * 4096} pixels together, over this server's limit of {32L << 20}");
        using var one = await Post(ImageRequest(ServingFixture.PluginModel, [DataUri(PngBomb(4097, 4096, corruptData))]));
        await ServerTests.AssertError(one, HttpStatusCode.BadRequest, "invalid_request_error", "messages[0].content[1].image_url.url", "image_too_large", "4097x4096");
        await AssertStillServing();
    }

    [Fact]
    public async Task More_images_than_a_request_may_carry_are_refused_while_it_is_read()
    {
        var tiny = ServingFixture.DataUri(ServingFixture.Image(3));
        using var response = await Post(ImageRequest(ServingFixture.PluginModel, Enumerable.Repeat(tiny, 1000)));
        await ServerTests.AssertError(response, HttpStatusCode.BadRequest, "invalid_request_error", "messages[0].content[17].image_url.url", "too_many_images", "at most 16 images");
        // At the limit it is read and answered (16 images of 4 positions each fit the context).
        using var sixteen = await Post(ImageRequest(ServingFixture.PluginModel, Enumerable.Repeat(tiny, 16)));
        Assert.Equal(HttpStatusCode.OK, sixteen.StatusCode);
    }

    /// <summary>
    /// A request whose images are being encoded (held at the plug-in's gate) holds up no one: text requests are answered
    /// meanwhile, and another image request waits for the image worker within its own time limit.
    /// </summary>
    [Fact]
    public async Task Image_work_runs_off_the_scheduler_and_small_requests_go_on_meanwhile()
    {
        var image = ServingFixture.DataUri(ServingFixture.Image(4));
        _gate.Reset();
        var heavy = Post(ImageRequest(Gated, [image]));
        await Until(() => _gated.Entered == 1);
        for (int i = 0; i < 3; i++) await AssertStillServing();
        Assert.False(heavy.IsCompleted);
        Assert.Equal(1, _server.Engine.Preparing);
        using (var health = JsonDocument.Parse(await _http.GetStringAsync("health")))
            Assert.Equal(1, health.RootElement.GetProperty("preparing").GetInt32());

        // A second image request waits for the one image worker; its client leaving ends it there.
        using (var leave = new CancellationTokenSource())
        {
            var waiting = _http.PostAsync("v1/chat/completions", new StringContent(ImageRequest(ServingFixture.PluginModel, [image]), Encoding.UTF8, "application/json"), leave.Token);
            await Until(() => _server.Engine.Preparing == 2);
            await leave.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
            await Until(() => _server.Engine.Preparing == 1 && _server.Engine.Metrics.Completions("cancelled") == 1);
        }
        _gate.Set();
        using var answer = await heavy;
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal(0, _server.Engine.Preparing);
    }

    /// <summary>Past the time limit while its images wait for a worker or are being encoded, a request is a 408.</summary>
    [Fact]
    public async Task The_time_limit_covers_image_work()
    {
        using var gate = new ManualResetEventSlim(false);
        GatedPlugin gated = null!;
        await using var engine = fixture.Engine(Options with { RequestTimeout = TimeSpan.FromSeconds(1) }, broken: model => gated = new GatedPlugin(PluginFixtures.RandomBridge(model, seed: 9), gate));
        await using var server = await ChatServer.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        var image = ServingFixture.DataUri(ServingFixture.Image(5));
        var held = http.PostAsync("v1/chat/completions", new StringContent(ImageRequest(Gated, [image]), Encoding.UTF8, "application/json"));
        await Until(() => gated.Entered == 1);
        using (var queued = await http.PostAsync("v1/chat/completions", new StringContent(ImageRequest(ServingFixture.PluginModel, [image]), Encoding.UTF8, "application/json")))
            await ServerTests.AssertError(queued, HttpStatusCode.RequestTimeout, "timeout_error", null, "request_timeout", "limit of 1 s");
        gate.Set();
        using (var late = await held)
            await ServerTests.AssertError(late, HttpStatusCode.RequestTimeout, "timeout_error", null, "request_timeout", "limit of 1 s");
        Assert.Equal(2, engine.Metrics.Completions("timeout"));
    }

    /// <summary>No value is echoed unbounded: a 1 MiB model name gets a short 404 that says how long it was.</summary>
    [Fact]
    public async Task A_huge_model_name_gets_a_short_404()
    {
        var name = new string('m', 1 << 20);
        using var response = await Post($$"""{"model": "{{name}}", "messages": [{"role": "user", "content": "hi"}]}""");
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(body.Length < 1024, $"a {body.Length}-character 404");
        using (var again = await Post($$"""{"model": "{{name}}", "messages": [{"role": "user", "content": "hi"}]}"""))
            await ServerTests.AssertError(again, HttpStatusCode.NotFound, "invalid_request_error", "model", "model_not_found", "... (1048576 characters)' does not exist");
        using var path = await _http.GetAsync("v1/models/" + new string('q', 6000));
        Assert.Equal(HttpStatusCode.NotFound, path.StatusCode);
        Assert.True((await path.Content.ReadAsStringAsync()).Length < 1024);
        using var role = await Post($$"""{"model": "tiny", "messages": [{"role": "{{new string('r', 100_000)}}", "content": "hi"}]}""");
        Assert.True((await role.Content.ReadAsStringAsync()).Length < 1024);
    }

    /// <summary>A chunked body whose chunk size is not hexadecimal: Kestrel's refusal, as a 400 in OpenAI's shape, logged once without a trace.</summary>
    [Fact]
    public async Task A_bad_chunk_size_is_a_400_logged_once_without_a_trace()
    {
        _log.Clear();
        var (status, body) = await RawHttp(_server.Address, [Ascii(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")]);
        Assert.StartsWith("HTTP/1.1 400", status);
        Assert.Equal("invalid_http_request", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("code").GetString());
        AssertLoggedOnceWithoutTrace("400");
        await AssertStillServing();
    }

    /// <summary>A body that trickles in below the minimum rate (after the grace period) is a 408 or a quiet close, logged once without a trace.</summary>
    [Fact]
    public async Task A_body_sent_too_slowly_is_a_408_or_a_quiet_close_logged_once()
    {
        _log.Clear();
        var pieces = new List<byte[]> { Ascii("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{") };
        for (int i = 0; i < 12; i++) pieces.Add(Ascii(" "));
        var (status, body) = await RawHttp(_server.Address, pieces, pause: TimeSpan.FromMilliseconds(400));
        Assert.True(status.StartsWith("HTTP/1.1 408", StringComparison.Ordinal) || status == "(closed)", status);
        if (status != "(closed)") Assert.Equal("request_timeout", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("code").GetString());
        await Until(() => _log.Entries.Any(e => e.Level >= LogLevel.Warning));
        AssertLoggedOnceWithoutTrace("408");
        await AssertStillServing();
    }

    private void AssertLoggedOnceWithoutTrace(string status)
    {
        var loud = _log.Entries.Where(e => e.Level >= LogLevel.Warning).ToArray();
        Assert.True(loud.Length == 1, string.Join("\n", loud.Select(e => $"{e.Level} {e.Category}: {e.Message}")));
        Assert.Equal(LogLevel.Warning, loud[0].Level);
        Assert.Null(loud[0].Exception);
        Assert.Contains(status, loud[0].Message);
        Assert.DoesNotContain("   at ", loud[0].Message);
    }

    /// <summary>What held before stays held: deep JSON, a body over the size limit (413), 5,000 messages.</summary>
    [Fact]
    public async Task Deep_json_oversized_bodies_and_many_messages_are_still_4xx()
    {
        using (var deep = await Post($$"""{"model": "tiny", "messages": {{new string('[', 5000)}}{{new string(']', 5000)}}}"""))
            await ServerTests.AssertError(deep, HttpStatusCode.BadRequest, "invalid_request_error", null, "invalid_json", "depth");
        var (status, body) = await RawHttp(_server.Address, [Ascii(
            $"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {500L << 20}\r\n\r\n{{")]);
        Assert.StartsWith("HTTP/1.1 413", status);
        Assert.Equal("request_too_large", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("code").GetString());
        var many = string.Join(", ", Enumerable.Repeat("""{"role": "user", "content": "hi"}""", 5_000));
        using (var response = await Post($$"""{"model": "tiny", "messages": [{{many}}]}"""))
            await ServerTests.AssertError(response, HttpStatusCode.BadRequest, "invalid_request_error", "messages", "context_length_exceeded", "context length is 256");
    }

    /// <summary>A short run of the request fuzzer (the long one is Slow): every answer a 2xx or a 4xx in OpenAI's shape.</summary>
    [Fact]
    public async Task Mutated_requests_are_never_a_5xx()
    {
        var fuzzer = new RequestFuzzer(seed: 14, ServingFixture.Base, ServingFixture.PluginModel);
        var statuses = new Dictionary<int, int>();
        for (int i = 0; i < 150; i++)
        {
            var (status, _) = await RequestFuzzer.Check(_http, fuzzer.Next());
            statuses[status] = statuses.GetValueOrDefault(status) + 1;
        }
        Assert.True(statuses.GetValueOrDefault(200) > 0 && statuses.Keys.Any(s => s >= 400), string.Join(", ", statuses));
        Assert.DoesNotContain(_log.Entries, e => e.Level >= LogLevel.Error);
        await AssertStillServing();
    }

    private static async Task Until(Func<bool> condition)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(30)) throw new TimeoutException("the server never reached the expected state");
            await Task.Delay(5);
        }
    }
}

/// <summary>The long fuzz run of the server's request parser: thousands of mutated requests, then the server still answers.</summary>
[Collection(ServingCollection.Name)]
public sealed class ServerRequestFuzzTests(ServingFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    [Trait("Category", "Slow")]
    public async Task Thousands_of_mutated_requests_are_never_a_5xx()
    {
        var log = new LogCapture();
        await using var engine = fixture.Engine(new ServingOptions { ContextLength = 256, ImageLimits = new ImageLimits { MaxFileBytes = 1 << 20, MaxPixels = 1 << 20 } }, log.CreateLogger("engine"));
        await using var server = await ChatServer.StartAsync(engine, loggerFactory: log);
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };
        var answers = new Dictionary<string, int>();
        for (int seed = 0; seed < 8; seed++)
        {
            var fuzzer = new RequestFuzzer(seed, ServingFixture.Base, ServingFixture.PluginModel);
            // Four clients at once, so mutations also meet each other in the queue and the batch.
            await Task.WhenAll(Enumerable.Range(0, 4).Select(async _ =>
            {
                for (int i = 0; i < 250; i++)
                {
                    byte[] body;
                    lock (fuzzer) body = fuzzer.Next();
                    var (status, code) = await RequestFuzzer.Check(http, body);
                    string answer = code is null ? status.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"{status} {code}";
                    lock (answers) answers[answer] = answers.GetValueOrDefault(answer) + 1;
                }
            }));
        }
        output.WriteLine(string.Join("\n", answers.OrderByDescending(a => a.Value).Select(a => $"{a.Value,6} {a.Key}")));
        Assert.Equal(8000, answers.Values.Sum());
        // The mutations reach every layer: answered requests and a wide range of refusals.
        Assert.True(answers.GetValueOrDefault("200") > 400, $"{answers.GetValueOrDefault("200")} answered");
        Assert.True(answers.Count >= 10, string.Join(", ", answers.Keys));
        Assert.DoesNotContain(log.Entries, e => e.Level >= LogLevel.Error);
        using var health = await http.GetAsync("health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        using var response = await http.PostAsync("v1/chat/completions", new StringContent(
            """{"model": "tiny", "messages": [{"role": "user", "content": "still there?"}], "max_tokens": 2}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }
}
