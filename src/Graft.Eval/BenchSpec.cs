namespace Graft.Eval;

public enum BenchKind { Mmlu, ScienceQa, Shapes, Llava, Iit }

/// <summary>
/// A benchmark named on the command line as KIND:PATH: <c>mmlu:DIR|FILE.jsonl</c>, <c>scienceqa:DIR</c>,
/// <c>shapes:DIR</c> (a <c>graft data make shapes</c> folder), <c>llava:FILE</c>, or
/// <c>iit:TEXTSET,IMAGESET</c> where each set is itself a KIND:PATH (text: mmlu or scienceqa; image: scienceqa
/// or shapes). The IIT pair is split at the comma that starts the second KIND:, so paths may hold commas.
/// </summary>
public sealed record BenchSpec(BenchKind Kind, string Path, BenchSpec? TextSet = null, BenchSpec? ImageSet = null)
{
    private static readonly Dictionary<string, BenchKind> Kinds = new(StringComparer.OrdinalIgnoreCase)
    {
        ["mmlu"] = BenchKind.Mmlu, ["scienceqa"] = BenchKind.ScienceQa, ["shapes"] = BenchKind.Shapes,
        ["llava"] = BenchKind.Llava, ["iit"] = BenchKind.Iit,
    };

    public string Name => Kind.ToString().ToLowerInvariant();

    public override string ToString() => Kind == BenchKind.Iit ? $"iit:{TextSet},{ImageSet}" : $"{Name}:{Path}";

    public static BenchSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int colon = text.IndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
            throw new ArgumentException($"benchmark \"{text}\" is not KIND:PATH (kinds: {string.Join(", ", Kinds.Keys)})");
        if (!Kinds.TryGetValue(text[..colon], out var kind))
            throw new ArgumentException($"benchmark \"{text}\": unknown kind \"{text[..colon]}\" (kinds: {string.Join(", ", Kinds.Keys)})");
        string rest = text[(colon + 1)..];
        if (kind != BenchKind.Iit) return new BenchSpec(kind, rest);

        int split = -1;
        foreach (var name in Kinds.Keys)
        {
            int at = rest.IndexOf("," + name + ":", StringComparison.OrdinalIgnoreCase);
            if (at > 0 && (split < 0 || at < split)) split = at;
        }
        if (split < 0) throw new ArgumentException($"benchmark \"{text}\": iit needs TEXTSET,IMAGESET, e.g. iit:mmlu:DIR,scienceqa:DIR");
        var textSet = Parse(rest[..split]);
        var imageSet = Parse(rest[(split + 1)..]);
        if (textSet.Kind is not (BenchKind.Mmlu or BenchKind.ScienceQa))
            throw new ArgumentException($"benchmark \"{text}\": the IIT text set must be mmlu or scienceqa, not {textSet.Name}");
        if (imageSet.Kind is not (BenchKind.ScienceQa or BenchKind.Shapes))
            throw new ArgumentException($"benchmark \"{text}\": the IIT image set must be scienceqa or shapes, not {imageSet.Name}");
        return new BenchSpec(kind, rest, textSet, imageSet);
    }
}

/// <summary>Knobs shared by every benchmark.</summary>
public sealed record EvalOptions
{
    /// <summary>At most this many items per benchmark (IIT: dialogues per configuration); null for all.</summary>
    public int? Limit { get; init; }

    /// <summary>MMLU examples before each question (Hendrycks: 5), fewer when the dev split has fewer.</summary>
    public int Shots { get; init; } = 5;

    /// <summary>The split scored: MMLU's folder and ScienceQA's pid_splits entry.</summary>
    public string Split { get; init; } = "test";

    /// <summary>Greedy tokens for generated answers (ScienceQA's "The answer is X", short free answers).</summary>
    public int MaxNewTokens { get; init; } = 32;

    /// <summary>Seed of the IIT dialogue assembly.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>IIT dialogues per configuration when no limit is given.</summary>
    public int IitDialogues { get; init; } = 50;

    public void Validate()
    {
        if (Limit is <= 0) throw new ArgumentException($"limit must be positive, got {Limit}");
        if (Shots < 0) throw new ArgumentException($"shots must be zero or more, got {Shots}");
        if (MaxNewTokens <= 0) throw new ArgumentException($"max new tokens must be positive, got {MaxNewTokens}");
        if (IitDialogues <= 0) throw new ArgumentException($"IIT dialogues must be positive, got {IitDialogues}");
    }
}
