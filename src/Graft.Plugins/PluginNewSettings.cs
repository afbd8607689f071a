using System.Globalization;
using Graft.Models.Llm;
using Graft.Models.Vision;

namespace Graft.Plugins;

/// <summary>
/// What `graft plugin new` was asked for. Design options left unset (null) take the paper's value, scaled to the base
/// where the design says so (each design's options record); plugin.json records the values used.
/// </summary>
public sealed record PluginNewSettings(string Design, string BaseFolder, string? Vision, string Output)
{
    public int Seed { get; init; }

    /// <summary>Tower front ends (bridge, inner-adaptor, wings): the hidden state read (LLaVA: -2), class token kept, pad to square.</summary>
    public int? FeatureLayer { get; init; }
    public bool KeepClassToken { get; init; }
    public bool? PadToSquare { get; init; }

    /// <summary>Bridge: projector or full.</summary>
    public string? Tune { get; init; }

    /// <summary>MMA (LaVIN): adapters' r, groups, τ, s and dropout, AdapterMLP's width, class tokens, ViT adapters on a CLIP folder.</summary>
    public int? AdapterRank { get; init; }
    public int? AdapterGroups { get; init; }
    public float? Temperature { get; init; }
    public float? AdapterScale { get; init; }
    public float? AdapterDropout { get; init; }
    public int? ProjectionWidth { get; init; }
    public int? ClassTokens { get; init; }
    public bool? VitAdapters { get; init; }

    /// <summary>IAA: a preset or an explicit layer list, and the parts of the output the multimodal stream owns.</summary>
    public string? Preset { get; init; }
    public IReadOnlyList<int>? Layers { get; init; }
    public bool OwnEmbedding { get; init; }
    public bool OwnNorm { get; init; }
    public bool OwnHead { get; init; }

    /// <summary>WINGS: LoRRA rank, router input and the attention-row router's length.</summary>
    public int? Rank { get; init; }
    public string? Router { get; init; }
    public int? RouterRowLength { get; init; }

    /// <summary>Visual Experts: attention experts, patch, tile size, patch embedding width, tiles.</summary>
    public bool AttentionExperts { get; init; }
    public int? PatchSize { get; init; }
    public int? ImageSize { get; init; }
    public int? VisionWidth { get; init; }
    public int? MaxTiles { get; init; }

    /// <summary>
    /// An untrained plug-in of <see cref="Design"/> for <paramref name="model"/>, with the front end it needs (returned for the
    /// caller to dispose, null for Visual Experts). Every option is checked first, and an error names it.
    /// </summary>
    public IPlugin Create(DecoderModel model, out IVisionFrontEnd? vision)
    {
        ArgumentNullException.ThrowIfNull(model);
        CheckApplicable();
        vision = null;
        if (Design == VisualExperts.DesignName) return CreateVisualExperts(model);
        // Every option is read before the tower is opened, so a bad one is reported before a slow load.
        var bridge = Design == Bridge.DesignName ? new BridgeOptions { Seed = Seed, Tune = ReadTune() } : null;
        var mma = Design == Mma.DesignName ? ReadMmaOptions(model.Config.HiddenSize) : null;
        var iaa = Design == InnerAdaptor.DesignName ? ReadIaaOptions(model.Config.NumLayers) : null;
        var wings = Design == Wings.DesignName ? ReadWingsOptions() : null;
        vision = FrontEnd();
        try
        {
            return Design switch
            {
                Mma.DesignName => Mma.Create(model, vision, mma),
                InnerAdaptor.DesignName => InnerAdaptor.Create(model, vision, iaa),
                Wings.DesignName => Wings.Create(model, vision, wings),
                _ => Bridge.Create(model, vision, bridge),
            };
        }
        catch
        {
            (vision as IDisposable)?.Dispose();
            vision = null;
            throw;
        }
    }

    /// <summary>
    /// The vision front end a new plug-in of <see cref="Design"/> reads, as `plugin new` builds it (`graft train` trains on
    /// the same): a tower read at <see cref="FeatureLayer"/>, MMA's CLIP tower with its ViT adapters, or patch-pixels; null for
    /// Visual Experts. The caller disposes it.
    /// </summary>
    public IVisionFrontEnd? CreateFrontEnd()
    {
        CheckApplicable();
        return Design == VisualExperts.DesignName ? null : FrontEnd();
    }

    private IVisionFrontEnd FrontEnd()
    {
        // Never a silent default: a plug-in trained on a parameter-free front end is not what anyone asks for by omission.
        string spec = Vision ?? throw new ArgumentException(
            $"--vision: a {Design} plug-in sees through a vision front end; give a CLIP/SigLIP folder (--vision DIR), or {PatchPixelsFrontEnd.KindName}:GRID:CELLS for a parameter-free one (experiments only)");
        bool isFolder = !spec.StartsWith(PatchPixelsFrontEnd.KindName, StringComparison.Ordinal);
        return Design == Mma.DesignName && isFolder ? MmaVision(spec) : FrontEndFor(spec, isFolder);
    }

    /// <summary>Each given option against the designs it belongs to.</summary>
    private void CheckApplicable()
    {
        if (!PluginFile.Designs.Contains(Design))
            throw new ArgumentException($"--design: '{Design}' is not a design this build creates ({string.Join(", ", PluginFile.Designs)})");
        string[] towers = [Bridge.DesignName, InnerAdaptor.DesignName, Wings.DesignName];
        var given = new (string Option, bool Given, string[] Designs)[]
        {
            ("--vision", Vision is not null, [Bridge.DesignName, Mma.DesignName, InnerAdaptor.DesignName, Wings.DesignName]),
            ("--feature-layer", FeatureLayer is not null, towers),
            ("--keep-class-token", KeepClassToken, towers),
            ("--pad-to-square", PadToSquare is not null, towers),
            ("--tune", Tune is not null, [Bridge.DesignName]),
            ("--adapter-rank", AdapterRank is not null, [Mma.DesignName]),
            ("--adapter-groups", AdapterGroups is not null, [Mma.DesignName]),
            ("--temperature", Temperature is not null, [Mma.DesignName]),
            ("--adapter-scale", AdapterScale is not null, [Mma.DesignName]),
            ("--adapter-dropout", AdapterDropout is not null, [Mma.DesignName]),
            ("--projection-width", ProjectionWidth is not null, [Mma.DesignName]),
            ("--class-tokens", ClassTokens is not null, [Mma.DesignName]),
            ("--vit-adapters", VitAdapters is not null, [Mma.DesignName]),
            ("--preset", Preset is not null, [InnerAdaptor.DesignName]),
            ("--layers", Layers is not null, [InnerAdaptor.DesignName]),
            ("--own-embedding", OwnEmbedding, [InnerAdaptor.DesignName]),
            ("--own-norm", OwnNorm, [InnerAdaptor.DesignName]),
            ("--own-head", OwnHead, [InnerAdaptor.DesignName]),
            ("--rank", Rank is not null, [Wings.DesignName]),
            ("--router", Router is not null, [Wings.DesignName]),
            ("--router-row-length", RouterRowLength is not null, [Wings.DesignName]),
            ("--attention-experts", AttentionExperts, [VisualExperts.DesignName]),
            ("--patch-size", PatchSize is not null, [VisualExperts.DesignName]),
            ("--image-size", ImageSize is not null, [VisualExperts.DesignName]),
            ("--vision-width", VisionWidth is not null, [VisualExperts.DesignName]),
            ("--max-tiles", MaxTiles is not null, [VisualExperts.DesignName]),
        };
        foreach (var (option, isGiven, designs) in given)
            if (isGiven && !designs.Contains(Design))
                throw new ArgumentException(option == "--vision"
                    ? $"--vision: {Design} has its own trainable patch embedding and takes no vision front end"
                    : $"{option}: a {string.Join(" / ", designs)} option; --design {Design} does not take it");
    }

    private BridgeTune ReadTune()
    {
        string tune = Tune ?? "projector";
        return tune switch
        {
            "projector" => BridgeTune.Projector,
            "full" => BridgeTune.Full,
            _ => throw new ArgumentException($"--tune: '{tune}' is not projector or full"),
        };
    }

    /// <summary>patch-pixels:GRID:CELLS, or a tower folder read at <see cref="FeatureLayer"/> (LLaVA's -2) with the padding asked for.</summary>
    private IVisionFrontEnd FrontEndFor(string spec, bool isFolder)
    {
        if (!isFolder)
        {
            foreach (var (option, given) in new[] { ("--feature-layer", FeatureLayer is not null), ("--keep-class-token", KeepClassToken), ("--pad-to-square", PadToSquare is not null),
                         ("--class-tokens", ClassTokens is not null), ("--vit-adapters", VitAdapters is not null) })
                if (given) throw new ArgumentException($"{option}: needs a CLIP/SigLIP --vision folder; {PatchPixelsFrontEnd.KindName} has no layers");
            return VisionFrontEnds.Parse(spec);
        }
        if (!Directory.Exists(spec)) return VisionFrontEnds.Parse(spec);
        var tower = VisionTowerConfig.Read(spec, VisionTowerConfig.DetectKind(spec));
        int layer = FeatureLayer ?? VisionFeatureSelector.Llava.LayerIndex!.Value;
        if (layer < -(tower.Layers + 1) || layer > tower.Layers)
            throw new ArgumentException($"--feature-layer: hidden state {layer} does not exist in a tower of {tower.Layers} layers (0 = embeddings, -1 = last)");
        if (KeepClassToken && tower.Kind != VisionTowerKind.Clip)
            throw new ArgumentException($"--keep-class-token: a {tower.Kind} tower has no class token");
        return VisionFrontEnds.Parse(spec, new VisionTowerOptions
        {
            Features = VisionFeatureSelector.Layer(layer, KeepClassToken),
            PadToSquare = PadToSquare ?? true,
        });
    }

    /// <summary>MMA on a CLIP folder: the tower with its ViT adapters (the default), or without them, read as class tokens.</summary>
    private IVisionFrontEnd MmaVision(string folder)
    {
        if (!Directory.Exists(folder)) return VisionFrontEnds.Parse(folder);
        var tower = VisionTowerConfig.Read(folder, VisionTowerConfig.DetectKind(folder));
        if (tower.Kind != VisionTowerKind.Clip)
            throw new ArgumentException($"--vision: MMA reads class tokens, so it needs a CLIP tower; '{folder}' holds a {tower.Kind} tower");
        int classTokens = ClassTokens ?? MmaClipFrontEnd.DefaultClassTokens(tower.Layers);
        if (classTokens <= 0 || tower.Layers % classTokens != 0)
            throw new ArgumentException($"--class-tokens: {classTokens} does not divide the tower's {tower.Layers} blocks (MMA takes the class token after every (L/n)-th block)");
        if (VitAdapters ?? true) return MmaClipFrontEnd.Load(folder, classTokens);
        return VisionTowerFrontEnd.Load(folder, new VisionTowerOptions { Features = VisionFeatureSelector.ClassTokensEvery(classTokens), PadToSquare = false });
    }

    private MmaOptions ReadMmaOptions(int hiddenSize)
    {
        var defaults = new MmaOptions();
        int rank = AdapterRank ?? defaults.AdapterRank, groups = AdapterGroups ?? defaults.AdapterGroups;
        float tau = Temperature ?? Mma.DefaultTemperature(hiddenSize), scale = AdapterScale ?? defaults.AdapterScale, dropout = AdapterDropout ?? defaults.AdapterDropout;
        int width = ProjectionWidth ?? defaults.ProjectionWidth;
        if (rank <= 0) throw new ArgumentException($"--adapter-rank: {rank} is not a positive integer");
        if (groups <= 0) throw new ArgumentException($"--adapter-groups: {groups} is not a positive integer");
        if (rank % groups != 0) throw new ArgumentException($"--adapter-rank: {rank} is not a multiple of --adapter-groups {groups}");
        if (hiddenSize % groups != 0) throw new ArgumentException($"--adapter-groups: the base's hidden size {hiddenSize} is not a multiple of {groups}");
        if (!(tau > 0) || !float.IsFinite(tau)) throw new ArgumentException($"--temperature: {tau} is not positive and finite");
        if (!float.IsFinite(scale)) throw new ArgumentException($"--adapter-scale: {scale} is not finite");
        if (!(dropout >= 0 && dropout < 1)) throw new ArgumentException($"--adapter-dropout: {dropout} is not in [0, 1)");
        if (width <= 0) throw new ArgumentException($"--projection-width: {width} is not a positive integer");
        return new MmaOptions
        {
            Seed = Seed, AdapterRank = rank, AdapterGroups = groups, Temperature = tau, AdapterScale = scale, AdapterDropout = dropout, ProjectionWidth = width,
        };
    }

    private InnerAdaptorOptions ReadIaaOptions(int numLayers)
    {
        if (Preset is not null && Layers is not null) throw new ArgumentException("--layers: give --preset or --layers, not both");
        if (Preset is not null and not (InnerAdaptor.Iaa14 or InnerAdaptor.Iaa8))
            throw new ArgumentException($"--preset: '{Preset}' is not {InnerAdaptor.Iaa14} or {InnerAdaptor.Iaa8}");
        if (Layers is not null && InnerAdaptor.LayerListProblem(Layers, numLayers) is { } problem) throw new ArgumentException($"--layers: {problem}");
        return new InnerAdaptorOptions
        {
            Seed = Seed, Preset = Preset ?? InnerAdaptor.Iaa14, InsertAfter = Layers, OwnEmbedding = OwnEmbedding, OwnNorm = OwnNorm, OwnHead = OwnHead,
        };
    }

    private WingsOptions ReadWingsOptions()
    {
        if (Rank is <= 0) throw new ArgumentException($"--rank: {Rank} is not a positive integer");
        var input = Router switch
        {
            null or "image-text-mass" => WingsRouterInput.ImageTextMass,
            "attention-row" => WingsRouterInput.AttentionRow,
            _ => throw new ArgumentException($"--router: '{Router}' is not image-text-mass or attention-row"),
        };
        if (RouterRowLength is not null && input != WingsRouterInput.AttentionRow)
            throw new ArgumentException("--router-row-length: applies to --router attention-row only");
        if (RouterRowLength is <= 0) throw new ArgumentException($"--router-row-length: {RouterRowLength} is not a positive integer");
        var defaults = new WingsOptions();
        return new WingsOptions { Seed = Seed, Rank = Rank, RouterInput = input, RouterRowLength = RouterRowLength ?? defaults.RouterRowLength };
    }

    private VisualExperts CreateVisualExperts(DecoderModel model)
    {
        var defaults = new VisualExpertsOptions();
        int patch = PatchSize ?? defaults.PatchSize;
        if (patch <= 0) throw new ArgumentException($"--patch-size: {patch} is not a positive integer");
        int imageSize = ImageSize ?? VisualExperts.DefaultImageSize(model.Config.HiddenSize);
        if (imageSize <= 0 || imageSize % (2 * patch) != 0)
            throw new ArgumentException($"--image-size: {imageSize} is not a positive multiple of 2 x --patch-size = {2 * patch} (pixel shuffle halves the patch grid)");
        if (VisionWidth is <= 0) throw new ArgumentException($"--vision-width: {VisionWidth} is not a positive integer");
        if (MaxTiles is <= 0) throw new ArgumentException($"--max-tiles: {MaxTiles} is not a positive integer");
        return VisualExperts.Create(model, new VisualExpertsOptions
        {
            Seed = Seed, PatchSize = patch, ImageSize = imageSize, VisionWidth = VisionWidth, MaxTiles = MaxTiles ?? defaults.MaxTiles, AttentionExperts = AttentionExperts,
        });
    }
}
