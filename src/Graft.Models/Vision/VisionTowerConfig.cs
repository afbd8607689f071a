using System.Text.Json;

namespace Graft.Models.Vision;

/// <summary>The two ViT families Graft loads from Hugging Face folders.</summary>
public enum VisionTowerKind
{
    Clip,
    Siglip,
}

/// <summary>The MLP non-linearity named by <c>hidden_act</c>.</summary>
public enum VisionActivation
{
    /// <summary>x·sigmoid(1.702x), CLIP's "quick_gelu".</summary>
    QuickGelu,

    /// <summary>The exact erf GELU, "gelu".</summary>
    Gelu,

    /// <summary>The tanh approximation, "gelu_pytorch_tanh" / "gelu_new" (SigLIP).</summary>
    GeluTanh,
}

/// <summary>
/// A ViT vision tower's shape, read from config.json: either a vision-only config at the top level
/// (<c>clip_vision_model</c>, <c>siglip_vision_model</c>) or the <c>vision_config</c> object nested in a full
/// CLIPModel / SiglipModel config. Missing keys take the Hugging Face defaults of that family.
/// </summary>
public sealed record VisionTowerConfig(
    VisionTowerKind Kind,
    int ImageSize,
    int PatchSize,
    int Channels,
    int Width,
    int IntermediateSize,
    int Layers,
    int Heads,
    VisionActivation Activation,
    float LayerNormEps)
{
    public const string FileName = "config.json";

    public int GridSize => ImageSize / PatchSize;
    public int Patches => GridSize * GridSize;
    public int HeadSize => Width / Heads;

    /// <summary>SigLIP's <c>vision_use_head</c> when the config states it; null lets the checkpoint's tensors decide.</summary>
    public bool? UseHead { get; init; }

    /// <summary>Which family a folder's config.json describes, from its <c>model_type</c>.</summary>
    public static VisionTowerKind DetectKind(string folder)
    {
        string path = Path.Combine(folder, FileName);
        using var document = ParseFile(path);
        var root = document.RootElement;
        string? modelType = OptionalString(path, root, "model_type", "model_type");
        return modelType switch
        {
            "clip" or "clip_vision_model" => VisionTowerKind.Clip,
            "siglip" or "siglip_vision_model" => VisionTowerKind.Siglip,
            null => throw new VisionModelException(path, "model_type", "missing; expected one of clip, clip_vision_model, siglip, siglip_vision_model"),
            _ => throw new VisionModelException(path, "model_type", $"'{modelType}' is not a CLIP or SigLIP vision model"),
        };
    }

    /// <summary>Reads the vision tower's config from <paramref name="folder"/>/config.json, checking it is of <paramref name="kind"/>.</summary>
    public static VisionTowerConfig Read(string folder, VisionTowerKind kind)
    {
        string path = Path.Combine(folder, FileName);
        using var document = ParseFile(path);
        var root = document.RootElement;
        string family = kind == VisionTowerKind.Clip ? "clip" : "siglip";
        string? modelType = OptionalString(path, root, "model_type", "model_type");
        JsonElement vision;
        string prefix;
        if (modelType == family)
        {
            if (!root.TryGetProperty("vision_config", out vision) || vision.ValueKind != JsonValueKind.Object)
                throw new VisionModelException(path, "vision_config", $"a full {family} config needs a vision_config object");
            prefix = "vision_config.";
        }
        else if (modelType == family + "_vision_model" || modelType is null)
        {
            bool nested = root.TryGetProperty("vision_config", out vision) && vision.ValueKind == JsonValueKind.Object;
            if (!nested) vision = root;
            prefix = nested ? "vision_config." : "";
        }
        else throw new VisionModelException(path, "model_type", $"'{modelType}' is not a {family} or {family}_vision_model config");

        bool clip = kind == VisionTowerKind.Clip;
        int image = PositiveInt(path, vision, prefix, "image_size", 224);
        int patch = PositiveInt(path, vision, prefix, "patch_size", clip ? 32 : 16);
        int width = PositiveInt(path, vision, prefix, "hidden_size", 768);
        int heads = PositiveInt(path, vision, prefix, "num_attention_heads", 12);
        if (image % patch != 0) throw new VisionModelException(path, prefix + "image_size", $"{image} is not a multiple of patch_size {patch}");
        if (width % heads != 0) throw new VisionModelException(path, prefix + "hidden_size", $"{width} is not a multiple of num_attention_heads {heads}");
        string act = OptionalString(path, vision, "hidden_act", prefix + "hidden_act") ?? (clip ? "quick_gelu" : "gelu_pytorch_tanh");
        var activation = act switch
        {
            "quick_gelu" => VisionActivation.QuickGelu,
            "gelu" => VisionActivation.Gelu,
            "gelu_pytorch_tanh" or "gelu_new" => VisionActivation.GeluTanh,
            _ => throw new VisionModelException(path, prefix + "hidden_act", $"'{act}' is not supported (quick_gelu, gelu, gelu_pytorch_tanh, gelu_new)"),
        };
        float eps = PositiveFloat(path, vision, prefix, "layer_norm_eps", clip ? 1e-5f : 1e-6f);
        return new VisionTowerConfig(kind, image, patch,
            PositiveInt(path, vision, prefix, "num_channels", 3), width,
            PositiveInt(path, vision, prefix, "intermediate_size", 3072),
            PositiveInt(path, vision, prefix, "num_hidden_layers", 12),
            heads, activation, eps)
        {
            UseHead = OptionalBool(path, vision, "vision_use_head", prefix + "vision_use_head"),
        };
    }

    internal static bool? OptionalBool(string path, JsonElement obj, string key, string field)
    {
        if (!obj.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new VisionModelException(path, field, $"must be true or false, got {value.GetRawText()}"),
        };
    }

    internal static JsonDocument ParseFile(string path)
    {
        if (!File.Exists(path)) throw new VisionModelException(path, "file", "not found; a vision model folder needs config.json beside its safetensors");
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new VisionModelException(path, $"line {e.LineNumber + 1}", "not valid JSON: " + e.Message, e);
        }
    }

    internal static string? OptionalString(string path, JsonElement obj, string key, string field)
    {
        if (!obj.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.String) throw new VisionModelException(path, field, $"must be a string, got {value.ValueKind}");
        return value.GetString();
    }

    internal static int PositiveInt(string path, JsonElement obj, string prefix, string key, int? fallback)
    {
        if (!obj.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null)
            return fallback ?? throw new VisionModelException(path, prefix + key, "missing");
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int n) || n <= 0)
            throw new VisionModelException(path, prefix + key, $"must be a positive integer, got {value.GetRawText()}");
        return n;
    }

    internal static float PositiveFloat(string path, JsonElement obj, string prefix, string key, float? fallback)
    {
        if (!obj.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null)
            return fallback ?? throw new VisionModelException(path, prefix + key, "missing");
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double x) || !(x > 0) || double.IsInfinity(x))
            throw new VisionModelException(path, prefix + key, $"must be a positive number, got {value.GetRawText()}");
        return (float)x;
    }
}
