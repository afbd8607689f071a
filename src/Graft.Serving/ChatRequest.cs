namespace Graft.Serving;

/// <summary>One message of a conversation: its role (system, user or assistant), its text and the images it carries, in order after the text.</summary>
public sealed record ChatTurn(string Role, string Text, IReadOnlyList<ChatImage> Images);

/// <summary>
/// A chat request as the engine takes it, whatever the protocol it came by: the model id (BASE or BASE+NAME), the
/// conversation, and the sampling choices the client made (null: the checkpoint's generation_config.json default).
/// </summary>
public sealed record ChatRequest
{
    public required string Model { get; init; }
    public required IReadOnlyList<ChatTurn> Messages { get; init; }

    /// <summary>Completion tokens at most; without it, the server's default capped by what the context leaves.</summary>
    public int? MaxTokens { get; init; }

    public float? Temperature { get; init; }
    public float? TopP { get; init; }
    public int? TopK { get; init; }

    /// <summary>The sampler's seed; without it a sampled request draws one (greedy needs none).</summary>
    public int? Seed { get; init; }

    public IReadOnlyList<string> Stop { get; init; } = [];

    /// <summary>A 64-bit seed (OpenAI's, ChatOptions') as the sampler's 32-bit one: the halves folded, so distinct seeds stay distinct in practice.</summary>
    public static int SeedFrom(long seed) => unchecked((int)(seed ^ (seed >> 32)));
}

/// <summary>The client's mistake, as OpenAI reports one: an HTTP status, a message, the parameter at fault and a code.</summary>
public class ChatRequestException(int status, string message, string? param, string code, string type = ChatRequestException.InvalidRequest)
    : ArgumentException(message)
{
    public const string InvalidRequest = "invalid_request_error";

    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string Code { get; } = code;
    public string Type { get; } = type;

    public static ChatRequestException Invalid(string message, string? param, string code = "invalid_value") => new(400, message, param, code);
}

/// <summary>The engine cannot take the request now: its queue is full (HTTP 429) or it is shutting down (HTTP 503).</summary>
public sealed class ServerBusyException(int status, string message, string code, TimeSpan? retryAfter) : InvalidOperationException(message)
{
    public int Status { get; } = status;
    public string Code { get; } = code;

    /// <summary>When trying again may succeed (the Retry-After header).</summary>
    public TimeSpan? RetryAfter { get; } = retryAfter;
}
