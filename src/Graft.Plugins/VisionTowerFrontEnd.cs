using System.Globalization;
using Graft.Models.Imaging;
using Graft.Models.Vision;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>How a <see cref="VisionTowerFrontEnd"/> turns a tower's outputs into a plug-in's features.</summary>
public sealed record VisionTowerOptions
{
    /// <summary>Which hidden states become features; LLaVA-1.5's layer -2 without the class token by default.</summary>
    public VisionFeatureSelector Features { get; init; } = VisionFeatureSelector.Llava;

    /// <summary>LLaVA-1.5's expand2square (pad with the mean colour) before the folder's own preprocessing.</summary>
    public bool PadToSquare { get; init; } = true;
}

/// <summary>
/// A frozen CLIP or SigLIP tower as a plug-in's <see cref="IVisionFrontEnd"/>: an image is preprocessed as the folder's
/// preprocessor_config.json says (or the family's Hugging Face defaults at the tower's image_size), run through the
/// tower, and the hidden states <see cref="VisionTowerOptions.Features"/> names are its features [N_v, width].
/// </summary>
/// <remarks>
/// The fingerprint covers everything that decides the features: the tower's config and weights (each tensor under its
/// load-order index, <see cref="SampledFingerprint"/>), the feature selection and the preprocessing. The summary
/// records the selection and padding, so <see cref="Open(string, VisionDescription, string)"/> rebuilds the same
/// front end from plugin.json and a tower folder.
/// </remarks>
public sealed class VisionTowerFrontEnd : IVisionFrontEnd, IDisposable
{
    public const string PreprocessorFileName = "preprocessor_config.json";

    private readonly Lazy<string> _fingerprint;

    private VisionTowerFrontEnd(string folder, IVisionEncoder encoder, ImageProcessorConfig preprocessor, VisionTowerOptions options)
    {
        Folder = folder;
        Encoder = encoder;
        Preprocessor = preprocessor;
        Options = options;
        var config = encoder.Config;
        TokensPerImage = options.Features.LayerIndex is null
            ? options.Features.ClassTokenCount
            : config.Patches + (encoder.HasClassToken && options.Features.KeepClassToken ? 1 : 0);
        _fingerprint = new Lazy<string>(ComputeFingerprint);
    }

    public string Folder { get; }
    public IVisionEncoder Encoder { get; }
    public ImageProcessorConfig Preprocessor { get; }
    public VisionTowerOptions Options { get; }

    public string Kind => Encoder.Config.Kind == VisionTowerKind.Clip ? "clip" : "siglip";
    public int FeatureWidth => Encoder.Config.Width;
    public int TokensPerImage { get; }

    public IReadOnlyDictionary<string, string> Summary => new Dictionary<string, string>
    {
        ["image_size"] = Invariant(Encoder.Config.ImageSize),
        ["patch_size"] = Invariant(Encoder.Config.PatchSize),
        ["width"] = Invariant(Encoder.Config.Width),
        ["layers"] = Invariant(Encoder.Config.Layers),
        ["features"] = DescribeFeatures(Options.Features),
        ["pad_to_square"] = Options.PadToSquare ? "true" : "false",
    };

    /// <summary>"sha256:" and 64 hex digits over config, weights, feature selection and preprocessing; computed once.</summary>
    public string Fingerprint => _fingerprint.Value;

    /// <summary>
    /// Opens the tower in <paramref name="folder"/> (config.json, safetensors, optional preprocessor_config.json), checking
    /// that the feature selection fits its depth and that the preprocessing yields its image size.
    /// </summary>
    public static VisionTowerFrontEnd Load(string folder, VisionTowerOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options ??= new VisionTowerOptions();
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"vision tower folder '{folder}' does not exist");
        var encoder = VisionEncoder.Load(folder);
        try
        {
            var config = encoder.Config;
            string configPath = Path.Combine(folder, VisionTowerConfig.FileName);
            var features = options.Features;
            if (features.LayerIndex is int layer)
            {
                int states = config.Layers + 1;
                if (layer < -states || layer >= states)
                    throw new VisionModelException(configPath, "num_hidden_layers", $"hidden state {layer} does not exist in a tower of {config.Layers} layers (0 = embeddings, -1 = last)");
            }
            else if (!encoder.HasClassToken)
                throw new VisionModelException(configPath, "model_type", "class-token features need a tower with a class token (CLIP); SigLIP has none");
            else if (config.Layers % features.ClassTokenCount != 0)
                throw new VisionModelException(configPath, "num_hidden_layers", $"{config.Layers} layers is not a multiple of {features.ClassTokenCount} class tokens");
            return new VisionTowerFrontEnd(folder, encoder, CheckedPreprocessor(config, folder, options.PadToSquare), options);
        }
        catch
        {
            encoder.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Re-opens the tower a plug-in was made with, from <paramref name="folder"/> and plugin.json's vision description
    /// (<paramref name="file"/> names it in errors): the feature selection and padding come from its summary. Whether the
    /// folder holds the same tower is then <see cref="PluginFile.Load"/>'s check (kind, shape, fingerprint).
    /// </summary>
    public static VisionTowerFrontEnd Open(string folder, VisionDescription expected, string file)
    {
        ArgumentNullException.ThrowIfNull(expected);
        string Field(string name) =>
            expected.Summary.TryGetValue(name, out var value) ? value : throw new PluginFormatException(file, "is missing", $"vision.summary.{name}");
        var features = Field("features");
        VisionFeatureSelector selector;
        try
        {
            selector = ParseFeatures(features);
        }
        catch (FormatException e)
        {
            throw new PluginFormatException(file, e.Message, "vision.summary.features");
        }
        bool pad = Field("pad_to_square") switch
        {
            "true" => true,
            "false" => false,
            var other => throw new PluginFormatException(file, $"is '{other}', not true or false", "vision.summary.pad_to_square"),
        };
        return Load(folder, new VisionTowerOptions { Features = selector, PadToSquare = pad });
    }

    /// <summary>Features [N_v, width] of one image; inference only, nothing recorded.</summary>
    public Tensor Encode(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        var pixels = ImagePreprocessor.ToTensor(image, Preprocessor);   // [3, S, S]
        using var _ = Autograd.NoGrad();
        var output = Encoder.Forward(pixels.Reshape(1, pixels.Shape[0], pixels.Shape[1], pixels.Shape[2]));
        var selected = Options.Features.Select(output);                  // [1, N_v, W]
        return selected.Reshape(selected.Shape[1], selected.Shape[2]);
    }

    public void Dispose() => Encoder.Dispose();

    /// <summary>The folder's preprocessor_config.json, or the family's Hugging Face defaults sized to the tower's image_size.</summary>
    public static ImageProcessorConfig PreprocessorFor(VisionTowerConfig config, string folder)
    {
        ArgumentNullException.ThrowIfNull(config);
        string path = Path.Combine(folder, PreprocessorFileName);
        if (File.Exists(path)) return ImageProcessorConfig.Load(path);
        int s = config.ImageSize;
        return config.Kind == VisionTowerKind.Clip
            ? ImageProcessorConfig.Clip() with { ShortestEdge = s, CropHeight = s, CropWidth = s }
            : ImageProcessorConfig.Siglip() with { ResizeHeight = s, ResizeWidth = s };
    }

    /// <summary>The folder's preprocessing (<see cref="PreprocessorFor"/>), refused unless it yields the tower's image size.</summary>
    internal static ImageProcessorConfig CheckedPreprocessor(VisionTowerConfig config, string folder, bool padToSquare)
    {
        var preprocessor = PreprocessorFor(config, folder) with { PadToSquare = padToSquare };
        var (height, width) = OutputSize(preprocessor);
        if (height != config.ImageSize || width != config.ImageSize)
            throw new VisionModelException(Path.Combine(folder, PreprocessorFileName), "crop_size",
                $"preprocessing yields {height}x{width} pixels, the tower takes {config.ImageSize}x{config.ImageSize} (image_size)");
        return preprocessor;
    }

    /// <summary>Every preprocessing field that decides the pixels, as one line (for fingerprints).</summary>
    internal static string PreprocessingText(ImageProcessorConfig p) =>
        string.Join(",", "preprocessing", p.PadToSquare, p.DoResize, p.ShortestEdge?.ToString(CultureInfo.InvariantCulture) ?? "fixed",
            p.ResizeHeight, p.ResizeWidth, p.Resample, p.DoCenterCrop, p.CropHeight, p.CropWidth, p.DoRescale,
            p.RescaleFactor.ToString("R", CultureInfo.InvariantCulture), p.RescaleArithmetic, p.DoNormalize,
            string.Join(" ", p.ImageMean.Select(m => m.ToString("R", CultureInfo.InvariantCulture))),
            string.Join(" ", p.ImageStd.Select(s => s.ToString("R", CultureInfo.InvariantCulture))));

    /// <summary>"layer:N" (class token dropped), "layer:N:class" (kept) or "class-tokens:N".</summary>
    public static string DescribeFeatures(VisionFeatureSelector features)
    {
        ArgumentNullException.ThrowIfNull(features);
        return features.LayerIndex is int layer
            ? $"layer:{Invariant(layer)}{(features.KeepClassToken ? ":class" : "")}"
            : $"class-tokens:{Invariant(features.ClassTokenCount)}";
    }

    /// <summary>The inverse of <see cref="DescribeFeatures"/>; a <see cref="FormatException"/> for anything else.</summary>
    public static VisionFeatureSelector ParseFeatures(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var fields = text.Split(':');
        if (fields[0] == "layer" && fields.Length is 2 or 3 && int.TryParse(fields[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int layer)
            && (fields.Length == 2 || fields[2] == "class"))
            return VisionFeatureSelector.Layer(layer, keepClassToken: fields.Length == 3);
        if (fields[0] == "class-tokens" && fields.Length == 2 && int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out int count) && count > 0)
            return VisionFeatureSelector.ClassTokensEvery(count);
        throw new FormatException($"'{text}' is not layer:N, layer:N:class or class-tokens:N");
    }

    private string ComputeFingerprint()
    {
        var c = Encoder.Config;
        using var fingerprint = new SampledFingerprint();
        fingerprint.AddText(string.Join(",", "vision", c.Kind, c.ImageSize, c.PatchSize, c.Channels, c.Width, c.IntermediateSize, c.Layers, c.Heads,
            c.Activation, c.LayerNormEps.ToString("R", CultureInfo.InvariantCulture)));
        fingerprint.AddText("features " + DescribeFeatures(Options.Features));
        fingerprint.AddText(PreprocessingText(Preprocessor));
        var parameters = Encoder.Parameters;
        for (int i = 0; i < parameters.Count; i++) fingerprint.AddTensor(Invariant(i), parameters[i]);
        return fingerprint.Finish();
    }

    private static (int Height, int Width) OutputSize(ImageProcessorConfig p)
    {
        if (p.DoCenterCrop) return (p.CropHeight, p.CropWidth);
        if (p.DoResize && p.ShortestEdge is null) return (p.ResizeHeight, p.ResizeWidth);
        // A shortest-edge resize without a crop keeps the aspect: only square images come out square.
        return p.DoResize ? (p.ShortestEdge!.Value, p.ShortestEdge.Value) : (-1, -1);
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// The front ends the command line names: patch-pixels:GRID:CELLS or a CLIP/SigLIP folder, and, for a plug-in made with
/// MMA's ViT adapters, its CLIP folder (<see cref="MmaClipFrontEnd"/>).
/// </summary>
public static class VisionFrontEnds
{
    /// <summary>A front end for a new plug-in: `patch-pixels:GRID:CELLS`, or a tower folder with <paramref name="towerOptions"/>.</summary>
    public static IVisionFrontEnd Parse(string spec, VisionTowerOptions? towerOptions = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(spec);
        var fields = spec.Split(':');
        if (fields[0] == PatchPixelsFrontEnd.KindName)
        {
            if (fields.Length != 3
                || !int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out int grid) || grid <= 0
                || !int.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out int cells) || cells <= 0)
                throw new ArgumentException($"--vision: '{spec}' is not patch-pixels:GRID:CELLS with positive integers");
            return new PatchPixelsFrontEnd(grid, cells);
        }
        if (Directory.Exists(spec)) return VisionTowerFrontEnd.Load(spec, towerOptions);
        throw new ArgumentException($"--vision: '{spec}' is neither patch-pixels:GRID:CELLS nor an existing CLIP/SigLIP folder");
    }

    /// <summary>Whether a plug-in expecting <paramref name="expected"/> reads a tower from a folder (CLIP, SigLIP, MMA's CLIP).</summary>
    public static bool ReadsTowerFolder(VisionDescription? expected) => expected?.Kind is "clip" or "siglip" or MmaClipFrontEnd.KindName;

    /// <summary>
    /// The front end plugin.json asks for: rebuilt from the description for patch-pixels; for a tower, opened from
    /// <paramref name="towerFolder"/> when given, else from the folder plugin.json records it was made with. Null when the
    /// plug-in expects none. Whether the folder holds the same tower is then <see cref="PluginFile.Load"/>'s check (kind,
    /// shapes, fingerprint).
    /// </summary>
    public static IVisionFrontEnd? ForPlugin(PluginManifest manifest, string manifestPath, string? towerFolder)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        if (manifest.Vision is not { } expected)
            return towerFolder is null ? null : throw new ArgumentException($"--vision: the plug-in expects no vision front end, but '{towerFolder}' was given");
        if (expected.Kind == PatchPixelsFrontEnd.KindName)
        {
            if (towerFolder is not null) throw new ArgumentException($"--vision: the plug-in's front end is {PatchPixelsFrontEnd.KindName}, which has no folder; leave --vision out");
            return PatchPixelsFrontEnd.FromDescription(expected, manifestPath);
        }
        if (!ReadsTowerFolder(expected))
            throw new ArgumentException($"the plug-in expects a {expected.Kind} vision front end, which is opened by its design's own code, not from --vision");
        string tower = expected.Kind == MmaClipFrontEnd.KindName ? "clip" : expected.Kind;
        if (towerFolder is null)
        {
            string summary = string.Join(", ", expected.Summary.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}"));
            if (expected.Folder is null)
                throw new ArgumentException($"the plug-in needs its {tower} vision tower ({summary}), and its plugin.json records no folder; give the tower's folder with --vision DIR");
            if (!Directory.Exists(expected.Folder))
                throw new ArgumentException($"the plug-in needs its {tower} vision tower, which it was made with in '{expected.Folder}' (plugin.json vision.folder), but that folder does not exist; give the tower's folder with --vision DIR");
            towerFolder = expected.Folder;
        }
        else if (!Directory.Exists(towerFolder)) throw new DirectoryNotFoundException($"--vision: the tower folder '{towerFolder}' does not exist");
        return expected.Kind == MmaClipFrontEnd.KindName
            ? MmaClipFrontEnd.Open(towerFolder, expected, manifestPath)
            : VisionTowerFrontEnd.Open(towerFolder, expected, manifestPath);
    }
}
