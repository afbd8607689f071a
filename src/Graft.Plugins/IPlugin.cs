using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>Where a request with no image goes.</summary>
public enum TextRoute
{
    /// <summary>To the base alone, before any plug-in code runs (Graft's default: text-only is the base, bit for bit).</summary>
    Base,

    /// <summary>Through the plug-in, as MMA's and WINGS' authors do; only for designs that act on text (see <see cref="IPlugin.CanRouteText"/>).</summary>
    Plugin,
}

/// <summary>One trainable tensor of a plug-in, with the part of the design it belongs to (e.g. "projector").</summary>
public sealed record PluginParameter(string Name, string Part, Tensor Tensor);

/// <summary>
/// A plug-in: one design's trainable tensors bound to one frozen base (and the vision front end it expects).
/// It turns a multimodal prompt into input embeddings, a modality mask and, for designs that act inside the
/// decoder, the hooks for that request. It never writes a base weight and never resizes the base vocabulary:
/// tokens it adds (image markers, modality tokens) are its own tensors.
/// </summary>
public interface IPlugin
{
    /// <summary>The design's name as written in plugin.json ("bridge", ...).</summary>
    string Design { get; }

    /// <summary>What plugin.json records: design, hyper-parameters, the base and vision front end it was made for, provenance.</summary>
    PluginManifest Manifest { get; }

    /// <summary>The base this plug-in is bound to; it is only ever read.</summary>
    DecoderModel Base { get; }

    /// <summary>Every trainable tensor, named as in plugin.safetensors, grouped by part.</summary>
    IReadOnlyList<PluginParameter> Parameters { get; }

    /// <summary>Whether the design does anything to a text-only request (so that <see cref="TextRoute.Plugin"/> means something).</summary>
    bool CanRouteText { get; }

    /// <summary>
    /// Whether an image given as pixels can be turned into embeddings: a vision front end is attached, or the design has
    /// its own. Without one the plug-in takes precomputed features only (<see cref="ImagePart(Tensor)"/>).
    /// </summary>
    bool CanEncodePixels { get; }

    /// <summary>How the design lays a prompt's text and images out, as its paper does (see <see cref="PromptLayout"/>).</summary>
    PromptLayout Layout { get; }

    /// <summary>Input embeddings [T, C], modality mask, next-token targets and hooks for one request.</summary>
    PreparedInput Prepare(MultimodalPrompt prompt);
}

/// <summary>
/// A request made ready for the decoder: <see cref="Embeddings"/> [T, C] (recorded for autograd when the plug-in's
/// tensors are trainable); <see cref="ImageMask"/>[i] true where position i holds an image token;
/// <see cref="Targets"/>[i] the token expected after position i when that token is an assistant token, else
/// <see cref="MultimodalPrompt.IgnoreTarget"/> (the loss is on assistant tokens only, as LLaVA's);
/// <see cref="Hooks"/> the per-request decoder hooks, or null for designs that act on the input only.
/// </summary>
public sealed record PreparedInput(Tensor Embeddings, bool[] ImageMask, int[] Targets, DecoderHooks? Hooks)
{
    public int Length => ImageMask.Length;
}
