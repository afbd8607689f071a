using System.CommandLine;
using System.Globalization;
using Graft.Plugins;

namespace Graft.Cli;

/// <summary>The command-line options of `graft plugin new`, read into <see cref="PluginNewSettings"/>.</summary>
internal sealed class PluginNewCommandOptions
{
    private readonly Option<string> _design = new("--design") { Description = $"The design: {string.Join(", ", PluginFile.Designs)}", Required = true };
    private readonly Option<string> _base = new("--base") { Description = "The base model folder (Hugging Face); only read", Required = true };
    private readonly Option<string?> _vision = new("--vision") { Description = "The vision front end (required but for visual-experts): a CLIP/SigLIP folder, or patch-pixels:GRID:CELLS (parameter-free, for experiments)" };
    private readonly Option<string> _output = new("--out") { Description = "The plug-in folder to write (NAME.graft)", Required = true };
    private readonly Option<int> _seed = new("--seed") { Description = "Seed of the initialisation", DefaultValueFactory = _ => 0 };
    private readonly Option<int?> _featureLayer = new("--feature-layer") { Description = "bridge, inner-adaptor, wings: the tower's hidden state read (default -2, LLaVA's and WINGS' 'without the last layer')" };
    private readonly Option<bool> _keepClassToken = new("--keep-class-token") { Description = "bridge, inner-adaptor, wings: keep a CLIP tower's class token (LLaVA drops it)" };
    private readonly Option<string?> _padToSquare = new("--pad-to-square") { Description = "bridge, inner-adaptor, wings: on (LLaVA-1.5's expand2square, default) or off" };
    private readonly Option<string?> _tune = new("--tune") { Description = "bridge: projector (a plug-in, default) or full (projector + LLM, written as a new base)" };
    private readonly Option<int?> _adapterRank = new("--adapter-rank") { Description = "mma: the adapters' bottleneck r (LaVIN: 8)" };
    private readonly Option<int?> _adapterGroups = new("--adapter-groups") { Description = "mma: groups of the adapters' up-projections (LaVIN: 2)" };
    private readonly Option<float?> _temperature = new("--temperature") { Description = "mma: the router's temperature tau (LaVIN: 10 at d = 4096, else 5)" };
    private readonly Option<float?> _adapterScale = new("--adapter-scale") { Description = "mma: the adapters' output scale s (LaVIN: 1)" };
    private readonly Option<float?> _adapterDropout = new("--adapter-dropout") { Description = "mma: dropout on the bottleneck while training (LaVIN: 0.1)" };
    private readonly Option<int?> _projectionWidth = new("--projection-width") { Description = "mma: AdapterMLP's hidden width (LaVIN: 128)" };
    private readonly Option<int?> _classTokens = new("--class-tokens") { Description = "mma: class tokens n, one after every (L/n)-th ViT block (LaVIN: 6; default the largest n <= 6 dividing L)" };
    private readonly Option<string?> _vitAdapters = new("--vit-adapters") { Description = "mma: on (default with a CLIP folder: adapters in every ViT block, part of the plug-in) or off" };
    private readonly Option<string?> _preset = new("--preset") { Description = $"inner-adaptor: {InnerAdaptor.Iaa14} (default) or {InnerAdaptor.Iaa8}, scaled to the base's depth" };
    private readonly Option<string?> _layers = new("--layers") { Description = "inner-adaptor: the frozen layers to insert after, e.g. 0,5,11 (instead of a preset)" };
    private readonly Option<bool> _ownEmbedding = new("--own-embedding") { Description = "inner-adaptor: the multimodal stream trains its own copy of the token embedding" };
    private readonly Option<bool> _ownNorm = new("--own-norm") { Description = "inner-adaptor: the multimodal stream trains its own copy of the final norm" };
    private readonly Option<bool> _ownHead = new("--own-head") { Description = "inner-adaptor: the multimodal stream trains its own copy of the LM head" };
    private readonly Option<int?> _rank = new("--rank") { Description = "wings: LoRRA rank r (the paper's 64 at d = 4096; default max(4, d / 64))" };
    private readonly Option<string?> _router = new("--router") { Description = "wings: the router's input, image-text-mass (default) or attention-row (the original)" };
    private readonly Option<int?> _routerRowLength = new("--router-row-length") { Description = "wings: key positions the attention-row router reads (the original's 4096)" };
    private readonly Option<bool> _attentionExperts = new("--attention-experts") { Description = "visual-experts: add visual attention experts (Mono-InternVL-1.5)" };
    private readonly Option<int?> _patchSize = new("--patch-size") { Description = "visual-experts: patch p (Mono-InternVL: 14)" };
    private readonly Option<int?> _imageSize = new("--image-size") { Description = "visual-experts: tile side, a multiple of 2p (448 from d = 1024, 224 from 256, else 56)" };
    private readonly Option<int?> _visionWidth = new("--vision-width") { Description = "visual-experts: the patch embedding's width d_v (default the base's hidden size)" };
    private readonly Option<int?> _maxTiles = new("--max-tiles") { Description = "visual-experts: most tiles of the dynamic tiling (InternVL: 12)" };

    public void AddTo(Command command)
    {
        foreach (var option in (Option[])[_design, _base, _vision, _output, _seed, _featureLayer, _keepClassToken, _padToSquare, _tune,
                     _adapterRank, _adapterGroups, _temperature, _adapterScale, _adapterDropout, _projectionWidth, _classTokens, _vitAdapters,
                     _preset, _layers, _ownEmbedding, _ownNorm, _ownHead, _rank, _router, _routerRowLength,
                     _attentionExperts, _patchSize, _imageSize, _visionWidth, _maxTiles])
            command.Options.Add(option);
    }

    public PluginNewSettings Read(ParseResult parse) => new(parse.GetValue(_design)!, parse.GetValue(_base)!, parse.GetValue(_vision), parse.GetValue(_output)!)
    {
        Seed = parse.GetValue(_seed),
        FeatureLayer = parse.GetValue(_featureLayer),
        KeepClassToken = parse.GetValue(_keepClassToken),
        PadToSquare = OnOff(parse.GetValue(_padToSquare), "--pad-to-square"),
        Tune = parse.GetValue(_tune),
        AdapterRank = parse.GetValue(_adapterRank),
        AdapterGroups = parse.GetValue(_adapterGroups),
        Temperature = parse.GetValue(_temperature),
        AdapterScale = parse.GetValue(_adapterScale),
        AdapterDropout = parse.GetValue(_adapterDropout),
        ProjectionWidth = parse.GetValue(_projectionWidth),
        ClassTokens = parse.GetValue(_classTokens),
        VitAdapters = OnOff(parse.GetValue(_vitAdapters), "--vit-adapters"),
        Preset = parse.GetValue(_preset),
        Layers = parse.GetValue(_layers) is { } layers ? ParseLayers(layers) : null,
        OwnEmbedding = parse.GetValue(_ownEmbedding),
        OwnNorm = parse.GetValue(_ownNorm),
        OwnHead = parse.GetValue(_ownHead),
        Rank = parse.GetValue(_rank),
        Router = parse.GetValue(_router),
        RouterRowLength = parse.GetValue(_routerRowLength),
        AttentionExperts = parse.GetValue(_attentionExperts),
        PatchSize = parse.GetValue(_patchSize),
        ImageSize = parse.GetValue(_imageSize),
        VisionWidth = parse.GetValue(_visionWidth),
        MaxTiles = parse.GetValue(_maxTiles),
    };

    private static bool? OnOff(string? value, string option) => value switch
    {
        null => null,
        "on" => true,
        "off" => false,
        _ => throw new ArgumentException($"{option}: '{value}' is not on or off"),
    };

    private static int[] ParseLayers(string text)
    {
        var items = text.Split(',', StringSplitOptions.TrimEntries);
        var layers = new int[items.Length];
        for (int i = 0; i < items.Length; i++)
            if (!int.TryParse(items[i], NumberStyles.None, CultureInfo.InvariantCulture, out layers[i]))
                throw new ArgumentException($"--layers: '{items[i]}' (item {i + 1}) is not a layer index");
        return layers;
    }
}
