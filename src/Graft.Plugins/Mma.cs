using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Vision;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>How <see cref="Mma.Create"/> makes an untrained MMA plug-in; the defaults are LaVIN's.</summary>
public sealed record MmaOptions
{
    /// <summary>Seed of the initialisation (and of the adapters' dropout masks while training).</summary>
    public int Seed { get; init; }

    /// <summary>r, the adapters' bottleneck (LaVIN: 8, kept for every base size: the adapters stay tiny either way).</summary>
    public int AdapterRank { get; init; } = 8;

    /// <summary>Groups of the up-projections B and D (LaVIN's grouped 1x1 convolutions: 2).</summary>
    public int AdapterGroups { get; init; } = 2;

    /// <summary>AdapterMLP's hidden width (LaVIN: 128).</summary>
    public int ProjectionWidth { get; init; } = 128;

    /// <summary>The router's temperature τ; null chooses LaVIN's by size (see <see cref="Mma.DefaultTemperature"/>).</summary>
    public float? Temperature { get; init; }

    /// <summary>s, the adapters' output scale (LaVIN: 1).</summary>
    public float AdapterScale { get; init; } = 1f;

    /// <summary>Dropout on the adapters' bottleneck while training (LaVIN: 0.1).</summary>
    public float AdapterDropout { get; init; } = 0.1f;
}

/// <summary>
/// MMA: LaVIN's Mixture-of-Modality Adaptation (Luo et al., "Cheap and Quick: Efficient Vision-Language Instruction
/// Tuning for Large Language Models", arXiv 2305.15023).
/// </summary>
/// <remarks>
/// Vision: a frozen CLIP tower; Z_v = the class token after every (L_v/n)-th block, [n, d_v] (LaVIN: n = 6 on 24 blocks;
/// see <see cref="MmaClipFrontEnd"/>). No post-LayerNorm, no projection.
/// AdapterMLP (the visual projection):  H_v = W_2 · SiLU(W_1 · Z_v + b_1) + b_2,  W_1: d_v -> 128,  W_2: 128 -> d,
///     Xavier-uniform weights, zero biases.
/// Modality token: m = E_mod[has_image], E_mod: Embedding(2, d), prepended at position 0. No other token attends to it
///     (attention mask column 0 is false for rows 1..T), so its hidden state depends on the modality alone and tells each
///     layer's router which modality it serves.
/// Sequence: [m] [BOS] "Image: " [n visual tokens] prompt answer, or [m] [BOS] "Image: N/A" prompt answer for a text-only
///     request routed through the plug-in (the text is laid out so by <see cref="Layout"/>, for every caller).
/// MM-Adapter (RepAdapter with a router, <see cref="RoutedRepAdapter"/>) on the normed input of attention in every LLM layer,
///     h = x + Attn(Adapter(RMSNorm(x))), FFN unchanged:
///     w  = softmax((W_r · X[0] + b_r) / τ)           the router reads position 0, the modality token
///     H  = Dropout_0.1(A · X + a),                    A: d -> r (r = 8)
///     X' = X + s · (w_0 · (B · H + b) + w_1 · (D · H + d')),  B, D: r -> d, each a 1x1 convolution with 2 groups
///     A Xavier-uniform, a, B, b, D, d' zero: the identity at initialisation. τ = 10 for 7B-sized bases, 5 otherwise; s = 1.
/// The same adapter (width d_v) on the normed attention input of every ViT block, routed from each image's own class token
///     (LaVIN's CLIP code reads batch element 0 for every image; Graft does not). The tower stays frozen.
/// Trainable: the adapters, AdapterMLP and E_mod. Text-only requests go to the base alone unless the host routes text
///     through the plug-in (<see cref="TextRoute.Plugin"/>), which then runs with m = E_mod[0] as the authors do.
/// Tensor names follow LaVIN's: layers.{i}.adapter_attn.*, backbone.visual.transformer.resblocks.{i}.adapter_attn.*,
///     adapter_proj.*, adapter_modality_embedding.weight.
/// </remarks>
public sealed class Mma : IPlugin
{
    public const string DesignName = "mma";
    public const string LlmAdaptersPart = "llm_adapters";
    public const string VisionAdaptersPart = "vision_adapters";
    public const string ProjectionPart = "adapter_proj";
    public const string ModalityPart = "modality_embedding";
    public const string ImagePrefix = "Image: ";
    public const string TextOnlyPrefix = "Image: N/A";
    private const string LlmPrefix = "layers.";
    private const string VisionPrefix = "backbone.visual.transformer.resblocks.";

    private Random _dropout;

    private Mma(DecoderModel baseModel, IVisionFrontEnd? vision, PluginManifest manifest, RoutedRepAdapter[] llmAdapters,
        RoutedRepAdapter[] visionAdapters, Tensor[] projection, Tensor modalityEmbedding, int seed)
    {
        Base = baseModel;
        Vision = vision;
        Manifest = manifest;
        LlmAdapters = llmAdapters;
        VisionAdapters = visionAdapters;
        (W1, B1, W2, B2) = (projection[0], projection[1], projection[2], projection[3]);
        ModalityEmbedding = modalityEmbedding;
        _dropout = new Random(seed);
        var parameters = new List<PluginParameter>();
        for (int i = 0; i < llmAdapters.Length; i++)
            parameters.AddRange(llmAdapters[i].Named().Select(p => new PluginParameter($"{LlmPrefix}{i}.adapter_attn.{p.Suffix}", LlmAdaptersPart, p.Tensor)));
        for (int i = 0; i < visionAdapters.Length; i++)
            parameters.AddRange(visionAdapters[i].Named().Select(p => new PluginParameter($"{VisionPrefix}{i}.adapter_attn.{p.Suffix}", VisionAdaptersPart, p.Tensor)));
        parameters.Add(new("adapter_proj.conv_A.weight", ProjectionPart, W1));
        parameters.Add(new("adapter_proj.conv_A.bias", ProjectionPart, B1));
        parameters.Add(new("adapter_proj.conv_B.weight", ProjectionPart, W2));
        parameters.Add(new("adapter_proj.conv_B.bias", ProjectionPart, B2));
        parameters.Add(new("adapter_modality_embedding.weight", ModalityPart, ModalityEmbedding));
        Parameters = parameters;
    }

    public string Design => DesignName;
    public PluginManifest Manifest { get; }

    /// <summary>LaVIN's: [BOS] "Image: " [image] prompt, or [BOS] "Image: N/A" prompt for text routed through the plug-in.</summary>
    public static PromptLayout LaVinLayout { get; } = PromptLayout.Leading(ImagePrefix, TextOnlyPrefix);

    public PromptLayout Layout => LaVinLayout;
    public DecoderModel Base { get; }

    /// <summary>The front end that encodes images given as pixels; null when only precomputed features are used.</summary>
    public IVisionFrontEnd? Vision { get; }

    /// <summary>One adapter per LLM layer.</summary>
    public IReadOnlyList<RoutedRepAdapter> LlmAdapters { get; }

    /// <summary>One adapter per ViT block with a <see cref="MmaClipFrontEnd"/>; none with a parameter-free front end.</summary>
    public IReadOnlyList<RoutedRepAdapter> VisionAdapters { get; }

    /// <summary>AdapterMLP: W_1 [128, d_v], b_1 [128], W_2 [d, 128], b_2 [d].</summary>
    public Tensor W1 { get; }
    public Tensor B1 { get; }
    public Tensor W2 { get; }
    public Tensor B2 { get; }

    /// <summary>E_mod [2, d]: row 0 for text-only, row 1 with an image.</summary>
    public Tensor ModalityEmbedding { get; }

    public IReadOnlyList<PluginParameter> Parameters { get; }

    /// <summary>MMA's adapters act on text too (LaVIN routes text through them), so text can be routed here.</summary>
    public bool CanRouteText => true;

    public bool CanEncodePixels => Vision is not null;

    /// <summary>While true the adapters' dropout is active (training); false (the default) is inference.</summary>
    public bool Training { get; set; }

    /// <summary>
    /// Restarts the adapters' dropout masks from <paramref name="seed"/>: a trainer seeds them per example, so that a run
    /// resumed from a checkpoint draws exactly the masks the uninterrupted run would have drawn.
    /// </summary>
    public void SeedDropout(int seed) => _dropout = new Random(seed);

    /// <summary>LaVIN's τ: 10 for its 7B base (d = 4096), 5 for the others.</summary>
    public static float DefaultTemperature(int hiddenSize) => hiddenSize == 4096 ? 10f : 5f;

    /// <summary>An untrained MMA for <paramref name="baseModel"/> and <paramref name="vision"/>, initialised as LaVIN is.</summary>
    public static Mma Create(DecoderModel baseModel, IVisionFrontEnd vision, MmaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        ArgumentNullException.ThrowIfNull(vision);
        options ??= new MmaOptions();
        int d = baseModel.Config.HiddenSize, dv = vision.FeatureWidth, layers = baseModel.Config.NumLayers;
        int visionBlocks = vision is MmaClipFrontEnd clip ? clip.Tower.Blocks.Count : 0;
        float tau = options.Temperature ?? DefaultTemperature(d);
        var shape = new RepAdapterShape(options.AdapterRank, options.AdapterGroups, tau, options.AdapterScale, options.AdapterDropout);
        shape.Check(d, "the base's hidden size", message => new ArgumentException(message, nameof(options)));
        if (visionBlocks > 0) shape.Check(dv, "the vision width", message => new ArgumentException(message, nameof(options)));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.ProjectionWidth);

        var random = new Random(options.Seed);
        var llmAdapters = new RoutedRepAdapter[layers];
        for (int i = 0; i < layers; i++) llmAdapters[i] = RoutedRepAdapter.Create(d, shape, random);
        var visionAdapters = new RoutedRepAdapter[visionBlocks];
        for (int i = 0; i < visionBlocks; i++) visionAdapters[i] = RoutedRepAdapter.Create(dv, shape, random);
        Tensor[] projection =
        [
            MmaInit.XavierUniform(random, options.ProjectionWidth, dv), Tensor.Parameter(new float[options.ProjectionWidth], options.ProjectionWidth),
            MmaInit.XavierUniform(random, d, options.ProjectionWidth), Tensor.Parameter(new float[d], d),
        ];
        var modality = MmaInit.Normal(random, 2, d);

        var manifest = new PluginManifest
        {
            Design = DesignName,
            HyperParameters = new JsonObject
            {
                ["hidden_size"] = d,
                ["vision_width"] = dv,
                ["vision_tokens"] = vision.TokensPerImage,
                ["vision_blocks"] = visionBlocks,
                ["adapter_rank"] = shape.Rank,
                ["adapter_groups"] = shape.Groups,
                ["adapter_scale"] = shape.Scale,
                ["adapter_dropout"] = shape.Dropout,
                ["temperature"] = shape.Temperature,
                ["projection_width"] = options.ProjectionWidth,
                ["projection_activation"] = "silu",
                ["modality_tokens"] = 2,
                ["image_prefix"] = ImagePrefix,
                ["text_only_prefix"] = TextOnlyPrefix,
                ["seed"] = options.Seed,
                ["recipe"] = new JsonObject
                {
                    ["optimizer"] = "adamw",
                    ["betas"] = new JsonArray(0.9, 0.95),
                    ["weight_decay"] = 0.02,
                    ["weight_decay_on_biases_and_norms"] = false,
                    ["learning_rate"] = "9e-3 * batch / 256",
                    ["warmup_epochs"] = 2,
                    ["schedule"] = "cosine",
                    ["epochs"] = 20,
                    ["max_length"] = 512,
                    ["mix"] = "text-only and image-text samples",
                },
            },
            Base = BaseDescription.Of(baseModel),
            Vision = VisionDescription.Of(vision),
            Training = new JsonObject
            {
                ["state"] = "untrained",
                ["initialisation"] = "adapters: A xavier_uniform, B and D and biases zero, router nn.Linear default; adapter_proj xavier_uniform, zero biases; modality embedding N(0, 1)",
                ["seed"] = options.Seed,
            },
        };
        return new Mma(baseModel, vision, manifest, llmAdapters, visionAdapters, projection, modality, options.Seed);
    }

    /// <summary>The tensors an MMA with this manifest holds, with their shapes.</summary>
    public static IReadOnlyDictionary<string, int[]> ExpectedShapes(PluginManifest manifest, string file)
    {
        var (shape, dv, visionBlocks, projectionWidth) = ReadHyperParameters(manifest, file);
        int d = manifest.Base.HiddenSize;
        var shapes = new Dictionary<string, int[]>(StringComparer.Ordinal);
        for (int i = 0; i < manifest.Base.NumLayers; i++)
            foreach (var (suffix, s) in RoutedRepAdapter.Shapes(d, shape)) shapes[$"{LlmPrefix}{i}.adapter_attn.{suffix}"] = s;
        for (int i = 0; i < visionBlocks; i++)
            foreach (var (suffix, s) in RoutedRepAdapter.Shapes(dv, shape)) shapes[$"{VisionPrefix}{i}.adapter_attn.{suffix}"] = s;
        shapes["adapter_proj.conv_A.weight"] = [projectionWidth, dv];
        shapes["adapter_proj.conv_A.bias"] = [projectionWidth];
        shapes["adapter_proj.conv_B.weight"] = [d, projectionWidth];
        shapes["adapter_proj.conv_B.bias"] = [d];
        shapes["adapter_modality_embedding.weight"] = [2, d];
        return shapes;
    }

    /// <summary>An MMA from a checked manifest and tensors (see <see cref="PluginFile.Load"/>).</summary>
    internal static Mma Restore(PluginManifest manifest, IReadOnlyDictionary<string, Tensor> tensors, DecoderModel baseModel, IVisionFrontEnd? vision, string file)
    {
        var (shape, _, visionBlocks, _) = ReadHyperParameters(manifest, file);
        if (vision is not null && visionBlocks > 0 && (vision is not MmaClipFrontEnd clip || clip.Tower.Blocks.Count != visionBlocks))
            throw new PluginFormatException(file, $"says the plug-in adapts {visionBlocks} ViT blocks, but the front end given is not a CLIP tower with that many", "hyper_parameters.vision_blocks");
        RoutedRepAdapter Adapter(string prefix) => new(
            tensors[prefix + "conv_A.weight"], tensors[prefix + "conv_A.bias"], tensors[prefix + "conv_B.weight"], tensors[prefix + "conv_B.bias"],
            tensors[prefix + "conv_D.weight"], tensors[prefix + "conv_D.bias"], tensors[prefix + "expert_weights.weight"], tensors[prefix + "expert_weights.bias"], shape);
        var llm = Enumerable.Range(0, manifest.Base.NumLayers).Select(i => Adapter($"{LlmPrefix}{i}.adapter_attn.")).ToArray();
        var visual = Enumerable.Range(0, visionBlocks).Select(i => Adapter($"{VisionPrefix}{i}.adapter_attn.")).ToArray();
        Tensor[] projection = [tensors["adapter_proj.conv_A.weight"], tensors["adapter_proj.conv_A.bias"], tensors["adapter_proj.conv_B.weight"], tensors["adapter_proj.conv_B.bias"]];
        return new Mma(baseModel, vision, manifest, llm, visual, projection, tensors["adapter_modality_embedding.weight"], manifest.HyperParameter<int>("seed", file));
    }

    private static (RepAdapterShape Shape, int VisionWidth, int VisionBlocks, int ProjectionWidth) ReadHyperParameters(PluginManifest manifest, string file)
    {
        int Positive(string name, bool zeroAllowed = false)
        {
            int value = manifest.HyperParameter<int>(name, file);
            return value > 0 || (zeroAllowed && value == 0) ? value : throw new PluginFormatException(file, $"is {value}, not a positive integer", $"hyper_parameters.{name}");
        }
        var shape = new RepAdapterShape(Positive("adapter_rank"), Positive("adapter_groups"), manifest.HyperParameter<float>("temperature", file),
            manifest.HyperParameter<float>("adapter_scale", file), manifest.HyperParameter<float>("adapter_dropout", file));
        int dv = Positive("vision_width"), visionBlocks = Positive("vision_blocks", zeroAllowed: true);
        shape.Check(manifest.Base.HiddenSize, "the base's hidden size", message => new PluginFormatException(file, message, "hyper_parameters"));
        if (visionBlocks > 0) shape.Check(dv, "the vision width", message => new PluginFormatException(file, message, "hyper_parameters"));
        return (shape, dv, visionBlocks, Positive("projection_width"));
    }

    /// <summary>Z_v [N, d_v] -> H_v [N, d] = W_2 · SiLU(W_1 · Z_v + b_1) + b_2 (AdapterMLP).</summary>
    public Tensor Project(Tensor features)
    {
        if (features.Rank != 2 || features.Shape[1] != W1.Shape[1])
            throw new ArgumentException($"MMA: image features must be [N, {W1.Shape[1]}], got {features.ShapeString}", nameof(features));
        return Ops.Linear(Ops.Silu(Ops.Linear(features, W1, B1)), W2, B2);
    }

    /// <summary>
    /// [m] then the prompt's parts in order, each image replaced by its n projected class tokens; the hooks run the
    /// routed adapters in every layer and hide position 0 from the later tokens.
    /// </summary>
    public PreparedInput Prepare(MultimodalPrompt prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var features = new Queue<Tensor>(ImageFeatures(prompt));
        var modality = Ops.Embedding(ModalityEmbedding, [prompt.HasImage ? 1 : 0], 1);
        var (embeddings, imageMask, promptTargets) = prompt.Lay(ids => Base.Embed(ids), _ => Project(features.Dequeue()));
        // The modality token predicts the prompt's first token only when that token is an assistant one.
        int first = prompt.Parts[0] is TextPart { IsAssistant: true } text ? text.Ids[0] : MultimodalPrompt.IgnoreTarget;
        return new PreparedInput(Ops.Concat([modality, embeddings], 0), [false, .. imageMask], [first, .. promptTargets], new MmaHooks(this));
    }

    /// <summary>Z_v [n, d_v] of each image in prompt order: pixel images through the tower (with the ViT adapters) in one batch.</summary>
    private List<Tensor> ImageFeatures(MultimodalPrompt prompt)
    {
        var images = prompt.Parts.OfType<ImagePart>().ToList();
        var pixels = images.Where(i => i.Image is not null).Select(i => i.Image!).ToList();
        Tensor? encoded = null;
        if (pixels.Count > 0)
        {
            encoded = Vision switch
            {
                MmaClipFrontEnd clip => clip.Encode(pixels, VisionAdapters.Count > 0 ? AdaptVisionBlock : null),
                null => throw new InvalidOperationException("MMA: an image given as pixels needs a vision front end; load the plug-in with one, or give precomputed features"),
                var other => Ops.Concat(pixels.Select(p => other.Encode(p).Reshape(1, other.TokensPerImage, other.FeatureWidth)).ToArray(), 0),
            };
        }
        var features = new List<Tensor>(images.Count);
        int next = 0;
        foreach (var image in images)
        {
            if (image.Features is { } given)
            {
                if (VisionAdapters.Count > 0)
                    throw new ArgumentException("MMA adapts the ViT blocks themselves, so precomputed features would skip its vision adapters: give the image as pixels");
                features.Add(given);
                continue;
            }
            var rows = Ops.Slice(encoded!, 0, next++, 1);
            features.Add(rows.Reshape(rows.Shape[1], rows.Shape[2]));
        }
        return features;
    }

    /// <summary>ViT block <paramref name="block"/>'s attention input [B, T, d_v] through its adapter, each image routed by its own class token.</summary>
    private Tensor AdaptVisionBlock(int block, Tensor normedInput) => VisionAdapters[block].ForwardEach(normedInput, Training, _dropout);

    /// <summary>
    /// One request's hooks: the mask hiding the modality token, and the routed adapter before attention in every layer.
    /// A layer's routing weights come from position 0, so they are computed when a chunk holds it (the prefill) and
    /// kept for the cached decode steps that follow.
    /// </summary>
    private sealed class MmaHooks(Mma plugin) : DecoderHooks
    {
        private readonly Tensor?[] _routes = new Tensor?[plugin.LlmAdapters.Count];

        /// <summary>Causal, and key 0 (the modality token) hidden from every query after position 0.</summary>
        public override AttentionMask MaskFor(int queryOffset, int queries)
        {
            int keys = queryOffset + queries;
            var allowed = new bool[queries * keys];
            Array.Fill(allowed, true);
            for (int i = 0; i < queries; i++)
                if (queryOffset + i > 0) allowed[i * keys] = false;
            return AttentionMask.FromAllowed(allowed, 1, queries, keys, causal: true, queryOffset);
        }

        public override Tensor BeforeAttention(int layer, Tensor normedInput, ReadOnlySpan<int> positions)
        {
            if (positions.IsEmpty) return normedInput;
            var adapter = plugin.LlmAdapters[layer];
            if (positions[0] == 0) _routes[layer] = adapter.Route(Ops.Slice(normedInput, 0, 0, 1));
            var route = _routes[layer] ?? throw new InvalidOperationException(
                $"MMA: layer {layer}'s router reads position 0 (the modality token), but this chunk starts at position {positions[0]} and no earlier chunk of this request held it; run the prefill with these hooks first");
            return adapter.Forward(normedInput, route, plugin.Training, plugin._dropout);
        }
    }
}

/// <summary>An adapter's bottleneck r, the groups of its up-projections, the router's τ, the output scale s and the dropout.</summary>
public sealed record RepAdapterShape(int Rank, int Groups, float Temperature, float Scale, float Dropout)
{
    /// <summary>Refuses a shape the adapter cannot have on a stream of <paramref name="width"/>, through <paramref name="error"/>.</summary>
    internal void Check(int width, string what, Func<string, Exception> error)
    {
        if (Rank <= 0 || Groups <= 0) throw error($"adapter rank {Rank} and groups {Groups} must be positive");
        if (Rank % Groups != 0) throw error($"adapter rank {Rank} is not a multiple of its {Groups} groups");
        if (width % Groups != 0) throw error($"{what} {width} is not a multiple of the adapter's {Groups} groups");
        if (!(Temperature > 0) || !float.IsFinite(Temperature)) throw error($"router temperature {Temperature} must be positive and finite");
        if (!float.IsFinite(Scale)) throw error($"adapter scale {Scale} must be finite");
        if (!(Dropout >= 0 && Dropout < 1)) throw error($"adapter dropout {Dropout} must be in [0, 1)");
    }
}

/// <summary>
/// LaVIN's RepAdapter_Router on a stream of width W: X [T, W] -> X + s · (w_0 · (B·H + b) + w_1 · (D·H + d')),
/// H = Dropout(A·X + a), w = softmax((W_r · X[0] + b_r) / τ). A [r, W]; B, D [W, r/G] are 1x1 convolutions with G groups
/// (output rows of group g read H's columns g·r/G .. (g+1)·r/G); weights stored as conv1d's without the kernel axis.
/// </summary>
public sealed class RoutedRepAdapter
{
    private readonly Tensor _onesColumn;

    public RoutedRepAdapter(Tensor a, Tensor aBias, Tensor b, Tensor bBias, Tensor d, Tensor dBias, Tensor router, Tensor routerBias, RepAdapterShape shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (a.Rank != 2) throw new ArgumentException($"adapter tensor conv_A.weight must be [r, W], got {a.ShapeString}", nameof(a));
        (A, ABias, B, BBias, D, DBias, Router, RouterBias, Shape) = (a, aBias, b, bBias, d, dBias, router, routerBias, shape);
        Width = a.Shape[1];
        foreach (var (suffix, expected) in Shapes(Width, shape))
        {
            var tensor = Named().First(p => p.Suffix == suffix).Tensor;
            if (!tensor.Shape.AsSpan().SequenceEqual(expected))
                throw new ArgumentException($"adapter tensor {suffix} must be [{string.Join(", ", expected)}], got {tensor.ShapeString}");
        }
        var ones = new float[Width];
        Array.Fill(ones, 1f);
        _onesColumn = Tensor.FromArray(ones, Width, 1);
    }

    public Tensor A { get; }
    public Tensor ABias { get; }
    public Tensor B { get; }
    public Tensor BBias { get; }
    public Tensor D { get; }
    public Tensor DBias { get; }
    public Tensor Router { get; }
    public Tensor RouterBias { get; }
    public RepAdapterShape Shape { get; }
    public int Width { get; }

    /// <summary>A Xavier-uniform, every other adapter tensor zero (the identity); the router as nn.Linear initialises it.</summary>
    public static RoutedRepAdapter Create(int width, RepAdapterShape shape, Random random)
    {
        int r = shape.Rank, perGroup = shape.Rank / shape.Groups;
        float routerBound = 1f / MathF.Sqrt(width);
        return new(MmaInit.XavierUniform(random, r, width), Tensor.Parameter(new float[r], r),
            Tensor.Parameter(new float[width * perGroup], width, perGroup), Tensor.Parameter(new float[width], width),
            Tensor.Parameter(new float[width * perGroup], width, perGroup), Tensor.Parameter(new float[width], width),
            MmaInit.Uniform(random, routerBound, 2, width), MmaInit.Uniform(random, routerBound, 2), shape);
    }

    /// <summary>The tensors by LaVIN's names (conv_A, conv_B, conv_D, expert_weights).</summary>
    public IEnumerable<(string Suffix, Tensor Tensor)> Named()
    {
        yield return ("conv_A.weight", A);
        yield return ("conv_A.bias", ABias);
        yield return ("conv_B.weight", B);
        yield return ("conv_B.bias", BBias);
        yield return ("conv_D.weight", D);
        yield return ("conv_D.bias", DBias);
        yield return ("expert_weights.weight", Router);
        yield return ("expert_weights.bias", RouterBias);
    }

    public static IEnumerable<(string Suffix, int[] Shape)> Shapes(int width, RepAdapterShape shape)
    {
        int r = shape.Rank, perGroup = shape.Rank / shape.Groups;
        yield return ("conv_A.weight", [r, width]);
        yield return ("conv_A.bias", [r]);
        yield return ("conv_B.weight", [width, perGroup]);
        yield return ("conv_B.bias", [width]);
        yield return ("conv_D.weight", [width, perGroup]);
        yield return ("conv_D.bias", [width]);
        yield return ("expert_weights.weight", [2, width]);
        yield return ("expert_weights.bias", [2]);
    }

    /// <summary>x_0 [1, W] (the modality token, or an image's class token) -> w [1, 2] = softmax((W_r · x_0 + b_r) / τ).</summary>
    public Tensor Route(Tensor first) => Ops.Softmax(Ops.Scale(Ops.Linear(first, Router, RouterBias), 1f / Shape.Temperature));

    /// <summary>X [T, W] with routing weights w [1, 2] -> X + s · (w_0 · (B·H + b) + w_1 · (D·H + d')).</summary>
    public Tensor Forward(Tensor x, Tensor route, bool training, Random dropout)
    {
        if (x.Rank != 2 || x.Shape[1] != Width) throw new ArgumentException($"adapter input must be [T, {Width}], got {x.ShapeString}", nameof(x));
        var h = Ops.Dropout(Ops.Linear(x, A, ABias), Shape.Dropout, dropout, training);
        var mixed = Ops.Add(Ops.Mul(Grouped(h, B, BBias), RouteRow(route, 0)), Ops.Mul(Grouped(h, D, DBias), RouteRow(route, 1)));
        return Ops.Add(x, Ops.Scale(mixed, Shape.Scale));
    }

    /// <summary>
    /// X [B, T, W] -> [B, T, W]: each sequence through <see cref="Forward"/> routed by its own row 0 (a ViT's class token;
    /// LaVIN's CLIP code routes every image by image 0's).
    /// </summary>
    public Tensor ForwardEach(Tensor x, bool training, Random dropout)
    {
        if (x.Rank != 3 || x.Shape[2] != Width) throw new ArgumentException($"adapter input must be [B, T, {Width}], got {x.ShapeString}", nameof(x));
        int batch = x.Shape[0], tokens = x.Shape[1];
        var sequences = new Tensor[batch];
        for (int b = 0; b < batch; b++)
        {
            var sequence = Ops.Slice(x, 0, b, 1).Reshape(tokens, Width);
            sequences[b] = Forward(sequence, Route(Ops.Slice(sequence, 0, 0, 1)), training, dropout);
        }
        return (batch == 1 ? sequences[0] : Ops.Concat(sequences, 0)).Reshape(batch, tokens, Width);
    }

    /// <summary>H [T, r] -> [T, W]: output rows of group g from H's columns of group g (a 1x1 conv1d with G groups).</summary>
    private Tensor Grouped(Tensor h, Tensor weight, Tensor bias)
    {
        int groups = Shape.Groups, inPerGroup = Shape.Rank / groups, outPerGroup = Width / groups;
        if (groups == 1) return Ops.Linear(h, weight, bias);
        var outputs = new Tensor[groups];
        for (int g = 0; g < groups; g++)
            outputs[g] = Ops.Linear(Ops.Slice(h, 1, g * inPerGroup, inPerGroup), Ops.Slice(weight, 0, g * outPerGroup, outPerGroup), Ops.Slice(bias, 0, g * outPerGroup, outPerGroup));
        return Ops.Concat(outputs, 1);
    }

    /// <summary>w_k [1, 2] -> [W], every element w_k (an outer product with ones, so the gradient reaches the router).</summary>
    private Tensor RouteRow(Tensor route, int k) => Ops.Linear(Ops.Slice(route, 1, k, 1), _onesColumn).Reshape(Width);
}

/// <summary>
/// MMA's vision front end: a frozen CLIP tower, its class token after every (L_v/n)-th block -> [n, d_v] (LaVIN: n = 6 of
/// 24 blocks; no post-LayerNorm, no projection). A tower whose depth 6 does not divide takes the largest n ≤ 6 that does
/// (3 on a 3-block test tower), recorded in plugin.json. The plug-in runs it with its ViT adapters in the blocks.
/// Images are preprocessed as CLIP's (resize, centre crop; LaVIN does not pad to square).
/// </summary>
public sealed class MmaClipFrontEnd : IVisionFrontEnd, IDisposable
{
    public const string KindName = "clip-class-tokens";
    private string? _fingerprint;
    private bool _ownsTower;

    public MmaClipFrontEnd(IVisionEncoder tower, ImageProcessorConfig preprocessor, int? classTokens = null)
    {
        ArgumentNullException.ThrowIfNull(tower);
        ArgumentNullException.ThrowIfNull(preprocessor);
        if (!tower.HasClassToken) throw new ArgumentException($"MMA reads class tokens, so it needs a CLIP tower; a {tower.Config.Kind} tower has none", nameof(tower));
        int layers = tower.Blocks.Count;
        ClassTokens = classTokens ?? DefaultClassTokens(layers);
        if (ClassTokens <= 0 || layers % ClassTokens != 0)
            throw new ArgumentException($"{ClassTokens} class tokens cannot be taken after every (L/n)-th of {layers} blocks", nameof(classTokens));
        Tower = tower;
        Preprocessor = preprocessor;
        Selector = VisionFeatureSelector.ClassTokensEvery(ClassTokens);
    }

    /// <summary>
    /// Opens the CLIP tower in <paramref name="folder"/> with its preprocessing (the folder's preprocessor_config.json or
    /// CLIP's defaults at its image size); the front end owns the tower then and disposes it.
    /// </summary>
    public static MmaClipFrontEnd Load(string folder, int? classTokens = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"vision tower folder '{folder}' does not exist");
        var tower = VisionEncoder.Load(folder);
        try
        {
            string configPath = Path.Combine(folder, VisionTowerConfig.FileName);
            if (!tower.HasClassToken)
                throw new VisionModelException(configPath, "model_type", $"MMA reads class tokens, so it needs a CLIP tower; a {tower.Config.Kind} tower has none");
            int layers = tower.Blocks.Count, n = classTokens ?? DefaultClassTokens(layers);
            if (n <= 0 || layers % n != 0)
                throw new VisionModelException(configPath, "num_hidden_layers", $"{n} class tokens cannot be taken after every (L/n)-th of {layers} blocks (n must divide {layers})");
            return new MmaClipFrontEnd(tower, VisionTowerFrontEnd.CheckedPreprocessor(tower.Config, folder, padToSquare: false), n) { _ownsTower = true, Folder = folder };
        }
        catch
        {
            tower.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Re-opens the tower a plug-in was made with, the class-token count taken from plugin.json's vision summary
    /// (<paramref name="file"/> names it in errors); whether it is the same tower is then <see cref="PluginFile.Load"/>'s check.
    /// </summary>
    public static MmaClipFrontEnd Open(string folder, VisionDescription expected, string file)
    {
        ArgumentNullException.ThrowIfNull(expected);
        if (!expected.Summary.TryGetValue("class_tokens", out var text))
            throw new PluginFormatException(file, "is missing", "vision.summary.class_tokens");
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count <= 0)
            throw new PluginFormatException(file, $"is '{text}', not a positive integer", "vision.summary.class_tokens");
        return Load(folder, count);
    }

    public IVisionEncoder Tower { get; }

    /// <summary>The CLIP folder it was loaded from; null when it was built around a tower in memory.</summary>
    public string? Folder { get; private init; }

    public ImageProcessorConfig Preprocessor { get; }
    public VisionFeatureSelector Selector { get; }
    public int ClassTokens { get; }
    public string Kind => KindName;
    public int FeatureWidth => Tower.Config.Width;
    public int TokensPerImage => ClassTokens;

    /// <summary>6 (LaVIN's) when it divides the depth, else the largest count ≤ 6 that does.</summary>
    public static int DefaultClassTokens(int layers)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        for (int n = 6; n > 1; n--)
            if (layers % n == 0) return n;
        return 1;
    }

    public IReadOnlyDictionary<string, string> Summary => new Dictionary<string, string>
    {
        ["tower"] = Tower.Config.Kind.ToString().ToLowerInvariant(),
        ["image_size"] = Tower.Config.ImageSize.ToString(CultureInfo.InvariantCulture),
        ["patch_size"] = Tower.Config.PatchSize.ToString(CultureInfo.InvariantCulture),
        ["layers"] = Tower.Blocks.Count.ToString(CultureInfo.InvariantCulture),
        ["class_tokens"] = ClassTokens.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>SHA-256 over the selection, the preprocessing and every tower tensor (computed once).</summary>
    public string Fingerprint => _fingerprint ??= ComputeFingerprint();

    /// <summary>[n, d_v] of one image through the frozen tower alone (no adapters); nothing recorded.</summary>
    public Tensor Encode(RgbImage image)
    {
        using var _ = Autograd.NoGrad();
        var features = Encode([image], null);
        return features.Reshape(ClassTokens, FeatureWidth);
    }

    /// <summary>
    /// Images -> [B, n, d_v], with <paramref name="adapters"/> on each block's attention input (recorded for autograd when
    /// they are trainable). The tower's hook is set for this call only, so calls must not overlap on one tower.
    /// </summary>
    public Tensor Encode(IReadOnlyList<RgbImage> images, AttentionInputHook? adapters)
    {
        var pixels = ImagePreprocessor.ToBatch(images, Preprocessor);
        var previous = Tower.AttentionInputHook;
        Tower.AttentionInputHook = adapters;
        try
        {
            return Selector.Select(Tower.Forward(pixels));
        }
        finally
        {
            Tower.AttentionInputHook = previous;
        }
    }

    /// <summary>Disposes the tower when <see cref="Load"/> opened it; a tower given to the constructor stays the caller's.</summary>
    public void Dispose()
    {
        if (_ownsTower) Tower.Dispose();
        _ownsTower = false;
    }

    private string ComputeFingerprint()
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(string.Join(",", Summary.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}")) + "\n"));
        hash.AppendData(Encoding.UTF8.GetBytes(VisionTowerFrontEnd.PreprocessingText(Preprocessor) + "\n"));
        foreach (var tensor in Tower.Parameters)
        {
            hash.AppendData(Encoding.UTF8.GetBytes($"{tensor.DType} {tensor.ShapeString}\n"));
            hash.AppendData(tensor.DType == DType.F32 ? MemoryMarshal.AsBytes(tensor.Span) : MemoryMarshal.AsBytes(tensor.HalfBits));
        }
        return "sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}

/// <summary>The initialisations LaVIN uses, as PyTorch's nn.init defines them.</summary>
internal static class MmaInit
{
    /// <summary>xavier_uniform_ on [fanOut, fanIn]: U(-√(6 / (fan_in + fan_out)), +√(6 / (fan_in + fan_out))).</summary>
    public static Tensor XavierUniform(Random random, int fanOut, int fanIn) =>
        Uniform(random, MathF.Sqrt(6f / (fanIn + fanOut)), fanOut, fanIn);

    public static Tensor Uniform(Random random, float bound, params int[] shape)
    {
        var values = new float[Tensor.ShapeLength(shape)];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * bound;
        return Tensor.Parameter(values, shape);
    }

    /// <summary>N(0, 1) (nn.Embedding's default), by Box-Muller.</summary>
    public static Tensor Normal(Random random, params int[] shape)
    {
        var values = new float[Tensor.ShapeLength(shape)];
        for (int i = 0; i < values.Length; i++)
            values[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        return Tensor.Parameter(values, shape);
    }
}
