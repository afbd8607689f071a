using Graft.Models.Chat;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Tensors.SafeTensors;
using Graft.Models.Vision;

namespace Graft.Cli;

/// <summary>
/// `graft generate|chat --plugin`: a base, one plug-in attached to it (with the vision front end its plugin.json
/// names), and prompts laid out with the design's image placeholder.
/// </summary>
internal sealed class PluginGeneration : IDisposable
{
    public const string PluginName = "plugin";
    private const string DefaultPlaceholder = "<image>";

    private readonly IDisposable? _vision;

    private PluginGeneration(DecoderModel model, IPlugin plugin, IDisposable? vision, int maxSequenceLength)
    {
        Model = model;
        Plugin = plugin;
        _vision = vision;
        var host = new PluginHost(model);
        host.Attach(PluginName, plugin);
        Session = new PluginSession(host, PluginName, maxSequenceLength);
        Placeholder = plugin.Manifest.HyperParameters["image_placeholder"] is { } node && node.GetValueKind() == System.Text.Json.JsonValueKind.String
            ? node.GetValue<string>() : DefaultPlaceholder;
    }

    public DecoderModel Model { get; }
    public IPlugin Plugin { get; }
    public PluginSession Session { get; }

    /// <summary>Where the design's prompt puts an image (LLaVA's `&lt;image&gt;`).</summary>
    public string Placeholder { get; }

    /// <summary>Loads the base of <paramref name="modelFolder"/> and the plug-in, refusing a plug-in made for another base or tower.</summary>
    public static PluginGeneration Open(string modelFolder, string pluginFolder, string? visionFolder, int maxSequenceLength)
    {
        var model = DecoderModel.Load(modelFolder);
        IVisionFrontEnd? vision = null;
        try
        {
            vision = LoadPlugin(model, pluginFolder, visionFolder, out var plugin);
            return new PluginGeneration(model, plugin, vision as IDisposable, maxSequenceLength);
        }
        catch
        {
            (vision as IDisposable)?.Dispose();
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
    /// The prompt of a conversation whose user turns carry <paramref name="images"/> (one list per message): a turn with
    /// images but no placeholder gets one per image before its text; the template renders every turn, and the rendered text
    /// is cut at the placeholders. Without any image it is exactly the base's encoding of the same conversation.
    /// </summary>
    public MultimodalPrompt ChatPrompt(Tokenizer tokenizer, ChatTemplate template, IReadOnlyList<ChatMessage> messages, IReadOnlyList<IReadOnlyList<RgbImage>> images)
    {
        if (images.All(list => list.Count == 0)) return MultimodalPrompt.FromIds(template.Encode(tokenizer, messages, addGenerationPrompt: true));
        var placed = messages.Select((m, i) => m with { Content = WithPlaceholders(m.Content, images[i].Count) }).ToArray();
        var text = template.Render(placed, addGenerationPrompt: true);
        bool rendersBos = tokenizer.BosToken is { Length: > 0 } bos && text.StartsWith(bos, StringComparison.Ordinal);
        return Layout(tokenizer, text, images.SelectMany(list => list).ToArray(), addSpecialTokens: !rendersBos);
    }

    /// <summary>A plain prompt (no chat template) with its images; without images, exactly the base's encoding.</summary>
    public MultimodalPrompt PlainPrompt(Tokenizer tokenizer, string text, IReadOnlyList<RgbImage> images) =>
        images.Count == 0 ? MultimodalPrompt.FromIds(tokenizer.Encode(text)) : Layout(tokenizer, WithPlaceholders(text, images.Count), images, addSpecialTokens: true);

    public void Dispose()
    {
        _vision?.Dispose();
        Model.Dispose();
    }

    private string WithPlaceholders(string text, int images) =>
        images == 0 || text.Contains(Placeholder, StringComparison.Ordinal) ? text : string.Concat(Enumerable.Repeat(Placeholder + "\n", images)) + text;

    /// <summary>
    /// Cuts <paramref name="text"/> at the placeholders, as LLaVA's tokenizer_image_token does: the first piece is encoded
    /// with the tokenizer's special tokens (BOS) even when empty, the others without.
    /// </summary>
    private MultimodalPrompt Layout(Tokenizer tokenizer, string text, IReadOnlyList<RgbImage> images, bool addSpecialTokens)
    {
        var pieces = text.Split(Placeholder);
        if (pieces.Length - 1 != images.Count)
            throw new ArgumentException($"the prompt has {pieces.Length - 1} '{Placeholder}' placeholder(s) for {images.Count} image(s)");
        var parts = new List<PromptPart>();
        for (int i = 0; i < pieces.Length; i++)
        {
            var ids = tokenizer.Encode(pieces[i], addSpecialTokens: i == 0 && addSpecialTokens);
            if (ids.Length > 0) parts.Add(new TextPart(ids));
            if (i < images.Count) parts.Add(new ImagePart(images[i]));
        }
        return new MultimodalPrompt(parts);
    }

    /// <summary>Plug-in, vision and image errors, reported as one line like the other bad input.</summary>
    public static bool IsUserError(Exception e) =>
        e is PluginFormatException or PluginCompatibilityException or ImageFormatException or VisionModelException or SafeTensorsException
            or LlmConfigException or KeyNotFoundException;
}
