using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>
/// One frozen base and several named plug-ins bound to it (a deployment). Each request names the plug-in it uses;
/// a request with no image goes to the base alone before any plug-in code runs, unless its plug-in was attached
/// with <see cref="TextRoute.Plugin"/> (MMA and WINGS as their authors run them).
/// </summary>
public sealed class PluginHost(DecoderModel baseModel)
{
    private readonly Dictionary<string, (IPlugin Plugin, TextRoute Route)> _plugins = new(StringComparer.Ordinal);

    public DecoderModel Base { get; } = baseModel ?? throw new ArgumentNullException(nameof(baseModel));

    public IReadOnlyCollection<string> PluginNames => _plugins.Keys;

    public void Attach(string name, IPlugin plugin, TextRoute textRoute = TextRoute.Base)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(plugin);
        if (!ReferenceEquals(plugin.Base, Base))
            throw new ArgumentException($"plug-in '{name}' is bound to another base ('{plugin.Base.Folder}'); load it onto this host's base ('{Base.Folder}')", nameof(plugin));
        if (textRoute == TextRoute.Plugin && !plugin.CanRouteText)
            throw new ArgumentException($"plug-in '{name}' ({plugin.Design}) does nothing to text, so it cannot take text-only requests", nameof(textRoute));
        if (!_plugins.TryAdd(name, (plugin, textRoute))) throw new ArgumentException($"a plug-in named '{name}' is already attached", nameof(name));
    }

    public IPlugin Plugin(string name) =>
        _plugins.TryGetValue(name, out var entry) ? entry.Plugin
            : throw new KeyNotFoundException($"no plug-in named '{name}' is attached (attached: {(_plugins.Count == 0 ? "none" : string.Join(", ", _plugins.Keys))})");

    /// <summary>The plug-in that serves a request, or null when the base alone does (a text-only request routed to the base).</summary>
    public IPlugin? Route(string? pluginName, MultimodalPrompt prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (pluginName is null)
            return prompt.HasImage ? throw new ArgumentException("a request with an image must name a plug-in", nameof(pluginName)) : null;
        var plugin = Plugin(pluginName);
        return prompt.HasImage || _plugins[pluginName].Route == TextRoute.Plugin ? plugin : null;
    }

    /// <summary>Logits [T, V] (or [1, V]) of a request, from the base alone or base + its plug-in; inference, nothing recorded.</summary>
    public Tensor Forward(string? pluginName, MultimodalPrompt prompt, bool lastPositionOnly = false)
    {
        using var _ = Autograd.NoGrad();
        var plugin = Route(pluginName, prompt);
        if (plugin is null) return Base.Forward(prompt.TextIds(), lastPositionOnly: lastPositionOnly);
        var input = plugin.Prepare(prompt);
        return Base.ForwardEmbeddings(input.Embeddings, lastPositionOnly: lastPositionOnly, hooks: input.Hooks);
    }
}
