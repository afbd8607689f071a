using System.Text.RegularExpressions;

namespace Graft.Import;

/// <summary>Where an author's tensor goes in Graft's files.</summary>
public enum Destination
{
    /// <summary>The base model folder (a Hugging Face Llama / Qwen2 / InternLM2 checkpoint), in its stored type.</summary>
    Base,

    /// <summary>The vision tower folder (a Hugging Face CLIP or SigLIP vision model), in its stored type.</summary>
    Vision,

    /// <summary>The plug-in's own tensors (plugin.safetensors, F32).</summary>
    Plugin,

    /// <summary>Not carried over (a buffer recomputed from the config, or a part the design does not use); the rule says why.</summary>
    Drop,
}

/// <summary>
/// One line of an import table: author tensors whose name matches <see cref="Pattern"/> (a regular expression over the
/// whole name) go to <see cref="Destination"/> under <see cref="Target"/> (the replacement, with $1.. for the groups).
/// </summary>
public sealed record TensorRule(string Pattern, Destination Destination, string Target, string Why = "")
{
    /// <summary>Which plug-in a <see cref="Destination.Plugin"/> tensor belongs to, when a release holds several (IAA's workflows); "" is the main one.</summary>
    public string Branch { get; init; } = "";

    private Regex? _regex;

    private Regex Regex => _regex ??= new Regex("^(?:" + Pattern + ")$", RegexOptions.CultureInvariant);

    public bool TryMap(string name, out string target)
    {
        var match = Regex.Match(name);
        target = match.Success ? match.Result(Target) : "";
        return match.Success;
    }
}

/// <summary>One author tensor and where it goes.</summary>
public sealed record MappedTensor(SourceTensor Source, Destination Destination, string Target, TensorRule Rule);

/// <summary>An import table: the first rule that matches a name decides; a name no rule matches is an error, never skipped.</summary>
public sealed class TensorMap(string layout, IReadOnlyList<TensorRule> rules)
{
    public string Layout { get; } = layout;
    public IReadOnlyList<TensorRule> Rules { get; } = rules;

    public IReadOnlyList<MappedTensor> Map(TensorSource source)
    {
        var mapped = new List<MappedTensor>();
        var targets = new Dictionary<(Destination, string), string>();
        var unknown = new List<string>();
        foreach (var tensor in source.Tensors)
        {
            var rule = Rules.FirstOrDefault(r => r.TryMap(tensor.Name, out _));
            if (rule is null)
            {
                unknown.Add(tensor.Name);
                continue;
            }
            rule.TryMap(tensor.Name, out string target);
            if (rule.Destination != Destination.Drop && !targets.TryAdd((rule.Destination, rule.Branch + "/" + target), tensor.Name))
                throw new ImportException(tensor.File, $"and '{targets[(rule.Destination, rule.Branch + "/" + target)]}' would both become {rule.Destination.ToString().ToLowerInvariant()} tensor '{target}'", tensor.Name);
            mapped.Add(new MappedTensor(tensor, rule.Destination, target, rule));
        }
        if (unknown.Count > 0)
            throw new ImportException(source.Path, $"{unknown.Count} tensor(s) are not part of the {Layout} layout: {string.Join(", ", unknown.Take(8))}{(unknown.Count > 8 ? ", ..." : "")}");
        return mapped;
    }
}
