using System.CommandLine;
using System.Text.Json;
using Graft.Cli;
using Graft.Data;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tests.Plugins;
using Graft.Tests.Support;

namespace Graft.Tests.Eval;

/// <summary>`graft eval` and `graft report` run in-process on a generated text world with the tiny checkpoint.</summary>
public class EvalCommandTests
{
    private static (int ExitCode, string Output, string Error) Invoke(params string[] args) =>
        CliRunner.Run([EvalCommand.Create(), ReportCommand.Create()], args);

    private static string TextWorld(TempFolder temp)
    {
        string folder = Path.Combine(temp.Path, "world");
        Graft.Data.TextWorld.Write(new DataOutput(folder, force: false, Graft.Data.TextWorld.OutputNames), 8, seed: 5);
        return Path.Combine(folder, "mmlu");
    }

    [Fact]
    public void Eval_prints_parseable_json_with_counts_that_add_up()
    {
        using var temp = new TempFolder();
        string model = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        string mmlu = TextWorld(temp);

        var (code, output, error) = Invoke("eval", "--model", model, "--bench", "mmlu:" + mmlu, "--limit", "6", "--shots", "1", "--json");
        Assert.True(code == 0, error);
        // Not a terminal: one plain line per benchmark.
        Assert.Matches(@"^mmlu: 6/6 in [\d.]+ s \([\d.]+/s\)\r?\n$", error);

        using var json = JsonDocument.Parse(output);
        Assert.Equal("base", json.RootElement.GetProperty("route").GetString());
        var bench = Assert.Single(json.RootElement.GetProperty("benchmarks").EnumerateArray());
        var overall = bench.GetProperty("overall");
        Assert.Equal(6, overall.GetProperty("total").GetInt32());
        var categories = bench.GetProperty("categories").EnumerateArray().ToList();
        Assert.Equal(TextWorld_Subjects, categories.Select(c => c.GetProperty("name").GetString()));
        Assert.All(categories, c => Assert.Equal(2, c.GetProperty("total").GetInt32()));
        Assert.Equal(overall.GetProperty("correct").GetInt32(), categories.Sum(c => c.GetProperty("correct").GetInt32()));
    }

    private static readonly string[] TextWorld_Subjects = [.. Graft.Data.TextWorld.Subjects];

    [Fact]
    public void Report_writes_markdown_json_and_a_chart_for_the_base()
    {
        using var temp = new TempFolder();
        string model = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        string mmlu = TextWorld(temp);
        string output = Path.Combine(temp.Path, "report");

        var (code, printed, error) = Invoke("report", "--model", model, "--bench", "mmlu:" + mmlu, "--limit", "3", "--shots", "0", "--quiet", "--out", output);
        Assert.True(code == 0, error);
        Assert.Equal("", error);
        Assert.Contains("report.md", printed);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "report.json")));
        var entry = Assert.Single(json.RootElement.GetProperty("entries").EnumerateArray());
        Assert.Equal(3, entry.GetProperty("columns").GetProperty("mmlu text (base route)").GetProperty("total").GetInt32());
        Assert.True(entry.GetProperty("size_on_disk_bytes").GetInt64() > 0);
        Assert.True(File.Exists(Path.Combine(output, "text.svg")));
    }

    /// <summary>A random Bridge plug-in for the tiny checkpoint and a small shapes world with real PNGs.</summary>
    private static (string Model, string Plugin, string Shapes) PluginSetup(TempFolder temp)
    {
        string model = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        string plugin = Path.Combine(temp.Path, "tiny.graft");
        using (var decoder = DecoderModel.Load(model)) PluginFile.Save(PluginFixtures.RandomBridge(decoder, 3), plugin);
        string shapes = Path.Combine(temp.Path, "shapes");
        ShapesWorld.Write(new DataOutput(shapes, force: false, ShapesWorld.OutputNames), 12, seed: 2, new ShapesWorldOptions { Size = 24, MaxShapes = 2 });
        return (model, plugin, shapes);
    }

    [Fact]
    public void Eval_through_a_plugin_scores_image_items_instead_of_skipping_them()
    {
        using var temp = new TempFolder();
        var (model, plugin, shapes) = PluginSetup(temp);

        var (code, output, error) = Invoke("eval", "--model", model, "--plugin", plugin, "--bench", "scienceqa:" + Path.Combine(shapes, "scienceqa"),
            "--bench", "shapes:" + shapes, "--split", "train", "--limit", "4", "--max-new-tokens", "4", "--json", "--quiet");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        Assert.Equal("plugin:tiny", json.RootElement.GetProperty("route").GetString());
        var benches = json.RootElement.GetProperty("benchmarks").EnumerateArray().ToList();
        Assert.Equal(["scienceqa", "shapes"], benches.Select(b => b.GetProperty("name").GetString()));
        foreach (var bench in benches)
        {
            Assert.Equal(0, bench.GetProperty("skipped").GetInt32());
            Assert.Equal(4, bench.GetProperty("overall").GetProperty("total").GetInt32());
            Assert.Equal(4, bench.GetProperty("text_only").GetProperty("total").GetInt32() + bench.GetProperty("with_image").GetProperty("total").GetInt32());
        }
        Assert.Equal(4, benches[1].GetProperty("with_image").GetProperty("total").GetInt32());

        var (refused, _, message) = Invoke("eval", "--model", model, "--plugin", plugin, "--text-route", "plugin", "--bench", "shapes:" + shapes, "--quiet");
        Assert.Equal(1, refused);
        Assert.Contains("cannot take text-only requests", message);
    }

    [Fact]
    public void Eval_opens_the_vision_tower_a_plugin_was_made_with()
    {
        using var temp = new TempFolder();
        var (model, _, shapes) = PluginSetup(temp);
        string tower = WiringVisionTests.Tower("clip_vision");
        string plugin = Path.Combine(temp.Path, "clip.graft");
        using (var decoder = DecoderModel.Load(model))
        using (var vision = VisionTowerFrontEnd.Load(tower))
            PluginFile.Save(Bridge.Create(decoder, vision, new BridgeOptions { Seed = 5 }), plugin);

        var (code, output, error) = Invoke("eval", "--model", model, "--plugin", plugin, "--vision", tower, "--bench", "shapes:" + shapes,
            "--limit", "2", "--max-new-tokens", "2", "--json", "--quiet");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var bench = Assert.Single(json.RootElement.GetProperty("benchmarks").EnumerateArray());
        Assert.Equal(0, bench.GetProperty("skipped").GetInt32());
        Assert.Equal(2, bench.GetProperty("with_image").GetProperty("total").GetInt32());

        // Without --vision the tower is the folder plugin.json records; --answers writes what was generated for each item.
        string answers = Path.Combine(temp.Path, "answers.jsonl");
        var (found, foundOutput, foundError) = Invoke("eval", "--model", model, "--plugin", plugin, "--bench", "shapes:" + shapes,
            "--limit", "2", "--max-new-tokens", "2", "--json", "--quiet", "--answers", answers);
        Assert.True(found == 0, foundError);
        Assert.Equal(output, foundOutput);
        var lines = File.ReadAllLines(answers).Select(line => JsonDocument.Parse(line).RootElement).ToList();
        Assert.Equal(2, lines.Count);
        Assert.All(lines, line => Assert.Equal("shapes", line.GetProperty("benchmark").GetString()));
        Assert.Equal(bench.GetProperty("overall").GetProperty("correct").GetInt32(), lines.Count(l => l.GetProperty("correct").GetBoolean()));

        var (wrong, _, message) = Invoke("eval", "--model", model, "--plugin", plugin, "--vision", WiringVisionTests.Tower("siglip_head"), "--bench", "shapes:" + shapes, "--quiet");
        Assert.Equal(1, wrong);
        Assert.Contains("vision kind: plug-in expects clip, given siglip", message);
    }

    /// <summary>
    /// One report over plug-ins that read different towers (CLIP, SigLIP) and none (Visual Experts), each found from its
    /// plugin.json; a plug-in whose tower is gone stops the report before anything is scored or written.
    /// </summary>
    [Fact]
    public void Report_takes_plugins_with_different_towers_and_none_and_checks_them_all_first()
    {
        using var temp = new TempFolder();
        var (model, _, shapes) = PluginSetup(temp);
        string clip = WiringVisionTests.Tower("clip_vision"), siglip = WiringVisionTests.CopyTower(WiringVisionTests.Tower("siglip_head"), Path.Combine(temp.Path, "siglip"));
        string bridge = Path.Combine(temp.Path, "bridge.graft"), wings = Path.Combine(temp.Path, "wings.graft"), experts = Path.Combine(temp.Path, "experts.graft");
        using (var decoder = DecoderModel.Load(model))
        {
            using (var vision = VisionTowerFrontEnd.Load(clip)) PluginFile.Save(Bridge.Create(decoder, vision, new BridgeOptions { Seed = 5 }), bridge);
            using (var vision = VisionTowerFrontEnd.Load(siglip)) PluginFile.Save(Wings.Create(decoder, vision), wings);
            PluginFile.Save(VisualExperts.Create(decoder, new VisualExpertsOptions { ImageSize = 24, PatchSize = 6 }), experts);
        }
        string output = Path.Combine(temp.Path, "report");
        var (code, _, error) = Invoke("report", "--model", model, "--plugin", bridge, "--plugin", wings, "--plugin", experts, "--bench", "shapes:" + shapes,
            "--limit", "2", "--max-new-tokens", "2", "--quiet", "--out", output);
        Assert.True(code == 0, error);
        using (var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "report.json"))))
        {
            var entries = json.RootElement.GetProperty("entries").EnumerateArray().ToList();
            Assert.Equal(["base", "bridge", "wings", "experts"], entries.Select(e => e.GetProperty("name").GetString()));
            foreach (var entry in entries.Skip(1))
                Assert.Equal(2, entry.GetProperty("runs")[1].GetProperty("benchmarks")[0].GetProperty("with_image").GetProperty("total").GetInt32());
        }

        Directory.Delete(siglip, recursive: true);
        string again = Path.Combine(temp.Path, "again");
        (code, _, error) = Invoke("report", "--model", model, "--plugin", bridge, "--plugin", wings, "--bench", "shapes:" + shapes, "--quiet", "--out", again);
        Assert.Equal(1, code);
        Assert.Contains("plug-in 'wings'", error);
        Assert.Contains("does not exist", error);
        Assert.False(Directory.Exists(again));
        // A tower given for one plug-in by name.
        (code, _, error) = Invoke("report", "--model", model, "--plugin", bridge, "--plugin", wings, "--vision", "wings=" + WiringVisionTests.Tower("siglip_head"),
            "--bench", "shapes:" + shapes, "--limit", "1", "--max-new-tokens", "1", "--quiet", "--out", again);
        Assert.True(code == 0, error);
    }

    [Fact]
    public void Report_with_a_plugin_fills_the_image_column()
    {
        using var temp = new TempFolder();
        var (model, plugin, shapes) = PluginSetup(temp);
        string output = Path.Combine(temp.Path, "report");

        var (code, _, error) = Invoke("report", "--model", model, "--plugin", plugin, "--bench", "scienceqa:" + Path.Combine(shapes, "scienceqa"),
            "--split", "train", "--limit", "3", "--max-new-tokens", "4", "--quiet", "--out", output);
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "report.json")));
        var entries = json.RootElement.GetProperty("entries").EnumerateArray().ToList();
        Assert.Equal(["base", "tiny"], entries.Select(e => e.GetProperty("name").GetString()));
        Assert.Equal(JsonValueKind.Null, entries[0].GetProperty("columns").GetProperty("scienceqa image").ValueKind);
        Assert.True(entries[1].GetProperty("trainable_parameters").GetInt64() > 0);
        var runs = entries[1].GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal(["base", "plugin:tiny"], runs.Select(r => r.GetProperty("route").GetString()));
        var pluginBench = runs[1].GetProperty("benchmarks")[0];
        Assert.Equal(0, pluginBench.GetProperty("skipped").GetInt32());
        Assert.Equal(3, pluginBench.GetProperty("overall").GetProperty("total").GetInt32());
    }

    [Theory]
    [InlineData("nope:/x", "unknown kind")]
    [InlineData("mmlu:/does/not/exist", "/does/not/exist")]
    public void Bad_benchmarks_are_one_line_and_exit_code_1(string bench, string named)
    {
        using var temp = new TempFolder();
        string model = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        var (code, _, error) = Invoke("eval", "--model", model, "--bench", bench, "--quiet");
        Assert.Equal(1, code);
        Assert.Contains(named, error);
    }
}
