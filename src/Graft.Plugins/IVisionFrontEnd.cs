using Graft.Models.Imaging;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>
/// A frozen vision front end as a plug-in sees it: an image in, features [N_v, d_v] out, already selected the way the
/// design wants (for Bridge: a tower's layer -2 without its class token). Its description and fingerprint go to
/// plugin.json, so a plug-in is refused with a front end it was not made for.
/// </summary>
public interface IVisionFrontEnd
{
    /// <summary>What it is ("clip", "siglip", "patch-pixels"), as plugin.json records it.</summary>
    string Kind { get; }

    /// <summary>d_v, the width of each feature row.</summary>
    int FeatureWidth { get; }

    /// <summary>N_v, the feature rows per image.</summary>
    int TokensPerImage { get; }

    /// <summary>The configuration fields that decide its output (image size, patch, layer...), for plugin.json.</summary>
    IReadOnlyDictionary<string, string> Summary { get; }

    /// <summary>A fingerprint of its weights and configuration.</summary>
    string Fingerprint { get; }

    /// <summary>The folder its tower was read from (plugin.json records it); null for a front end without one.</summary>
    string? Folder => null;

    /// <summary>Features [N_v, d_v] of one image; inference only, nothing recorded.</summary>
    Tensor Encode(RgbImage image);
}
