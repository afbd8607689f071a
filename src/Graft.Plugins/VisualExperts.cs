using System.Globalization;
using System.Text.Json.Nodes;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Vision;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>How <see cref="VisualExperts.Create"/> makes an untrained Visual Experts plug-in.</summary>
public sealed record VisualExpertsOptions
{
    /// <summary>Seed of the patch embedding's, mlp1's and the markers' initialisation (the experts are copies).</summary>
    public int Seed { get; init; }

    /// <summary>p, the patch embedding's kernel and stride (Mono-InternVL: 14).</summary>
    public int PatchSize { get; init; } = 14;

    /// <summary>Tile side in pixels, a multiple of 2p; null scales it to the base (see <see cref="VisualExperts.DefaultImageSize"/>).</summary>
    public int? ImageSize { get; init; }

    /// <summary>d_v, the patch embedding's width; null takes the base's hidden size (Mono-InternVL-2B: d_v = d = 2048).</summary>
    public int? VisionWidth { get; init; }

    /// <summary>max_num of InternVL's dynamic tiling (load_image's default, 12).</summary>
    public int MaxTiles { get; init; } = 12;

    /// <summary>
    /// Mono-InternVL-1.5's visual attention experts: a trainable copy of every layer's attention projections that image
    /// tokens use (off by default, as in Mono-InternVL; S1.3 alignment then trains them instead of the base's attention).
    /// </summary>
    public bool AttentionExperts { get; init; }
}

/// <summary>
/// Visual Experts: Mono-InternVL (Luo et al., "Mono-InternVL: Pushing the Boundaries of Monolithic Multimodal Large
/// Language Models with Endogenous Visual Pre-training", arXiv 2410.08202), docs/designs.md section 5.
/// </summary>
/// <remarks>
/// No vision encoder. Each 448 x 448 tile of InternVL's dynamic tiling (i x j tiles, i·j &lt;= max_num, closest to the
/// image's aspect ratio, plus a thumbnail when more than one; ImageNet mean/std) goes through the patch embedding
/// (section 3.1, eq. 1):
///     x_v = PatchEmbed(I) + PE,   PatchEmbed = Conv2d(3, d_v, k = p, stride = p), PE learned, bicubic to the grid,
/// then pixel shuffle 0.5 ([h, w, d_v] -> [h/2, w/2, 4 d_v]) and
///     mlp1 = LayerNorm(4 d_v) -> Linear(4 d_v, d) -> GELU -> Linear(d, d)     (256 tokens per 448 tile).
/// All of this is <see cref="PatchEmbeddingFrontEnd"/>, trainable here and owned by the plug-in.
/// Prompt: `&lt;img&gt;` + `&lt;IMG_CONTEXT&gt;` x (tokens per tile · tiles) + `&lt;/img&gt;`, then the caller's text, which
/// in InternVL's template begins with the "\n" that followed `&lt;image&gt;`. The IMG_CONTEXT positions hold the visual
/// tokens (InternVL overwrites their embeddings: input_embeds[selected] * 0 + vit_embeds), so only `&lt;img&gt;` and
/// `&lt;/img&gt;` need embedding rows; they are the plug-in's own (the base vocabulary is never resized).
/// Multimodal mixture-of-experts, in every layer (eq. 2–3), attention shared, m_i = (token i is IMG_CONTEXT):
///     n = RMSNorm(h),   out = h + FFN_t(n) (1 - m) + FFN_ve(n) m,
/// FFN_t the frozen base FFN, FFN_ve of its shape, initialised as a copy of it (widened to F32), trainable; no gate and
/// no balancing loss. As LMDeploy does, the image rows are gathered and FFN_ve runs on them only, the base FFN runs on
/// the text rows only, and both are scattered back: neither expert is computed densely.
/// Visual attention experts (optional; Mono-InternVL-1.5), in every layer: each token's projections come from the expert
/// copy when it is an image token and from the frozen base otherwise, and one attention runs over all tokens:
///     q_i = W_q^{m_i} n_i,  k_i = W_k^{m_i} n_i,  v_i = W_v^{m_i} n_i   (biases likewise),  RoPE on q and k as in the base,
///     a = softmax(q k^T / sqrt(d_h) + causal) v,   o_i = W_o^{m_i} a_i,   W^0 the frozen base's, W^1 the expert's,
/// W^1 initialised as a copy of W^0 (widened to F32), trainable. Rows are gathered by modality for each projection, as
/// for the FFN. Keys and values of image tokens enter the KV cache as computed, so a cached decode equals recomputation.
/// Training (EViP, section 3.2): S1.1 concept learning and S1.2 semantic learning train the patch embedding, mlp1 and
/// FFN_ve with the LLM frozen; S1.3 alignment in the paper also unfreezes attention, which would change the base: Graft
/// trains the visual attention experts there instead when they are on (else S1.3 trains the same parts as S1.2).
/// Text-only: a request without an image uses FFN_t everywhere, i.e. it is the base by construction, and the host
/// routes it to the base alone anyway (<see cref="CanRouteText"/> is false).
/// </remarks>
public sealed class VisualExperts : IPlugin
{
    public const string DesignName = "visual-experts";
    public const string PatchEmbeddingPart = "patch_embedding";
    public const string Mlp1Part = "mlp1";
    public const string MarkersPart = "markers";
    public const string ExpertsPart = "ffn_ve";
    public const string AttentionExpertsPart = "attn_ve";

    private const string Embeddings = "vision_model.embeddings.";
    private const string MarkersName = "img_markers.embedding";
    private const float Mlp1NormEps = 1e-5f; // nn.LayerNorm's default, as InternVL builds mlp1
    private const float MarkerInitStd = 0.02f; // transformers' initializer_range for new token rows

    private VisualExperts(DecoderModel baseModel, PluginManifest manifest, PatchEmbeddingFrontEnd frontEnd, Tensor markers,
        ExpertFeedForward[] experts, ExpertAttention[]? attentionExperts, IReadOnlyList<PluginParameter> parameters, string file)
    {
        Base = baseModel;
        Manifest = manifest;
        FrontEnd = frontEnd;
        Markers = markers;
        Experts = experts;
        AttentionExperts = attentionExperts;
        Parameters = parameters;
        int imageSize = manifest.HyperParameter<int>("image_size", file);
        Tiling = new TilingOptions { MaxTiles = manifest.HyperParameter<int>("max_tiles", file), ImageSize = imageSize, UseThumbnail = true };
        int grid = imageSize / frontEnd.PatchSize;
        TokensPerTile = grid / 2 * (grid / 2);
    }

    public string Design => DesignName;
    public PluginManifest Manifest { get; }

    /// <summary>InternVL's: each image at its `&lt;image&gt;` placeholder, which <see cref="Prepare"/> fills with `&lt;img&gt;`, the visual tokens and `&lt;/img&gt;`.</summary>
    public PromptLayout Layout => PromptLayout.AtPlaceholders;
    public DecoderModel Base { get; }
    public IReadOnlyList<PluginParameter> Parameters { get; }

    /// <summary>Patch embedding + pixel shuffle + mlp1, trainable.</summary>
    public PatchEmbeddingFrontEnd FrontEnd { get; }

    /// <summary>[2, d]: the embeddings of `&lt;img&gt;` (row 0) and `&lt;/img&gt;` (row 1).</summary>
    public Tensor Markers { get; }

    /// <summary>FFN_ve of each layer.</summary>
    public IReadOnlyList<ExpertFeedForward> Experts { get; }

    /// <summary>The visual attention expert of each layer, or null when the plug-in has none (Mono-InternVL's default).</summary>
    public IReadOnlyList<ExpertAttention>? AttentionExperts { get; }

    public TilingOptions Tiling { get; }

    /// <summary>Visual tokens per tile: (image size / 2p)².</summary>
    public int TokensPerTile { get; }

    /// <summary>Text tokens go through the frozen FFN whatever the route, so there is nothing to route.</summary>
    public bool CanRouteText => false;

    /// <summary>Its own patch embedding turns pixels into image tokens.</summary>
    public bool CanEncodePixels => true;

    /// <summary>Tile side for a base of hidden size d: 448 (256 tokens per tile) from d = 1024, 224 from 256, else 56 (4 tokens).</summary>
    public static int DefaultImageSize(int hiddenSize) => hiddenSize >= 1024 ? 448 : hiddenSize >= 256 ? 224 : 56;

    /// <summary>
    /// An untrained plug-in for <paramref name="baseModel"/>: the patch embedding and mlp1 initialised as PyTorch and
    /// InternViT do (conv and linears U(-1/√fan_in, 1/√fan_in), position embedding N(0, 1), LayerNorm 1 and 0), markers
    /// N(0, 0.02²), and FFN_ve of every layer a copy of that layer's FFN.
    /// </summary>
    public static VisualExperts Create(DecoderModel baseModel, VisualExpertsOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        options ??= new VisualExpertsOptions();
        int d = baseModel.Config.HiddenSize, p = options.PatchSize;
        int imageSize = options.ImageSize ?? DefaultImageSize(d), dv = options.VisionWidth ?? d;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(p, nameof(options.PatchSize));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dv, nameof(options.VisionWidth));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxTiles, nameof(options.MaxTiles));
        if (imageSize <= 0 || imageSize % (2 * p) != 0)
            throw new ArgumentException($"image size {imageSize} must be a positive multiple of 2·patch = {2 * p} (pixel shuffle halves the patch grid)", nameof(options));
        int grid = imageSize / p;
        var random = new Random(options.Seed);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            [Embeddings + "patch_embedding.weight"] = Uniform(random, 3 * p * p, [dv, 3, p, p]),
            [Embeddings + "patch_embedding.bias"] = Uniform(random, 3 * p * p, [dv]),
            [Embeddings + "position_embedding"] = Normal(random, 1f, [1 + grid * grid, dv]),
            ["mlp1.0.weight"] = Tensor.Parameter(Enumerable.Repeat(1f, 4 * dv).ToArray(), 4 * dv),
            ["mlp1.0.bias"] = Tensor.Parameter(new float[4 * dv], 4 * dv),
            ["mlp1.1.weight"] = Uniform(random, 4 * dv, [d, 4 * dv]),
            ["mlp1.1.bias"] = Uniform(random, 4 * dv, [d]),
            ["mlp1.3.weight"] = Uniform(random, d, [d, d]),
            ["mlp1.3.bias"] = Uniform(random, d, [d]),
            [MarkersName] = Normal(random, MarkerInitStd, [2, d]),
        };
        bool ffnBias = baseModel.Weights.Layers[0].GateBias is not null;
        for (int i = 0; i < baseModel.Weights.Layers.Length; i++)
        {
            foreach (var (name, tensor) in ExpertFeedForward.CopyOf(baseModel.Weights.Layers[i]).Named(ExpertPrefix(i)))
                tensors[name] = tensor;
            if (options.AttentionExperts)
                foreach (var (name, tensor) in ExpertAttention.CopyOf(baseModel.Weights.Layers[i]).Named(AttentionPrefix(i)))
                    tensors[name] = tensor;
        }
        var config = baseModel.Config;
        var manifest = new PluginManifest
        {
            Design = DesignName,
            HyperParameters = new JsonObject
            {
                ["patch_size"] = p,
                ["image_size"] = imageSize,
                ["vision_width"] = dv,
                ["hidden_size"] = d,
                ["downsample_ratio"] = 0.5,
                ["tokens_per_tile"] = grid / 2 * (grid / 2),
                ["max_tiles"] = options.MaxTiles,
                ["use_thumbnail"] = true,
                ["image_mean_std"] = "imagenet",
                ["ffn_bias"] = ffnBias,
                ["attention_experts"] = options.AttentionExperts,
                ["qkv_bias"] = config.QkvBias,
                ["o_proj_bias"] = config.OutputBias,
                ["image_markers"] = "<img>, </img> (own embeddings); <IMG_CONTEXT> positions hold the visual tokens",
            },
            Base = BaseDescription.Of(baseModel),
            Vision = null,
            Training = new JsonObject
            {
                ["state"] = "untrained",
                ["initialisation"] = "patch conv and mlp1 linears U(-1/sqrt(fan_in), 1/sqrt(fan_in)); position embedding N(0, 1); "
                    + "mlp1 LayerNorm 1, 0; markers N(0, 0.02^2); ffn_ve = copy of each layer's FFN (F32)"
                    + (options.AttentionExperts ? "; attn_ve = copy of each layer's attention projections (F32)" : ""),
                ["seed"] = options.Seed,
                ["stages"] = new JsonArray(
                    Stage("S1.1 concept learning", "EViP: LLM frozen", false),
                    Stage("S1.2 semantic learning", "EViP: LLM frozen", false),
                    options.AttentionExperts
                        ? Stage("S1.3 alignment", "the paper unfreezes attention; Graft trains the visual attention experts instead (Mono-InternVL-1.5)", true)
                        : Stage("S1.3 alignment", "the paper also unfreezes attention; without attention experts the same parts train", false)),
                ["precision"] = "bf16, not fp16 (fp16 overflows, per the paper)",
            },
        };
        return Restore(manifest, tensors, baseModel, PluginManifest.FileName);
    }

    private static JsonObject Stage(string name, string note, bool attentionExperts) => new()
    {
        ["name"] = name,
        ["trains"] = attentionExperts
            ? new JsonArray(PatchEmbeddingPart, Mlp1Part, MarkersPart, ExpertsPart, AttentionExpertsPart)
            : new JsonArray(PatchEmbeddingPart, Mlp1Part, MarkersPart, ExpertsPart),
        ["note"] = note,
    };

    /// <summary>The tensors a plug-in with this manifest holds, with their shapes.</summary>
    public static IReadOnlyDictionary<string, int[]> ExpectedShapes(PluginManifest manifest, string file)
    {
        var (p, imageSize, dv) = Geometry(manifest, file);
        int d = manifest.Base.HiddenSize, f = manifest.Base.IntermediateSize, grid = imageSize / p;
        bool bias = manifest.HyperParameter<bool>("ffn_bias", file);
        var shapes = new Dictionary<string, int[]>(StringComparer.Ordinal)
        {
            [Embeddings + "patch_embedding.weight"] = [dv, 3, p, p],
            [Embeddings + "patch_embedding.bias"] = [dv],
            [Embeddings + "position_embedding"] = [1 + grid * grid, dv],
            ["mlp1.0.weight"] = [4 * dv],
            ["mlp1.0.bias"] = [4 * dv],
            ["mlp1.1.weight"] = [d, 4 * dv],
            ["mlp1.1.bias"] = [d],
            ["mlp1.3.weight"] = [d, d],
            ["mlp1.3.bias"] = [d],
            [MarkersName] = [2, d],
        };
        bool attention = manifest.HyperParameter<bool>("attention_experts", file);
        bool qkvBias = manifest.HyperParameter<bool>("qkv_bias", file), outputBias = manifest.HyperParameter<bool>("o_proj_bias", file);
        int q = manifest.Base.NumHeads * manifest.Base.HeadDim, kv = manifest.Base.NumKeyValueHeads * manifest.Base.HeadDim;
        for (int i = 0; i < manifest.Base.NumLayers; i++)
        {
            string prefix = ExpertPrefix(i);
            shapes[prefix + "gate.weight"] = [f, d];
            shapes[prefix + "up.weight"] = [f, d];
            shapes[prefix + "down.weight"] = [d, f];
            if (bias)
            {
                shapes[prefix + "gate.bias"] = [f];
                shapes[prefix + "up.bias"] = [f];
                shapes[prefix + "down.bias"] = [d];
            }
            if (!attention) continue;
            prefix = AttentionPrefix(i);
            shapes[prefix + "q.weight"] = [q, d];
            shapes[prefix + "k.weight"] = [kv, d];
            shapes[prefix + "v.weight"] = [kv, d];
            shapes[prefix + "o.weight"] = [d, q];
            if (qkvBias)
            {
                shapes[prefix + "q.bias"] = [q];
                shapes[prefix + "k.bias"] = [kv];
                shapes[prefix + "v.bias"] = [kv];
            }
            if (outputBias) shapes[prefix + "o.bias"] = [d];
        }
        return shapes;
    }

    /// <summary>A plug-in from a checked manifest and tensors (see <see cref="PluginFile.Load"/>).</summary>
    internal static VisualExperts Restore(PluginManifest manifest, IReadOnlyDictionary<string, Tensor> tensors, DecoderModel baseModel, string file)
    {
        var (p, imageSize, _) = Geometry(manifest, file);
        if (manifest.HyperParameter<int>("max_tiles", file) <= 0)
            throw new PluginFormatException(file, "must be a positive integer", "hyper_parameters.max_tiles");
        bool bias = manifest.HyperParameter<bool>("ffn_bias", file);
        if (bias != (baseModel.Weights.Layers[0].GateBias is not null))
            throw new PluginFormatException(file, $"is {bias.ToString().ToLowerInvariant()}, but the base's FFN {(bias ? "has no" : "has")} biases", "hyper_parameters.ffn_bias");
        void Agrees(string field, bool actual)
        {
            bool recorded = manifest.HyperParameter<bool>(field, file);
            if (recorded != actual)
                throw new PluginFormatException(file, $"is {recorded.ToString().ToLowerInvariant()}, but the base's config says {actual.ToString().ToLowerInvariant()}", $"hyper_parameters.{field}");
        }
        Agrees("qkv_bias", baseModel.Config.QkvBias);
        Agrees("o_proj_bias", baseModel.Config.OutputBias);
        bool attention = manifest.HyperParameter<bool>("attention_experts", file);

        var parameters = new List<PluginParameter>();
        Tensor Take(string name, string part)
        {
            var tensor = tensors[name];
            tensor.Name = name;
            parameters.Add(new PluginParameter(name, part, tensor));
            return tensor;
        }
        var conv = new LinearWeights(Take(Embeddings + "patch_embedding.weight", PatchEmbeddingPart), Take(Embeddings + "patch_embedding.bias", PatchEmbeddingPart));
        var positions = Take(Embeddings + "position_embedding", PatchEmbeddingPart);
        var norm = new LayerNormWeights(Take("mlp1.0.weight", Mlp1Part), Take("mlp1.0.bias", Mlp1Part), Mlp1NormEps);
        var mlpIn = new LinearWeights(Take("mlp1.1.weight", Mlp1Part), Take("mlp1.1.bias", Mlp1Part));
        var mlpOut = new LinearWeights(Take("mlp1.3.weight", Mlp1Part), Take("mlp1.3.bias", Mlp1Part));
        var frontEndTensors = parameters.Select(x => x.Tensor).ToArray();
        var frontEnd = new PatchEmbeddingFrontEnd(p, imageSize / p, conv, positions, norm, mlpIn, mlpOut, frontEndTensors);
        var markers = Take(MarkersName, MarkersPart);
        var experts = new ExpertFeedForward[baseModel.Config.NumLayers];
        var attentionExperts = attention ? new ExpertAttention[experts.Length] : null;
        for (int i = 0; i < experts.Length; i++)
        {
            string prefix = ExpertPrefix(i);
            experts[i] = new ExpertFeedForward(Take(prefix + "gate.weight", ExpertsPart), Take(prefix + "up.weight", ExpertsPart), Take(prefix + "down.weight", ExpertsPart),
                bias ? Take(prefix + "gate.bias", ExpertsPart) : null, bias ? Take(prefix + "up.bias", ExpertsPart) : null, bias ? Take(prefix + "down.bias", ExpertsPart) : null);
            if (attentionExperts is null) continue;
            prefix = AttentionPrefix(i);
            LinearWeights Projection(string name, bool hasBias) =>
                new(Take(prefix + name + ".weight", AttentionExpertsPart), hasBias ? Take(prefix + name + ".bias", AttentionExpertsPart) : null);
            bool qkv = baseModel.Config.QkvBias;
            attentionExperts[i] = new ExpertAttention(Projection("q", qkv), Projection("k", qkv), Projection("v", qkv), Projection("o", baseModel.Config.OutputBias));
        }
        return new VisualExperts(baseModel, manifest, frontEnd, markers, experts, attentionExperts, parameters, file);
    }

    /// <summary>
    /// Text parts embedded by the base; each image as `&lt;img&gt;` + its visual tokens (tiles in row-major order, then the
    /// thumbnail) + `&lt;/img&gt;`. The image mask marks the visual tokens (the IMG_CONTEXT positions) only.
    /// </summary>
    public PreparedInput Prepare(MultimodalPrompt prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var pieces = new List<Tensor>();
        var lengths = new List<int>(prompt.Parts.Count);
        var mask = new List<bool>();
        foreach (var part in prompt.Parts)
        {
            switch (part)
            {
                case TextPart text:
                    pieces.Add(Base.Embed(text.Ids));
                    mask.AddRange(Enumerable.Repeat(false, text.Ids.Length));
                    lengths.Add(text.Ids.Length);
                    break;
                case ImagePart { Image: { } image }:
                    var tokens = EncodeImage(image);
                    int n = tokens.Shape[0];
                    pieces.Add(Ops.Slice(Markers, 0, 0, 1));
                    pieces.Add(tokens);
                    pieces.Add(Ops.Slice(Markers, 0, 1, 1));
                    mask.Add(false);
                    mask.AddRange(Enumerable.Repeat(true, n));
                    mask.Add(false);
                    lengths.Add(n + 2);
                    break;
                case ImagePart:
                    throw new ArgumentException("visual-experts embeds pixels with its own (trainable) patch embedding; give the image as pixels, not precomputed features", nameof(prompt));
                default:
                    throw new ArgumentException($"visual-experts cannot place a {part.GetType().Name}", nameof(prompt));
            }
        }
        var embeddings = pieces.Count == 1 ? pieces[0] : Ops.Concat(pieces, 0);
        var imageMask = mask.ToArray();
        return new PreparedInput(embeddings, imageMask, prompt.Targets(lengths), HooksFor(imageMask));
    }

    /// <summary>
    /// The decoder hooks of a request whose image tokens are where <paramref name="imageMask"/> is true (positions past its
    /// end are text): FFN by token in every layer, and attention by token when the plug-in has attention experts.
    /// </summary>
    public DecoderHooks HooksFor(bool[] imageMask)
    {
        ArgumentNullException.ThrowIfNull(imageMask);
        return new ExpertHooks(this, imageMask);
    }

    /// <summary>An image -> visual tokens [tiles · tokens per tile, d]: dynamic tiling, then the front end on every tile.</summary>
    public Tensor EncodeImage(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        var tiled = DynamicTiling.Preprocess(image, Tiling);
        return FrontEnd.Forward(tiled.Pixels).Reshape(-1, Base.Config.HiddenSize);
    }

    /// <summary>
    /// A map by token: rows x [T, in] -> [T, out] with text rows through <paramref name="text"/> and image rows through
    /// <paramref name="image"/> (<paramref name="isImage"/>[i] is m_i): for the FFN, FFN_t(n) (1 - m) + FFN_ve(n) m, and
    /// likewise for each attention projection. Each function runs on its gathered rows only, and the results are scattered
    /// back; with one modality only, that function runs on x itself.
    /// </summary>
    public static Tensor ByToken(Tensor x, ReadOnlySpan<bool> isImage, Func<Tensor, Tensor> text, Func<Tensor, Tensor> image)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 2 || x.Shape[0] != isImage.Length)
            throw new ArgumentException($"rows must be [{isImage.Length}, C] for {isImage.Length} mask entries, got {x.ShapeString}", nameof(x));
        var imageRows = new List<int>();
        var textRows = new List<int>();
        for (int i = 0; i < isImage.Length; i++) (isImage[i] ? imageRows : textRows).Add(i);
        if (imageRows.Count == 0) return text(x);
        if (textRows.Count == 0) return image(x);
        var imageIndices = imageRows.ToArray();
        var textIndices = textRows.ToArray();
        var textOutput = text(Ops.GatherRows(x, textIndices));
        var imageOutput = image(Ops.GatherRows(x, imageIndices));
        var output = Ops.ScatterRows(Tensor.Zeros(isImage.Length, textOutput.Shape[1]), textIndices, textOutput);
        return Ops.ScatterRows(output, imageIndices, imageOutput);
    }

    private static (int Patch, int ImageSize, int VisionWidth) Geometry(PluginManifest manifest, string file)
    {
        int p = manifest.HyperParameter<int>("patch_size", file);
        int imageSize = manifest.HyperParameter<int>("image_size", file);
        int dv = manifest.HyperParameter<int>("vision_width", file);
        if (p <= 0) throw new PluginFormatException(file, "must be a positive integer", "hyper_parameters.patch_size");
        if (dv <= 0) throw new PluginFormatException(file, "must be a positive integer", "hyper_parameters.vision_width");
        if (imageSize <= 0 || imageSize % (2 * p) != 0)
            throw new PluginFormatException(file, $"{imageSize} is not a positive multiple of 2·patch_size = {2 * p}", "hyper_parameters.image_size");
        return (p, imageSize, dv);
    }

    private static string ExpertPrefix(int layer) => $"layers.{layer.ToString(CultureInfo.InvariantCulture)}.ffn_ve.";

    private static string AttentionPrefix(int layer) => $"layers.{layer.ToString(CultureInfo.InvariantCulture)}.attn_ve.";

    private static Tensor Uniform(Random random, int fanIn, int[] shape)
    {
        float bound = 1f / MathF.Sqrt(fanIn);
        var values = new float[Tensor.ShapeLength(shape)];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * bound;
        return Tensor.Parameter(values, shape);
    }

    private static Tensor Normal(Random random, float std, int[] shape)
    {
        var values = new float[Tensor.ShapeLength(shape)];
        for (int i = 0; i < values.Length; i++)
        {
            // Box–Muller: two uniforms in (0, 1] give one standard normal.
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            values[i] = (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2)) * std;
        }
        return Tensor.Parameter(values, shape);
    }

    /// <summary>
    /// Per request: each layer's FFN by token and, with attention experts, its attention projections by token; the mask is
    /// read at the chunk's absolute positions (past its end: text).
    /// </summary>
    private sealed class ExpertHooks(VisualExperts plugin, bool[] imageMask) : DecoderHooks
    {
        public override Tensor FeedForward(int layer, Tensor normedInput, Func<Tensor, Tensor> baseFeedForward, ReadOnlySpan<int> positions) =>
            ByToken(normedInput, IsImage(positions), baseFeedForward, plugin.Experts[layer].Forward);

        public override bool ProjectsAttention(int layer) => plugin.AttentionExperts is not null;

        public override Tensor ProjectAttention(int layer, AttentionProjection projection, Tensor input, Func<Tensor, Tensor> baseProjection, ReadOnlySpan<int> positions)
        {
            var expert = plugin.AttentionExperts![layer].Weights(projection);
            return ByToken(input, IsImage(positions), baseProjection, expert.Apply);
        }

        private bool[] IsImage(ReadOnlySpan<int> positions)
        {
            var isImage = new bool[positions.Length];
            for (int i = 0; i < positions.Length; i++) isImage[i] = positions[i] < imageMask.Length && imageMask[positions[i]];
            return isImage;
        }
    }
}

/// <summary>FFN_ve of one layer: the base FFN's SwiGLU shape, F32 and trainable: down(silu(gate(x)) · up(x)).</summary>
public sealed class ExpertFeedForward
{
    public ExpertFeedForward(Tensor gate, Tensor up, Tensor down, Tensor? gateBias = null, Tensor? upBias = null, Tensor? downBias = null)
    {
        ArgumentNullException.ThrowIfNull(gate);
        ArgumentNullException.ThrowIfNull(up);
        ArgumentNullException.ThrowIfNull(down);
        if (gate.Rank != 2 || !up.Shape.AsSpan().SequenceEqual(gate.Shape) || down.Rank != 2 || down.Shape[0] != gate.Shape[1] || down.Shape[1] != gate.Shape[0])
            throw new ArgumentException($"expert FFN: gate {gate.ShapeString} and up {up.ShapeString} must be [F, C] and down {down.ShapeString} [C, F]");
        (Gate, Up, Down, GateBias, UpBias, DownBias) = (gate, up, down, gateBias, upBias, downBias);
    }

    public Tensor Gate { get; }
    public Tensor Up { get; }
    public Tensor Down { get; }
    public Tensor? GateBias { get; }
    public Tensor? UpBias { get; }
    public Tensor? DownBias { get; }

    /// <summary>A trainable F32 copy of a base layer's FFN (Mono-InternVL initialises FFN_ve from FFN_t).</summary>
    public static ExpertFeedForward CopyOf(DecoderLayerWeights layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        static Tensor? Copy(Tensor? t) => t is null ? null : Tensor.Parameter(t.ToArray(), t.Shape);
        return new ExpertFeedForward(Copy(layer.Gate)!, Copy(layer.Up)!, Copy(layer.Down)!, Copy(layer.GateBias), Copy(layer.UpBias), Copy(layer.DownBias));
    }

    /// <summary>x [N, C] -> [N, C].</summary>
    public Tensor Forward(Tensor x) => Ops.Linear(Ops.SwiGlu(Ops.Linear(x, Gate, GateBias), Ops.Linear(x, Up, UpBias)), Down, DownBias);

    internal IEnumerable<(string Name, Tensor Tensor)> Named(string prefix)
    {
        yield return (prefix + "gate.weight", Gate);
        yield return (prefix + "up.weight", Up);
        yield return (prefix + "down.weight", Down);
        if (GateBias is not null) yield return (prefix + "gate.bias", GateBias);
        if (UpBias is not null) yield return (prefix + "up.bias", UpBias);
        if (DownBias is not null) yield return (prefix + "down.bias", DownBias);
    }
}

/// <summary>
/// A visual attention expert of one layer (Mono-InternVL-1.5): the base attention's query, key, value and output
/// projections, F32 and trainable, used for image tokens. Weights [out, in], biases where the base has them.
/// </summary>
public sealed class ExpertAttention
{
    public ExpertAttention(LinearWeights query, LinearWeights key, LinearWeights value, LinearWeights output)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        ArgumentNullException.ThrowIfNull(output);
        if (!key.Weight.Shape.AsSpan().SequenceEqual(value.Weight.Shape) || key.Weight.Shape[1] != query.Weight.Shape[1]
            || output.Weight.Shape[0] != query.Weight.Shape[1] || output.Weight.Shape[1] != query.Weight.Shape[0])
            throw new ArgumentException($"expert attention: q {query.Weight.ShapeString}, k {key.Weight.ShapeString}, v {value.Weight.ShapeString} and o {output.Weight.ShapeString} "
                + "must be [H·D, C], [Hkv·D, C], [Hkv·D, C] and [C, H·D]");
        (Query, Key, Value, Output) = (query, key, value, output);
    }

    public LinearWeights Query { get; }
    public LinearWeights Key { get; }
    public LinearWeights Value { get; }
    public LinearWeights Output { get; }

    /// <summary>A trainable F32 copy of a base layer's attention projections (the experts start as the base's attention).</summary>
    public static ExpertAttention CopyOf(DecoderLayerWeights layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        static LinearWeights Copy(Tensor weight, Tensor? bias) =>
            new(Tensor.Parameter(weight.ToArray(), weight.Shape), bias is null ? null : Tensor.Parameter(bias.ToArray(), bias.Shape));
        return new ExpertAttention(Copy(layer.Query, layer.QueryBias), Copy(layer.Key, layer.KeyBias), Copy(layer.Value, layer.ValueBias), Copy(layer.Output, layer.OutputBias));
    }

    public LinearWeights Weights(AttentionProjection projection) => projection switch
    {
        AttentionProjection.Query => Query,
        AttentionProjection.Key => Key,
        AttentionProjection.Value => Value,
        AttentionProjection.Output => Output,
        _ => throw new ArgumentOutOfRangeException(nameof(projection), projection, "not an attention projection"),
    };

    internal IEnumerable<(string Name, Tensor Tensor)> Named(string prefix)
    {
        foreach (var (name, weights) in new[] { ("q", Query), ("k", Key), ("v", Value), ("o", Output) })
        {
            yield return (prefix + name + ".weight", weights.Weight);
            if (weights.Bias is not null) yield return (prefix + name + ".bias", weights.Bias);
        }
    }
}
