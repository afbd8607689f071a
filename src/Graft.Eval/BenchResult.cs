using System.Text.Json;

namespace Graft.Eval;

/// <summary>Correct out of total; <see cref="Accuracy"/> in percent, NaN when nothing was scored.</summary>
public readonly record struct Score(int Correct, int Total)
{
    public double Accuracy => Total > 0 ? 100.0 * Correct / Total : double.NaN;

    public Score Add(bool correct) => new(Correct + (correct ? 1 : 0), Total + 1);

    public override string ToString() => Total > 0 ? $"{Accuracy:0.00}% ({Correct}/{Total})" : "n/a (0/0)";
}

/// <summary>
/// One benchmark's outcome on one route: overall, per category (in a fixed order), split by whether the item had an
/// image, and what could not be scored: <see cref="Skipped"/> items the route cannot serve (images without a
/// plug-in), <see cref="Unparsed"/> generations with no readable answer (counted wrong),
/// <see cref="Truncated"/> prompts cut to fit the context.
/// </summary>
/// <summary>One generated answer: the item, the model's text as generated, what was expected, and whether it counted as right.</summary>
public sealed record ItemAnswer(string Id, string Answer, string Expected, bool Correct);

public sealed class BenchResult(string name, string source, string method, string route)
{
    private readonly List<string> _order = [];
    private readonly List<ItemAnswer> _answers = [];
    private readonly Dictionary<string, Score> _categories = new(StringComparer.Ordinal);

    public string Name { get; } = name;
    public string Source { get; } = source;
    public string Method { get; } = method;
    public string Route { get; } = route;

    public Score Overall { get; private set; }
    public Score TextOnly { get; private set; }
    public Score WithImage { get; private set; }
    public int Skipped { get; internal set; }
    public int Unparsed { get; internal set; }
    public int Truncated { get; internal set; }

    /// <summary>Why items were skipped, when some were.</summary>
    public string? SkipReason { get; internal set; }

    public IEnumerable<(string Name, Score Score)> Categories => _order.Select(c => (c, _categories[c]));

    public Score Category(string name) => _categories.TryGetValue(name, out var s) ? s : default;

    /// <summary>What the model answered to each generated item, in order (`graft eval --answers` writes them).</summary>
    public IReadOnlyList<ItemAnswer> Answers => _answers;

    public void Answered(string id, string answer, string expected, bool correct) => _answers.Add(new ItemAnswer(id, answer, expected, correct));

    /// <summary>Makes a category appear (as 0/0) even when no item falls in it, so standard breakdowns keep their columns.</summary>
    public void Declare(string category)
    {
        if (_categories.TryAdd(category, default)) _order.Add(category);
    }

    public void Add(bool correct, bool hasImage, IEnumerable<string> categories)
    {
        Overall = Overall.Add(correct);
        if (hasImage) WithImage = WithImage.Add(correct);
        else TextOnly = TextOnly.Add(correct);
        foreach (var category in categories)
        {
            Declare(category);
            _categories[category] = _categories[category].Add(correct);
        }
    }

    public void Skip(string reason)
    {
        Skipped++;
        SkipReason ??= reason;
    }

    internal void WriteJson(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("name", Name);
        w.WriteString("source", Source);
        w.WriteString("method", Method);
        w.WriteString("route", Route);
        WriteScore(w, "overall", Overall);
        WriteScore(w, "text_only", TextOnly);
        WriteScore(w, "with_image", WithImage);
        w.WriteNumber("skipped", Skipped);
        if (SkipReason is not null) w.WriteString("skip_reason", SkipReason);
        w.WriteNumber("unparsed", Unparsed);
        w.WriteNumber("truncated", Truncated);
        w.WriteStartArray("categories");
        foreach (var (category, score) in Categories)
        {
            w.WriteStartObject();
            w.WriteString("name", category);
            WriteFields(w, score);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    internal static void WriteScore(Utf8JsonWriter w, string name, Score score)
    {
        w.WriteStartObject(name);
        WriteFields(w, score);
        w.WriteEndObject();
    }

    private static void WriteFields(Utf8JsonWriter w, Score score)
    {
        w.WriteNumber("correct", score.Correct);
        w.WriteNumber("total", score.Total);
        if (score.Total > 0) w.WriteNumber("accuracy", Math.Round(score.Accuracy, 4));
        else w.WriteNull("accuracy");
    }

    /// <summary>A plain-text table: overall, text/image split, then each category.</summary>
    public string Format()
    {
        var text = new System.Text.StringBuilder();
        text.Append($"{Name} [{Method}, route {Route}] {Source}\n");
        text.Append($"  overall     {Overall}\n");
        if (WithImage.Total > 0 && TextOnly.Total > 0) text.Append($"  text-only   {TextOnly}\n  with image  {WithImage}\n");
        foreach (var (category, score) in Categories) text.Append($"  {category,-10}  {score}\n");
        if (Skipped > 0) text.Append($"  skipped     {Skipped} ({SkipReason})\n");
        if (Unparsed > 0) text.Append($"  unparsed    {Unparsed} (counted wrong)\n");
        if (Truncated > 0) text.Append($"  truncated   {Truncated} prompts cut from the left to fit the context\n");
        return text.ToString();
    }
}
