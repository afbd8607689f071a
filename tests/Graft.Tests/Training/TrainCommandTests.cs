using System.CommandLine;
using System.Text.Json;
using Graft.Cli;
using Graft.Tests.Support;
using Graft.Training;

namespace Graft.Tests.Training;

/// <summary>`graft train` end to end on the tiny checkpoint with a tokenizer written beside it, and its plug-in used by the other commands.</summary>
public sealed class TrainCommandTests : IDisposable
{
    private readonly TrainingFixtures _fixtures = new();

    public void Dispose() => _fixtures.Dispose();

    private static (int Code, string Output, string Error) Invoke(CancellationToken? cancellation, params string[] args) =>
        CliRunner.Run([TrainCommand.Create(cancellation is { } token ? () => token : () => CancellationToken.None), PluginCommand.Create(), EvalCommand.Create()], args);

    private static (int Code, string Output, string Error) Invoke(params string[] args) => Invoke(null, args);

    [Fact]
    public void Presets_are_listed_with_their_stages()
    {
        var (code, output, _) = Invoke("train", "--list-presets");
        Assert.Equal(0, code);
        foreach (var name in Recipe.PresetNames) Assert.Contains($"preset:{name}  (", output);
        Assert.Contains("visual-experts, 3 stages: concept, semantic, alignment", output);
    }

    [Fact]
    public void A_preset_trains_a_plugin_that_inspect_and_eval_use()
    {
        string run = _fixtures.Sub("run");
        var (code, output, error) = Invoke("train", "--recipe", "preset:bridge", "--model", _fixtures.Model, "--vision", "patch-pixels:2:2", "--data", "shapes:" + _fixtures.Shapes,
            "--out", run, "--steps", "3", "--seed", "4", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var root = json.RootElement;
        Assert.Equal("bridge", root.GetProperty("recipe").GetString());
        Assert.Equal(3, root.GetProperty("steps").GetInt32());
        Assert.True(root.GetProperty("tokens_per_s").GetDouble() > 0);
        Assert.Equal("projector", root.GetProperty("stages")[0].GetProperty("parts")[0].GetString());
        string plugin = root.GetProperty("plugin").GetString()!;
        Assert.Equal(Path.Combine(run, "bridge.graft"), plugin);
        Assert.Contains("projector (1/1) step 3/3", error);
        Assert.Equal(3, File.ReadLines(Path.Combine(run, PluginTrainer.MetricsFileName)).Count());
        Assert.Equal(4, Recipe.Parse(File.ReadAllText(Path.Combine(run, PluginTrainer.RecipeFileName)), "r").Seed);

        var inspect = Invoke("plugin", "inspect", plugin);
        Assert.True(inspect.Code == 0, inspect.Error);
        Assert.Contains("\"state\":\"trained\"", inspect.Output);
        var eval = Invoke("eval", "--model", _fixtures.Model, "--plugin", plugin, "--bench", "shapes:" + _fixtures.Shapes, "--limit", "2", "--max-new-tokens", "2", "--quiet");
        Assert.True(eval.Code == 0, eval.Error);
        Assert.Contains("route plugin:bridge", eval.Output);

        var again = Invoke("train", "--recipe", "preset:bridge", "--model", _fixtures.Model, "--vision", "patch-pixels:2:2", "--data", "shapes:" + _fixtures.Shapes, "--out", run, "--steps", "3");
        Assert.Equal(1, again.Code);
        Assert.Contains("--resume", again.Error);
    }

    [Fact]
    public void Ctrl_c_saves_and_the_same_command_with_resume_finishes()
    {
        string run = _fixtures.Sub("run");
        string[] args = ["train", "--recipe", "preset:wings", "--model", _fixtures.Model, "--vision", "patch-pixels:2:2",
            "--data", "shapes:" + _fixtures.Shapes, "--data", $"alpaca:{_fixtures.Text}/alpaca.json@0.5", "--out", run, "--steps", "2"];
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var stopped = Invoke(cancel.Token, args);
        Assert.Equal(TrainCommand.Interrupted, stopped.Code);
        Assert.Contains("stopped after step 0; saved", stopped.Error);
        Assert.Contains("--resume", stopped.Error);
        var resumed = Invoke([.. args, "--resume"]);
        Assert.True(resumed.Code == 0, resumed.Error);
        Assert.Contains("resumed from step 0", resumed.Output);
        Assert.Contains("plug-in: " + Path.Combine(run, "wings.graft"), resumed.Output);
    }

    [Fact]
    public void Bad_input_is_one_line_naming_what_is_wrong()
    {
        string recipe = Path.Combine(_fixtures.Path, "bad.json");
        File.WriteAllText(recipe, """{"name": "bad", "design": "bridge", "stages": [{"name": "s", "trainable": {"parts": ["projector"]}, "learning_rate": 1e-3, "steps": 2, "batch": 4}]}""");
        string pixels = "patch-pixels:2:2";
        var cases = new (string[] Args, string Message)[]
        {
            (["train", "--model", _fixtures.Model, "--out", _fixtures.Sub("a")], "--recipe is required"),
            (["train", "--recipe", recipe, "--model", _fixtures.Model, "--vision", pixels, "--out", _fixtures.Sub("b")], $"{recipe}: stages[0].batch: is not a field here"),
            (["train", "--recipe", "preset:bridg", "--model", _fixtures.Model, "--out", _fixtures.Sub("c")], "'bridg' is not a preset"),
            (["train", "--recipe", "preset:bridge", "--model", _fixtures.Model, "--vision", pixels, "--data", "photos:/x", "--out", _fixtures.Sub("d")], "--data: 'photos' is not a data kind"),
            (["train", "--recipe", "preset:bridge", "--model", _fixtures.Model, "--vision", pixels, "--data", "shapes:" + _fixtures.Sub("nowhere"), "--out", _fixtures.Sub("e")], "nowhere"),
            (["train", "--recipe", "preset:visual-experts", "--model", _fixtures.Model, "--vision", pixels, "--data", "shapes:" + _fixtures.Shapes, "--out", _fixtures.Sub("f")], "takes no vision front end"),
            (["train", "--recipe", "preset:bridge", "--model", _fixtures.Model, "--vision", pixels, "--data", "shapes:" + _fixtures.Shapes, "--out", _fixtures.Sub("g"), "--steps", "0"], "--steps must be positive"),
            (["train", "--recipe", "preset:bridge", "--model", _fixtures.Model, "--data", "shapes:" + _fixtures.Shapes, "--out", _fixtures.Sub("h")], "--vision: a bridge plug-in sees through a vision front end"),
            (["train", "--out", _fixtures.Sub("i"), "--resume"], "holds no recipe.json of an earlier run to continue"),
        };
        foreach (var (args, message) in cases)
        {
            var (code, _, error) = Invoke(args);
            Assert.Equal(1, code);
            Assert.StartsWith("graft train: ", error);
            Assert.Contains(message, error);
            Assert.Single(error.TrimEnd().Split('\n'));
        }
        // Nothing was written for any of them.
        foreach (var folder in "abcdefghi") Assert.False(Directory.Exists(_fixtures.Sub(folder.ToString())), $"run folder {folder} was left behind");
    }

    /// <summary>
    /// A stopped run resumes from its folder alone (`graft train --out RUN --resume`: the recipe, base and front end are
    /// recorded there) and ends bit for bit as an uninterrupted run.
    /// </summary>
    [Fact]
    public void A_run_resumes_from_its_folder_alone()
    {
        string run = _fixtures.Sub("run"), whole = _fixtures.Sub("whole");
        string[] args = ["train", "--recipe", "preset:bridge", "--model", _fixtures.Model, "--vision", "patch-pixels:2:2", "--data", "shapes:" + _fixtures.Shapes, "--steps", "2"];
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var stopped = Invoke(cancel.Token, [.. args, "--out", run]);
        Assert.Equal(TrainCommand.Interrupted, stopped.Code);
        Assert.Contains($"continue with: graft train --out {run} --resume", stopped.Error);
        var info = RunInfo.Read(run)!;
        Assert.Equal(Path.GetFullPath(_fixtures.Model), info.Base);
        Assert.Equal("patch-pixels:2:2", info.Vision);
        Assert.Equal("preset:bridge", info.RecipeOrigin);

        var resumed = Invoke("train", "--out", run, "--resume");
        Assert.True(resumed.Code == 0, resumed.Error);
        Assert.Contains("resumed from step 0", resumed.Output);
        var uninterrupted = Invoke([.. args, "--out", whole]);
        Assert.True(uninterrupted.Code == 0, uninterrupted.Error);
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, "bridge.graft", "plugin.safetensors")), File.ReadAllBytes(Path.Combine(run, "bridge.graft", "plugin.safetensors")));
        Assert.Equal(File.ReadAllText(Path.Combine(whole, "bridge.graft", "plugin.json")), File.ReadAllText(Path.Combine(run, "bridge.graft", "plugin.json")));
    }

    /// <summary>
    /// A run that fails before its first checkpoint (here: every example longer than max_length, found at the first step,
    /// after the run folder was written) removes what it wrote, so the same folder takes the next attempt without --resume.
    /// </summary>
    [Fact]
    public void A_failed_start_leaves_nothing_that_blocks_a_retry()
    {
        string run = _fixtures.Sub("run");
        string recipe = Path.Combine(_fixtures.Path, "short.json");
        File.WriteAllText(recipe, $$"""{"name": "short", "design": "bridge", "data": {"sources": ["shapes:{{_fixtures.Shapes}}"]}, "stages": [{"name": "s", "trainable": {"parts": ["projector"]}, "learning_rate": 1e-3, "steps": 2, "batch_size": 2, "max_length": 8, "overflow": "skip"}]}""");
        var failed = Invoke("train", "--recipe", recipe, "--model", _fixtures.Model, "--vision", "patch-pixels:2:2", "--out", run);
        Assert.Equal(1, failed.Code);
        Assert.Contains("max_length", failed.Error);
        Assert.False(Directory.Exists(run));

        Directory.CreateDirectory(run);
        failed = Invoke("train", "--recipe", recipe, "--model", _fixtures.Model, "--vision", "patch-pixels:2:2", "--out", run);
        Assert.Equal(1, failed.Code);
        Assert.Empty(Directory.EnumerateFileSystemEntries(run));

        File.WriteAllText(recipe, File.ReadAllText(recipe).Replace("\"max_length\": 8", "\"max_length\": 400"));
        var retried = Invoke("train", "--recipe", recipe, "--model", _fixtures.Model, "--vision", "patch-pixels:2:2", "--out", run);
        Assert.True(retried.Code == 0, retried.Error);
    }
}
