using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>What a Bridge trains: the projector alone (a plug-in), or the projector and the whole LLM.</summary>
public enum BridgeTune
{
    /// <summary>LLaVA-1.5 stage 1: the projector alone; the base stays frozen, so this is a plug-in.</summary>
    Projector,

    /// <summary>
    /// LLaVA-1.5 stage 2: projector and whole LLM. That changes the LLM, so it writes a new base checkpoint, and the
    /// projector's plugin.json then names that new base (its fingerprint). Kept to measure forgetting against the
    /// plug-in designs. This build records the mode; training the LLM itself belongs to the trainer.
    /// </summary>
    Full,
}

/// <summary>How <see cref="Bridge.Create"/> makes an untrained Bridge.</summary>
public sealed record BridgeOptions
{
    /// <summary>Seed of the projector's initialisation.</summary>
    public int Seed { get; init; }

    public BridgeTune Tune { get; init; } = BridgeTune.Projector;
}

/// <summary>
/// Bridge: LLaVA-1.5 (Liu et al., "Improved Baselines with Visual Instruction Tuning", 2023), the baseline design.
/// </summary>
/// <remarks>
/// Vision: a frozen tower's features Z_v [N_v, d_v] (LLaVA-1.5: CLIP ViT-L/14-336, hidden states of layer -2 with the
/// class token dropped: 576 x 1024), produced by the <see cref="IVisionFrontEnd"/>.
/// Projector `mlp2x_gelu` (section 3.1 of the paper, `mm_projector` in the authors' code):
///     H_v = W_2 · GELU(W_1 · Z_v + b_1) + b_2,   W_1: d_v -> d,  W_2: d -> d,  GELU the erf form (nn.GELU).
/// Prompt: the `&lt;image&gt;` placeholder in the user turn is replaced by the N_v rows of H_v; every other token is the
/// base's own embedding. The loss is on assistant tokens only (<see cref="PreparedInput.Targets"/>).
/// Initialisation: nn.Linear's default, U(-1/√fan_in, 1/√fan_in) for weights and biases (LLaVA does not re-initialise).
/// Bridge acts on the input only: no decoder hooks, so a prompt without an image is the base's own forward anyway.
/// Tensor names follow LLaVA's `mm_projector.{0,2}.{weight,bias}`.
/// </remarks>
public sealed class Bridge : IPlugin
{
    public const string DesignName = "bridge";
    public const string ProjectorPart = "projector";
    public const string ProjectorKind = "mlp2x_gelu";

    private Bridge(DecoderModel baseModel, IVisionFrontEnd? vision, PluginManifest manifest, GeluProjector projector)
    {
        Base = baseModel;
        Vision = vision;
        Manifest = manifest;
        Projector = projector;
        Tune = Enum.Parse<BridgeTune>(manifest.HyperParameter<string>("tune", PluginManifest.FileName), ignoreCase: true);
        Parameters =
        [
            new("mm_projector.0.weight", ProjectorPart, projector.W1),
            new("mm_projector.0.bias", ProjectorPart, projector.B1),
            new("mm_projector.2.weight", ProjectorPart, projector.W2),
            new("mm_projector.2.bias", ProjectorPart, projector.B2),
        ];
    }

    public GeluProjector Projector { get; }

    public string Design => DesignName;
    public PluginManifest Manifest { get; }

    /// <summary>LLaVA-1.5's: each image at its `&lt;image&gt;` placeholder.</summary>
    public PromptLayout Layout => PromptLayout.AtPlaceholders;
    public DecoderModel Base { get; }

    /// <summary>The front end that encodes images given as pixels; null when the plug-in is used with precomputed features only.</summary>
    public IVisionFrontEnd? Vision { get; }

    public BridgeTune Tune { get; }
    public IReadOnlyList<PluginParameter> Parameters { get; }

    /// <summary>Bridge has nothing to do on text: its only point is the input's image positions.</summary>
    public bool CanRouteText => false;

    public bool CanEncodePixels => Vision is not null;

    /// <summary>An untrained Bridge for <paramref name="baseModel"/> and <paramref name="vision"/>, initialised as nn.Linear is.</summary>
    public static Bridge Create(DecoderModel baseModel, IVisionFrontEnd vision, BridgeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        ArgumentNullException.ThrowIfNull(vision);
        options ??= new BridgeOptions();
        int dv = vision.FeatureWidth, d = baseModel.Config.HiddenSize;
        var random = new Random(options.Seed);
        var manifest = new PluginManifest
        {
            Design = DesignName,
            HyperParameters = new JsonObject
            {
                ["projector"] = ProjectorKind,
                ["tune"] = options.Tune.ToString().ToLowerInvariant(),
                ["vision_width"] = dv,
                ["hidden_size"] = d,
                ["image_placeholder"] = "<image>",
            },
            Base = BaseDescription.Of(baseModel),
            Vision = VisionDescription.Of(vision),
            Training = new JsonObject
            {
                ["state"] = "untrained",
                ["initialisation"] = "nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))",
                ["seed"] = options.Seed,
            },
        };
        return new Bridge(baseModel, vision, manifest, GeluProjector.Create(dv, d, random));
    }

    /// <summary>The tensors a Bridge with this manifest holds, with their shapes.</summary>
    public static IReadOnlyDictionary<string, int[]> ExpectedShapes(PluginManifest manifest, string file)
    {
        int dv = manifest.HyperParameter<int>("vision_width", file), d = manifest.Base.HiddenSize;
        return new Dictionary<string, int[]>(StringComparer.Ordinal)
        {
            ["mm_projector.0.weight"] = [d, dv],
            ["mm_projector.0.bias"] = [d],
            ["mm_projector.2.weight"] = [d, d],
            ["mm_projector.2.bias"] = [d],
        };
    }

    /// <summary>A Bridge from a checked manifest and tensors (see <see cref="PluginFile.Load"/>).</summary>
    internal static Bridge Restore(PluginManifest manifest, IReadOnlyDictionary<string, Tensor> tensors, DecoderModel baseModel, IVisionFrontEnd? vision, string file)
    {
        string projector = manifest.HyperParameter<string>("projector", file);
        if (projector != ProjectorKind) throw new PluginFormatException(file, $"'{projector}' is not a projector Bridge runs ({ProjectorKind})", "hyper_parameters.projector");
        string tune = manifest.HyperParameter<string>("tune", file);
        if (!Enum.TryParse<BridgeTune>(tune, ignoreCase: true, out _))
            throw new PluginFormatException(file, $"'{tune}' is not projector or full", "hyper_parameters.tune");
        return new Bridge(baseModel, vision, manifest, new GeluProjector(
            tensors["mm_projector.0.weight"], tensors["mm_projector.0.bias"], tensors["mm_projector.2.weight"], tensors["mm_projector.2.bias"]));
    }

    /// <summary>Z_v [N, d_v] -> H_v [N, d] = W_2 · GELU(W_1 · Z_v + b_1) + b_2.</summary>
    public Tensor Project(Tensor features) => Projector.Forward(features);

    /// <summary>Text parts embedded by the base, each image replaced by its N_v projected features, in prompt order.</summary>
    public PreparedInput Prepare(MultimodalPrompt prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var (embeddings, imageMask, targets) = prompt.Lay(ids => Base.Embed(ids), image => Project(image.FeaturesFrom(Vision, "Bridge")));
        return new PreparedInput(embeddings, imageMask, targets, Hooks: null);
    }
}
