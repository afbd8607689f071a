using System.CommandLine;
using System.Globalization;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors.SafeTensors;

namespace Graft.Cli;

/// <summary>`graft logits --model DIR --ids 1,2,3 --out FILE.safetensors`: the full-forward logits of a token sequence.</summary>
public static class LogitsCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "A Hugging Face model folder", Required = true };
        var ids = new Option<string>("--ids") { Description = "Token ids, comma-separated (e.g. 1,2,3)", Required = true };
        var output = new Option<string>("--out") { Description = "The safetensors file to write: one F32 tensor 'logits' [T, vocab]", Required = true };
        var plugin = new Option<string?>("--plugin") { Description = "A plug-in folder (NAME.graft) for this model; without --image the output is the base's own" };
        var image = new Option<string?>("--image") { Description = "An image for the plug-in; put the word 'image' in --ids where it goes (e.g. 1,image,5)" };
        var textRoute = new Option<TextRoute>("--text-route") { Description = "Where a request without an image goes: base (default, the base's own logits) or plugin (MMA's adapters, as its authors run text)", DefaultValueFactory = _ => TextRoute.Base };
        var command = new Command("logits", "Run a checkpoint on token ids (full forward, no cache) and write the logits of every position");
        command.Options.Add(model);
        command.Options.Add(ids);
        command.Options.Add(output);
        command.Options.Add(plugin);
        command.Options.Add(image);
        command.Options.Add(textRoute);
        command.SetAction(parseResult => PluginCommand.Guarded(parseResult.InvocationConfiguration.Error, () =>
            parseResult.GetValue(plugin) is { } pluginFolder
                ? PluginCommand.RunLogits(parseResult.GetValue(model)!, pluginFolder, parseResult.GetValue(ids)!, parseResult.GetValue(image), parseResult.GetValue(output)!, parseResult.InvocationConfiguration.Output, parseResult.GetValue(textRoute))
                : parseResult.GetValue(image) is not null
                    ? throw new ArgumentException("--image needs a --plugin to turn it into embeddings")
                    : Run(parseResult.GetValue(model)!, ParseIds(parseResult.GetValue(ids)!), parseResult.GetValue(output)!, parseResult.InvocationConfiguration.Output)));
        return command;
    }

    public static int Run(string folder, int[] ids, string outputPath, TextWriter output)
    {
        using var model = DecoderModel.Load(folder);
        var logits = model.Forward(ids);
        SafeTensorsWriter.Write(outputPath, [KeyValuePair.Create("logits", logits)]);
        output.WriteLine($"wrote logits {logits.ShapeString} to {outputPath}");
        return 0;
    }

    public static int[] ParseIds(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ids[i]))
                throw new ArgumentException($"--ids: '{parts[i]}' (item {i + 1}) is not a non-negative token id");
        return ids;
    }
}
