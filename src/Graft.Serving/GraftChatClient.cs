using System.Runtime.CompilerServices;
using Graft.Models.Generation;
using Microsoft.Extensions.AI;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using AiChatRole = Microsoft.Extensions.AI.ChatRole;

namespace Graft.Serving;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over a <see cref="ChatEngine"/> in this process: the same requests,
/// scheduler and batching as the HTTP server. Messages carry <see cref="TextContent"/> and images as <see cref="DataContent"/>
/// (PNG or JPEG bytes); <see cref="ChatOptions.ModelId"/> picks BASE or BASE+NAME (default: the one given here), and
/// MaxOutputTokens, Temperature, TopP, TopK, Seed and StopSequences map onto the sampler; responses carry the usage.
/// Mistakes in a request throw <see cref="ChatRequestException"/>; a full queue throws <see cref="ServerBusyException"/>.
/// </summary>
public sealed class GraftChatClient(ChatEngine engine, string? defaultModelId = null) : IChatClient
{
    private readonly ChatEngine _engine = engine ?? throw new ArgumentNullException(nameof(engine));
    private readonly string _defaultModelId = defaultModelId ?? engine.BaseName;

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AiChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var job = await _engine.SubmitAsync(Request(messages, options), cancellationToken);
        var result = await job.Result.WaitAsync(cancellationToken);
        return new ChatResponse(new AiChatMessage(AiChatRole.Assistant, result.Text))
        {
            ResponseId = job.Id,
            ModelId = job.Model,
            CreatedAt = job.Created,
            FinishReason = FinishReasonOf(result),
            Usage = Usage(result),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AiChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        // A caller that stops reading before the end cancels the request, as a client that disconnects does.
        using var abandoned = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var job = await _engine.SubmitAsync(Request(messages, options), abandoned.Token);
        try
        {
            await foreach (var piece in job.Pieces.ReadAllAsync(cancellationToken))
                yield return Update(job, [new TextContent(piece)]);
            var result = await job.Result.WaitAsync(cancellationToken);
            var last = Update(job, [new UsageContent(Usage(result))]);
            last.FinishReason = FinishReasonOf(result);
            yield return last;
        }
        finally
        {
            await abandoned.CancelAsync();
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return new ChatClientMetadata("graft", null, _defaultModelId);
        return serviceType.IsInstanceOfType(this) ? this : serviceType.IsInstanceOfType(_engine) ? _engine : null;
    }

    /// <summary>The engine belongs to whoever made it; disposing the client leaves it running.</summary>
    public void Dispose()
    {
    }

    private ChatRequest Request(IEnumerable<AiChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        string model = options?.ModelId ?? _defaultModelId;
        var turns = new List<ChatTurn>();
        var budget = _engine.NewBudget();
        int index = 0;
        foreach (var message in messages)
        {
            string at = $"messages[{index++}]";
            string role = message.Role == AiChatRole.System ? Models.Chat.ChatRole.System
                : message.Role == AiChatRole.User ? Models.Chat.ChatRole.User
                : message.Role == AiChatRole.Assistant ? Models.Chat.ChatRole.Assistant
                : throw ChatRequestException.Invalid($"role '{message.Role}' is not one this client takes (system, user, assistant)", $"{at}.Role");
            var text = new System.Text.StringBuilder();
            var images = new List<ChatImage>();
            int part = 0;
            foreach (var content in message.Contents)
            {
                string partAt = $"{at}.Contents[{part++}]";
                switch (content)
                {
                    case TextContent t:
                        if (text.Length > 0) text.Append('\n');
                        text.Append(t.Text);
                        break;
                    case DataContent data when data.HasTopLevelMediaType("image"):
                        _engine.CheckCanSee(model, partAt);
                        images.Add(ImageInput.FromBytes(data.Data, partAt, budget));
                        break;
                    case UriContent uri when uri.HasTopLevelMediaType("image"):
                        _engine.CheckCanSee(model, partAt);
                        images.Add(ImageInput.FromUrl(uri.Uri.OriginalString, partAt, budget));
                        break;
                    case UsageContent:
                        break;
                    default:
                        throw ChatRequestException.Invalid($"{content.GetType().Name} is not supported by this client (text, and images as DataContent)", partAt);
                }
            }
            turns.Add(new ChatTurn(role, text.ToString(), images));
        }
        return new ChatRequest
        {
            Model = model,
            Messages = turns,
            MaxTokens = options?.MaxOutputTokens,
            Temperature = options?.Temperature,
            TopP = options?.TopP,
            TopK = options?.TopK,
            Seed = options?.Seed is long seed ? ChatRequest.SeedFrom(seed) : null,
            Stop = options?.StopSequences?.ToArray() ?? [],
        };
    }

    private static ChatResponseUpdate Update(ChatJob job, IList<AIContent> contents) => new(AiChatRole.Assistant, contents)
    {
        ResponseId = job.Id,
        MessageId = job.Id,
        ModelId = job.Model,
        CreatedAt = job.Created,
    };

    private static ChatFinishReason FinishReasonOf(GenerationResult result) =>
        result.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;

    private static UsageDetails Usage(GenerationResult result) => new()
    {
        InputTokenCount = result.PromptTokens,
        OutputTokenCount = result.CompletionTokens,
        TotalTokenCount = result.PromptTokens + result.CompletionTokens,
    };
}
