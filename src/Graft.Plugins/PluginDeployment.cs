using Graft.Models.Chat;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Models.Vision;
using Graft.Tensors.SafeTensors;

namespace Graft.Plugins;

/// <summary>
/// One deployment as the commands and the server open it: a base checkpoint and named plug-ins attached to one host, each
/// with the vision front end its plugin.json names, and prompts laid out as each design's paper does (<see cref="IPlugin.Layout"/>).
/// </summary>
public sealed class PluginDeployment : IDisposable
{
    private readonly List<IDisposable> _visions;

    private PluginDeployment(DecoderModel model, PluginHost host, List<IDisposable> visions)
    {
        Model = model;
        Host = host;
        _visions = visions;
    }

    public DecoderModel Model { get; }
    public PluginHost Host { get; }

    /// <summary>
    /// Loads the base of <paramref name="modelFolder"/> and attaches each plug-in folder under its name, refusing a plug-in made
    /// for another base or tower. <paramref name="visionFolder"/> is the CLIP/SigLIP tower for the plug-ins that expect one
    /// (with a single plug-in, exactly what it expects).
    /// </summary>
    public static PluginDeployment Open(string modelFolder, IReadOnlyList<KeyValuePair<string, string>> plugins, string? visionFolder)
    {
        ArgumentNullException.ThrowIfNull(plugins);
        var model = DecoderModel.Load(modelFolder);
        var visions = new List<IDisposable>();
        try
        {
            var host = new PluginHost(model);
            bool towerUsed = false;
            foreach (var (name, folder) in plugins)
            {
                var manifest = PluginFile.ReadManifest(folder);
                bool wantsTower = manifest.Vision?.Kind is "clip" or "siglip";
                towerUsed |= wantsTower;
                var vision = LoadPlugin(model, folder, plugins.Count == 1 || wantsTower ? visionFolder : null, out var plugin);
                if (vision is IDisposable owned) visions.Add(owned);
                host.Attach(name, plugin);
            }
            if (visionFolder is not null && plugins.Count != 1 && !towerUsed)
                throw new ArgumentException($"--vision: none of the plug-ins ({string.Join(", ", plugins.Select(p => p.Key))}) uses a CLIP/SigLIP tower; leave --vision out");
            return new PluginDeployment(model, host, visions);
        }
        catch
        {
            foreach (var vision in visions) vision.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>The plug-in of <paramref name="pluginFolder"/> on <paramref name="model"/>; returns the front end opened for it (the caller disposes it).</summary>
    public static IVisionFrontEnd? LoadPlugin(DecoderModel model, string pluginFolder, string? visionFolder, out IPlugin plugin)
    {
        var manifest = PluginFile.ReadManifest(pluginFolder);
        var vision = VisionFrontEnds.ForPlugin(manifest, Path.Combine(pluginFolder, PluginManifest.FileName), visionFolder);
        try
        {
            plugin = PluginFile.Load(pluginFolder, model, vision);
            return vision;
        }
        catch
        {
            (vision as IDisposable)?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The prompt of a conversation whose messages carry <paramref name="images"/> (one list per message) for
    /// <paramref name="plugin"/>: a message with images but no placeholder gets one per image before its text; the template
    /// renders every turn, and the design's layout places the images (a beginning-of-sequence token the template writes
    /// stays first). Without any image it is exactly the base's encoding of the same conversation (and needs no plug-in).
    /// </summary>
    public static MultimodalPrompt ChatPrompt(IPlugin? plugin, Tokenizer tokenizer, ChatTemplate template, IReadOnlyList<ChatMessage> messages,
        IReadOnlyList<IReadOnlyList<RgbImage>> images)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count != messages.Count) throw new ArgumentException($"{images.Count} image lists for {messages.Count} messages", nameof(images));
        if (images.All(list => list.Count == 0)) return MultimodalPrompt.FromIds(template.Encode(tokenizer, messages, addGenerationPrompt: true));
        var layout = LayoutForImages(plugin);
        var placed = messages.Select((m, i) => m with { Content = WithPlaceholders(m.Content, images[i].Count) }).ToArray();
        var text = template.Render(placed, addGenerationPrompt: true);
        int renderedBos = tokenizer.BosToken is { Length: > 0 } bos && text.StartsWith(bos, StringComparison.Ordinal) ? bos.Length : 0;
        var all = images.SelectMany(list => list).Select(image => new ImagePart(image)).ToArray();
        return layout.Arrange(text, all.Length, throughPlugin: true, leadAfter: renderedBos).Encode(tokenizer, all, addSpecialTokens: renderedBos == 0);
    }

    /// <summary>A plain prompt (no chat template) with its images; without images, exactly the base's encoding.</summary>
    public static MultimodalPrompt PlainPrompt(IPlugin? plugin, Tokenizer tokenizer, string text, IReadOnlyList<RgbImage> images)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (images.Count == 0) return MultimodalPrompt.FromIds(tokenizer.Encode(text));
        return LayoutForImages(plugin).Arrange(WithPlaceholders(text, images.Count), images.Count, throughPlugin: true)
            .Encode(tokenizer, images.Select(image => new ImagePart(image)).ToArray());
    }

    public void Dispose()
    {
        foreach (var vision in _visions) vision.Dispose();
        Model.Dispose();
    }

    /// <summary>Plug-in, vision, image and checkpoint errors: bad input to report as one line, never a crash.</summary>
    public static bool IsUserError(Exception e) =>
        e is PluginFormatException or PluginCompatibilityException or ImageFormatException or VisionModelException or SafeTensorsException
            or LlmConfigException or KeyNotFoundException;

    private static PromptLayout LayoutForImages(IPlugin? plugin) =>
        plugin is null ? throw new ArgumentException("a prompt with an image needs a plug-in to turn it into embeddings") : plugin.Layout;

    /// <summary>The text with one placeholder per image before it (LLaVA's place) when it has none.</summary>
    private static string WithPlaceholders(string text, int images) =>
        images == 0 || text.Contains(PromptLayout.Placeholder, StringComparison.Ordinal) ? text : string.Concat(Enumerable.Repeat(PromptLayout.Placeholder + "\n", images)) + text;
}
