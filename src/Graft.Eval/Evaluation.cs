using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Graft.Eval;

/// <summary>The results of several benchmarks on one route of one model.</summary>
public sealed class EvalRun(string model, string route, IReadOnlyList<BenchResult> results)
{
    public string Model { get; } = model;
    public string Route { get; } = route;
    public IReadOnlyList<BenchResult> Results { get; } = results;

    /// <summary>Runs each benchmark in order on <paramref name="scorer"/>, drawing a progress bar per benchmark.</summary>
    public static EvalRun Run(string model, IScoringModel scorer, IReadOnlyList<BenchSpec> benches, EvalOptions options, ProgressBar? progress = null)
    {
        ArgumentNullException.ThrowIfNull(scorer);
        options.Validate();
        var results = benches.Select(b => Benchmarks.Run(b, scorer, options, progress)).ToList();
        return new EvalRun(model, scorer.Route, results);
    }

    public string ToJson()
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, JsonOutput.Options))
        {
            w.WriteStartObject();
            w.WriteString("model", Model);
            w.WriteString("route", Route);
            w.WriteStartArray("benchmarks");
            foreach (var result in Results) result.WriteJson(w);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    public string Format() => $"model {Model}, route {Route}\n" + string.Concat(Results.Select(r => r.Format()));
}

internal static class JsonOutput
{
    public static readonly JsonWriterOptions Options = new()
    {
        Indented = true,
        NewLine = "\n",
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
}
