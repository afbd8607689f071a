using System.CommandLine;
using System.Globalization;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Tensors.SafeTensors;

namespace Graft.Cli;

/// <summary>
/// `graft plugin new --design bridge|mma|inner-adaptor|wings|visual-experts --base DIR [--vision SPEC] --out NAME.graft [--seed S]
/// [design options]` (<see cref="PluginNewCommandOptions"/>) and `graft plugin inspect NAME.graft`; also the plug-in side of
/// `graft logits --plugin [--vision DIR]`. SPEC is patch-pixels:GRID:CELLS or a CLIP/SigLIP folder (LLaVA's features:
/// layer -2 without the class token, images padded to square; MMA: class tokens, with its ViT adapters on a CLIP
/// folder); a plug-in made with a tower is loaded again with --vision naming that tower's folder.
/// </summary>
public static class PluginCommand
{
    public static Command Create()
    {
        var command = new Command("plugin", "Create and inspect plug-ins (NAME.graft folders)");
        command.Subcommands.Add(CreateNew());
        command.Subcommands.Add(CreateInspect());
        return command;
    }

    private static Command CreateNew()
    {
        var options = new PluginNewCommandOptions();
        var command = new Command("new", "Create an untrained plug-in for a base, initialised as its paper says; design options default to the paper's values, scaled to the base");
        options.AddTo(command);
        command.SetAction(parseResult => Guarded(parseResult.InvocationConfiguration.Error, () =>
            RunNew(options.Read(parseResult), parseResult.InvocationConfiguration.Output)));
        return command;
    }

    private static Command CreateInspect()
    {
        var folder = new Argument<string>("plugin") { Description = "A plug-in folder (NAME.graft)" };
        var command = new Command("inspect", "Print a plug-in's design, trainable parameters by part, base fingerprint and size on disk");
        command.Arguments.Add(folder);
        command.SetAction(parseResult => Guarded(parseResult.InvocationConfiguration.Error, () =>
            RunInspect(parseResult.GetValue(folder)!, parseResult.InvocationConfiguration.Output)));
        return command;
    }

    public static int RunNew(PluginNewSettings settings, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(settings);
        using var model = DecoderModel.Load(settings.BaseFolder);
        var plugin = settings.Create(model, out var vision);
        using var _ = vision as IDisposable;
        var manifest = PluginFile.Save(plugin, settings.Output);
        output.WriteLine(plugin is Bridge bridge
            ? $"wrote untrained {plugin.Design} plug-in ({bridge.Tune.ToString().ToLowerInvariant()}) to {settings.Output}"
            : $"wrote untrained {plugin.Design} plug-in to {settings.Output}");
        output.WriteLine($"base: {manifest.Base.Architecture} {manifest.Base.Fingerprint}");
        output.WriteLine(plugin is VisualExperts experts
            ? $"patch embedding: {experts.Tiling.ImageSize} px tiles, patch {experts.FrontEnd.PatchSize}, {experts.TokensPerTile} tokens per tile, up to {experts.Tiling.MaxTiles} tiles"
            : $"vision: {vision!.Kind} ({vision.TokensPerImage} tokens x {vision.FeatureWidth})");
        output.WriteLine($"hyper-parameters: {manifest.HyperParameters.ToJsonString(PluginManifest.JsonOptions)}");
        output.WriteLine($"trainable parameters: {plugin.Parameters.Sum(p => (long)p.Tensor.Length):N0}");
        return 0;
    }

    public static int RunInspect(string folder, TextWriter output)
    {
        var manifest = PluginFile.ReadManifest(folder);
        string tensorsPath = Path.Combine(folder, PluginFile.TensorsFileName);
        output.WriteLine($"design: {manifest.Design} (format {manifest.FormatVersion})");
        output.WriteLine($"hyper-parameters: {manifest.HyperParameters.ToJsonString(PluginManifest.JsonOptions)}");
        var b = manifest.Base;
        output.WriteLine($"base: {b.Architecture} ({b.Family}), {b.NumLayers} layers, hidden {b.HiddenSize}, vocab {b.VocabSize}");
        output.WriteLine($"base fingerprint: {b.Fingerprint}");
        if (manifest.Training["new_base"] is System.Text.Json.Nodes.JsonObject newBase)
        {
            output.WriteLine($"needs the new base its training wrote: {newBase["folder"]?.GetValue<string>()} (Bridge's full mode trained the LLM with the projector; the original base is refused)");
            output.WriteLine($"LLM parameters trained: {newBase["trained_parameters"]?.GetValue<long>() ?? 0:N0} (the whole LLM, in stage {string.Join(", ", newBase["trained_in_stages"]?.AsArray().Select(n => n?.GetValue<string>()) ?? [])}), from the base in {newBase["from_folder"]?.GetValue<string>() ?? "(no folder)"} ({newBase["from_fingerprint"]?.GetValue<string>()})");
        }
        else if (manifest.Design == Bridge.DesignName && manifest.HyperParameters["tune"]?.GetValue<string>() == "full")
            output.WriteLine("needs the new base its training writes: Bridge's full mode trains the LLM with the projector (graft train writes RUN/base)");
        output.WriteLine(manifest.Vision is { } v
            ? $"vision: {v.Kind} ({v.TokensPerImage} tokens x {v.FeatureWidth}), fingerprint {v.Fingerprint}{(v.Folder is null ? "" : $", made with {v.Folder}")}"
            : "vision: none");
        output.WriteLine(manifest.ChatTemplate is { } template
            ? $"chat template: {template.Name} (its conversations were trained in it; recorded in plugin.json)"
            : "chat template: none recorded (the base's own is used)");
        output.WriteLine($"training: {manifest.Training.ToJsonString(PluginManifest.JsonOptions)}");
        using (var file = SafeTensorsFile.Open(tensorsPath))
        {
            var partOf = (manifest.TensorParts ?? new Dictionary<string, string[]>())
                .SelectMany(p => p.Value.Select(name => (Name: name, Part: p.Key))).ToDictionary(p => p.Name, p => p.Part);
            output.WriteLine("trainable parameters:");
            foreach (var group in file.Tensors.GroupBy(t => partOf.GetValueOrDefault(t.Name, "(unassigned)")).OrderBy(g => g.Key, StringComparer.Ordinal))
                output.WriteLine($"  {group.Key}: {group.Sum(t => t.ElementCount):N0} in {group.Count()} tensors");
            output.WriteLine($"  total: {file.Tensors.Sum(t => t.ElementCount):N0}");
        }
        long bytes = new FileInfo(tensorsPath).Length + new FileInfo(Path.Combine(folder, PluginManifest.FileName)).Length;
        output.WriteLine($"size on disk: {bytes:N0} bytes");
        return 0;
    }

    /// <summary>
    /// `graft logits --plugin`: the request goes through a host holding the base and this plug-in, so a prompt without
    /// an image is the base's own forward (unless <paramref name="textRoute"/> sends text through the plug-in). <paramref name="idsText"/> lists token ids and, with an image, the word
    /// `image` where the image goes (e.g. 1,image,5,6); the design's layout then applies (<see cref="PromptLayout"/>: MMA's
    /// "Image: " goes after a leading BOS with the image behind it, and "Image: N/A" there for text routed through it).
    /// </summary>
    public static int RunLogits(string modelFolder, string pluginFolder, string idsText, string? imagePath, string outputPath, TextWriter output,
        TextRoute textRoute = TextRoute.Base, string? visionFolder = null)
    {
        using var model = DecoderModel.Load(modelFolder);
        using var vision = PluginDeployment.LoadPlugin(model, pluginFolder, visionFolder, out var plugin) as IDisposable;
        var host = new PluginHost(model);
        host.Attach("plugin", plugin, textRoute);
        var image = imagePath is null ? null : ImageDecoder.Load(imagePath);
        var prompt = plugin.Layout.Arrange(ParsePrompt(idsText, image), () => File.Exists(Path.Combine(modelFolder, "tokenizer.json"))
            ? Tokenizer.FromFolder(modelFolder)
            : throw new ArgumentException($"a {plugin.Design} prompt begins with text of its design's layout, which needs a tokenizer.json in '{modelFolder}'"),
            throughPlugin: textRoute == TextRoute.Plugin);
        var logits = host.Forward("plugin", prompt);
        SafeTensorsWriter.Write(outputPath, [KeyValuePair.Create("logits", logits)]);
        output.WriteLine($"wrote logits {logits.ShapeString} to {outputPath}");
        return 0;
    }

    /// <summary>Ids with `image` items where the image goes; exactly one such item with an image, none without.</summary>
    internal static MultimodalPrompt ParsePrompt(string idsText, RgbImage? image)
    {
        var parts = new List<PromptPart>();
        var pending = new List<int>();
        int images = 0;
        var items = idsText.Split(',', StringSplitOptions.TrimEntries);
        for (int i = 0; i < items.Length; i++)
        {
            if (items[i] == "image")
            {
                if (image is null) throw new ArgumentException($"--ids: item {i + 1} places an image, but no --image was given");
                if (pending.Count > 0) parts.Add(new TextPart(pending.ToArray()));
                pending.Clear();
                parts.Add(new ImagePart(image));
                images++;
            }
            else if (int.TryParse(items[i], NumberStyles.None, CultureInfo.InvariantCulture, out int id)) pending.Add(id);
            else throw new ArgumentException($"--ids: '{items[i]}' (item {i + 1}) is neither a non-negative token id nor 'image'");
        }
        if (pending.Count > 0) parts.Add(new TextPart(pending.ToArray()));
        if (image is not null && images != 1)
            throw new ArgumentException($"--ids: with --image, put the word 'image' once where the image goes (found {images})");
        return new MultimodalPrompt(parts);
    }

    /// <summary><see cref="InspectCommand.Guarded"/>, with plug-in and image errors also reported as one line.</summary>
    internal static int Guarded(TextWriter error, Func<int> run)
    {
        try
        {
            return InspectCommand.Guarded(error, run);
        }
        catch (Exception e) when (PluginDeployment.IsUserError(e))
        {
            error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
