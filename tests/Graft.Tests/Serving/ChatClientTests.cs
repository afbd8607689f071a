using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Serving;
using Microsoft.Extensions.AI;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using AiChatRole = Microsoft.Extensions.AI.ChatRole;
using ChatMessage = Graft.Models.Chat.ChatMessage;

namespace Graft.Tests.Serving;

/// <summary>The in-process <see cref="IChatClient"/>: the same engine as the server, text and images, streaming, options, usage.</summary>
[Collection(ServingCollection.Name)]
public sealed class ChatClientTests(ServingFixture fixture) : IAsyncLifetime
{
    private ChatEngine _engine = null!;
    private IChatClient _client = null!;

    public Task InitializeAsync()
    {
        // Opened as `graft serve` opens it: from the folders, the base named after its folder.
        _engine = ChatEngine.Open(fixture.ModelFolder, [KeyValuePair.Create(ServingFixture.Plugin, fixture.PluginFolder)], null, new ServingOptions { ContextLength = 512 });
        _client = new GraftChatClient(_engine);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _engine.DisposeAsync();
    }

    [Fact]
    public async Task A_text_chat_gives_the_base_completion_and_its_usage()
    {
        Assert.Equal(ServingFixture.Base, _engine.BaseName);
        Assert.Equal([ServingFixture.Base, ServingFixture.PluginModel], _engine.ModelIds);
        var response = await _client.GetResponseAsync([new AiChatMessage(AiChatRole.System, "Be kind."), new AiChatMessage(AiChatRole.User, "Hello")],
            new ChatOptions { MaxOutputTokens = 9, Temperature = 0f });
        var expected = fixture.Expected(null, [ChatMessage.System("Be kind."), ChatMessage.User("Hello")], new SamplingOptions { MaxTokens = 9, Temperature = 0f });
        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(AiChatRole.Assistant, response.Messages.Single().Role);
        Assert.Equal(expected.PromptTokens, response.Usage!.InputTokenCount);
        Assert.Equal(expected.CompletionTokens, response.Usage.OutputTokenCount);
        Assert.Equal(expected.PromptTokens + expected.CompletionTokens, response.Usage.TotalTokenCount);
        Assert.Equal(expected.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(ServingFixture.Base, response.ModelId);
        Assert.Equal("graft", _client.GetService<ChatClientMetadata>()!.ProviderName);
        Assert.Same(_engine, _client.GetService<ChatEngine>());
    }

    [Fact]
    public async Task An_image_as_data_content_goes_through_the_plugin_named_by_model_id()
    {
        var image = ServingFixture.Image(7);
        var message = new AiChatMessage(AiChatRole.User, [new TextContent("Describe"), new DataContent(PngEncoder.Encode(image), "image/png")]);
        var response = await _client.GetResponseAsync([message], new ChatOptions { ModelId = ServingFixture.PluginModel, MaxOutputTokens = 8, Temperature = 0f });
        var expected = fixture.Expected(ServingFixture.Plugin, [ChatMessage.User("Describe")], new SamplingOptions { MaxTokens = 8, Temperature = 0f }, [[image]]);
        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(expected.PromptTokens, response.Usage!.InputTokenCount);

        var refused = await Assert.ThrowsAsync<ChatRequestException>(() => _client.GetResponseAsync([message]));
        Assert.Equal("image_not_supported", refused.Code);
        Assert.Contains("base alone, which cannot see images", refused.Message);
        var bad = new AiChatMessage(AiChatRole.User, [new DataContent(new byte[] { 1, 2, 3, 4 }, "image/png")]);
        Assert.Equal("invalid_image", (await Assert.ThrowsAsync<ChatRequestException>(() => _client.GetResponseAsync([bad], new ChatOptions { ModelId = ServingFixture.PluginModel }))).Code);
        Assert.Equal("model_not_found", (await Assert.ThrowsAsync<ChatRequestException>(() => _client.GetResponseAsync([message], new ChatOptions { ModelId = "other" }))).Code);
    }

    [Fact]
    public async Task Streaming_updates_add_up_to_the_response_and_end_with_reason_and_usage()
    {
        var options = new ChatOptions { MaxOutputTokens = 14, Temperature = 0.7f, TopP = 0.9f, TopK = 40, Seed = 5 };
        AiChatMessage[] conversation = [new(AiChatRole.User, "Stream this")];
        var whole = await _client.GetResponseAsync(conversation, options);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in _client.GetStreamingResponseAsync(conversation, options)) updates.Add(update);
        Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.All(updates, u => Assert.Equal(updates[0].ResponseId, u.ResponseId));
        Assert.Equal(whole.FinishReason, updates[^1].FinishReason);
        var usage = updates[^1].Contents.OfType<UsageContent>().Single().Details;
        Assert.Equal(whole.Usage!.OutputTokenCount, usage.OutputTokenCount);
        Assert.Equal(whole.Usage.InputTokenCount, usage.InputTokenCount);
        // The options reach the sampler: the same seed, temperature, top-p and top-k as generating alone.
        var expected = fixture.Expected(null, [ChatMessage.User("Stream this")],
            new SamplingOptions { MaxTokens = 14, Temperature = 0.7f, TopP = 0.9f, TopK = 40, Seed = ChatRequest.SeedFrom(5) });
        Assert.Equal(expected.Text, whole.Text);
    }

    [Fact]
    public async Task A_caller_that_stops_reading_a_stream_cancels_its_request()
    {
        await foreach (var update in _client.GetStreamingResponseAsync([new AiChatMessage(AiChatRole.User, "On and on")], new ChatOptions { MaxOutputTokens = 480, Temperature = 0f }))
            if (update.Text.Length > 0) break;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (_engine.Metrics.Completions("cancelled") == 0 && clock.Elapsed < TimeSpan.FromSeconds(20)) await Task.Delay(5);
        Assert.Equal(1, _engine.Metrics.Completions("cancelled"));
        Assert.Equal(0, _engine.Metrics.Completions(FinishReason.Length));
    }

    [Fact]
    public async Task Max_output_tokens_and_stop_sequences_end_the_completion()
    {
        AiChatMessage[] conversation = [new(AiChatRole.User, "Keep talking")];
        var limited = await _client.GetResponseAsync(conversation, new ChatOptions { MaxOutputTokens = 3, Temperature = 0f });
        var longer = await _client.GetResponseAsync(conversation, new ChatOptions { MaxOutputTokens = 30, Temperature = 0f });
        if (limited.FinishReason == ChatFinishReason.Length)
        {
            Assert.Equal(3, limited.Usage!.OutputTokenCount);
            Assert.StartsWith(limited.Text, longer.Text);
        }
        // A stop sequence taken from the middle of the longer answer ends it there, without the sequence.
        var text = longer.Text;
        Assert.True(text.Length >= 4, $"the model's answer '{text}' is too short to cut");
        var stop = text.Substring(text.Length / 2, 2);
        var stopped = await _client.GetResponseAsync(conversation, new ChatOptions { MaxOutputTokens = 30, Temperature = 0f, StopSequences = [stop] });
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
    }

    [Fact]
    public async Task Options_out_of_range_are_the_callers_mistake()
    {
        AiChatMessage[] conversation = [new(AiChatRole.User, "x")];
        var e = await Assert.ThrowsAsync<ChatRequestException>(() => _client.GetResponseAsync(conversation, new ChatOptions { Temperature = -1f }));
        Assert.Equal("temperature", e.Param);
        e = await Assert.ThrowsAsync<ChatRequestException>(() => _client.GetResponseAsync(conversation, new ChatOptions { TopP = 1.5f }));
        Assert.Equal("top_p", e.Param);
        e = await Assert.ThrowsAsync<ChatRequestException>(() => _client.GetResponseAsync(conversation, new ChatOptions { MaxOutputTokens = 600 }));
        Assert.Equal("context_length_exceeded", e.Code);
        e = await Assert.ThrowsAsync<ChatRequestException>(() => _client.GetResponseAsync([new AiChatMessage(new AiChatRole("tool"), "x")]));
        Assert.Contains("role 'tool'", e.Message);
    }
}
