using Graft.Plugins;

namespace Graft.Training;

/// <summary>
/// A stage's selector applied to a plug-in: the parameters it trains, each with its peak learning rate and whether it
/// takes weight decay. Only the plug-in's own tensors can be chosen; a part or pattern that would reach a base weight
/// is refused, as is one that selects nothing (a misspelt name must not silently train nothing).
/// </summary>
public static class TrainableSelection
{
    /// <summary>
    /// Every part each design can have. A plug-in built without one (MMA's vision_adapters with a parameter-free front end,
    /// IAA's head without own_embedding/own_norm/own_head, Visual Experts' attn_ve without attention_experts) simply has no
    /// tensor of it, so naming it selects nothing rather than failing.
    /// </summary>
    public static IReadOnlyDictionary<string, string[]> DesignParts { get; } = new Dictionary<string, string[]>
    {
        [Bridge.DesignName] = [Bridge.ProjectorPart],
        [Mma.DesignName] = [Mma.LlmAdaptersPart, Mma.VisionAdaptersPart, Mma.ProjectionPart, Mma.ModalityPart],
        [InnerAdaptor.DesignName] = [InnerAdaptor.ProjectorPart, InnerAdaptor.InnerLayersPart, InnerAdaptor.HeadPart],
        [Wings.DesignName] = [Wings.ProjectorPart, Wings.VisualPart, Wings.TextualPart, Wings.RouterPart],
        [VisualExperts.DesignName] = [VisualExperts.PatchEmbeddingPart, VisualExperts.Mlp1Part, VisualExperts.MarkersPart, VisualExperts.ExpertsPart, VisualExperts.AttentionExpertsPart],
    };

    /// <summary>Words that name the base model rather than a part of a plug-in.</summary>
    private static readonly string[] BaseWords = ["base", "llm", "model", "language_model", "lm_head", "embed_tokens"];

    /// <summary>
    /// The parameters of <paramref name="plugin"/> that stage <paramref name="stageIndex"/> of <paramref name="recipe"/>
    /// trains. <paramref name="baseTensorNames"/> are the base checkpoint's tensor names (empty when unknown): a pattern
    /// matching any of them is refused.
    /// </summary>
    public static IReadOnlyList<SelectedParameter> Resolve(Recipe recipe, int stageIndex, IPlugin plugin, IReadOnlyCollection<string> baseTensorNames)
    {
        ArgumentNullException.ThrowIfNull(recipe);
        ArgumentNullException.ThrowIfNull(plugin);
        ArgumentNullException.ThrowIfNull(baseTensorNames);
        var stage = recipe.Stages[stageIndex];
        string at = $"stages[{stageIndex}].trainable";
        var parts = DesignParts.TryGetValue(plugin.Design, out var known) ? known.ToList()
            : plugin.Parameters.Select(p => p.Part).Distinct().Order(StringComparer.Ordinal).ToList();
        var selected = new HashSet<PluginParameter>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < stage.Trainable.Parts.Count; i++)
        {
            string part = stage.Trainable.Parts[i];
            if (!parts.Contains(part))
            {
                string why = BaseWords.Contains(part, StringComparer.OrdinalIgnoreCase)
                    ? $"'{part}' names the base model, whose weights a plug-in recipe never trains (the base stays frozen)"
                    : $"'{part}' is not a part of a {plugin.Design} plug-in";
                throw new RecipeException(recipe.Origin, $"{at}.parts[{i}]", $"{why} (parts: {string.Join(", ", parts)})");
            }
            selected.UnionWith(plugin.Parameters.Where(p => p.Part == part));
        }
        for (int i = 0; i < stage.Trainable.Patterns.Count; i++)
        {
            string pattern = stage.Trainable.Patterns[i];
            if (baseTensorNames.FirstOrDefault(name => Glob.Matches(pattern, name)) is { } baseName)
                throw new RecipeException(recipe.Origin, $"{at}.patterns[{i}]",
                    $"'{pattern}' matches the base weight '{baseName}'; a plug-in recipe never trains a base weight (the base stays frozen), so name the plug-in's tensors only");
            var matches = plugin.Parameters.Where(p => Glob.Matches(pattern, p.Name)).ToList();
            if (matches.Count == 0)
                throw new RecipeException(recipe.Origin, $"{at}.patterns[{i}]", $"'{pattern}' matches no tensor of the {plugin.Design} plug-in (e.g. {plugin.Parameters[0].Name})");
            selected.UnionWith(matches);
        }
        foreach (var (key, _) in stage.LearningRates)
            if (!parts.Contains(key) && !plugin.Parameters.Any(p => Glob.Matches(key, p.Name)))
                throw new RecipeException(recipe.Origin, $"stages[{stageIndex}].learning_rates.{key}", $"'{key}' is neither a part of the {plugin.Design} plug-in nor a pattern matching one of its tensors (parts: {string.Join(", ", parts)})");
        if (selected.Count == 0 && !stage.Trainable.WholeBase)
            throw new RecipeException(recipe.Origin, at, $"selects no tensor of this {plugin.Design} plug-in (it has parts {string.Join(", ", plugin.Parameters.Select(p => p.Part).Distinct())})");
        return plugin.Parameters.Where(selected.Contains).Select(p => new SelectedParameter(p, RateOf(stage, p), TakesDecay(p))).ToList();
    }

    /// <summary>
    /// Weight decay is for matrices that transform: not for biases, norms, 1-D tensors (as <see cref="Graft.Tensors.Optim.ParameterGroup.SkipsDecayByDefault"/>)
    /// nor embedding tables (rank-2 tensors whose name says embed: modality tokens, markers, position embeddings).
    /// </summary>
    public static bool TakesDecay(PluginParameter parameter)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        if (Graft.Tensors.Optim.ParameterGroup.SkipsDecayByDefault(parameter.Name, parameter.Tensor)) return false;
        return !(parameter.Tensor.Rank == 2 && parameter.Name.Contains("embed", StringComparison.OrdinalIgnoreCase));
    }

    private static float RateOf(StageRecipe stage, PluginParameter parameter)
    {
        foreach (var (key, rate) in stage.LearningRates)
            if (key == parameter.Part || Glob.Matches(key, parameter.Name)) return rate;
        return stage.LearningRate;
    }
}

/// <summary>A parameter a stage trains, with its peak learning rate and whether weight decay applies to it.</summary>
public sealed record SelectedParameter(PluginParameter Parameter, float LearningRate, bool Decays);

/// <summary>Glob patterns over tensor names: * matches any run of characters (dots included), ? any one character.</summary>
public static class Glob
{
    public static bool Matches(string pattern, string text)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(text);
        int p = 0, t = 0, star = -1, resume = 0;
        while (t < text.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == text[t]))
            {
                p++;
                t++;
            }
            else if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                resume = t;
            }
            else if (star >= 0)
            {
                p = star + 1;
                t = ++resume;
            }
            else return false;
        }
        while (p < pattern.Length && pattern[p] == '*') p++;
        return p == pattern.Length;
    }
}
