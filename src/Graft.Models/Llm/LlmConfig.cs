using System.Text.Json;

namespace Graft.Models.Llm;

/// <summary>The decoder families one <see cref="DecoderModel"/> runs; they differ in names and a few options.</summary>
public enum LlmFamily
{
    Llama,
    Qwen2,
    InternLM2,
}

public enum RopeScalingKind
{
    None,

    /// <summary>Positions divided by the factor (inverse frequencies divided by it).</summary>
    Linear,

    /// <summary>
    /// Dynamic NTK, as transformers' and InternLM2's: once the sequence seen so far (L positions) is longer
    /// than max_position_embeddings, the base becomes base · (factor·L/max − (factor − 1))^(D/(D−2)).
    /// It depends on L, so a KV cache keeps keys rotated with the base of the step that computed them,
    /// exactly as Hugging Face generation does; past max_position_embeddings a cached decode then
    /// differs from a full recomputation (as it does in Hugging Face).
    /// </summary>
    Dynamic,

    /// <summary>Llama 3.1's band-wise scaling (transformers' _compute_llama3_parameters).</summary>
    Llama3,
}

public sealed record RopeScaling(RopeScalingKind Kind, double Factor, double LowFreqFactor = 1, double HighFreqFactor = 4, int OriginalMaxPositionEmbeddings = 8192)
{
    public static readonly RopeScaling None = new(RopeScalingKind.None, 1);
}

/// <summary>
/// A decoder's hyper-parameters, read from a Hugging Face config.json with each family's own keys and
/// transformers' defaults. Anything we cannot run as written is refused, naming the file and field.
/// </summary>
public sealed record LlmConfig
{
    public required LlmFamily Family { get; init; }

    /// <summary>The name from config.json's architectures (or model_type when absent).</summary>
    public required string Architecture { get; init; }

    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public required float RmsNormEps { get; init; }
    public required double RopeTheta { get; init; }
    public required RopeScaling RopeScaling { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public required bool TieWordEmbeddings { get; init; }

    /// <summary>Biases on the q, k, v projections (Qwen2 always; Llama's attention_bias; InternLM2's bias).</summary>
    public required bool QkvBias { get; init; }

    /// <summary>A bias on the attention output projection (Llama's attention_bias; InternLM2's bias).</summary>
    public required bool OutputBias { get; init; }

    /// <summary>Biases on gate, up and down (Llama's mlp_bias).</summary>
    public required bool MlpBias { get; init; }

    public required int[] BosTokenIds { get; init; }
    public required int[] EosTokenIds { get; init; }

    /// <summary>config.json's torch_dtype (or, from newer transformers, dtype): "bfloat16", ..., or null; the weights keep whatever type they are stored in.</summary>
    public string? TorchDType { get; init; }

    public int QueryGroups => NumHeads / NumKeyValueHeads;

    public static LlmConfig Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new LlmConfigException(path, $"cannot be read: {e.Message}");
        }
        return Parse(text, path);
    }

    /// <summary>Parses config.json text; <paramref name="source"/> names it in errors.</summary>
    public static LlmConfig Parse(string json, string source)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new LlmConfigException(source, $"is not valid JSON: {e.Message}");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new LlmConfigException(source, "is not a JSON object");
            return new Reader(doc.RootElement, source).Read();
        }
    }

    private sealed class Reader(JsonElement root, string source)
    {
        public LlmConfig Read()
        {
            var (family, architecture) = ReadFamily();
            int hidden = Positive("hidden_size");
            int heads = Positive("num_attention_heads");
            int kvHeads = Optional("num_key_value_heads") is { ValueKind: not JsonValueKind.Null } ? Positive("num_key_value_heads") : heads;
            if (heads % kvHeads != 0) throw Error("num_key_value_heads", $"{kvHeads} does not divide num_attention_heads {heads}");

            // InternLM2's modeling file always uses hidden_size / num_attention_heads.
            int headDim;
            if (family != LlmFamily.InternLM2 && Optional("head_dim") is { ValueKind: not JsonValueKind.Null }) headDim = Positive("head_dim");
            else if (hidden % heads != 0) throw Error("num_attention_heads", $"{heads} does not divide hidden_size {hidden} and no head_dim is given");
            else headDim = hidden / heads;
            if (headDim % 2 != 0) throw Error("head_dim", $"rotary embedding needs an even head size, got {headDim}");

            string act = String("hidden_act") ?? "silu";
            if (act != "silu") throw Error("hidden_act", $"'{act}' is not supported (only silu)");
            if (Optional("partial_rotary_factor") is { } partial && partial.ValueKind != JsonValueKind.Null && Number("partial_rotary_factor") != 1)
                throw Error("partial_rotary_factor", "partial rotary embedding is not supported");
            if (family == LlmFamily.Qwen2 && Bool("use_sliding_window", false))
                throw Error("use_sliding_window", "sliding-window attention is not supported");

            bool llamaAttentionBias = family == LlmFamily.Llama && Bool("attention_bias", false);
            bool internBias = family == LlmFamily.InternLM2 && Bool("bias", true);
            int maxPositions = Optional("max_position_embeddings") is { ValueKind: not JsonValueKind.Null }
                ? Positive("max_position_embeddings")
                : family == LlmFamily.Qwen2 ? 32768 : 2048;

            return new LlmConfig
            {
                Family = family,
                Architecture = architecture,
                VocabSize = Positive("vocab_size"),
                HiddenSize = hidden,
                IntermediateSize = Positive("intermediate_size"),
                NumLayers = Positive("num_hidden_layers"),
                NumHeads = heads,
                NumKeyValueHeads = kvHeads,
                HeadDim = headDim,
                RmsNormEps = (float)PositiveNumber("rms_norm_eps", 1e-6),
                RopeTheta = PositiveNumber("rope_theta", 10000),
                RopeScaling = ReadRopeScaling(family),
                MaxPositionEmbeddings = maxPositions,
                TieWordEmbeddings = Bool("tie_word_embeddings", false),
                QkvBias = family == LlmFamily.Qwen2 || llamaAttentionBias || internBias,
                OutputBias = llamaAttentionBias || internBias,
                MlpBias = family == LlmFamily.Llama && Bool("mlp_bias", false),
                BosTokenIds = TokenIds("bos_token_id"),
                EosTokenIds = TokenIds("eos_token_id"),
                TorchDType = String("torch_dtype") ?? String("dtype"),
            };
        }

        private (LlmFamily, string) ReadFamily()
        {
            if (Optional("architectures") is { ValueKind: JsonValueKind.Array } list && list.GetArrayLength() > 0)
            {
                var name = list[0].ValueKind == JsonValueKind.String ? list[0].GetString()! : throw Error("architectures", "must list names");
                return name switch
                {
                    "LlamaForCausalLM" => (LlmFamily.Llama, name),
                    "Qwen2ForCausalLM" => (LlmFamily.Qwen2, name),
                    "InternLM2ForCausalLM" => (LlmFamily.InternLM2, name),
                    _ => throw Error("architectures", $"'{name}' is not supported (LlamaForCausalLM, Qwen2ForCausalLM, InternLM2ForCausalLM)"),
                };
            }
            var type = String("model_type") ?? throw Error("architectures", "missing, and no model_type either");
            return type switch
            {
                "llama" => (LlmFamily.Llama, type),
                "qwen2" => (LlmFamily.Qwen2, type),
                "internlm2" => (LlmFamily.InternLM2, type),
                _ => throw Error("model_type", $"'{type}' is not supported (llama, qwen2, internlm2)"),
            };
        }

        private RopeScaling ReadRopeScaling(LlmFamily family)
        {
            const string field = "rope_scaling";
            if (Optional(field) is not { } scaling || scaling.ValueKind == JsonValueKind.Null) return RopeScaling.None;
            if (scaling.ValueKind != JsonValueKind.Object) throw Error(field, "must be an object or null");
            string? kind = null;
            foreach (var key in new[] { "rope_type", "type" })
                if (scaling.TryGetProperty(key, out var k) && k.ValueKind == JsonValueKind.String) { kind = k.GetString(); break; }
            if (kind is null) throw Error(field, "has no rope_type (or type)");
            if (kind == "default") return RopeScaling.None;
            if (family == LlmFamily.InternLM2 && kind is not ("linear" or "dynamic"))
                throw Error(field, $"InternLM2 supports only linear and dynamic scaling, not '{kind}'");
            double factor = ScalingNumber(scaling, "factor");
            return kind switch
            {
                "linear" => new RopeScaling(RopeScalingKind.Linear, factor),
                "dynamic" => new RopeScaling(RopeScalingKind.Dynamic, factor),
                "llama3" => ReadLlama3(scaling, factor),
                _ => throw Error(field, $"rope type '{kind}' is not supported (linear, dynamic, llama3)"),
            };
        }

        private RopeScaling ReadLlama3(JsonElement scaling, double factor)
        {
            double low = ScalingNumber(scaling, "low_freq_factor");
            double high = ScalingNumber(scaling, "high_freq_factor");
            double original = ScalingNumber(scaling, "original_max_position_embeddings");
            if (high <= low) throw Error("rope_scaling.high_freq_factor", $"{high} must exceed low_freq_factor {low}");
            if (original != Math.Floor(original)) throw Error("rope_scaling.original_max_position_embeddings", "must be an integer");
            return new RopeScaling(RopeScalingKind.Llama3, factor, low, high, (int)original);
        }

        private double ScalingNumber(JsonElement scaling, string key)
        {
            string field = "rope_scaling." + key;
            if (!scaling.TryGetProperty(key, out var value)) throw Error(field, "missing");
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double d)) throw Error(field, $"must be a number, got {value}");
            if (!(d > 0) || double.IsInfinity(d)) throw Error(field, $"must be positive, got {d}");
            return d;
        }

        private JsonElement? Optional(string field) => root.TryGetProperty(field, out var value) ? value : null;

        private int Positive(string field)
        {
            if (Optional(field) is not { } value || value.ValueKind == JsonValueKind.Null) throw Error(field, "missing");
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int n)) throw Error(field, $"must be an integer, got {value}");
            if (n <= 0) throw Error(field, $"must be positive, got {n}");
            return n;
        }

        private double Number(string field)
        {
            var value = Optional(field)!.Value;
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double d) || !double.IsFinite(d)) throw Error(field, $"must be a number, got {value}");
            return d;
        }

        private double PositiveNumber(string field, double fallback)
        {
            if (Optional(field) is not { } value || value.ValueKind == JsonValueKind.Null) return fallback;
            double d = Number(field);
            if (!(d > 0)) throw Error(field, $"must be positive, got {d}");
            return d;
        }

        private bool Bool(string field, bool fallback)
        {
            if (Optional(field) is not { } value || value.ValueKind == JsonValueKind.Null) return fallback;
            return value.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Error(field, $"must be true or false, got {value}"),
            };
        }

        private string? String(string field)
        {
            if (Optional(field) is not { } value || value.ValueKind == JsonValueKind.Null) return null;
            return value.ValueKind == JsonValueKind.String ? value.GetString() : throw Error(field, $"must be a string, got {value}");
        }

        private int[] TokenIds(string field)
        {
            if (Optional(field) is not { } value || value.ValueKind == JsonValueKind.Null) return [];
            if (value.ValueKind == JsonValueKind.Number) return [TokenId(field, value)];
            if (value.ValueKind != JsonValueKind.Array) throw Error(field, $"must be a token id or a list of them, got {value}");
            return value.EnumerateArray().Select(v => TokenId(field, v)).ToArray();
        }

        private int TokenId(string field, JsonElement value) =>
            value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int id) && id >= 0 ? id : throw Error(field, $"'{value}' is not a token id");

        private LlmConfigException Error(string field, string problem) => new(source, problem, field);
    }
}
