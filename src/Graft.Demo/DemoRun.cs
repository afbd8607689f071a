using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Graft.Data;
using Graft.Eval;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Training;

namespace Graft.Demo;

/// <summary>The sizes of a `graft demo` run; the defaults fit the issue's budget (10 minutes on 2 cores).</summary>
public sealed record DemoSettings
{
    public required string Assets { get; init; }
    public required string Output { get; init; }
    public int Seed { get; init; } = 1;

    /// <summary>
    /// Training examples per design: each design takes as many optimiser steps as its preset's examples per step (batch
    /// times accumulation, the largest of its stages) allow, shared out over its stages, so every design sees as much data.
    /// </summary>
    public int Examples { get; init; } = 2000;

    public int TrainScenes { get; init; } = 1000;
    public int TestScenes { get; init; } = 150;
    public int IitDialogues { get; init; } = 4;

    /// <summary>Free text questions per test set (the plug-in route of MMA and WINGS scores each through the plug-in).</summary>
    public int TextQuestionsPerSet { get; init; } = 48;

    /// <summary>Four-option text questions per subject that the interleaved benchmark draws from.</summary>
    public int ChoiceQuestionsPerSubject { get; init; } = 15;
    public IReadOnlyList<string> Variants { get; init; } = DemoRun.Variants.Select(v => v.Name).ToArray();
}

/// <summary>One row of the demo's table: a model (the base, or base + plug-in) and what it reached.</summary>
public sealed record DemoRow(
    string Name, string Design, long TrainableParameters, TimeSpan TrainingTime, int Steps,
    Score? Image, Score TextBaseRoute, Score? TextPluginRoute, Score? Interleaved, ReportEntry Entry);

public sealed record DemoResult(DemoRow Base, IReadOnlyList<DemoRow> Plugins, Score BlindImageBaseline, TimeSpan Elapsed, IReadOnlyList<string> ReportFiles);

/// <summary>
/// `graft demo`: the whole story on generated data. The committed demo assets hold a small base LLM that knows the
/// demo's text world and a small CLIP tower that knows the shapes world; the demo generates shapes scenes with
/// questions, trains every design by its preset recipe on the same number of examples, evaluates each on held-out image
/// questions, the base's text test sets (through the base route and, for MMA and WINGS, through the plug-in as their
/// authors route text) and the interleaved benchmark, then prints the table and writes the forgetting report.
/// </summary>
public static class DemoRun
{
    /// <summary>A row of the demo: a name and the preset recipe it trains.</summary>
    public sealed record Variant(string Name, string Preset);

    public static readonly IReadOnlyList<Variant> Variants =
    [
        new("bridge", "bridge"),
        new("bridge-full", "bridge-full"),
        new("mma", "mma"),
        new("inner-adaptor", "inner-adaptor"),
        new("wings", "wings"),
        new("visual-experts", "visual-experts"),
    ];

    public static DemoResult Run(DemoSettings settings, TextWriter log, TextWriter progress, CancellationToken cancellation)
    {
        var clock = Stopwatch.StartNew();
        var assets = DemoAssetFolders.Open(settings.Assets);
        string dataFolder = Path.Combine(settings.Output, "data");
        string trainScenes = Path.Combine(dataFolder, "shapes-train"), testScenes = Path.Combine(dataFolder, "shapes-test");
        log.WriteLine($"generating {settings.TrainScenes} training and {settings.TestScenes} test scenes in {dataFolder}");
        ShapesWorld.Write(new DataOutput(trainScenes, force: true, ShapesWorld.OutputNames), settings.TrainScenes, (ulong)settings.Seed * 2 + 1, assets.Shapes);
        ShapesWorld.Write(new DataOutput(testScenes, force: true, ShapesWorld.OutputNames), settings.TestScenes, (ulong)settings.Seed * 2 + 2, assets.Shapes);

        string textTests = Path.Combine(dataFolder, "text-tests.json"), choiceTests = Path.Combine(dataFolder, "text-choice");
        WriteFreeTests(assets, textTests, settings.TextQuestionsPerSet);
        WriteChoiceTests(assets, choiceTests, settings.ChoiceQuestionsPerSubject);
        var textBench = new BenchSpec(BenchKind.Llava, textTests);
        var imageBench = new BenchSpec(BenchKind.Shapes, testScenes);
        var choiceBench = new BenchSpec(BenchKind.Mmlu, choiceTests);
        var interleaved = new BenchSpec(BenchKind.Iit, $"{choiceBench},{imageBench}", choiceBench, imageBench);
        BenchSpec[] benches = [textBench, imageBench, interleaved];
        var evalOptions = new EvalOptions { Shots = 0, Split = "test", MaxNewTokens = 8, Seed = (ulong)settings.Seed, IitDialogues = settings.IitDialogues };
        var evalProgress = ProgressBar.ForStandardError(progress);

        log.WriteLine($"evaluating the base ({assets.Base})");
        var baseRun = ModelEvaluation.Evaluate(assets.Base, benches, evalOptions, evalProgress);
        var baseEntry = new ReportEntry("base", 0, FolderBytes(assets.Base, "*.safetensors"), baseRun, null);
        var baseRow = Row("base", "base", 0, TimeSpan.Zero, 0, baseEntry, routesText: false);

        var rows = new List<DemoRow>();
        foreach (var variant in settings.Variants.Select(Find))
        {
            cancellation.ThrowIfCancellationRequested();
            rows.Add(TrainAndEvaluate(variant, settings, assets, trainScenes, choiceTests, benches, evalOptions, baseRun, log, progress, cancellation));
        }

        var report = new ForgettingReport([baseEntry, .. rows.Select(r => r.Entry)]);
        var files = report.Write(Path.Combine(settings.Output, "report"));
        return new DemoResult(baseRow, rows, BlindBaseline(testScenes), clock.Elapsed, files);
    }

    /// <summary>
    /// The assets' free text test sets as one LLaVA file, the first <paramref name="questionsPerSet"/> of each set (the
    /// demo's time budget; `graft eval` on the asset files scores them all).
    /// </summary>
    private static void WriteFreeTests(DemoAssetFolders assets, string file, int questionsPerSet)
    {
        var output = new DataOutput(Path.GetDirectoryName(Path.GetFullPath(file))!, force: true, [Path.GetFileName(file)]);
        var items = assets.FreeTests.SelectMany(set => LlavaReader.Read(set.File, Path.GetDirectoryName(set.File)!).Take(questionsPerSet)
            .Select(c => (c.Id, Question: c.Turns[0].Text, Answer: c.Turns[1].Text)));
        LlavaWriter.WriteQuestionAnswers(output, Path.GetFileName(file), items);
    }

    /// <summary>
    /// The assets' choice test sets as one MMLU folder, so one benchmark draws from them all:
    /// SET/{dev,test}/SUBJECT_{split}.csv becomes {dev,test}/SET.SUBJECT_{split}.csv, with the first
    /// <paramref name="questionsPerSubject"/> test questions of each.
    /// </summary>
    private static void WriteChoiceTests(DemoAssetFolders assets, string folder, int questionsPerSubject)
    {
        var output = new DataOutput(folder, force: true, ["dev", "test"]);
        foreach (var (name, setFolder) in assets.ChoiceTests)
            foreach (var split in (string[])["dev", "test"])
                foreach (var file in Directory.GetFiles(Path.Combine(setFolder, split), "*.csv").Order(StringComparer.Ordinal))
                {
                    var questions = MmluReader.ReadCsv(file);
                    if (split == "test" && questions.Count > questionsPerSubject) questions = questions.GetRange(0, questionsPerSubject);
                    output.WriteText($"{split}/{name}.{Path.GetFileName(file)}", MmluReader.ToCsv(questions));
                }
    }

    private static Variant Find(string name) =>
        Variants.FirstOrDefault(v => v.Name == name)
        ?? throw new ArgumentException($"--designs: unknown design \"{name}\" (known: {string.Join(", ", Variants.Select(v => v.Name))})");

    private static DemoRow TrainAndEvaluate(Variant variant, DemoSettings settings, DemoAssetFolders assets, string trainScenes, string choiceTests,
        IReadOnlyList<BenchSpec> benches, EvalOptions evalOptions, EvalRun baseRun, TextWriter log, TextWriter progress, CancellationToken cancellation)
    {
        var recipe = Recipe.Load(Recipe.PresetPrefix + variant.Preset);
        bool mixesText = recipe.Data.TextShare > 0 || recipe.Stages.Any(s => s.Data.TextShare > 0);
        List<DataSourceSpec> data = [new("shapes", trainScenes, null, 1)];
        if (mixesText) data.Add(new("mmlu", choiceTests, "dev", 1));
        string runFolder = Path.Combine(settings.Output, "runs", variant.Name);
        log.WriteLine($"training {variant.Name} ({recipe.Description})");

        TrainingResult training;
        using (var model = DecoderModel.Load(assets.Base))
        {
            var vision = new PluginNewSettings(recipe.Design, assets.Base, recipe.Design == VisualExperts.DesignName ? null : assets.Vision, runFolder).CreateFrontEnd();
            using var _ = vision as IDisposable;
            var request = new TrainingRequest
            {
                Recipe = recipe, Base = model, Vision = vision, RunFolder = runFolder, Data = data, Steps = StepsFor(recipe, settings.Examples), Seed = settings.Seed,
            };
            var bar = new TrainingProgressBar(progress, live: ReferenceEquals(progress, Console.Error) && !Console.IsErrorRedirected);
            training = PluginTrainer.Train(request, bar, cancellation);
            bar.Finish();
        }

        string baseFolder = training.BaseFolder ?? assets.Base;
        var textRun = training.BaseFolder is null ? baseRun : ModelEvaluation.Evaluate(baseFolder, benches, evalOptions, ProgressBar.ForStandardError(progress));
        string? visionFolder = recipe.Design == VisualExperts.DesignName ? null : assets.Vision;
        var (pluginRun, trainable, routesText) = ModelEvaluation.EvaluatePlugin(baseFolder, training.PluginFolder, visionFolder, null, benches, evalOptions, ProgressBar.ForStandardError(progress));
        if (training.BaseFolder is not null) trainable += DecoderModel.Inspect(baseFolder).ParameterCount;
        var entry = new ReportEntry(variant.Name, trainable, FolderBytes(training.PluginFolder, "*"), textRun, pluginRun);
        return Row(variant.Name, recipe.Design, trainable, training.Elapsed, training.Steps, entry, routesText);
    }

    /// <summary>Steps that cover <paramref name="examples"/> at the recipe's largest examples per step, at least one per stage.</summary>
    public static int StepsFor(Recipe recipe, int examples) =>
        Math.Max(recipe.Stages.Count, examples / recipe.Stages.Max(s => s.ExamplesPerStep));

    /// <summary>A table row from a report entry whose runs score, in order, the text tests, the image questions and IIT.</summary>
    private static DemoRow Row(string name, string design, long trainable, TimeSpan time, int steps, ReportEntry entry, bool routesText)
    {
        var text = entry.BaseRoute.Results[0].Overall;
        var plugin = entry.PluginRoute;
        Score? textViaPlugin = routesText ? plugin?.Results[0].TextOnly : null;
        return new DemoRow(name, design, trainable, time, steps, plugin?.Results[1].WithImage, text, textViaPlugin, plugin?.Results[2].Overall, entry);
    }

    /// <summary>
    /// What a model that cannot see reaches at best on the image questions: for each question text, always giving the
    /// answer that text has most often in the test set.
    /// </summary>
    private static Score BlindBaseline(string testScenes)
    {
        var answers = LlavaReader.Read(Path.Combine(testScenes, "llava.json"), Path.Combine(testScenes, "images"))
            .SelectMany(c => c.SupervisedTurns.Select(t => (Question: c.Turns[t - 1].Text.Replace(PromptFormats.ImagePlaceholder, "", StringComparison.Ordinal).Trim(), Answer: c.Turns[t].Text)))
            .ToList();
        int correct = answers.GroupBy(a => a.Question).Sum(g => g.GroupBy(a => a.Answer).Max(a => a.Count()));
        return new Score(correct, answers.Count);
    }

    private static long FolderBytes(string folder, string pattern) => Directory.GetFiles(folder, pattern).Sum(f => new FileInfo(f).Length);

    public static void PrintTable(DemoResult result, TextWriter output)
    {
        var c = CultureInfo.InvariantCulture;
        output.WriteLine();
        output.WriteLine("| model | trainable params | train time | image accuracy | text accuracy (base route) | text accuracy (plug-in route) | text change | interleaved (IIT) |");
        output.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        var baseText = result.Base.TextBaseRoute;
        foreach (var row in (DemoRow[])[result.Base, .. result.Plugins])
        {
            string change = row == result.Base ? "" : Signed(row.TextBaseRoute.Accuracy - baseText.Accuracy);
            if (row.TextPluginRoute is { } viaPlugin && row != result.Base) change += $" / {Signed(viaPlugin.Accuracy - baseText.Accuracy)}";
            output.WriteLine(string.Create(c,
                $"| {row.Name} | {row.TrainableParameters:N0} | {(row.Steps == 0 ? "" : $"{row.TrainingTime.TotalSeconds:F0} s")} | {Percent(row.Image)} | {Percent(row.TextBaseRoute)} | {Percent(row.TextPluginRoute)} | {change} | {Percent(row.Interleaved)} |"));
        }
        output.WriteLine();
        output.WriteLine(string.Create(c, $"Image questions answered blind (the commonest answer to each question): {Percent(result.BlindImageBaseline)}."));
        output.WriteLine(string.Create(c, $"Total time {result.Elapsed.TotalMinutes:F1} min. Report: {string.Join(", ", result.ReportFiles)}"));
    }

    private static string Percent(Score? score) => score is { Total: > 0 } s ? string.Create(CultureInfo.InvariantCulture, $"{s.Accuracy:F1}% ({s.Correct}/{s.Total})") : "n/a";

    private static string Signed(double points) => string.Create(CultureInfo.InvariantCulture, $"{(points >= 0 ? "+" : "")}{points:F1}");

    public static JsonObject ToJson(DemoResult result) => new()
    {
        ["elapsed_seconds"] = Math.Round(result.Elapsed.TotalSeconds, 1),
        ["blind_image_baseline"] = ScoreJson(result.BlindImageBaseline),
        ["rows"] = new JsonArray([.. ((DemoRow[])[result.Base, .. result.Plugins]).Select(row => (JsonNode)new JsonObject
        {
            ["name"] = row.Name,
            ["design"] = row.Design,
            ["trainable_parameters"] = row.TrainableParameters,
            ["training_seconds"] = Math.Round(row.TrainingTime.TotalSeconds, 1),
            ["steps"] = row.Steps,
            ["image"] = ScoreJson(row.Image),
            ["text_base_route"] = ScoreJson(row.TextBaseRoute),
            ["text_plugin_route"] = ScoreJson(row.TextPluginRoute),
            ["interleaved"] = ScoreJson(row.Interleaved),
        })]),
        ["report_files"] = new JsonArray([.. result.ReportFiles.Select(f => (JsonNode)f)]),
    };

    private static JsonNode? ScoreJson(Score? score) => score is { Total: > 0 } s
        ? new JsonObject { ["accuracy"] = Math.Round(s.Accuracy, 2), ["correct"] = s.Correct, ["total"] = s.Total }
        : null;
}
