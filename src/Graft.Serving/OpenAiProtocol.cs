using System.Text.Json;
using Graft.Models.Chat;
using Graft.Models.Generation;
using Graft.Models.Imaging;

namespace Graft.Serving;

/// <summary>A chat completion request as OpenAI's API defines it, read and checked: the engine's request and how to answer.</summary>
internal sealed record OpenAiChatRequest(ChatRequest Request, bool Stream, bool IncludeUsage);

/// <summary>
/// OpenAI's chat completions protocol: reading a request body into a <see cref="ChatRequest"/> (every mistake a
/// <see cref="ChatRequestException"/> naming the parameter, as OpenAI's error JSON does) and writing responses, stream
/// chunks and errors in OpenAI's shapes.
/// </summary>
internal static class OpenAiProtocol
{
    /// <summary>Parameters that change what OpenAI would return and that this server does not implement: refused, not ignored.</summary>
    private static readonly string[] Unsupported = ["tools", "tool_choice", "functions", "function_call", "audio", "prediction", "web_search_options"];

    /// <param name="body">The request body as received; JSON strings are read from it without copying the whole.</param>
    /// <param name="budget">What the request may cost: text and images are counted against it while they are read.</param>
    /// <param name="checkCanSee">Throws, for a model id and the parameter of an image, when that model takes no images
    /// (so a client hears why before any image is read; an unknown model is a 404 there too).</param>
    public static OpenAiChatRequest ParseChatRequest(ReadOnlyMemory<byte> body, RequestBudget budget, Action<string, string> checkCanSee)
    {
        JsonBody.Check(body.Span);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = JsonBody.MaxDepth });
        }
        catch (JsonException e)
        {
            throw ChatRequestException.Invalid($"the request body is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}): {e.Message}", null, "invalid_json");
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw ChatRequestException.Invalid($"the request body must be a JSON object, not {Kind(root)}", null, "invalid_json");

            var model = RequiredString(root, "model");
            if (!root.TryGetProperty("messages", out var messagesElement) || messagesElement.ValueKind == JsonValueKind.Null)
                throw new ChatRequestException(400, "'messages' is required: the conversation to complete", "messages", "missing_required_parameter");
            if (messagesElement.ValueKind != JsonValueKind.Array) throw WrongType("messages", "an array of messages", messagesElement);
            if (messagesElement.GetArrayLength() == 0) throw ChatRequestException.Invalid("'messages' must hold at least one message", "messages");

            bool stream = Bool(root, "stream") ?? false;
            bool includeUsage = false;
            if (Present(root, "stream_options", out var streamOptions))
            {
                if (!stream) throw ChatRequestException.Invalid("'stream_options' is only allowed when 'stream' is true", "stream_options");
                if (streamOptions.ValueKind != JsonValueKind.Object) throw WrongType("stream_options", "an object", streamOptions);
                includeUsage = Bool(streamOptions, "include_usage", "stream_options.include_usage") ?? false;
            }
            CheckUnsupported(root);
            int? maxTokens = PositiveInt(root, "max_tokens");
            int? maxCompletionTokens = PositiveInt(root, "max_completion_tokens");
            if (maxTokens is not null && maxCompletionTokens is not null && maxTokens != maxCompletionTokens)
                throw ChatRequestException.Invalid($"'max_tokens' ({maxTokens}) and 'max_completion_tokens' ({maxCompletionTokens}) differ; give one of them", "max_tokens");
            float? temperature = Number(root, "temperature", 0, 2, "between 0 and 2");
            float? topP = Number(root, "top_p", 0, 1, "in (0, 1]", exclusiveMinimum: true);
            int? topK = Int(root, "top_k", 0, int.MaxValue, ">= 0 (0 = off)");
            int? seed = Seed(root);
            var stop = Stop(root, budget);
            return new OpenAiChatRequest(new ChatRequest
            {
                Model = model,
                Messages = Messages(messagesElement, budget, param => checkCanSee(model, param)),
                MaxTokens = maxCompletionTokens ?? maxTokens,
                Temperature = temperature,
                TopP = topP,
                TopK = topK,
                Seed = seed,
                Stop = stop,
            }, stream, includeUsage);
        }
    }

    private static void CheckUnsupported(JsonElement root)
    {
        foreach (var name in Unsupported)
            if (Present(root, name, out _)) throw Unsupport(name, $"'{name}' is not supported by this server");
        if (Present(root, "n", out var n) && !(n.ValueKind == JsonValueKind.Number && n.TryGetInt32(out int count) && count == 1))
            throw n.ValueKind == JsonValueKind.Number ? Unsupport("n", $"'n' must be 1: this server returns one choice, not {ErrorText.Shown(n.GetRawText())}") : WrongType("n", "an integer", n);
        foreach (var name in new[] { "presence_penalty", "frequency_penalty" })
        {
            var value = Number(root, name, -2, 2, "between -2 and 2");
            if (value is not null and not 0f) throw Unsupport(name, $"'{name}' is not supported by this server (only 0)");
        }
        if (Present(root, "logprobs", out var logprobs))
        {
            if (logprobs.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw WrongType("logprobs", "a boolean", logprobs);
            if (logprobs.ValueKind == JsonValueKind.True) throw Unsupport("logprobs", "'logprobs' is not supported by this server");
        }
        if (Present(root, "top_logprobs", out _)) throw Unsupport("top_logprobs", "'top_logprobs' is not supported by this server");
        if (Present(root, "logit_bias", out var bias) && !(bias.ValueKind == JsonValueKind.Object && !bias.EnumerateObject().Any()))
            throw Unsupport("logit_bias", "'logit_bias' is not supported by this server");
        if (Present(root, "response_format", out var format)
            && !(format.ValueKind == JsonValueKind.Object && format.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String && type.ValueEquals("text")))
            throw Unsupport("response_format", "only 'response_format' {\"type\": \"text\"} is supported by this server");
    }

    private static IReadOnlyList<ChatTurn> Messages(JsonElement messages, RequestBudget budget, Action<string> checkCanSee)
    {
        var turns = new List<ChatTurn>();
        int index = 0;
        foreach (var message in messages.EnumerateArray())
        {
            string at = $"messages[{index++}]";
            if (message.ValueKind != JsonValueKind.Object) throw WrongType(at, "a message object", message);
            var roleName = RequiredString(message, "role", $"{at}.role");
            string role = roleName switch
            {
                "system" or "developer" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                _ => throw ChatRequestException.Invalid($"role '{ErrorText.Shown(roleName)}' is not supported by this server (system, developer, user, assistant)", $"{at}.role"),
            };
            if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
                throw new ChatRequestException(400, $"'{at}.content' is required", $"{at}.content", "missing_required_parameter");
            if (content.ValueKind == JsonValueKind.String)
            {
                turns.Add(new ChatTurn(role, MessageText(content, $"{at}.content", budget), []));
                continue;
            }
            if (content.ValueKind != JsonValueKind.Array) throw WrongType($"{at}.content", "a string or an array of content parts", content);
            var text = new System.Text.StringBuilder();
            var images = new List<ChatImage>();
            int partIndex = 0;
            foreach (var part in content.EnumerateArray())
            {
                string partAt = $"{at}.content[{partIndex++}]";
                if (part.ValueKind != JsonValueKind.Object) throw WrongType(partAt, "a content part object", part);
                var type = RequiredString(part, "type", $"{partAt}.type");
                switch (type)
                {
                    case "text":
                        if (text.Length > 0) text.Append('\n');
                        if (!part.TryGetProperty("text", out var partText) || partText.ValueKind == JsonValueKind.Null)
                            throw new ChatRequestException(400, $"'{partAt}.text' is required", $"{partAt}.text", "missing_required_parameter");
                        if (partText.ValueKind != JsonValueKind.String) throw WrongType($"{partAt}.text", "a string", partText);
                        text.Append(MessageText(partText, $"{partAt}.text", budget));
                        break;
                    case "image_url":
                        if (role != ChatRole.User) throw ChatRequestException.Invalid("images are only accepted in user messages", partAt);
                        if (!part.TryGetProperty("image_url", out var image) || image.ValueKind == JsonValueKind.Null)
                            throw new ChatRequestException(400, $"'{partAt}.image_url' is required", $"{partAt}.image_url", "missing_required_parameter");
                        if (image.ValueKind != JsonValueKind.Object) throw WrongType($"{partAt}.image_url", "an object with a url", image);
                        var url = RequiredString(image, "url", $"{partAt}.image_url.url");
                        if (Present(image, "detail", out var detail) && !(detail.ValueKind == JsonValueKind.String && Text(detail, $"{partAt}.image_url.detail") is "auto" or "low" or "high"))
                            throw ChatRequestException.Invalid("'detail' must be auto, low or high", $"{partAt}.image_url.detail");
                        checkCanSee(at + ".content");
                        images.Add(ImageInput.FromUrl(url, $"{partAt}.image_url.url", budget));
                        break;
                    default:
                        throw ChatRequestException.Invalid($"content part type '{ErrorText.Shown(type)}' is not supported by this server (text, image_url)", $"{partAt}.type");
                }
            }
            turns.Add(new ChatTurn(role, text.ToString(), images));
        }
        return turns;
    }

    private static int? Seed(JsonElement root)
    {
        if (!Present(root, "seed", out var e)) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long seed)) throw WrongType("seed", "an integer", e);
        return ChatRequest.SeedFrom(seed);
    }

    private static IReadOnlyList<string> Stop(JsonElement root, RequestBudget budget)
    {
        if (!Present(root, "stop", out var e)) return [];
        if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() > 4)
            throw ChatRequestException.Invalid($"'stop' holds {e.GetArrayLength()} sequences; at most 4 are allowed", "stop");
        string[] stops = e.ValueKind switch
        {
            JsonValueKind.String => [MessageText(e, "stop", budget)],
            JsonValueKind.Array => e.EnumerateArray().Select((s, i) => s.ValueKind == JsonValueKind.String ? MessageText(s, $"stop[{i}]", budget) : throw WrongType($"stop[{i}]", "a string", s)).ToArray(),
            _ => throw WrongType("stop", "a string or an array of strings", e),
        };
        for (int i = 0; i < stops.Length; i++)
            if (stops[i].Length == 0) throw ChatRequestException.Invalid("stop sequences must not be empty", e.ValueKind == JsonValueKind.Array ? $"stop[{i}]" : "stop");
        return stops;
    }

    /// <summary>
    /// A string of the conversation, counted against the request's text budget: refused from its raw length before it is
    /// materialised when even its shortest reading is over (an escape is at most 6 bytes per character), then counted exactly.
    /// </summary>
    private static string MessageText(JsonElement e, string param, RequestBudget budget)
    {
        int raw = System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(e).Length - 2;
        budget.CheckTextAtLeast(raw / 6, param);
        var text = Text(e, param);
        budget.AddText(text.Length, param);
        return text;
    }

    /// <summary>
    /// A JSON string as .NET text. <see cref="JsonBody.Check"/> has refused bodies whose strings are not Unicode text, so
    /// this never fails for one that came over HTTP; the refusal here is for any other way a string could arrive.
    /// </summary>
    private static string Text(JsonElement e, string param)
    {
        try
        {
            return e.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw ChatRequestException.Invalid($"'{param}' is not valid Unicode text: it holds an unpaired surrogate escape (\\ud800-\\udfff without its other half)", param, "invalid_value");
        }
    }

    /// <summary>Whether <paramref name="parent"/> has <paramref name="name"/> with a value other than null (OpenAI treats null as absent).</summary>
    private static bool Present(JsonElement parent, string name, out JsonElement value)
    {
        if (parent.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null) return true;
        value = default;
        return false;
    }

    private static string RequiredString(JsonElement parent, string name, string? param = null)
    {
        param ??= name;
        if (!parent.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null)
            throw new ChatRequestException(400, $"'{param}' is required", param, "missing_required_parameter");
        if (e.ValueKind != JsonValueKind.String) throw WrongType(param, "a string", e);
        var value = Text(e, param);
        if (name is "model" or "role" or "type" or "url" && value.Length == 0) throw ChatRequestException.Invalid($"'{param}' must not be empty", param);
        return value;
    }

    private static bool? Bool(JsonElement parent, string name, string? param = null)
    {
        if (!Present(parent, name, out var e)) return null;
        return e.ValueKind is JsonValueKind.True or JsonValueKind.False ? e.GetBoolean() : throw WrongType(param ?? name, "a boolean", e);
    }

    private static int? PositiveInt(JsonElement root, string name) => Int(root, name, 1, int.MaxValue, "at least 1");

    private static int? Int(JsonElement root, string name, int minimum, int maximum, string rule)
    {
        if (!Present(root, name, out var e)) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out double value) || value != Math.Floor(value)) throw WrongType(name, "an integer", e);
        if (value < minimum || value > maximum) throw ChatRequestException.Invalid($"'{name}' must be {rule}, got {ErrorText.Shown(e.GetRawText())}", name);
        return (int)value;
    }

    private static float? Number(JsonElement root, string name, double minimum, double maximum, string rule, bool exclusiveMinimum = false)
    {
        if (!Present(root, name, out var e)) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out double value)) throw WrongType(name, "a number", e);
        if (value < minimum || value > maximum || (exclusiveMinimum && value == minimum))
            throw ChatRequestException.Invalid($"'{name}' must be {rule}, got {ErrorText.Shown(e.GetRawText())}", name);
        return (float)value;
    }

    private static ChatRequestException WrongType(string param, string expected, JsonElement actual) =>
        ChatRequestException.Invalid($"'{param}' must be {expected}, not {Kind(actual)}", param, "invalid_type");

    private static ChatRequestException Unsupport(string param, string message) => ChatRequestException.Invalid(message, param, "unsupported_parameter");

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    // Writing: the shapes OpenAI answers with.

    /// <summary>OpenAI's error shape, the one writer of every error the server sends; the message is bounded and valid text whatever it quotes.</summary>
    public static void WriteError(Utf8JsonWriter json, string message, string type, string? param, string? code)
    {
        json.WriteStartObject();
        json.WriteStartObject("error");
        json.WriteString("message", ErrorText.Message(message));
        json.WriteString("type", type);
        if (param is null) json.WriteNull("param");
        else json.WriteString("param", ErrorText.Message(param));
        if (code is null) json.WriteNull("code");
        else json.WriteString("code", code);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    public static void WriteModels(Utf8JsonWriter json, IEnumerable<string> ids, long created)
    {
        json.WriteStartObject();
        json.WriteString("object", "list");
        json.WriteStartArray("data");
        foreach (var id in ids) WriteModel(json, id, created);
        json.WriteEndArray();
        json.WriteEndObject();
    }

    public static void WriteModel(Utf8JsonWriter json, string id, long created)
    {
        json.WriteStartObject();
        json.WriteString("id", id);
        json.WriteString("object", "model");
        json.WriteNumber("created", created);
        json.WriteString("owned_by", "graft");
        json.WriteEndObject();
    }

    public static void WriteCompletion(Utf8JsonWriter json, ChatJob job, GenerationResult result)
    {
        json.WriteStartObject();
        Head(json, job, "chat.completion");
        json.WriteStartArray("choices");
        json.WriteStartObject();
        json.WriteNumber("index", 0);
        json.WriteStartObject("message");
        json.WriteString("role", "assistant");
        json.WriteString("content", result.Text);
        json.WriteNull("refusal");
        json.WriteEndObject();
        json.WriteNull("logprobs");
        json.WriteString("finish_reason", result.FinishReason);
        json.WriteEndObject();
        json.WriteEndArray();
        WriteUsage(json, result.PromptTokens, result.CompletionTokens);
        json.WriteEndObject();
    }

    /// <summary>
    /// One chunk of a stream: a delta with the role (the first), a delta with content, or the last with an empty delta and
    /// the finish reason. With usage asked for, every chunk carries "usage": null and a final chunk (no choices) the usage.
    /// </summary>
    public static void WriteChunk(Utf8JsonWriter json, ChatJob job, bool includeUsage, string? role, string? content, string? finishReason)
    {
        json.WriteStartObject();
        Head(json, job, "chat.completion.chunk");
        json.WriteStartArray("choices");
        json.WriteStartObject();
        json.WriteNumber("index", 0);
        json.WriteStartObject("delta");
        if (role is not null) json.WriteString("role", role);
        if (content is not null) json.WriteString("content", content);
        json.WriteEndObject();
        json.WriteNull("logprobs");
        if (finishReason is null) json.WriteNull("finish_reason");
        else json.WriteString("finish_reason", finishReason);
        json.WriteEndObject();
        json.WriteEndArray();
        if (includeUsage) json.WriteNull("usage");
        json.WriteEndObject();
    }

    public static void WriteUsageChunk(Utf8JsonWriter json, ChatJob job, GenerationResult result)
    {
        json.WriteStartObject();
        Head(json, job, "chat.completion.chunk");
        json.WriteStartArray("choices");
        json.WriteEndArray();
        WriteUsage(json, result.PromptTokens, result.CompletionTokens);
        json.WriteEndObject();
    }

    private static void Head(Utf8JsonWriter json, ChatJob job, string kind)
    {
        json.WriteString("id", job.Id);
        json.WriteString("object", kind);
        json.WriteNumber("created", job.Created.ToUnixTimeSeconds());
        json.WriteString("model", job.Model);
        json.WriteNull("system_fingerprint");
    }

    private static void WriteUsage(Utf8JsonWriter json, int promptTokens, int completionTokens)
    {
        json.WriteStartObject("usage");
        json.WriteNumber("prompt_tokens", promptTokens);
        json.WriteNumber("completion_tokens", completionTokens);
        json.WriteNumber("total_tokens", promptTokens + completionTokens);
        json.WriteEndObject();
    }

}
