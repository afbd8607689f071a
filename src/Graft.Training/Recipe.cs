using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Graft.Training;

/// <summary>What a stage does with an example longer than its max_length.</summary>
public enum OverflowPolicy
{
    /// <summary>Drop tokens from the end of the prompt (never into an image); skip the example if no target would be left.</summary>
    Truncate,

    /// <summary>Leave the example out.</summary>
    Skip,
}

/// <summary>
/// One source of training examples, as `KIND:PATH[:SPLIT]`: llava:FILE (conversations, free answers), shapes:DIR (a
/// `graft data make shapes` folder: its llava.json), scienceqa:DIR[:SPLIT] (LaVIN's prompt and answer), choice:DIR[:SPLIT]
/// (a ScienceQA folder in the multiple-choice letter layout), mmlu:DIR|FILE[:SPLIT] (Hendrycks' prompt and letter),
/// alpaca:FILE (instructions, text only). <see cref="Weight"/> sets how often it is drawn relative to the others.
/// </summary>
public sealed record DataSourceSpec(string Kind, string Path, string? Split, double Weight)
{
    public static IReadOnlyList<string> Kinds { get; } = ["llava", "shapes", "scienceqa", "choice", "mmlu", "alpaca"];

    private static readonly HashSet<string> Splittable = ["scienceqa", "choice", "mmlu"];

    /// <summary>"KIND:PATH[:SPLIT][@WEIGHT]"; <paramref name="where"/> (an option or a field) begins the error message.</summary>
    public static DataSourceSpec Parse(string text, string where, double weight = 1) =>
        TryParse(text, weight, out var spec, out var problem) ? spec : throw new ArgumentException($"{where}: {problem}");

    /// <summary>As <see cref="Parse"/>, with the problem (without a location) instead of an exception.</summary>
    public static bool TryParse(string text, double weight, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out DataSourceSpec? spec,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? problem)
    {
        ArgumentNullException.ThrowIfNull(text);
        spec = null;
        int at = text.LastIndexOf('@');
        if (at > 0 && double.TryParse(text[(at + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out double suffixWeight))
        {
            weight = suffixWeight;
            text = text[..at];
        }
        int colon = text.IndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
        {
            problem = $"'{text}' is not KIND:PATH (kinds: {string.Join(", ", Kinds)})";
            return false;
        }
        string kind = text[..colon], path = text[(colon + 1)..];
        if (!Kinds.Contains(kind))
        {
            problem = $"'{kind}' is not a data kind (kinds: {string.Join(", ", Kinds)})";
            return false;
        }
        if (!(weight > 0) || double.IsInfinity(weight))
        {
            problem = $"weight {weight.ToString(CultureInfo.InvariantCulture)} must be a positive number";
            return false;
        }
        string? split = null;
        int last = path.LastIndexOf(':');
        if (Splittable.Contains(kind) && last > 0 && !System.IO.Path.Exists(path) && !path[(last + 1)..].Contains('/'))
        {
            split = path[(last + 1)..];
            path = path[..last];
        }
        spec = new DataSourceSpec(kind, path, split, weight);
        problem = null;
        return true;
    }

    public override string ToString() =>
        $"{Kind}:{Path}{(Split is null ? "" : ":" + Split)}{(Weight == 1 ? "" : "@" + Weight.ToString(CultureInfo.InvariantCulture))}";
}

/// <summary>Where a stage's examples come from: weighted sources, and the share of text-only examples (null: as the sources have them).</summary>
public sealed record DataMix(IReadOnlyList<DataSourceSpec> Sources, double? TextShare);

/// <summary>
/// Which tensors a stage trains: every plug-in tensor of one of <see cref="Parts"/> or whose name matches one of
/// <see cref="Patterns"/> (globs: * any run of characters, ? one). <see cref="WholeBase"/> also trains every base weight,
/// which only Bridge's full mode may ask (it then writes a new base); a plug-in recipe never touches the base.
/// </summary>
public sealed record TrainableSelector(IReadOnlyList<string> Parts, IReadOnlyList<string> Patterns, bool WholeBase);

/// <summary>One stage of a recipe, with every default filled in (see the README's recipe schema).</summary>
public sealed record StageRecipe
{
    public required string Name { get; init; }
    public required TrainableSelector Trainable { get; init; }
    public required float LearningRate { get; init; }

    /// <summary>Peak learning rates by part name or name pattern, first match first; the rest take <see cref="LearningRate"/>.</summary>
    public IReadOnlyList<(string Key, float Rate)> LearningRates { get; init; } = [];

    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.999f;
    public float Eps { get; init; } = 1e-8f;

    /// <summary>Decoupled weight decay, never applied to biases, norms, 1-D tensors and embedding tables.</summary>
    public float WeightDecay { get; init; }

    public int? WarmupSteps { get; init; }
    public double? WarmupFraction { get; init; }

    /// <summary>The cosine ends at this fraction of each group's peak learning rate.</summary>
    public double LearningRateFloor { get; init; }

    public int? Steps { get; init; }
    public double? Epochs { get; init; }
    public int BatchSize { get; init; } = 8;
    public int GradientAccumulation { get; init; } = 1;
    public int MaxLength { get; init; } = 512;
    public OverflowPolicy Overflow { get; init; } = OverflowPolicy.Truncate;

    /// <summary>Global L2 norm the gradients are clipped to; null for no clipping.</summary>
    public float? GradientClip { get; init; }

    /// <summary>A checkpoint every this many optimiser steps of the stage; 0 for the stage's end only.</summary>
    public int CheckpointEvery { get; init; }

    public required DataMix Data { get; init; }

    /// <summary>Examples per optimiser step.</summary>
    public int ExamplesPerStep => BatchSize * GradientAccumulation;

    /// <summary>Warm-up steps out of <paramref name="total"/>.</summary>
    public int Warmup(int total) => WarmupSteps ?? (int)Math.Round((WarmupFraction ?? 0) * total, MidpointRounding.AwayFromZero);
}

/// <summary>
/// A training recipe (JSON): name, the design to build (and its options), seed, data mix and stages. Parsing checks
/// every field and names the file and field of anything wrong; <see cref="Document"/> keeps the JSON itself, which is
/// what a run folder records.
/// </summary>
public sealed record Recipe
{
    public const string PresetPrefix = "preset:";

    public required string Name { get; init; }
    public string Description { get; init; } = "";
    public required string Design { get; init; }

    /// <summary>The design's options for building a new plug-in, as in plugin new (read by the plug-in builder).</summary>
    public required JsonObject DesignOptions { get; init; }

    public int Seed { get; init; }

    /// <summary>
    /// The chat template conversation data is trained in, by name (chatml, plain, ...); null for the base's own. plugin.json
    /// records the one used, and every command asks the plug-in in it.
    /// </summary>
    public string? ChatTemplate { get; init; }

    public required DataMix Data { get; init; }
    public required IReadOnlyList<StageRecipe> Stages { get; init; }

    /// <summary>The file or preset it was read from, for messages.</summary>
    public required string Origin { get; init; }

    /// <summary>The recipe as JSON (a copy each time).</summary>
    public JsonObject Document => (JsonObject)_document.DeepClone();

    private JsonObject _document = new();

    /// <summary>The names of the presets shipped with Graft.</summary>
    public static IReadOnlyList<string> PresetNames { get; } = FindPresets();

    /// <summary>A recipe file, or `preset:NAME` for one shipped with Graft.</summary>
    public static Recipe Load(string fileOrPreset)
    {
        ArgumentException.ThrowIfNullOrEmpty(fileOrPreset);
        if (fileOrPreset.StartsWith(PresetPrefix, StringComparison.Ordinal))
        {
            string name = fileOrPreset[PresetPrefix.Length..];
            return Parse(PresetText(name), fileOrPreset);
        }
        if (!File.Exists(fileOrPreset)) throw new FileNotFoundException($"recipe file '{fileOrPreset}' does not exist (or name a preset: {string.Join(", ", PresetNames.Select(n => PresetPrefix + n))})", fileOrPreset);
        return Parse(File.ReadAllText(fileOrPreset), fileOrPreset);
    }

    /// <summary>The JSON text of a shipped preset.</summary>
    public static string PresetText(string name)
    {
        using var stream = typeof(Recipe).Assembly.GetManifestResourceStream(PresetResource(name))
            ?? throw new ArgumentException($"'{name}' is not a preset (presets: {string.Join(", ", PresetNames)})");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>Reads recipe JSON; <paramref name="origin"/> (a file or preset name) is named in every error.</summary>
    public static Recipe Parse(string json, string origin)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new RecipeException(origin, "", $"is not valid JSON: {e.Message}");
        }
        var f = new RecipeFields(origin);
        var root = f.Object(node, "");
        f.Known(root, "", "name", "description", "design", "seed", "chat_template", "data", "stages");
        string name = f.String(root, "name", "");
        if (name.Length == 0 || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || name is "." or "..")
            throw new RecipeException(origin, "name", $"'{name}' must be non-empty and usable as a file name (the plug-in is written as NAME.graft)");
        var (design, options) = ReadDesign(f, root);
        int seed = f.OptionalInt(root, "seed", "", min: 0) ?? 0;
        string? template = f.OptionalString(root, "chat_template", "");
        if (template is not null && !Graft.Models.Chat.ChatTemplates.Names.Contains(template.ToLowerInvariant()))
            throw new RecipeException(origin, "chat_template", $"'{template}' is not a chat template Graft knows ({string.Join(", ", Graft.Models.Chat.ChatTemplates.Names)}); leave it out for the base's own");
        var data = ReadData(f, root["data"], "data", inherited: null) ?? new DataMix([], null);
        if (root["stages"] is not JsonArray stages || stages.Count == 0) throw new RecipeException(origin, "stages", "must be a non-empty array of stages");
        var parsed = new List<StageRecipe>();
        for (int i = 0; i < stages.Count; i++)
        {
            var stage = ReadStage(f, stages[i], $"stages[{i}]", data);
            if (parsed.Any(s => s.Name == stage.Name)) throw new RecipeException(origin, $"stages[{i}].name", $"'{stage.Name}' names an earlier stage too");
            parsed.Add(stage);
        }
        return new Recipe
        {
            Name = name,
            Description = f.OptionalString(root, "description", "") ?? "",
            Design = design,
            DesignOptions = options,
            Seed = seed,
            ChatTemplate = template?.ToLowerInvariant(),
            Data = data,
            Stages = parsed,
            Origin = origin,
            _document = (JsonObject)root.DeepClone(),
        };
    }

    /// <summary>
    /// This recipe with <paramref name="sources"/> in place of its data sources (the recipe's and every stage's),
    /// <paramref name="seed"/> as its seed, and each stage's step count from <paramref name="stageSteps"/> (epochs resolved);
    /// null leaves a part as it is.
    /// </summary>
    public Recipe With(IReadOnlyList<DataSourceSpec>? sources = null, int? seed = null, IReadOnlyList<int>? stageSteps = null)
    {
        var document = Document;
        if (sources is not null)
        {
            var data = document["data"] as JsonObject ?? new JsonObject();
            data["sources"] = new JsonArray(sources.Select(s => (JsonNode?)new JsonObject { ["source"] = new DataSourceSpec(s.Kind, s.Path, s.Split, 1).ToString(), ["weight"] = s.Weight }).ToArray());
            document["data"] = data;
            foreach (var stage in document["stages"]!.AsArray().OfType<JsonObject>())
                (stage["data"] as JsonObject)?.Remove("sources");
        }
        if (seed is int s) document["seed"] = s;
        if (stageSteps is not null)
        {
            var stages = document["stages"]!.AsArray();
            if (stageSteps.Count != stages.Count) throw new ArgumentException($"{stageSteps.Count} step counts for {stages.Count} stages", nameof(stageSteps));
            for (int i = 0; i < stages.Count; i++)
            {
                var stage = stages[i]!.AsObject();
                stage.Remove("epochs");
                stage["steps"] = stageSteps[i];
            }
        }
        return Parse(document.ToJsonString(), Origin);
    }

    /// <summary>The recipe as indented JSON.</summary>
    public string ToJson() => _document.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    private static (string Design, JsonObject Options) ReadDesign(RecipeFields f, JsonObject root)
    {
        switch (root["design"])
        {
            case JsonValue value when value.TryGetValue(out string? name):
                return (name, new JsonObject());
            case JsonObject design:
                f.Known(design, "design", "name", "options");
                string name2 = f.String(design, "name", "design.");
                var options = design["options"] is null ? new JsonObject()
                    : design["options"] as JsonObject ?? throw new RecipeException(f.File, "design.options", "must be an object of the design's options");
                return (name2, (JsonObject)options.DeepClone());
            case null:
                throw new RecipeException(f.File, "design", "is missing (a design name, or {\"name\": ..., \"options\": {...}})");
            default:
                throw new RecipeException(f.File, "design", "must be a design name or an object {\"name\": ..., \"options\": {...}}");
        }
    }

    /// <summary>A data object; missing fields come from <paramref name="inherited"/>. Null when there is no object and nothing to inherit.</summary>
    private static DataMix? ReadData(RecipeFields f, JsonNode? node, string field, DataMix? inherited)
    {
        if (node is null) return inherited;
        var data = f.Object(node, field);
        f.Known(data, field, "sources", "text_share");
        IReadOnlyList<DataSourceSpec> sources = inherited?.Sources ?? [];
        if (data["sources"] is { } sourcesNode)
        {
            if (sourcesNode is not JsonArray array) throw new RecipeException(f.File, field + ".sources", "must be an array of {\"source\": \"KIND:PATH\", \"weight\": W} or \"KIND:PATH\"");
            var list = new List<DataSourceSpec>();
            for (int i = 0; i < array.Count; i++)
            {
                string at = $"{field}.sources[{i}]";
                list.Add(array[i] switch
                {
                    JsonValue v when v.TryGetValue(out string? text) => ReadSource(f, text, 1, at),
                    JsonObject o => ReadSource(f, o, at),
                    _ => throw new RecipeException(f.File, at, "must be \"KIND:PATH\" or {\"source\": \"KIND:PATH\", \"weight\": W}"),
                });
            }
            sources = list;
        }
        double? share = inherited?.TextShare;
        if (data.ContainsKey("text_share")) share = f.OptionalNumber(data, "text_share", field + ".", min: 0, max: 1);
        return new DataMix(sources, share);
    }

    private static DataSourceSpec ReadSource(RecipeFields f, JsonObject o, string at)
    {
        f.Known(o, at, "source", "weight");
        double weight = f.OptionalNumber(o, "weight", at + ".", min: double.Epsilon, max: double.MaxValue) ?? 1;
        return ReadSource(f, f.String(o, "source", at + "."), weight, at + ".source");
    }

    private static DataSourceSpec ReadSource(RecipeFields f, string text, double weight, string at) =>
        DataSourceSpec.TryParse(text, weight, out var spec, out var problem) ? spec : throw new RecipeException(f.File, at, problem);

    private static StageRecipe ReadStage(RecipeFields f, JsonNode? node, string at, DataMix data)
    {
        var s = f.Object(node, at);
        f.Known(s, at, "name", "trainable", "learning_rate", "learning_rates", "betas", "eps", "weight_decay", "warmup_steps", "warmup_fraction",
            "lr_floor", "steps", "epochs", "batch_size", "gradient_accumulation", "max_length", "overflow", "gradient_clip", "checkpoint_every", "data");
        string p = at + ".";
        string name = f.String(s, "name", p);
        if (name.Length == 0) throw new RecipeException(f.File, p + "name", "must not be empty");
        if (s.ContainsKey("steps") == s.ContainsKey("epochs"))
            throw new RecipeException(f.File, at, "needs exactly one of steps and epochs");
        if (s.ContainsKey("warmup_steps") && s.ContainsKey("warmup_fraction"))
            throw new RecipeException(f.File, at, "give warmup_steps or warmup_fraction, not both");
        var betas = s["betas"] is null ? [0.9, 0.999] : f.Numbers(s, "betas", p);
        if (betas.Count != 2 || betas.Any(b => !(b >= 0 && b < 1)))
            throw new RecipeException(f.File, p + "betas", "must be two numbers in [0, 1), e.g. [0.9, 0.999]");
        string overflow = f.OptionalString(s, "overflow", p) ?? "truncate";
        var rates = new List<(string, float)>();
        if (s["learning_rates"] is { } ratesNode)
        {
            var ratesObject = f.Object(ratesNode, p + "learning_rates");
            foreach (var (key, _) in ratesObject)
                rates.Add((key, (float)f.RequiredNumber(ratesObject, key, p + "learning_rates.", min: 0, max: 1)));
        }
        int? steps = f.OptionalInt(s, "steps", p, min: 1);
        var warmupSteps = f.OptionalInt(s, "warmup_steps", p, min: 0);
        if (steps is int total && warmupSteps > total) throw new RecipeException(f.File, p + "warmup_steps", $"{warmupSteps} warm-up steps exceed the stage's {total} steps");
        return new StageRecipe
        {
            Name = name,
            Trainable = ReadSelector(f, s["trainable"], p + "trainable"),
            LearningRate = (float)f.RequiredNumber(s, "learning_rate", p, min: 0, max: 1),
            LearningRates = rates,
            Beta1 = (float)betas[0],
            Beta2 = (float)betas[1],
            Eps = (float)(f.OptionalNumber(s, "eps", p, min: double.Epsilon, max: 1) ?? 1e-8),
            WeightDecay = (float)(f.OptionalNumber(s, "weight_decay", p, min: 0, max: 1) ?? 0),
            WarmupSteps = warmupSteps,
            WarmupFraction = f.OptionalNumber(s, "warmup_fraction", p, min: 0, max: 1),
            LearningRateFloor = f.OptionalNumber(s, "lr_floor", p, min: 0, max: 1) ?? 0,
            Steps = steps,
            Epochs = f.OptionalNumber(s, "epochs", p, min: double.Epsilon, max: 1e6),
            BatchSize = f.OptionalInt(s, "batch_size", p, min: 1) ?? 8,
            GradientAccumulation = f.OptionalInt(s, "gradient_accumulation", p, min: 1) ?? 1,
            MaxLength = f.OptionalInt(s, "max_length", p, min: 2) ?? 512,
            Overflow = overflow switch
            {
                "truncate" => OverflowPolicy.Truncate,
                "skip" => OverflowPolicy.Skip,
                _ => throw new RecipeException(f.File, p + "overflow", $"'{overflow}' is not truncate or skip"),
            },
            GradientClip = s["gradient_clip"] is null ? null : (float)f.RequiredNumber(s, "gradient_clip", p, min: double.Epsilon, max: double.MaxValue),
            CheckpointEvery = f.OptionalInt(s, "checkpoint_every", p, min: 0) ?? 0,
            Data = ReadData(f, s["data"], p + "data", data)!,
        };
    }

    private static TrainableSelector ReadSelector(RecipeFields f, JsonNode? node, string at)
    {
        if (node is null) throw new RecipeException(f.File, at, "is missing: name the parts and/or name patterns the stage trains");
        var o = f.Object(node, at);
        f.Known(o, at, "parts", "patterns", "base");
        var parts = o["parts"] is null ? [] : f.Strings(o, "parts", at + ".");
        var patterns = o["patterns"] is null ? [] : f.Strings(o, "patterns", at + ".");
        string? whole = f.OptionalString(o, "base", at + ".");
        if (whole is not (null or "frozen" or "all")) throw new RecipeException(f.File, at + ".base", $"'{whole}' is not frozen or all");
        if (parts.Count == 0 && patterns.Count == 0 && whole != "all") throw new RecipeException(f.File, at, "selects nothing: give parts and/or patterns");
        return new TrainableSelector(parts, patterns, whole == "all");
    }

    private static string PresetResource(string name) => $"Graft.Training.Presets.{name}.json";

    private static List<string> FindPresets()
    {
        const string prefix = "Graft.Training.Presets.", suffix = ".json";
        return typeof(Recipe).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && n.EndsWith(suffix, StringComparison.Ordinal))
            .Select(n => n[prefix.Length..^suffix.Length]).Order(StringComparer.Ordinal).ToList();
    }
}

/// <summary>Typed reads of recipe fields, each error naming the file and the field's path.</summary>
internal sealed class RecipeFields(string file)
{
    public string File { get; } = file;

    public JsonObject Object(JsonNode? node, string field) =>
        node as JsonObject ?? throw new RecipeException(File, field, node is null ? "is missing" : "must be a JSON object");

    /// <summary>Refuses a key that is not one of <paramref name="keys"/>: a misspelt field must not be silently ignored.</summary>
    public void Known(JsonObject o, string field, params string[] keys)
    {
        foreach (var (key, _) in o)
            if (!keys.Contains(key))
                throw new RecipeException(File, field.Length == 0 ? key : $"{field}.{key}", $"is not a field here (fields: {string.Join(", ", keys)})");
    }

    public string String(JsonObject o, string key, string prefix) =>
        OptionalString(o, key, prefix) ?? throw new RecipeException(File, prefix + key, "is missing");

    public string? OptionalString(JsonObject o, string key, string prefix) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        _ => throw new RecipeException(File, prefix + key, "must be a string"),
    };

    public int? OptionalInt(JsonObject o, string key, string prefix, int min)
    {
        if (o[key] is null) return null;
        if (o[key] is not JsonValue v || !v.TryGetValue(out double d) || d != Math.Floor(d) || d < int.MinValue || d > int.MaxValue)
            throw new RecipeException(File, prefix + key, "must be a whole number");
        if (d < min) throw new RecipeException(File, prefix + key, $"is {d}, must be at least {min}");
        return (int)d;
    }

    public double RequiredNumber(JsonObject o, string key, string prefix, double min, double max) =>
        OptionalNumber(o, key, prefix, min, max) ?? throw new RecipeException(File, prefix + key, "is missing");

    public double? OptionalNumber(JsonObject o, string key, string prefix, double min, double max)
    {
        if (o[key] is null) return null;
        if (o[key] is not JsonValue v || !v.TryGetValue(out double d) || !double.IsFinite(d))
            throw new RecipeException(File, prefix + key, "must be a number");
        if (d < min || d > max)
            throw new RecipeException(File, prefix + key, $"is {d.ToString(CultureInfo.InvariantCulture)}, must be in [{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}]");
        return d;
    }

    public List<double> Numbers(JsonObject o, string key, string prefix) =>
        o[key] is JsonArray a && a.All(n => n is JsonValue v && v.TryGetValue(out double _))
            ? a.Select(n => n!.GetValue<double>()).ToList()
            : throw new RecipeException(File, prefix + key, "must be an array of numbers");

    public List<string> Strings(JsonObject o, string key, string prefix) =>
        o[key] is JsonArray a && a.All(n => n is JsonValue v && v.TryGetValue(out string? _))
            ? a.Select(n => n!.GetValue<string>()).ToList()
            : throw new RecipeException(File, prefix + key, "must be an array of strings");
}
