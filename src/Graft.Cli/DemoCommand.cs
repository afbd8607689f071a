using System.CommandLine;
using System.Text.Json;
using Graft.Training;

namespace Graft.Cli;

internal static class DemoCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Print the results as JSON." };
        var seed = new Option<int>("--seed") { Description = "Seed for data and initialisation.", DefaultValueFactory = _ => 1 };
        var command = new Command("demo", "Train a tiny base model and a vision plug-in on generated data; show text skill kept and image skill gained.");
        command.Options.Add(json);
        command.Options.Add(seed);
        command.SetAction(parse =>
        {
            bool asJson = parse.GetValue(json);
            var result = EngineDemo.Run(parse.GetValue(seed), asJson ? null : Console.WriteLine);
            if (asJson)
            {
                Console.WriteLine(JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
                return result.TextLogitsBitIdentical ? 0 : 1;
            }
            Console.WriteLine();
            Console.WriteLine("| model            | trainable params | train time | text accuracy | image accuracy |");
            Console.WriteLine("|------------------|-----------------:|-----------:|--------------:|---------------:|");
            Console.WriteLine($"| base             | {result.BaseParameters,16:N0} | {result.BaseTrainingTime.TotalSeconds,9:F1}s | {result.BaseTextAccuracy,13:P1} | {"n/a",14} |");
            Console.WriteLine($"| base + plug-in   | {result.PluginParameters,16:N0} | {result.PluginTrainingTime.TotalSeconds,9:F1}s | {result.TextAccuracyAfterPlugin,13:P1} | {result.ImageAccuracy,14:P1} |");
            Console.WriteLine();
            Console.WriteLine($"Text logits after training the plug-in are {(result.TextLogitsBitIdentical ? "bit-identical to" : "DIFFERENT from")} the base's; image chance level is {result.ImageChance:P0}.");
            return result.TextLogitsBitIdentical ? 0 : 1;
        });
        return command;
    }
}
