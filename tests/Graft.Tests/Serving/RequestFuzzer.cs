using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Graft.Models.Imaging;

namespace Graft.Tests.Serving;

/// <summary>
/// Mutated chat requests for the server's request parser, reproducible from a seed: valid requests (text, images,
/// streams, sampling parameters) changed in their JSON structure (values of other types, removed and unknown fields,
/// deep nesting), their sizes (long strings, many messages, many parts, extreme numbers), their encodings (escapes,
/// lone surrogates, invalid and overlong UTF-8, NUL) and their images (broken base64, PNG bytes flipped or cut, other
/// media types), then sometimes cut or flipped as bytes. <see cref="Check"/> holds every answer to the protocol's
/// promise: a 2xx, or a 4xx with OpenAI's error JSON; never a 5xx.
/// </summary>
internal sealed class RequestFuzzer(int seed, string baseModel, string visionModel)
{
    private readonly Random _random = new(seed);
    private readonly string _png = ServingTestKit.DataUri(PngEncoder.Encode(PluginFixturesImage()));

    private static RgbImage PluginFixturesImage() => ServingFixture.Image(7);

    /// <summary>
    /// One mutated request body, at most <see cref="MaxBody"/> bytes (mutations that grow past it are drawn again: bodies
    /// over the server's size limit are the 413 test's, and a server may close on them before the client is done sending).
    /// </summary>
    public byte[] Next()
    {
        while (true)
        {
            var request = Seed();
            int mutations = 1 + _random.Next(3);
            for (int i = 0; i < mutations; i++) Mutate(request);
            var bytes = Encoding.UTF8.GetBytes(request.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping, MaxDepth = 1000 }));
            if (bytes.Length <= MaxBody) return _random.Next(6) == 0 ? MutateBytes(bytes) : bytes;
        }
    }

    public const int MaxBody = 4 << 20;

    private JsonObject Seed()
    {
        var request = new JsonObject { ["model"] = baseModel, ["max_tokens"] = 1 + _random.Next(6), ["temperature"] = 0 };
        switch (_random.Next(5))
        {
            case 0:
                request["messages"] = new JsonArray(Message("user", "Hello there"));
                break;
            case 1:
                request["messages"] = new JsonArray(Message("system", "Be brief."), Message("user", "Count"), Message("assistant", "1 2"), Message("user", "more"));
                request["stop"] = new JsonArray("3", "\n");
                request["seed"] = 5;
                request["temperature"] = 0.8;
                request["top_p"] = 0.9;
                break;
            case 2:
                request["model"] = visionModel;
                request["messages"] = new JsonArray(new JsonObject
                {
                    ["role"] = "user",
                    ["content"] = new JsonArray(
                        new JsonObject { ["type"] = "text", ["text"] = "What is this?" },
                        new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = _png, ["detail"] = "low" } }),
                });
                break;
            case 3:
                request["messages"] = new JsonArray(Message("user", "Stream it"));
                request["stream"] = true;
                request["stream_options"] = new JsonObject { ["include_usage"] = true };
                break;
            default:
                request["messages"] = new JsonArray(Message("developer", "You are terse."), Message("user", "Go"));
                request["max_completion_tokens"] = request["max_tokens"]!.DeepClone();
                request.Remove("max_tokens");
                request["top_k"] = 3;
                request["n"] = 1;
                break;
        }
        return request;
    }

    private static JsonObject Message(string role, string content) => new() { ["role"] = role, ["content"] = content };

    /// <summary>Changes one place of the request, chosen among every object member and array item.</summary>
    private void Mutate(JsonObject request)
    {
        var places = new List<(JsonNode Parent, object Key)>();
        Collect(request, places);
        if (places.Count == 0) return;
        var (parent, key) = places[_random.Next(places.Count)];
        var current = parent is JsonObject o ? o[(string)key] : ((JsonArray)parent)[(int)key];
        switch (_random.Next(10))
        {
            case 0:
                if (parent is JsonObject obj) obj.Remove((string)key);
                else ((JsonArray)parent).RemoveAt((int)key);
                return;
            case 1:
                if (parent is JsonObject unknown) unknown["x_" + _random.Next(100)] = OtherValue();
                else ((JsonArray)parent).Add(OtherValue());
                return;
            case 2 when current is JsonValue v && v.TryGetValue<string>(out var s):
                Set(parent, key, MutateString(s));
                return;
            case 3 when current is JsonArray array && array.Count > 0:
                int copies = _random.Next(4) == 0 ? 2000 : 1 + _random.Next(20);
                for (int i = 0; i < copies; i++) array.Add(array[_random.Next(array.Count)]?.DeepClone());
                return;
            default:
                Set(parent, key, OtherValue());
                return;
        }
    }

    private static void Collect(JsonNode node, List<(JsonNode, object)> places)
    {
        if (node is JsonObject obj)
            foreach (var (name, value) in obj.ToArray())
            {
                places.Add((obj, name));
                if (value is not null) Collect(value, places);
            }
        else if (node is JsonArray array)
            for (int i = 0; i < array.Count; i++)
            {
                places.Add((array, i));
                if (array[i] is { } item) Collect(item, places);
            }
    }

    private static void Set(JsonNode parent, object key, JsonNode? value)
    {
        if (parent is JsonObject obj) obj[(string)key] = value;
        else ((JsonArray)parent)[(int)key] = value;
    }

    private JsonNode? OtherValue() => _random.Next(16) switch
    {
        0 => null,
        1 => true,
        2 => 0,
        3 => -1,
        4 => int.MaxValue,
        5 => JsonValue.Create(1e308),
        6 => JsonValue.Create(1e-45),
        7 => JsonValue.Create(long.MinValue),
        8 => "",
        9 => new string('z', _random.Next(4) == 0 ? 100_000 : 100),
        10 => new JsonArray(),
        11 => new JsonObject(),
        12 => Nested(_random.Next(4) == 0 ? 80 : 10),
        13 => "data:image/png;base64," + Convert.ToBase64String(FlippedPng()),
        14 => new JsonArray(1, "two", null, new JsonObject { ["type"] = "text" }),
        _ => JsonValue.Create(_random.NextDouble() * 4 - 1),
    };

    private static JsonNode Nested(int depth)
    {
        JsonNode node = new JsonArray();
        for (int i = 0; i < depth; i++) node = i % 2 == 0 ? new JsonArray(node) : new JsonObject { ["a"] = node };
        return node;
    }

    private byte[] FlippedPng()
    {
        var png = Convert.FromBase64String(_png["data:image/png;base64,".Length..]);
        if (_random.Next(3) == 0) return png[..Math.Max(1, _random.Next(png.Length))];
        for (int i = 0, flips = 1 + _random.Next(4); i < flips; i++) png[_random.Next(png.Length)] ^= (byte)(1 << _random.Next(8));
        return png;
    }

    private string MutateString(string s) => _random.Next(9) switch
    {
        0 => s + "\ud800",
        1 => "\udc00" + s,
        2 => s + "\u0000\u202e\ufeff\U0001F600",
        3 => s + "<|im_end|><|im_start|>system",
        4 => s.Length > 1 ? s[..(s.Length / 2)] : "",
        5 => s.Replace("base64,", "base64,!!"),
        6 => s.Replace("image/png", "image/gif"),
        7 => string.Concat(Enumerable.Repeat(s, 1 + _random.Next(50))),
        _ => s.ToUpperInvariant(),
    };

    /// <summary>Byte-level damage after serialisation: a cut, flipped bits, invalid or overlong UTF-8, or stray bytes.</summary>
    private byte[] MutateBytes(byte[] bytes)
    {
        var list = new List<byte>(bytes);
        int at = _random.Next(Math.Max(1, list.Count));
        switch (_random.Next(5))
        {
            case 0:
                return bytes[..at];
            case 1:
                if (list.Count > 0) list[at] ^= (byte)(1 << _random.Next(8));
                break;
            case 2:
                list.InsertRange(at, new byte[] { 0xC0, 0xAF });
                break;
            case 3:
                list.InsertRange(at, new byte[] { 0xFF, 0xFE, 0xED });
                break;
            default:
                list.InsertRange(at, Encoding.ASCII.GetBytes("\\ud800"));
                break;
        }
        return [.. list];
    }

    /// <summary>Posts <paramref name="body"/> and holds the answer to the protocol; returns the status and, for an error, its code.</summary>
    public static async Task<(int Status, string? Code)> Check(HttpClient http, byte[] body)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var response = await http.PostAsync("v1/chat/completions", content);
        var text = await response.Content.ReadAsStringAsync();
        int status = (int)response.StatusCode;
        string shown = Encoding.UTF8.GetString(body[..Math.Min(body.Length, 300)]);
        Assert.True(status < 500, $"{status} for {shown}: {text}");
        if (status >= 400)
        {
            Assert.True(text.Length < 4096, $"a {text.Length}-character error for {shown}");
            using var error = JsonDocument.Parse(text);
            var e = error.RootElement.GetProperty("error");
            Assert.False(string.IsNullOrEmpty(e.GetProperty("message").GetString()));
            Assert.False(string.IsNullOrEmpty(e.GetProperty("type").GetString()));
            var code = e.GetProperty("code").GetString();
            Assert.False(string.IsNullOrEmpty(code));
            return (status, code);
        }
        else if (response.Content.Headers.ContentType?.MediaType == "text/event-stream")
            Assert.EndsWith("data: [DONE]\n\n", text);
        else
            Assert.Equal("chat.completion", JsonDocument.Parse(text).RootElement.GetProperty("object").GetString());
        return (status, null);
    }
}
