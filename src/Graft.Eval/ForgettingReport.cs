using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Graft.Eval;

/// <summary>
/// One row of the forgetting report: a base or a plug-in, its results via the base route (text goes to the base
/// alone) and, for a plug-in, via its own route (images, and text where the design routes text through it).
/// </summary>
public sealed record ReportEntry(string Name, long TrainableParameters, long SizeOnDiskBytes, EvalRun BaseRoute, EvalRun? PluginRoute);

/// <summary>A named value of the report: a score, or n/a when the route or the data does not exist.</summary>
public sealed record ReportCell(string Column, Score? Score)
{
    public string Text => Score is { Total: > 0 } s ? s.Accuracy.ToString("0.00", CultureInfo.InvariantCulture) : "n/a";
}

/// <summary>
/// The forgetting report: does a plug-in keep the base's text skill while adding image skill? Columns per
/// benchmark: text accuracy via the base route, text accuracy via the plug-in route, image accuracy; per IIT
/// configuration the accuracy over all its turns; then trainable parameters and size on disk. Written as
/// report.md, report.json and SVG bar charts, each file atomically (a temporary file moved into place).
/// </summary>
public sealed class ForgettingReport(IReadOnlyList<ReportEntry> entries)
{
    public IReadOnlyList<ReportEntry> Entries { get; } = entries;

    /// <summary>The benchmarks, in the order of the first entry's base-route run.</summary>
    private IReadOnlyList<BenchResult> Benches => Entries.Count == 0 ? [] : Entries[0].BaseRoute.Results;

    public IReadOnlyList<ReportCell> Cells(ReportEntry entry)
    {
        var cells = new List<ReportCell>();
        for (int b = 0; b < Benches.Count; b++)
        {
            var bench = Benches[b];
            var baseResult = entry.BaseRoute.Results[b];
            var pluginResult = entry.PluginRoute?.Results[b];
            if (bench.Name == "iit")
            {
                foreach (var configuration in Iit.Configurations)
                    cells.Add(new ReportCell($"iit {configuration}", Served(pluginResult ?? baseResult, configuration)));
                continue;
            }
            string label = $"{bench.Name}";
            if (HasText(bench))
            {
                cells.Add(new ReportCell($"{label} text (base route)", baseResult.TextOnly));
                cells.Add(new ReportCell($"{label} text (plug-in route)", pluginResult?.TextOnly));
            }
            if (bench.Name != "mmlu") cells.Add(new ReportCell($"{label} image", pluginResult?.WithImage));
        }
        return cells;
    }

    private static bool HasText(BenchResult bench) => bench.Name is "mmlu" or "scienceqa" or "llava";

    private static Score? Served(BenchResult result, string category) => result.Category(category) is { Total: > 0 } s ? s : null;

    public string Markdown()
    {
        var text = new StringBuilder("# Forgetting report\n\n");
        text.Append("Accuracy in percent; n/a where the route or the data does not exist (image columns need a plug-in).\n\n");
        var columns = Entries.Count == 0 ? [] : Cells(Entries[0]).Select(c => c.Column).ToList();
        text.Append("| model | ").Append(string.Join(" | ", columns)).Append(" | trainable parameters | size on disk |\n");
        text.Append("|---|").Append(string.Concat(columns.Select(_ => "---:|"))).Append("---:|---:|\n");
        foreach (var entry in Entries)
        {
            text.Append("| ").Append(entry.Name).Append(" | ");
            text.Append(string.Join(" | ", Cells(entry).Select(c => c.Text)));
            text.Append(" | ").Append(entry.TrainableParameters.ToString("N0", CultureInfo.InvariantCulture));
            text.Append(" | ").Append(FormatBytes(entry.SizeOnDiskBytes)).Append(" |\n");
        }
        text.Append("\nCounts (correct/total, skipped):\n\n");
        foreach (var entry in Entries)
            foreach (var run in new[] { entry.BaseRoute, entry.PluginRoute }.OfType<EvalRun>())
                foreach (var result in run.Results)
                    text.Append($"- {entry.Name}, route {run.Route}, {result.Name}: {result.Overall.Correct}/{result.Overall.Total}, skipped {result.Skipped}\n");
        return text.ToString();
    }

    public string Json()
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, JsonOutput.Options))
        {
            w.WriteStartObject();
            w.WriteStartArray("entries");
            foreach (var entry in Entries)
            {
                w.WriteStartObject();
                w.WriteString("name", entry.Name);
                w.WriteNumber("trainable_parameters", entry.TrainableParameters);
                w.WriteNumber("size_on_disk_bytes", entry.SizeOnDiskBytes);
                w.WriteStartObject("columns");
                foreach (var cell in Cells(entry))
                {
                    if (cell.Score is { Total: > 0 } s) BenchResult.WriteScore(w, cell.Column, s);
                    else w.WriteNull(cell.Column);
                }
                w.WriteEndObject();
                w.WriteStartArray("runs");
                foreach (var run in new[] { entry.BaseRoute, entry.PluginRoute }.OfType<EvalRun>())
                {
                    w.WriteStartObject();
                    w.WriteString("route", run.Route);
                    w.WriteStartArray("benchmarks");
                    foreach (var result in run.Results) result.WriteJson(w);
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    /// <summary>Writes report.md, report.json, text.svg (text and image columns) and, with an IIT benchmark, iit.svg; returns the paths.</summary>
    public IReadOnlyList<string> Write(string folder)
    {
        Directory.CreateDirectory(folder);
        var written = new List<string>
        {
            WriteAtomically(folder, "report.md", Markdown()),
            WriteAtomically(folder, "report.json", Json()),
        };
        var columns = Entries.Count == 0 ? [] : Cells(Entries[0]).Select(c => c.Column).ToList();
        var accuracy = columns.Where(c => !c.StartsWith("iit ", StringComparison.Ordinal)).ToList();
        var iit = columns.Where(c => c.StartsWith("iit ", StringComparison.Ordinal)).ToList();
        if (accuracy.Count > 0) written.Add(WriteAtomically(folder, "text.svg", Chart("Accuracy by benchmark and route (%)", accuracy)));
        if (iit.Count > 0) written.Add(WriteAtomically(folder, "iit.svg", Chart("Interleaved (IIT) accuracy by configuration (%)", iit)));
        return written;
    }

    private string Chart(string title, IReadOnlyList<string> columns)
    {
        var groups = columns.Select(column => (column, Entries.Select(e => Cells(e).First(c => c.Column == column).Score is { Total: > 0 } s ? s.Accuracy : double.NaN).ToArray())).ToList();
        return SvgBarChart.Render(title, Entries.Select(e => e.Name).ToList(), groups);
    }

    private static string WriteAtomically(string folder, string name, string content)
    {
        string path = Path.Combine(folder, name);
        Graft.Tensors.AtomicFile.WriteAllText(path, content);
        return path;
    }

    internal static string FormatBytes(long bytes) => bytes switch
    {
        < 1024 => $"{bytes} B",
        < 1024 * 1024 => (bytes / 1024.0).ToString("0.0", CultureInfo.InvariantCulture) + " KiB",
        < 1L << 30 => (bytes / (1024.0 * 1024)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB",
        _ => (bytes / (1024.0 * 1024 * 1024)).ToString("0.00", CultureInfo.InvariantCulture) + " GiB",
    };
}
