using System.Text.Json;
using Graft.Cli;
using Graft.Demo;
using Graft.Tests.Eval;
using Graft.Tests.Support;
using Xunit;

namespace Graft.Tests.Demo;

public class DemoTests
{
    private static (int Code, JsonElement Result, string Error) RunDemo(string output, params string[] extra)
    {
        var (code, stdout, stderr) = CliRunner.Run([DemoCommand.Create()], ["demo", "--out", output, "--json", .. extra]);
        Assert.True(code == 0, $"graft demo exited with {code}: {stderr}");
        return (code, JsonDocument.Parse(stdout).RootElement.Clone(), stderr);
    }

    [Fact]
    public void A_short_demo_trains_and_scores_a_design_and_keeps_the_base_text_accuracy()
    {
        using var folder = new TempFolder();
        var (_, result, _) = RunDemo(folder.Path, "--designs", "inner-adaptor", "--examples", "16", "--train-scenes", "16", "--test-scenes", "40");

        var rows = result.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(["base", "inner-adaptor"], rows.Select(r => r.GetProperty("name").GetString()));
        Assert.Equal(2, rows[1].GetProperty("steps").GetInt32());
        Assert.True(rows[1].GetProperty("trainable_parameters").GetInt64() > 0);
        // Text-only requests run the base alone, so the plug-in row's text score is the base's, question for question.
        Assert.Equal(rows[0].GetProperty("text_base_route").GetRawText(), rows[1].GetProperty("text_base_route").GetRawText());
        Assert.True(rows[0].GetProperty("text_base_route").GetProperty("total").GetInt32() > 0);
        Assert.True(rows[1].GetProperty("image").GetProperty("total").GetInt32() > 0);
        Assert.Equal(JsonValueKind.Null, rows[0].GetProperty("image").ValueKind);
        foreach (var file in new[] { "report.md", "report.json" })
            Assert.True(File.Exists(Path.Combine(folder.Path, "report", file)), file);
        Assert.True(Directory.Exists(Path.Combine(folder.Path, "runs", "inner-adaptor")));
    }

    [Fact]
    public void Unknown_designs_and_missing_assets_are_refused_by_name()
    {
        using var folder = new TempFolder();
        var (code, _, error) = CliRunner.Run([DemoCommand.Create()], "demo", "--out", folder.Path, "--designs", "lava", "--examples", "8");
        Assert.Equal(1, code);
        Assert.Contains("unknown design \"lava\"", error);

        (code, _, error) = CliRunner.Run([DemoCommand.Create()], "demo", "--out", folder.Path, "--assets", Path.Combine(folder.Path, "nowhere"));
        Assert.Equal(1, code);
        Assert.Contains("assets.json is missing", error);
    }

    /// <summary>
    /// The demo as a user runs it: every design, default sizes. Checks what Graft promises (every plug-in's base-route text
    /// score is the base's, question for question; every design is trained and scored on every held-out image question),
    /// not the accuracies, which the README reports as measured.
    /// </summary>
    [Fact, Trait("Category", "Slow")]
    public void The_full_demo_trains_and_scores_every_design_and_keeps_text_exactly()
    {
        using var folder = new TempFolder();
        var (_, result, _) = RunDemo(folder.Path);
        var rows = result.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(["base", "bridge", "bridge-full", "mma", "inner-adaptor", "wings", "visual-experts"], rows.Select(r => r.GetProperty("name").GetString()));
        string baseText = rows[0].GetProperty("text_base_route").GetRawText();
        int imageQuestions = result.GetProperty("blind_image_baseline").GetProperty("total").GetInt32();
        Assert.True(imageQuestions > 0);
        foreach (var row in rows.Skip(1))
        {
            string name = row.GetProperty("name").GetString()!;
            if (name != "bridge-full") Assert.Equal(baseText, row.GetProperty("text_base_route").GetRawText());
            Assert.Equal(imageQuestions, row.GetProperty("image").GetProperty("total").GetInt32());
            Assert.True(row.GetProperty("steps").GetInt32() > 0, name);
        }
        foreach (var name in new[] { "mma", "wings" })
            Assert.Equal(JsonValueKind.Object, rows.Single(r => r.GetProperty("name").GetString() == name).GetProperty("text_plugin_route").ValueKind);
    }
}
