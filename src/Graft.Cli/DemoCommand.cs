using System.CommandLine;
using System.Text.Json;
using Graft.Eval;
using Graft.Training;

namespace Graft.Cli;

internal static class DemoCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Print the results as JSON." };
        var seed = new Option<int>("--seed") { Description = "Seed for data and initialisation.", DefaultValueFactory = _ => 1 };
        var rebuild = new Option<bool>("--rebuild-assets") { Description = "Retrain the demo's base model and vision encoder from scratch and write them to --assets." };
        var assets = new Option<string>("--assets") { Description = "The demo assets folder.", DefaultValueFactory = _ => Path.Combine("assets", "demo") };
        var command = new Command("demo", "Train a tiny base model and a vision plug-in on generated data; show text skill kept and image skill gained.");
        command.Options.Add(json);
        command.Options.Add(seed);
        command.Options.Add(rebuild);
        command.Options.Add(assets);
        command.SetAction((parse, cancellationToken) =>
        {
            if (parse.GetValue(rebuild)) return Task.FromResult(RebuildAssets(parse.GetValue(assets)!, parse.GetValue(seed), cancellationToken));
            bool asJson = parse.GetValue(json);
            var result = EngineDemo.Run(parse.GetValue(seed), asJson ? null : Console.WriteLine);
            if (asJson)
            {
                Console.WriteLine(JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
                return Task.FromResult(result.TextLogitsBitIdentical ? 0 : 1);
            }
            Console.WriteLine();
            Console.WriteLine("| model            | trainable params | train time | text accuracy | image accuracy |");
            Console.WriteLine("|------------------|-----------------:|-----------:|--------------:|---------------:|");
            Console.WriteLine($"| base             | {result.BaseParameters,16:N0} | {result.BaseTrainingTime.TotalSeconds,9:F1}s | {result.BaseTextAccuracy,13:P1} | {"n/a",14} |");
            Console.WriteLine($"| base + plug-in   | {result.PluginParameters,16:N0} | {result.PluginTrainingTime.TotalSeconds,9:F1}s | {result.TextAccuracyAfterPlugin,13:P1} | {result.ImageAccuracy,14:P1} |");
            Console.WriteLine();
            Console.WriteLine($"Text logits after training the plug-in are {(result.TextLogitsBitIdentical ? "bit-identical to" : "DIFFERENT from")} the base's; image chance level is {result.ImageChance:P0}.");
            return Task.FromResult(result.TextLogitsBitIdentical ? 0 : 1);
        });
        return command;
    }

    /// <summary>`graft demo --rebuild-assets [--assets DIR] [--seed S]`: the base model and vision tower from scratch, timed.</summary>
    private static int RebuildAssets(string folder, int seed, CancellationToken cancellationToken)
    {
        var options = new DemoAssetsOptions
        {
            EvaluateText = (baseFolder, tests, token) => TextTestEvaluation.Score(baseFolder, tests, cancellationToken: token),
        };
        try
        {
            var report = DemoAssets.Build(folder, seed, new ConsoleProgress(), cancellationToken, options);
            Console.WriteLine();
            foreach (var (part, time) in report.Times) Console.WriteLine($"{part,-11} {time.TotalSeconds,7:F1} s");
            Console.WriteLine($"{"total",-11} {report.Total.TotalSeconds,7:F1} s");
            Console.WriteLine($"wrote {Path.GetFullPath(folder)} (base/, vision/, text-tests/, {DemoAssets.ManifestFileName})");
            return 0;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine($"graft demo --rebuild-assets: cancelled; {folder} was left as it was");
            return 130;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            Console.Error.WriteLine($"graft demo --rebuild-assets: {e.Message}");
            return 1;
        }
    }

    private sealed class ConsoleProgress : IProgress<DemoAssetsProgress>
    {
        public void Report(DemoAssetsProgress value) => Console.WriteLine($"[{value.Stage}] {value.Message}");
    }
}
