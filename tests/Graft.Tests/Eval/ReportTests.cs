using System.Text.Json;
using System.Xml.Linq;
using Graft.Eval;

namespace Graft.Tests.Eval;

/// <summary>The forgetting report's files carry the numbers the runs produced, n/a where a route is missing.</summary>
public class ReportTests
{
    private static EvalRun Run(bool images)
    {
        var mmlu = new BenchResult("mmlu", "/m", Benchmarks.LetterMethod, images ? "plugin:fake" : "base");
        foreach (var correct in new[] { true, true, false, true }) mmlu.Add(correct, false, ["algebra"]);
        var scienceqa = new BenchResult("scienceqa", "/s", Benchmarks.GenerateMethod, images ? "plugin:fake" : "base");
        scienceqa.Add(true, false, ["NAT"]);
        scienceqa.Add(false, false, ["NAT"]);
        if (images) scienceqa.Add(true, true, ["IMG"]);
        else scienceqa.Skip(Benchmarks.NeedsPlugin);
        var iit = new BenchResult("iit", "/m,/s", Benchmarks.LetterMethod, images ? "plugin:fake" : "base");
        foreach (var c in Iit.Configurations) iit.Declare(c);
        iit.Add(true, false, ["TTTT"]);
        iit.Add(false, false, ["TTTT"]);
        if (images) iit.Add(true, true, ["IIII"]);
        return new EvalRun("/model", images ? "plugin:fake" : "base", [mmlu, scienceqa, iit]);
    }

    [Fact]
    public void Report_files_hold_the_runs_numbers_and_na_for_missing_routes()
    {
        using var temp = new TempFolder();
        var report = new ForgettingReport([
            new ReportEntry("base", 0, 2048, Run(images: false), null),
            new ReportEntry("fake", 1234, 100, Run(images: false), Run(images: true)),
        ]);
        var written = report.Write(Path.Combine(temp.Path, "out"));
        Assert.Equal(["report.md", "report.json", "text.svg", "iit.svg"], written.Select(Path.GetFileName));
        Assert.Empty(Directory.GetFiles(Path.Combine(temp.Path, "out"), "*.tmp"));

        using var json = JsonDocument.Parse(File.ReadAllText(written[1]));
        var entries = json.RootElement.GetProperty("entries");
        var baseColumns = entries[0].GetProperty("columns");
        Assert.Equal(75.0, baseColumns.GetProperty("mmlu text (base route)").GetProperty("accuracy").GetDouble());
        Assert.Equal(JsonValueKind.Null, baseColumns.GetProperty("mmlu text (plug-in route)").ValueKind);
        Assert.Equal(JsonValueKind.Null, baseColumns.GetProperty("scienceqa image").ValueKind);
        Assert.Equal(50.0, baseColumns.GetProperty("iit TTTT").GetProperty("accuracy").GetDouble());
        Assert.Equal(JsonValueKind.Null, baseColumns.GetProperty("iit IIII").ValueKind);
        var pluginColumns = entries[1].GetProperty("columns");
        Assert.Equal(100.0, pluginColumns.GetProperty("scienceqa image").GetProperty("accuracy").GetDouble());
        Assert.Equal(1, pluginColumns.GetProperty("iit IIII").GetProperty("total").GetInt32());
        Assert.Equal(1234, entries[1].GetProperty("trainable_parameters").GetInt64());
        Assert.Equal(2, entries[1].GetProperty("runs").GetArrayLength());

        string markdown = File.ReadAllText(written[0]);
        Assert.Contains("| base | 75.00 | n/a | 50.00 | n/a | n/a | 50.00 | n/a | n/a | n/a | n/a | n/a | 0 | 2.0 KiB |", markdown);
        Assert.Contains("| fake | 75.00 | 75.00 | 50.00 | 50.00 | 100.00 | 50.00 | n/a | n/a | n/a | n/a | 100.00 | 1,234 | 100 B |", markdown);
        Assert.Contains("base, route base, scienceqa: 1/2, skipped 1", markdown);

        foreach (var svg in written.Skip(2))
        {
            var root = XDocument.Load(svg).Root!;
            Assert.Equal("svg", root.Name.LocalName);
        }
        var textChart = XDocument.Load(written[2]).Root!;
        XNamespace ns = "http://www.w3.org/2000/svg";
        Assert.Contains(textChart.Descendants(ns + "title"), t => t.Value == "base: 75.00");
    }
}
