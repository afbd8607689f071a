using System.Text.Json;

namespace Graft.Models.Generation;

/// <summary>A generation_config.json field that is malformed.</summary>
public sealed class GenerationConfigException(string file, string field, string problem, Exception? inner = null)
    : FormatException($"{file}: {field}: {problem}", inner)
{
    public string File { get; } = file;
    public string Field { get; } = field;
}

/// <summary>
/// The checkpoint's generation defaults from generation_config.json; an absent field keeps the Hugging Face
/// default (greedy unless do_sample, temperature 1, top_k 50, top_p 1, no repetition penalty). Without the
/// file, the EOS and BOS ids come from config.json, as transformers derives a generation config from it.
/// </summary>
public sealed record GenerationConfig
{
    public const string FileName = "generation_config.json";

    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public int? BosTokenId { get; init; }
    public bool DoSample { get; init; }
    public float Temperature { get; init; } = 1f;
    public int TopK { get; init; } = 50;
    public float TopP { get; init; } = 1f;
    public float RepetitionPenalty { get; init; } = 1f;

    public static GenerationConfig FromFolder(string modelDir)
    {
        var path = Path.Combine(modelDir, FileName);
        if (File.Exists(path)) return FromFile(path);
        var modelConfig = Path.Combine(modelDir, "config.json");
        if (!File.Exists(modelConfig)) return new GenerationConfig();
        using var document = Parse(modelConfig);
        var root = Root(modelConfig, document);
        return new GenerationConfig { EosTokenIds = EosIds(modelConfig, root), BosTokenId = Get(modelConfig, root, "bos_token_id", TokenId) };
    }

    public static GenerationConfig FromFile(string path)
    {
        using var document = Parse(path);
        var root = Root(path, document);
        var defaults = new GenerationConfig();
        return new GenerationConfig
        {
            EosTokenIds = EosIds(path, root),
            BosTokenId = Get(path, root, "bos_token_id", TokenId),
            DoSample = Get(path, root, "do_sample", (f, n, e) => e.ValueKind is JsonValueKind.True or JsonValueKind.False
                ? e.GetBoolean() : throw new GenerationConfigException(f, n, $"must be true or false, not {e}")) ?? defaults.DoSample,
            Temperature = Get(path, root, "temperature", Number) ?? defaults.Temperature,
            TopK = Get(path, root, "top_k", (f, n, e) => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var k) && k >= 0
                ? k : throw new GenerationConfigException(f, n, $"must be an integer >= 0, not {e}")) ?? defaults.TopK,
            TopP = Get(path, root, "top_p", Number) ?? defaults.TopP,
            RepetitionPenalty = Get(path, root, "repetition_penalty", Number) ?? defaults.RepetitionPenalty,
        };
    }

    private static JsonDocument Parse(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new GenerationConfigException(path, $"line {e.LineNumber + 1}, byte {e.BytePositionInLine}", "is not valid JSON: " + e.Message, e);
        }
    }

    private static JsonElement Root(string path, JsonDocument document) =>
        document.RootElement.ValueKind == JsonValueKind.Object
            ? document.RootElement : throw new GenerationConfigException(path, "(root)", "must be a JSON object");

    /// <summary>Sampling options from these defaults (greedy unless do_sample); the model's EOS ids are not
    /// included here: <see cref="TextGenerator"/> stops on them itself.</summary>
    public SamplingOptions ToSamplingOptions(int maxTokens) => new()
    {
        MaxTokens = maxTokens,
        Temperature = DoSample ? Temperature : 0f,
        TopK = DoSample ? TopK : 0,
        TopP = DoSample ? TopP : 1f,
        RepetitionPenalty = RepetitionPenalty,
    };

    private static IReadOnlyList<int> EosIds(string path, JsonElement root)
    {
        if (!root.TryGetProperty("eos_token_id", out var e) || e.ValueKind == JsonValueKind.Null) return [];
        if (e.ValueKind != JsonValueKind.Array) return [TokenId(path, "eos_token_id", e)];
        return e.EnumerateArray().Select((item, i) => TokenId(path, $"eos_token_id[{i}]", item)).ToArray();
    }

    private static T? Get<T>(string path, JsonElement root, string name, Func<string, string, JsonElement, T> read) where T : struct =>
        root.TryGetProperty(name, out var e) && e.ValueKind != JsonValueKind.Null ? read(path, name, e) : null;

    private static int TokenId(string path, string name, JsonElement e) =>
        e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var id) && id >= 0
            ? id : throw new GenerationConfigException(path, name, $"must be a token id (an integer >= 0), not {e}");

    private static float Number(string path, string name, JsonElement e) =>
        e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out var v) && double.IsFinite(v)
            ? (float)v : throw new GenerationConfigException(path, name, $"must be a number, not {e}");
}
