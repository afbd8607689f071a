using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Plugins;

namespace Graft.Training;

/// <summary>
/// An untrained plug-in of a recipe's design, built with the design's options from the recipe (design.options: the design
/// options of `graft plugin new`, in snake_case: tune; adapter_rank, adapter_groups, temperature, adapter_scale,
/// adapter_dropout, projection_width; preset, layers, own_embedding, own_norm, own_head; rank, router, router_row_length;
/// attention_experts, patch_size, image_size, vision_width, max_tiles) and the recipe's seed. The vision front end is the
/// caller's. Every option is checked and a wrong one names its field.
/// </summary>
public static class PluginBuilder
{
    public static IPlugin Create(Recipe recipe, DecoderModel baseModel, IVisionFrontEnd? vision)
    {
        ArgumentNullException.ThrowIfNull(recipe);
        ArgumentNullException.ThrowIfNull(baseModel);
        if (!PluginFile.Designs.Contains(recipe.Design))
            throw new RecipeException(recipe.Origin, "design", $"'{recipe.Design}' is not a design (designs: {string.Join(", ", PluginFile.Designs)})");
        if (recipe.Design == VisualExperts.DesignName && vision is not null)
            throw new ArgumentException($"{VisualExperts.DesignName} has its own trainable patch embedding and takes no vision front end");
        if (recipe.Design != VisualExperts.DesignName && vision is null)
            throw new ArgumentException($"{recipe.Design} needs a vision front end (a CLIP/SigLIP folder or patch-pixels:GRID:CELLS)");
        try
        {
            return Build(recipe, baseModel, vision);
        }
        catch (ArgumentException e) when (e is not ArgumentNullException)
        {
            // The designs check their options' values against the base (ranks, widths, layer lists).
            throw new RecipeException(recipe.Origin, "design.options", e.Message);
        }
    }

    private static IPlugin Build(Recipe recipe, DecoderModel baseModel, IVisionFrontEnd? vision)
    {
        var o = new DesignOptionReader(recipe.Origin, recipe.DesignOptions);
        int seed = recipe.Seed;
        if (recipe.Design == VisualExperts.DesignName)
        {
            o.Known("patch_size", "image_size", "vision_width", "max_tiles", "attention_experts");
            var defaults = new VisualExpertsOptions();
            return VisualExperts.Create(baseModel, new VisualExpertsOptions
            {
                Seed = seed,
                PatchSize = o.Int("patch_size") ?? defaults.PatchSize,
                ImageSize = o.Int("image_size"),
                VisionWidth = o.Int("vision_width"),
                MaxTiles = o.Int("max_tiles") ?? defaults.MaxTiles,
                AttentionExperts = o.Bool("attention_experts") ?? false,
            });
        }
        ArgumentNullException.ThrowIfNull(vision);
        switch (recipe.Design)
        {
            case Bridge.DesignName:
                o.Known("tune");
                string tune = o.String("tune") ?? "projector";
                if (!Enum.TryParse<BridgeTune>(tune, ignoreCase: true, out var bridgeTune) || !Enum.IsDefined(bridgeTune))
                    throw o.Error("tune", $"'{tune}' is not projector or full");
                return Bridge.Create(baseModel, vision, new BridgeOptions { Seed = seed, Tune = bridgeTune });
            case Mma.DesignName:
            {
                o.Known("adapter_rank", "adapter_groups", "projection_width", "temperature", "adapter_scale", "adapter_dropout");
                var defaults = new MmaOptions();
                return Mma.Create(baseModel, vision, new MmaOptions
                {
                    Seed = seed,
                    AdapterRank = o.Int("adapter_rank") ?? defaults.AdapterRank,
                    AdapterGroups = o.Int("adapter_groups") ?? defaults.AdapterGroups,
                    ProjectionWidth = o.Int("projection_width") ?? defaults.ProjectionWidth,
                    Temperature = (float?)o.Number("temperature"),
                    AdapterScale = (float?)o.Number("adapter_scale") ?? defaults.AdapterScale,
                    AdapterDropout = (float?)o.Number("adapter_dropout") ?? defaults.AdapterDropout,
                });
            }
            case InnerAdaptor.DesignName:
            {
                o.Known("preset", "layers", "own_embedding", "own_norm", "own_head");
                var defaults = new InnerAdaptorOptions();
                return InnerAdaptor.Create(baseModel, vision, new InnerAdaptorOptions
                {
                    Seed = seed,
                    Preset = o.String("preset") ?? defaults.Preset,
                    InsertAfter = o.Ints("layers"),
                    OwnEmbedding = o.Bool("own_embedding") ?? false,
                    OwnNorm = o.Bool("own_norm") ?? false,
                    OwnHead = o.Bool("own_head") ?? false,
                });
            }
            default:
            {
                o.Known("rank", "router", "router_row_length");
                var defaults = new WingsOptions();
                string? router = o.String("router");
                return Wings.Create(baseModel, vision, new WingsOptions
                {
                    Seed = seed,
                    Rank = o.Int("rank"),
                    RouterInput = router switch
                    {
                        null => defaults.RouterInput,
                        "image-text-mass" => WingsRouterInput.ImageTextMass,
                        "attention-row" => WingsRouterInput.AttentionRow,
                        _ => throw o.Error("router", $"'{router}' is not image-text-mass or attention-row"),
                    },
                    RouterRowLength = o.Int("router_row_length") ?? defaults.RouterRowLength,
                });
            }
        }
    }

    /// <summary>design.options, read field by field.</summary>
    private sealed class DesignOptionReader(string file, JsonObject options)
    {
        public RecipeException Error(string key, string message) => new(file, $"design.options.{key}", message);

        public void Known(params string[] keys)
        {
            foreach (var (key, _) in options)
                if (!keys.Contains(key)) throw Error(key, $"is not an option of this design (options: {string.Join(", ", keys)})");
        }

        public string? String(string key) => options[key] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out string? s) => s,
            _ => throw Error(key, "must be a string"),
        };

        public int? Int(string key) => options[key] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out double d) && d == Math.Floor(d) && d is > 0 and <= int.MaxValue => (int)d,
            _ => throw Error(key, "must be a positive whole number"),
        };

        public double? Number(string key) => options[key] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out double d) && double.IsFinite(d) => d,
            _ => throw Error(key, "must be a number"),
        };

        public bool? Bool(string key) => options[key] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out bool b) => b,
            _ => throw Error(key, "must be true or false"),
        };

        public int[]? Ints(string key) => options[key] switch
        {
            null => null,
            JsonArray a when a.All(n => n is JsonValue v && v.TryGetValue(out double d) && d == Math.Floor(d) && d is >= 0 and <= int.MaxValue) =>
                a.Select(n => (int)n!.GetValue<double>()).ToArray(),
            _ => throw Error(key, "must be an array of layer indices"),
        };
    }
}
