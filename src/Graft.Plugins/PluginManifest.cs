using System.Text.Json;
using System.Text.Json.Nodes;
using Graft.Models.Llm;

namespace Graft.Plugins;

/// <summary>The base a plug-in was made for: architecture, the shapes its tensors depend on, and <see cref="BaseFingerprint"/>.</summary>
public sealed record BaseDescription(string Architecture, string Family, int VocabSize, int HiddenSize, int IntermediateSize,
    int NumLayers, int NumHeads, int NumKeyValueHeads, int HeadDim, string Fingerprint)
{
    public static BaseDescription Of(DecoderModel model)
    {
        var c = model.Config;
        return new(c.Architecture, c.Family.ToString(), c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumLayers, c.NumHeads,
            c.NumKeyValueHeads, c.HeadDim, BaseFingerprint.Of(model));
    }

    /// <summary>What differs between the base this describes (the plug-in's) and <paramref name="actual"/>, field by field; empty when they match.</summary>
    public IReadOnlyList<string> Differences(BaseDescription actual)
    {
        var differences = new List<string>();
        void Compare<T>(string field, T expected, T got)
        {
            if (!EqualityComparer<T>.Default.Equals(expected, got)) differences.Add($"base {field}: plug-in made for {expected}, this base has {got}");
        }
        Compare("architecture", Architecture, actual.Architecture);
        Compare("family", Family, actual.Family);
        Compare("vocab_size", VocabSize, actual.VocabSize);
        Compare("hidden_size", HiddenSize, actual.HiddenSize);
        Compare("intermediate_size", IntermediateSize, actual.IntermediateSize);
        Compare("num_layers", NumLayers, actual.NumLayers);
        Compare("num_heads", NumHeads, actual.NumHeads);
        Compare("num_key_value_heads", NumKeyValueHeads, actual.NumKeyValueHeads);
        Compare("head_dim", HeadDim, actual.HeadDim);
        if (Fingerprint != actual.Fingerprint)
            differences.Add($"base weights fingerprint: plug-in made for {Fingerprint}, this base has {actual.Fingerprint} (same shapes, different weights: another checkpoint or a fine-tuned one)");
        return differences;
    }
}

/// <summary>
/// The vision front end a plug-in expects: kind, output shape, a summary of its config, and a fingerprint of its weights;
/// <see cref="Folder"/> is where the tower it was made with was read from (absolute; none for a front end without a folder,
/// and in plugin.json files written before it was recorded), so the commands find the tower without being told.
/// </summary>
public sealed record VisionDescription(string Kind, int FeatureWidth, int TokensPerImage, IReadOnlyDictionary<string, string> Summary, string Fingerprint)
{
    public string? Folder { get; init; }

    public static VisionDescription Of(IVisionFrontEnd frontEnd) =>
        new(frontEnd.Kind, frontEnd.FeatureWidth, frontEnd.TokensPerImage, frontEnd.Summary, frontEnd.Fingerprint)
        {
            Folder = frontEnd.Folder is { } folder ? Path.GetFullPath(folder) : null,
        };

    public IReadOnlyList<string> Differences(VisionDescription actual)
    {
        var differences = new List<string>();
        if (Kind != actual.Kind) differences.Add($"vision kind: plug-in expects {Kind}, given {actual.Kind}");
        if (FeatureWidth != actual.FeatureWidth) differences.Add($"vision feature width: plug-in expects {FeatureWidth}, given {actual.FeatureWidth}");
        if (TokensPerImage != actual.TokensPerImage) differences.Add($"vision tokens per image: plug-in expects {TokensPerImage}, given {actual.TokensPerImage}");
        foreach (var key in Summary.Keys.Union(actual.Summary.Keys).Order(StringComparer.Ordinal))
        {
            string expected = Summary.GetValueOrDefault(key, "(none)"), given = actual.Summary.GetValueOrDefault(key, "(none)");
            if (expected != given) differences.Add($"vision {key}: plug-in expects {expected}, given {given}");
        }
        if (Fingerprint != actual.Fingerprint) differences.Add($"vision fingerprint: plug-in expects {Fingerprint}, given {actual.Fingerprint}");
        return differences;
    }
}

/// <summary>
/// The chat template a plug-in's conversations were trained in: its name and its exact (Jinja) text (null only for a
/// named template that has no Jinja text). Every command and the server lay the plug-in's chat requests out with it, so
/// it is asked in the format it learned.
/// </summary>
public sealed record RecordedChatTemplate(string Name, string? Source);

/// <summary>
/// plugin.json: format version, design, hyper-parameters, the base and vision front end the plug-in was made for,
/// training provenance, and (once saved) which part each tensor of plugin.safetensors belongs to and that file's SHA-256,
/// so a plugin.json is never paired with tensors from another save.
/// </summary>
public sealed record PluginManifest
{
    public const int CurrentFormatVersion = 1;
    public const string FileName = "plugin.json";

    public int FormatVersion { get; init; } = CurrentFormatVersion;
    public required string Design { get; init; }
    public required JsonObject HyperParameters { get; init; }
    public required BaseDescription Base { get; init; }
    public VisionDescription? Vision { get; init; }
    public required JsonObject Training { get; init; }

    /// <summary>The chat template its conversation data was trained in; null when none was (plugin.json files from before it was recorded, untrained plug-ins).</summary>
    public RecordedChatTemplate? ChatTemplate { get; init; }

    /// <summary>Tensor names by part, as saved.</summary>
    public IReadOnlyDictionary<string, string[]>? TensorParts { get; init; }

    /// <summary>SHA-256 (hex) of plugin.safetensors, as saved.</summary>
    public string? TensorsSha256 { get; init; }

    /// <summary>Readable JSON: markers such as "&lt;image&gt;" are written as they are, not as \u003C escapes.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly JsonSerializerOptions Indented = new(JsonOptions) { WriteIndented = true };

    public string ToJson()
    {
        var root = new JsonObject
        {
            ["format_version"] = FormatVersion,
            ["design"] = Design,
            ["hyper_parameters"] = HyperParameters.DeepClone(),
            ["base"] = new JsonObject
            {
                ["architecture"] = Base.Architecture,
                ["family"] = Base.Family,
                ["vocab_size"] = Base.VocabSize,
                ["hidden_size"] = Base.HiddenSize,
                ["intermediate_size"] = Base.IntermediateSize,
                ["num_layers"] = Base.NumLayers,
                ["num_heads"] = Base.NumHeads,
                ["num_key_value_heads"] = Base.NumKeyValueHeads,
                ["head_dim"] = Base.HeadDim,
                ["fingerprint_scheme"] = BaseFingerprint.Scheme,
                ["fingerprint"] = Base.Fingerprint,
            },
            ["vision"] = Vision is null ? null : new JsonObject
            {
                ["kind"] = Vision.Kind,
                ["feature_width"] = Vision.FeatureWidth,
                ["tokens_per_image"] = Vision.TokensPerImage,
                ["summary"] = new JsonObject(Vision.Summary.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))),
                ["fingerprint"] = Vision.Fingerprint,
            },
            ["training"] = Training.DeepClone(),
        };
        if (Vision?.Folder is { } folder) root["vision"]!["folder"] = folder;
        if (ChatTemplate is { } template) root["chat_template"] = new JsonObject { ["name"] = template.Name, ["source"] = template.Source };
        if (TensorParts is not null || TensorsSha256 is not null)
        {
            var parts = new JsonObject();
            foreach (var (part, names) in TensorParts ?? new Dictionary<string, string[]>())
                parts[part] = new JsonArray(names.Select(n => (JsonNode?)n).ToArray());
            root["tensors"] = new JsonObject { ["file"] = "plugin.safetensors", ["sha256"] = TensorsSha256, ["parts"] = parts };
        }
        return root.ToJsonString(Indented);
    }

    /// <summary>Reads plugin.json text; <paramref name="file"/> names it in errors, which name the field at fault.</summary>
    public static PluginManifest Parse(string json, string file)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json);
        }
        catch (JsonException e)
        {
            throw new PluginFormatException(file, $"is not valid JSON: {e.Message}");
        }
        if (node is not JsonObject root) throw new PluginFormatException(file, "is not a JSON object");
        var r = new Reader(file);
        int version = r.Int(root, "format_version");
        if (version != CurrentFormatVersion)
            throw new PluginFormatException(file, $"format version {version} is not supported (this build reads {CurrentFormatVersion})", "format_version");
        var b = r.Object(root, "base");
        string scheme = r.String(b, "fingerprint_scheme", "base.");
        if (scheme != BaseFingerprint.Scheme)
            throw new PluginFormatException(file, $"fingerprint scheme '{scheme}' is not {BaseFingerprint.Scheme}", "base.fingerprint_scheme");
        var baseDescription = new BaseDescription(r.String(b, "architecture", "base."), r.String(b, "family", "base."), r.Int(b, "vocab_size", "base."),
            r.Int(b, "hidden_size", "base."), r.Int(b, "intermediate_size", "base."), r.Int(b, "num_layers", "base."), r.Int(b, "num_heads", "base."),
            r.Int(b, "num_key_value_heads", "base."), r.Int(b, "head_dim", "base."), r.String(b, "fingerprint", "base."));
        VisionDescription? vision = null;
        if (root["vision"] is JsonObject v)
        {
            var summary = r.Object(v, "summary", "vision.");
            vision = new VisionDescription(r.String(v, "kind", "vision."), r.Int(v, "feature_width", "vision."), r.Int(v, "tokens_per_image", "vision."),
                summary.ToDictionary(p => p.Key, p => p.Value is JsonValue value && value.TryGetValue(out string? s) ? s : p.Value?.ToJsonString() ?? ""),
                r.String(v, "fingerprint", "vision."))
            {
                Folder = v["folder"] is null ? null : r.String(v, "folder", "vision."),
            };
        }
        else if (root["vision"] is not null) throw new PluginFormatException(file, "must be an object or null", "vision");
        RecordedChatTemplate? template = null;
        if (root["chat_template"] is JsonObject t)
            template = new RecordedChatTemplate(r.String(t, "name", "chat_template."), t["source"] is null ? null : r.String(t, "source", "chat_template."));
        else if (root["chat_template"] is not null) throw new PluginFormatException(file, "must be an object or null", "chat_template");
        Dictionary<string, string[]>? parts = null;
        string? sha = null;
        if (root["tensors"] is JsonObject tensors)
        {
            sha = r.String(tensors, "sha256", "tensors.");
            parts = r.Object(tensors, "parts", "tensors.").ToDictionary(p => p.Key, p =>
                p.Value is JsonArray names && names.All(n => n is JsonValue nv && nv.TryGetValue(out string? _))
                    ? names.Select(n => n!.GetValue<string>()).ToArray()
                    : throw new PluginFormatException(file, "must be an array of tensor names", $"tensors.parts.{p.Key}"));
        }
        return new PluginManifest
        {
            FormatVersion = version,
            Design = r.String(root, "design"),
            HyperParameters = (JsonObject)r.Object(root, "hyper_parameters").DeepClone(),
            Base = baseDescription,
            Vision = vision,
            Training = (JsonObject)r.Object(root, "training").DeepClone(),
            ChatTemplate = template,
            TensorParts = parts,
            TensorsSha256 = sha,
        };
    }

    /// <summary>Reads a hyper-parameter, refusing a missing or mistyped one by name.</summary>
    public T HyperParameter<T>(string name, string file)
    {
        var value = HyperParameters[name];
        if (value is JsonValue v && v.TryGetValue(out T? result) && result is not null) return result;
        throw new PluginFormatException(file, value is null ? "is missing" : $"is {value.ToJsonString()}, not a {typeof(T).Name}", $"hyper_parameters.{name}");
    }

    private sealed class Reader(string file)
    {
        public JsonObject Object(JsonObject o, string key, string prefix = "") =>
            o[key] as JsonObject ?? throw new PluginFormatException(file, o[key] is null ? "is missing" : "must be an object", prefix + key);

        public string String(JsonObject o, string key, string prefix = "") =>
            o[key] is JsonValue v && v.TryGetValue(out string? s) ? s
                : throw new PluginFormatException(file, o[key] is null ? "is missing" : "must be a string", prefix + key);

        public int Int(JsonObject o, string key, string prefix = "") =>
            o[key] is JsonValue v && v.TryGetValue(out int i) ? i
                : throw new PluginFormatException(file, o[key] is null ? "is missing" : "must be an integer", prefix + key);
    }
}
