using Graft.Models.Chat;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Models.Vision;
using Graft.Tensors.SafeTensors;

namespace Graft.Plugins;

/// <summary>
/// Which tower folder each plug-in of a deployment is given instead of the one its plugin.json records: <see cref="ByName"/>
/// from `--vision NAME=DIR`, and <see cref="ForAll"/> from a plain `--vision DIR` (every plug-in that reads a tower).
/// </summary>
public sealed record VisionOverrides(string? ForAll, IReadOnlyDictionary<string, string> ByName)
{
    public static VisionOverrides None { get; } = new(null, new Dictionary<string, string>());

    public static VisionOverrides All(string? folder) => new(folder, new Dictionary<string, string>());

    public bool IsEmpty => ForAll is null && ByName.Count == 0;

    /// <summary>One folder for every plug-in made with a tower (a plain `--vision DIR`); null for none.</summary>
    public static implicit operator VisionOverrides(string? folder) => All(folder);

    /// <summary>
    /// `--vision` values: NAME=DIR for the plug-in called NAME (one of <paramref name="plugins"/>), or DIR, once, for all of
    /// them. A NAME= that names no plug-in is refused, unless the whole value is an existing folder.
    /// </summary>
    public static VisionOverrides Parse(IEnumerable<string> values, IReadOnlyCollection<string> plugins)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(plugins);
        string? all = null;
        var byName = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var value in values)
        {
            int equals = value.IndexOf('=');
            if (equals > 0 && !Directory.Exists(value))
            {
                string name = value[..equals], folder = value[(equals + 1)..];
                if (!plugins.Contains(name))
                    throw new ArgumentException($"--vision '{value}': no plug-in is named '{name}' (plug-ins: {string.Join(", ", plugins)})");
                if (folder.Length == 0) throw new ArgumentException($"--vision '{value}' names no folder: use NAME=DIR");
                if (!byName.TryAdd(name, folder)) throw new ArgumentException($"--vision: the plug-in '{name}' is given a tower twice");
                continue;
            }
            if (all is not null) throw new ArgumentException($"--vision: two folders for every plug-in ('{all}' and '{value}'); give NAME=DIR for each plug-in instead");
            all = value;
        }
        return new VisionOverrides(all, byName);
    }
}

/// <summary>
/// One deployment as the commands and the server open it: a base checkpoint and named plug-ins attached to one host, each
/// with the vision front end its plugin.json names (the tower folder it records, unless told otherwise), and prompts laid
/// out as each design's paper does (<see cref="IPlugin.Layout"/>) inside the chat template the plug-in was trained in.
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
    /// for another base or tower. Each plug-in's tower is the folder its plugin.json records, unless <paramref name="vision"/>
    /// names another (checked against the recorded fingerprint; a folder given as a string is for every plug-in made with a
    /// tower, and for the plug-in when there is one). Every plug-in and tower is opened and checked before this returns, so a
    /// deployment that cannot run fails before any work starts.
    /// </summary>
    public static PluginDeployment Open(string modelFolder, IReadOnlyList<KeyValuePair<string, string>> plugins, VisionOverrides? vision)
    {
        ArgumentNullException.ThrowIfNull(plugins);
        vision ??= VisionOverrides.None;
        foreach (var name in vision.ByName.Keys)
            if (!plugins.Any(p => p.Key == name)) throw new ArgumentException($"--vision {name}=...: no plug-in is named '{name}'");
        var manifests = plugins.Select(p => PluginFile.ReadManifest(p.Value)).ToList();
        if (vision.ForAll is not null && plugins.Count != 1 && !manifests.Any(m => VisionFrontEnds.ReadsTowerFolder(m.Vision)))
            throw new ArgumentException($"--vision: none of the plug-ins ({string.Join(", ", plugins.Select(p => p.Key))}) uses a CLIP/SigLIP tower; leave --vision out");
        var model = DecoderModel.Load(modelFolder);
        var visions = new List<IDisposable>();
        try
        {
            var host = new PluginHost(model);
            for (int i = 0; i < plugins.Count; i++)
            {
                var (name, folder) = plugins[i];
                string? tower = vision.ByName.TryGetValue(name, out var named) ? named
                    : plugins.Count == 1 || VisionFrontEnds.ReadsTowerFolder(manifests[i].Vision) ? vision.ForAll : null;
                IVisionFrontEnd? front;
                IPlugin plugin;
                try
                {
                    front = LoadPlugin(model, folder, tower, out plugin);
                }
                catch (ArgumentException e) when (plugins.Count > 1)
                {
                    throw new ArgumentException($"plug-in '{name}' ({folder}): {e.Message}", e);
                }
                if (front is IDisposable owned) visions.Add(owned);
                host.Attach(name, plugin);
            }
            return new PluginDeployment(model, host, visions);
        }
        catch
        {
            foreach (var front in visions) front.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The plug-in of <paramref name="pluginFolder"/> on <paramref name="model"/>, with the tower in <paramref name="visionFolder"/>
    /// or else the one its plugin.json records; returns the front end opened for it (the caller disposes it).
    /// </summary>
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
    /// The chat template <paramref name="plugin"/>'s requests are laid out with: the one its conversations were trained in
    /// (plugin.json's chat_template), or, for a plug-in that records none, <paramref name="baseTemplate"/> (the base's own).
    /// </summary>
    public static ChatTemplate TemplateFor(IPlugin? plugin, ChatTemplate baseTemplate, Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(baseTemplate);
        ArgumentNullException.ThrowIfNull(tokenizer);
        return plugin?.Manifest.ChatTemplate is { } recorded
            ? ChatTemplates.FromRecord(recorded.Name, recorded.Source, tokenizer.BosToken, tokenizer.EosToken)
            : baseTemplate;
    }

    /// <summary>
    /// The prompt of a conversation whose messages carry <paramref name="images"/> (one list per message) for
    /// <paramref name="plugin"/> (<see cref="ChatPrompts"/>): each message's images placed inside it as the design asks, then
    /// the template renders every turn. Without any image (and <paramref name="throughPlugin"/> false) it is exactly the
    /// base's encoding of the same conversation and needs no plug-in.
    /// </summary>
    public static MultimodalPrompt ChatPrompt(IPlugin? plugin, Tokenizer tokenizer, ChatTemplate template, IReadOnlyList<ChatMessage> messages,
        IReadOnlyList<IReadOnlyList<RgbImage>> images, bool throughPlugin = false)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count != messages.Count) throw new ArgumentException($"{images.Count} image lists for {messages.Count} messages", nameof(images));
        bool anyImage = images.Any(list => list.Count > 0);
        if (!anyImage && !throughPlugin) return MultimodalPrompt.FromIds(template.Encode(tokenizer, messages, addGenerationPrompt: true));
        var rendered = ChatPrompts.Render(LayoutForImages(plugin), template, tokenizer, messages, images.Select(list => list.Count).ToArray(),
            addGenerationPrompt: true, throughPlugin);
        return rendered.Encode(tokenizer, images.SelectMany(list => list).Select(image => new ImagePart(image)).ToArray());
    }

    /// <summary>A plain prompt (no chat template) with its images at its placeholders, or before its text when it has none; without images, exactly the base's encoding.</summary>
    public static MultimodalPrompt PlainPrompt(IPlugin? plugin, Tokenizer tokenizer, string text, IReadOnlyList<RgbImage> images)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(images);
        int placeholders = text.Split(PromptLayout.Placeholder).Length - 1;
        if (images.Count == 0)
        {
            if (placeholders > 0) throw new ArgumentException($"the prompt holds '{PromptLayout.Placeholder}' but no image was given; give one with --image, or leave the placeholder out");
            return MultimodalPrompt.FromIds(tokenizer.Encode(text));
        }
        if (placeholders > 0 && placeholders != images.Count)
            throw new ArgumentException($"the prompt has {placeholders} '{PromptLayout.Placeholder}' placeholder(s) for {images.Count} image(s); give one --image per placeholder");
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
