using System.CommandLine;
using Graft.Demo;

namespace Graft.Cli;

/// <summary>
/// `graft demo`: trains every design on generated data from the committed demo assets and prints the table (text skill
/// kept, image skill gained, parameters, time); `--rebuild-assets` retrains the assets themselves from scratch.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var defaults = new DemoSettings { Assets = "", Output = "" };
        var json = new Option<bool>("--json") { Description = "Print the results as JSON on stdout (progress stays on stderr)." };
        var seed = new Option<int>("--seed") { Description = "Seed of the generated scenes, the plug-ins' initialisation and their data order.", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--out") { Description = "Folder for the generated data, the training runs and the report.", DefaultValueFactory = _ => "graft-demo" };
        var assets = new Option<string?>("--assets") { Description = "The demo assets folder (default: the assets shipped with Graft)." };
        var examples = new Option<int>("--examples") { Description = "Training examples per design (steps = examples / the preset's batch x accumulation).", DefaultValueFactory = _ => defaults.Examples };
        var designs = new Option<string[]>("--designs")
        {
            Description = $"The designs to train ({string.Join(", ", DemoRun.Variants.Select(v => v.Name))}); all by default.",
            AllowMultipleArgumentsPerToken = true,
        };
        var trainScenes = new Option<int>("--train-scenes") { Description = "Generated training scenes.", DefaultValueFactory = _ => defaults.TrainScenes };
        var testScenes = new Option<int>("--test-scenes") { Description = "Generated held-out scenes.", DefaultValueFactory = _ => defaults.TestScenes };
        var rebuild = new Option<bool>("--rebuild-assets") { Description = "Retrain the demo's base model and vision encoder from scratch into --assets (default assets/demo), and report how long it took." };
        var command = new Command("demo", "Train every plug-in design on generated data over a small base model; show text skill kept, image skill gained, parameters and time.");
        foreach (var option in new Option[] { json, seed, output, assets, examples, designs, trainScenes, testScenes, rebuild }) command.Options.Add(option);
        command.SetAction((parse, cancellation) =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            if (parse.GetValue(rebuild))
                return Task.FromResult(RebuildAssets(parse.GetValue(assets) ?? Path.Combine("assets", "demo"), parse.GetValue(seed), stdout, stderr, cancellation));
            return Task.FromResult(EvalCommand.Guarded("demo", stderr, () =>
            {
                var settings = new DemoSettings
                {
                    Assets = parse.GetValue(assets) ?? DemoAssetFolders.DefaultRoot(),
                    Output = parse.GetValue(output)!,
                    Seed = parse.GetValue(seed),
                    Examples = Positive(parse.GetValue(examples), "--examples"),
                    TrainScenes = Positive(parse.GetValue(trainScenes), "--train-scenes"),
                    TestScenes = Positive(parse.GetValue(testScenes), "--test-scenes"),
                    Variants = parse.GetValue(designs) is { Length: > 0 } chosen ? chosen : defaults.Variants,
                };
                bool asJson = parse.GetValue(json);
                try
                {
                    var result = DemoRun.Run(settings, asJson ? stderr : stdout, stderr, cancellation);
                    if (asJson) stdout.WriteLine(DemoRun.ToJson(result).ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
                    else DemoRun.PrintTable(result, stdout);
                    return 0;
                }
                catch (OperationCanceledException)
                {
                    stderr.WriteLine($"graft demo: cancelled; what was finished is in {settings.Output}");
                    return 130;
                }
            }));
        });
        return command;
    }

    private static int Positive(int value, string option) =>
        value > 0 ? value : throw new ArgumentException($"{option} must be a positive number, not {value}");

    /// <summary>`graft demo --rebuild-assets [--assets DIR] [--seed S]`: the base model and vision tower from scratch, timed.</summary>
    private static int RebuildAssets(string folder, int seed, TextWriter stdout, TextWriter stderr, CancellationToken cancellation)
    {
        return EvalCommand.Guarded("demo --rebuild-assets", stderr, () =>
        {
            try
            {
                var report = DemoAssets.Build(folder, seed, new Progress<DemoAssetsProgress>(p => stdout.WriteLine($"[{p.Stage}] {p.Message}")), cancellation);
                stdout.WriteLine();
                foreach (var (part, time) in report.Times) stdout.WriteLine($"{part,-11} {time.TotalSeconds,7:F1} s");
                stdout.WriteLine($"{"total",-11} {report.Total.TotalSeconds,7:F1} s");
                stdout.WriteLine($"wrote {Path.GetFullPath(folder)} (base/, vision/, text-tests/, {DemoAssets.ManifestFileName})");
                return 0;
            }
            catch (OperationCanceledException)
            {
                stderr.WriteLine($"graft demo --rebuild-assets: cancelled; {folder} was left as it was");
                return 130;
            }
        });
    }
}
