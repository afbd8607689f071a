using System.Text.Json;
using System.Text.Json.Nodes;
using Graft.Models.Llm;

namespace Graft.Import;

/// <summary>config.json files for the folders an import writes, with transformers' defaults for the keys a release leaves out.</summary>
internal static class HfConfigs
{
    /// <summary>LlamaConfig's defaults (transformers), for text configs that list only what differs (llava-hf's text_config).</summary>
    private static readonly (string Key, JsonNode? Value)[] LlamaDefaults =
    [
        ("vocab_size", 32000), ("hidden_size", 4096), ("intermediate_size", 11008), ("num_hidden_layers", 32), ("num_attention_heads", 32),
        ("hidden_act", "silu"), ("max_position_embeddings", 2048), ("initializer_range", 0.02), ("rms_norm_eps", 1e-6), ("use_cache", true),
        ("pad_token_id", null), ("bos_token_id", 1), ("eos_token_id", 2), ("pretraining_tp", 1), ("tie_word_embeddings", false),
        ("rope_theta", 10000.0), ("rope_scaling", null), ("attention_bias", false), ("mlp_bias", false),
    ];

    private static readonly string[] LlamaKeys =
    [
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act",
        "max_position_embeddings", "initializer_range", "rms_norm_eps", "use_cache", "pad_token_id", "bos_token_id", "eos_token_id", "pretraining_tp",
        "tie_word_embeddings", "rope_theta", "rope_scaling", "attention_bias", "attention_dropout", "mlp_bias", "torch_dtype",
    ];

    /// <summary>CLIPVisionConfig's defaults.</summary>
    private static readonly (string Key, JsonNode? Value)[] ClipVisionDefaults =
    [
        ("hidden_size", 768), ("intermediate_size", 3072), ("projection_dim", 512), ("num_hidden_layers", 12), ("num_attention_heads", 12),
        ("num_channels", 3), ("image_size", 224), ("patch_size", 32), ("hidden_act", "quick_gelu"), ("layer_norm_eps", 1e-5),
        ("attention_dropout", 0.0), ("initializer_range", 0.02), ("initializer_factor", 1.0),
    ];

    public static JsonObject Read(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ImportException(path, "is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new ImportException(path, $"is not valid JSON: {e.Message}");
        }
        catch (FileNotFoundException)
        {
            throw new ImportException(path, "is missing");
        }
    }

    /// <summary>A LlamaForCausalLM config.json from the text part of an author's config, checked by Graft's own reader.</summary>
    public static JsonObject LlamaBase(JsonObject source, string sourcePath, string? torchDType = null)
    {
        var config = new JsonObject { ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama" };
        foreach (var (key, value) in LlamaDefaults) config[key] = value?.DeepClone();
        foreach (var key in LlamaKeys)
            if (source.TryGetPropertyValue(key, out var value)) config[key] = value?.DeepClone();
        if (!config.ContainsKey("num_key_value_heads")) config["num_key_value_heads"] = config["num_attention_heads"]!.DeepClone();
        if (torchDType is not null) config["torch_dtype"] = torchDType;
        config["transformers_version"] = source["transformers_version"]?.DeepClone();
        try
        {
            LlmConfig.Parse(config.ToJsonString(), sourcePath);
        }
        catch (LlmConfigException e)
        {
            throw new ImportException(sourcePath, $"its language model cannot be run by Graft: {e.Message}");
        }
        return new JsonObject(config.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone())));
    }

    /// <summary>A CLIPVisionModel config.json from a vision config (a full CLIPModel's vision_config, or a vision model's own).</summary>
    public static JsonObject ClipVision(JsonObject vision, string? torchDType)
    {
        var config = new JsonObject { ["architectures"] = new JsonArray("CLIPVisionModel"), ["model_type"] = "clip_vision_model" };
        foreach (var (key, value) in ClipVisionDefaults) config[key] = value?.DeepClone();
        foreach (var (key, value) in vision)
            if (key is not ("model_type" or "architectures" or "vocab_size" or "_name_or_path")) config[key] = value?.DeepClone();
        if (torchDType is not null) config["torch_dtype"] = torchDType;
        return new JsonObject(config.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone())));
    }

    public static string? String(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    public static int? Int(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue(out int i) ? i : null;
}
