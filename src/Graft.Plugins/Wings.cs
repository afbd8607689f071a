using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>What the WINGS router reads from the main attention's weights (summed over heads) for each query token.</summary>
public enum WingsRouterInput
{
    /// <summary>
    /// Graft's default: a_t = (mass on image keys, mass on text keys), two numbers whatever the length, so the router
    /// means the same thing at position 10 and at position 3000.
    /// </summary>
    ImageTextMass,

    /// <summary>
    /// The original: the whole attention row indexed by key position, zero-padded to a fixed length
    /// (<see cref="WingsOptions.RouterRowLength"/>, 4096 as the authors'); longer sequences are refused.
    /// </summary>
    AttentionRow,
}

/// <summary>How <see cref="Wings.Create"/> makes an untrained WINGS plug-in.</summary>
public sealed record WingsOptions
{
    /// <summary>Seed of the initialisation.</summary>
    public int Seed { get; init; }

    /// <summary>LoRRA rank r; null scales the paper's r = 64 at d = 4096 with the width: r = max(4, d / 64).</summary>
    public int? Rank { get; init; }

    public WingsRouterInput RouterInput { get; init; } = WingsRouterInput.ImageTextMass;

    /// <summary>Key positions the <see cref="WingsRouterInput.AttentionRow"/> router reads (the original pads to 4096).</summary>
    public int RouterRowLength { get; init; } = 4096;
}

/// <summary>
/// WINGS (Zhang et al., "Wings: Learning Multimodal LLMs without Text-only Forgetting", arXiv 2406.03496).
/// </summary>
/// <remarks>
/// Vision: a frozen SigLIP-so400m-384 without its last layer (the authors drop it: features of hidden_states[-2],
/// 729 x 1152; with a Graft tower that is <c>VisionFeatureSelector.Layer(-2)</c>), given here by the
/// <see cref="IVisionFrontEnd"/>, then LLaVA's projector mlp2x_gelu (<see cref="GeluProjector"/>). The projected rows
/// H_v replace `&lt;image&gt;` in the prompt as in LLaVA; F_img = H_v (the layer-0 image rows), F_txt = the input embeddings
/// of the text tokens.
///
/// At every layer, after the attention residual and before the MLP (<see cref="DecoderHooks.BesideAttention"/>):
///     H   = h + Attn(LN1(h))                                  (with the attention weights P [1, H_b, T, T_k])
///     O_v = LoRRA_v(Q from H, K = V = F_img),   O_t = LoRRA_t(Q from H, K = V = F_txt)
///     (w_v, w_t) = softmax(SiLU(W_r a_t + b_r)),  a_t from Σ_heads P[t, :]  (<see cref="WingsRouterInput"/>)
///     H'  = H + w_v O_v + w_t O_t                             (added once: the original adds the branch twice, a bug)
///     h_next = H' + MLP(LN2(H'))
/// LoRRA (low-rank residual attention) over h = d / head_dim heads of the base's head size (the base's head count
/// whenever d = heads · head_dim), so the base's rotary table applies:
///     Q = H + H A_q B_q,  K = X + X A_k B_k,  V = X + X A_v B_v,
///     RoPE on Q at the query positions and on K at the keys' own positions,
///     O = softmax(Q K^T / sqrt(d/h) + M) V,   LoRRA = O A_o B_o   (pure low rank, no residual),
///     A [d, r] ~ trunc-normal(0, 0.02) (cut at ±2σ), B [r, d] = 0: each learner outputs 0 at the start.
/// Masks M: the visual learner has none (every query sees every image key, so the images must be in the first chunk
/// of a request). The textual learner is causal over text positions: query p sees the text keys at positions ≤ p
/// (the original slices the mask by index and lets queries see future text tokens while training; Graft gathers
/// the mask at the text positions). A query with no visible key gets 0; with no image at all, O_v = 0.
/// Router init: W_r = 0, b_r = 0, so (w_v, w_t) = (0.5, 0.5) at the start (documented choice; the paper gives none).
/// With B = 0, H' = H exactly at initialisation: the multimodal stream is the base's on the same input embeddings.
/// Rank: r = 64 at d = 4096 (16·d·r = 4.2M per layer), scaled as r = max(4, d / 64) for smaller bases.
/// Training (docs/designs.md): stage 1 projector + visual learners, stage 2 textual learners + router; the parts are named so.
/// Text-only requests go to the base unless attached with <see cref="TextRoute.Plugin"/>, which runs them through the
/// textual learners and the router as the authors do (the visual learner gives 0 there).
/// A cached decode keeps F_img, F_txt's learner keys and values and the positions' modality in the request's hooks,
/// so it equals recomputation.
/// </remarks>
public sealed class Wings : IPlugin
{
    public const string DesignName = "wings";
    public const string ProjectorPart = "projector";
    public const string VisualPart = "visual";
    public const string TextualPart = "textual";
    public const string RouterPart = "router";

    private readonly RotaryEmbedding _rope;

    private Wings(DecoderModel baseModel, IVisionFrontEnd? vision, PluginManifest manifest, GeluProjector projector, WingsLayer[] layers)
    {
        Base = baseModel;
        Vision = vision;
        Manifest = manifest;
        Projector = projector;
        Layers = layers;
        _rope = new RotaryEmbedding(RopeFrequencies.Compute(baseModel.Config, 1));
        var parameters = new List<PluginParameter>
        {
            new("mm_projector.0.weight", ProjectorPart, projector.W1),
            new("mm_projector.0.bias", ProjectorPart, projector.B1),
            new("mm_projector.2.weight", ProjectorPart, projector.W2),
            new("mm_projector.2.bias", ProjectorPart, projector.B2),
        };
        for (int l = 0; l < layers.Length; l++)
        {
            parameters.AddRange(layers[l].Visual.Named($"{LayerPrefix(l)}.visual", VisualPart));
            parameters.AddRange(layers[l].Textual.Named($"{LayerPrefix(l)}.textual", TextualPart));
            parameters.Add(new($"{LayerPrefix(l)}.router.weight", RouterPart, layers[l].Router.Weight));
            parameters.Add(new($"{LayerPrefix(l)}.router.bias", RouterPart, layers[l].Router.Bias));
        }
        Parameters = parameters;
    }

    public GeluProjector Projector { get; }

    /// <summary>One visual learner, one textual learner and one router per base layer.</summary>
    public IReadOnlyList<WingsLayer> Layers { get; }

    public string Design => DesignName;
    public PluginManifest Manifest { get; }

    /// <summary>WINGS is built on LLaVA's code: each image at its `&lt;image&gt;` placeholder.</summary>
    public PromptLayout Layout => PromptLayout.AtPlaceholders;
    public DecoderModel Base { get; }
    public IVisionFrontEnd? Vision { get; }
    public IReadOnlyList<PluginParameter> Parameters { get; }

    /// <summary>The textual learners and the router act on text, so text-only requests can be routed through them.</summary>
    public bool CanRouteText => true;

    public bool CanEncodePixels => Vision is not null;

    public static int DefaultRank(int hiddenSize) => Math.Max(4, hiddenSize / 64);

    /// <summary>An untrained WINGS plug-in for <paramref name="baseModel"/> and <paramref name="vision"/>, initialised as the header says.</summary>
    public static Wings Create(DecoderModel baseModel, IVisionFrontEnd vision, WingsOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        ArgumentNullException.ThrowIfNull(vision);
        options ??= new WingsOptions();
        var c = baseModel.Config;
        int d = c.HiddenSize, dv = vision.FeatureWidth;
        int rank = options.Rank ?? DefaultRank(d);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rank, nameof(options.Rank));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.RouterRowLength, nameof(options.RouterRowLength));
        int heads = LearnerHeads(c.HiddenSize, c.HeadDim, "the base");
        var random = new Random(options.Seed);
        var manifest = new PluginManifest
        {
            Design = DesignName,
            HyperParameters = new JsonObject
            {
                ["projector"] = Bridge.ProjectorKind,
                ["vision_width"] = dv,
                ["vision_layer"] = "hidden_states[-2] (SigLIP without its last layer), chosen by the front end",
                ["hidden_size"] = d,
                ["rank"] = rank,
                ["rank_rule"] = "r = 64 at d = 4096; max(4, d / 64) by default",
                ["learner_heads"] = heads,
                ["router_input"] = RouterInputName(options.RouterInput),
                ["router_row_length"] = options.RouterRowLength,
                ["learner_add"] = "once",
                ["image_placeholder"] = "<image>",
            },
            Base = BaseDescription.Of(baseModel),
            Vision = VisionDescription.Of(vision),
            Training = new JsonObject
            {
                ["state"] = "untrained",
                ["initialisation"] = "projector: nn.Linear default; LoRRA A: trunc-normal(0, 0.02) cut at 2 sigma, B: 0; router W_r, b_r: 0 (w_v = w_t = 0.5)",
                ["stages"] = "1: projector + visual (lr 2e-5); 2: textual + router; 1 epoch each, cosine, 3% warm-up, grad clip 1.0",
                ["seed"] = options.Seed,
            },
        };
        var projector = GeluProjector.Create(dv, d, random);
        int routerInputs = RouterInputWidth(options.RouterInput, options.RouterRowLength);
        var layers = new WingsLayer[c.NumLayers];
        for (int l = 0; l < layers.Length; l++)
            layers[l] = new WingsLayer(LorraLearner.Create(d, rank, heads, random), LorraLearner.Create(d, rank, heads, random),
                new WingsRouter(Tensor.Parameter(new float[2 * routerInputs], 2, routerInputs), Tensor.Parameter(new float[2], 2), options.RouterInput));
        return new Wings(baseModel, vision, manifest, projector, layers);
    }

    /// <summary>The tensors a WINGS plug-in with this manifest holds, with their shapes.</summary>
    public static IReadOnlyDictionary<string, int[]> ExpectedShapes(PluginManifest manifest, string file)
    {
        int dv = manifest.HyperParameter<int>("vision_width", file), d = manifest.Base.HiddenSize;
        int r = manifest.HyperParameter<int>("rank", file);
        if (r <= 0) throw new PluginFormatException(file, $"is {r}, not a positive rank", "hyper_parameters.rank");
        var input = ParseRouterInput(manifest.HyperParameter<string>("router_input", file), file);
        int rowLength = manifest.HyperParameter<int>("router_row_length", file);
        if (rowLength <= 0) throw new PluginFormatException(file, $"is {rowLength}, not a positive length", "hyper_parameters.router_row_length");
        int routerInputs = RouterInputWidth(input, rowLength);
        var shapes = new Dictionary<string, int[]>(StringComparer.Ordinal)
        {
            ["mm_projector.0.weight"] = [d, dv],
            ["mm_projector.0.bias"] = [d],
            ["mm_projector.2.weight"] = [d, d],
            ["mm_projector.2.bias"] = [d],
        };
        for (int l = 0; l < manifest.Base.NumLayers; l++)
        {
            foreach (string learner in new[] { "visual", "textual" })
                foreach (string projection in LorraLearner.Projections)
                {
                    shapes[$"{LayerPrefix(l)}.{learner}.{projection}.a"] = [d, r];
                    shapes[$"{LayerPrefix(l)}.{learner}.{projection}.b"] = [r, d];
                }
            shapes[$"{LayerPrefix(l)}.router.weight"] = [2, routerInputs];
            shapes[$"{LayerPrefix(l)}.router.bias"] = [2];
        }
        return shapes;
    }

    /// <summary>A WINGS plug-in from a checked manifest and tensors (see <see cref="PluginFile.Load"/>).</summary>
    internal static Wings Restore(PluginManifest manifest, IReadOnlyDictionary<string, Tensor> tensors, DecoderModel baseModel, IVisionFrontEnd? vision, string file)
    {
        string projector = manifest.HyperParameter<string>("projector", file);
        if (projector != Bridge.ProjectorKind) throw new PluginFormatException(file, $"'{projector}' is not a projector WINGS runs ({Bridge.ProjectorKind})", "hyper_parameters.projector");
        int heads = manifest.HyperParameter<int>("learner_heads", file);
        var c = baseModel.Config;
        if (heads != LearnerHeads(c.HiddenSize, c.HeadDim, file))
            throw new PluginFormatException(file, $"is {heads}, but this base gives d / head_dim = {c.HiddenSize / c.HeadDim}", "hyper_parameters.learner_heads");
        var input = ParseRouterInput(manifest.HyperParameter<string>("router_input", file), file);
        var layers = new WingsLayer[c.NumLayers];
        for (int l = 0; l < layers.Length; l++)
        {
            string prefix = LayerPrefix(l);
            layers[l] = new WingsLayer(LorraLearner.From(tensors, $"{prefix}.visual", heads), LorraLearner.From(tensors, $"{prefix}.textual", heads),
                new WingsRouter(tensors[$"{prefix}.router.weight"], tensors[$"{prefix}.router.bias"], input));
        }
        return new Wings(baseModel, vision, manifest, new GeluProjector(
            tensors["mm_projector.0.weight"], tensors["mm_projector.0.bias"], tensors["mm_projector.2.weight"], tensors["mm_projector.2.bias"]), layers);
    }

    public static string RouterInputName(WingsRouterInput input) => input switch
    {
        WingsRouterInput.ImageTextMass => "image-text-mass",
        WingsRouterInput.AttentionRow => "attention-row",
        _ => throw new ArgumentOutOfRangeException(nameof(input), input, "not a WINGS router input"),
    };

    /// <summary>"image-text-mass" or "attention-row"; <paramref name="file"/> names the source in the error.</summary>
    public static WingsRouterInput ParseRouterInput(string name, string file) => name switch
    {
        "image-text-mass" => WingsRouterInput.ImageTextMass,
        "attention-row" => WingsRouterInput.AttentionRow,
        _ => throw new PluginFormatException(file, $"'{name}' is not image-text-mass or attention-row", "hyper_parameters.router_input"),
    };

    /// <summary>Z_v [N, d_v] -> H_v [N, d].</summary>
    public Tensor Project(Tensor features) => Projector.Forward(features);

    /// <summary>Text parts embedded by the base, each image replaced by its projected features; the hooks carry the learners.</summary>
    public PreparedInput Prepare(MultimodalPrompt prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var (embeddings, imageMask, targets) = prompt.Lay(ids => Base.Embed(ids), image => Project(image.FeaturesFrom(Vision, "WINGS")));
        return new PreparedInput(embeddings, imageMask, targets, new WingsHooks(this, imageMask));
    }

    /// <summary>The base's rotary table for a sequence of <paramref name="length"/> positions (only dynamic NTK depends on it).</summary>
    private RotaryEmbedding RopeFor(int length)
    {
        var c = Base.Config;
        return c.RopeScaling.Kind == RopeScalingKind.Dynamic && length > c.MaxPositionEmbeddings
            ? new RotaryEmbedding(RopeFrequencies.Compute(c, length))
            : _rope;
    }

    private static string LayerPrefix(int layer) => $"model.layers.{layer}.wings";

    private static int LearnerHeads(int hiddenSize, int headDim, string where) =>
        hiddenSize % headDim == 0 ? hiddenSize / headDim
            : throw new ArgumentException($"WINGS ({where}): hidden size {hiddenSize} is not a multiple of the head size {headDim}, so the learners cannot use the base's rotary table");

    private static int RouterInputWidth(WingsRouterInput input, int rowLength) => input == WingsRouterInput.AttentionRow ? rowLength : 2;

    /// <summary>
    /// One request's learners state: which positions hold image tokens, the layer-0 rows F_img and F_txt as they arrive
    /// and, per layer, each learner's keys (RoPE applied) and values, so a cached decode step only projects its new text
    /// rows. A chunk that starts at position 0 starts the sequence afresh.
    /// </summary>
    private sealed class WingsHooks(Wings plugin, bool[] promptImageMask) : DecoderHooks
    {
        private readonly List<bool> _isImage = [];
        private readonly LearnerKeys?[] _visual = new LearnerKeys?[plugin.Layers.Count];
        private readonly LearnerKeys?[] _textual = new LearnerKeys?[plugin.Layers.Count];
        private Tensor? _chunkImageRows, _chunkTextRows;
        private int[] _chunkImagePositions = [], _chunkTextPositions = [];
        private RotaryEmbedding? _rope;

        public override Tensor Input(Tensor embeddings, ReadOnlySpan<int> positions)
        {
            int t = positions.Length;
            if (t == 0) return embeddings;
            if (positions[0] == 0)
            {
                _isImage.Clear();
                Array.Clear(_visual);
                Array.Clear(_textual);
            }
            else if (positions[0] != _isImage.Count)
                throw new InvalidOperationException($"WINGS: the chunk starts at position {positions[0]}, but this request's learners hold {_isImage.Count} tokens; decode with the hooks of the prefill, chunk after chunk");
            List<int> imageRows = [], textRows = [], imagePositions = [], textPositions = [];
            for (int i = 0; i < t; i++)
            {
                int p = positions[i];
                bool image = p < promptImageMask.Length && promptImageMask[p];
                _isImage.Add(image);
                (image ? imageRows : textRows).Add(i);
                (image ? imagePositions : textPositions).Add(p);
            }
            if (imageRows.Count > 0 && positions[0] != 0)
                throw new NotSupportedException("WINGS: the visual learner lets every token see every image key, so the image tokens must be in the first chunk of a request; prefill the prompt in one chunk");
            _chunkImagePositions = imagePositions.ToArray();
            _chunkTextPositions = textPositions.ToArray();
            _chunkImageRows = imageRows.Count > 0 ? Ops.GatherRows(embeddings, imageRows.ToArray()) : null;
            _chunkTextRows = textRows.Count > 0 ? Ops.GatherRows(embeddings, textRows.ToArray()) : null;
            _rope = plugin.RopeFor(positions[t - 1] + 1);
            return embeddings;
        }

        public override bool NeedsAttentionWeights(int layer) => true;

        public override Tensor BesideAttention(int layer, Tensor hidden, Tensor? attentionWeights, ReadOnlySpan<int> positions)
        {
            if (attentionWeights is null) throw new InvalidOperationException("WINGS: the decoder gave no attention weights to the router");
            if (_rope is null) throw new InvalidOperationException("WINGS: the hooks saw no input embeddings; run them through DecoderModel.ForwardEmbeddings");
            var w = plugin.Layers[layer];
            if (_chunkImageRows is not null) _visual[layer] = w.Visual.KeysValues(_chunkImageRows, _chunkImagePositions, _rope);
            if (_chunkTextRows is not null)
            {
                var added = w.Textual.KeysValues(_chunkTextRows, _chunkTextPositions, _rope);
                _textual[layer] = _textual[layer] is { } held ? held.Append(added) : added;
            }
            return w.Forward(hidden, attentionWeights, positions, _visual[layer], _textual[layer], CollectionsMarshal.AsSpan(_isImage), _rope);
        }
    }
}

/// <summary>A learner's keys [1, N, h, d/h] (RoPE applied at <see cref="Positions"/>), values [1, N, h, d/h] and the keys' positions.</summary>
public sealed record LearnerKeys(Tensor Keys, Tensor Values, int[] Positions)
{
    /// <summary>These keys followed by <paramref name="later"/>'s (a later chunk's).</summary>
    public LearnerKeys Append(LearnerKeys later) =>
        new(Ops.Concat([Keys, later.Keys], 1), Ops.Concat([Values, later.Values], 1), [.. Positions, .. later.Positions]);
}

/// <summary>
/// LoRRA, low-rank residual attention: Q = H + H A_q B_q, K = X + X A_k B_k, V = X + X A_v B_v, RoPE on Q and K at their
/// positions, O = softmax(Q K^T / sqrt(d/h) + M) V over h heads, out = O A_o B_o. A [d, r], B [r, d].
/// </summary>
public sealed class LorraLearner
{
    public static readonly string[] Projections = ["q", "k", "v", "o"];

    public LorraLearner(Tensor[] a, Tensor[] b, int heads)
    {
        if (a.Length != 4 || b.Length != 4) throw new ArgumentException("LoRRA needs A and B for q, k, v and o");
        int d = a[0].Shape[0], r = a[0].Shape[1];
        for (int i = 0; i < 4; i++)
        {
            if (!a[i].Shape.AsSpan().SequenceEqual([d, r])) throw new ArgumentException($"LoRRA A_{Projections[i]} must be [{d}, {r}], got {a[i].ShapeString}");
            if (!b[i].Shape.AsSpan().SequenceEqual([r, d])) throw new ArgumentException($"LoRRA B_{Projections[i]} must be [{r}, {d}], got {b[i].ShapeString}");
        }
        if (heads <= 0 || d % heads != 0) throw new ArgumentException($"LoRRA: {heads} heads do not divide the width {d}");
        A = a;
        B = b;
        Heads = heads;
    }

    /// <summary>A_q, A_k, A_v, A_o, each [d, r].</summary>
    public IReadOnlyList<Tensor> A { get; }

    /// <summary>B_q, B_k, B_v, B_o, each [r, d].</summary>
    public IReadOnlyList<Tensor> B { get; }

    public int Heads { get; }
    public int Width => A[0].Shape[0];
    public int HeadSize => Width / Heads;

    /// <summary>A ~ trunc-normal(0, 0.02) cut at ±2σ, B = 0: the learner outputs 0 until trained.</summary>
    internal static LorraLearner Create(int width, int rank, int heads, Random random)
    {
        var a = new Tensor[4];
        var b = new Tensor[4];
        for (int i = 0; i < 4; i++)
        {
            var values = new float[width * rank];
            for (int j = 0; j < values.Length; j++) values[j] = TruncatedNormal(random, 0.02);
            a[i] = Tensor.Parameter(values, width, rank);
            b[i] = Tensor.Parameter(new float[rank * width], rank, width);
        }
        return new LorraLearner(a, b, heads);
    }

    internal static LorraLearner From(IReadOnlyDictionary<string, Tensor> tensors, string prefix, int heads) =>
        new(Projections.Select(p => tensors[$"{prefix}.{p}.a"]).ToArray(), Projections.Select(p => tensors[$"{prefix}.{p}.b"]).ToArray(), heads);

    internal IEnumerable<PluginParameter> Named(string prefix, string part)
    {
        for (int i = 0; i < 4; i++)
        {
            yield return new($"{prefix}.{Projections[i]}.a", part, A[i]);
            yield return new($"{prefix}.{Projections[i]}.b", part, B[i]);
        }
    }

    /// <summary>X [N, d] at <paramref name="positions"/> -> K = RoPE(X + X A_k B_k), V = X + X A_v B_v, each [1, N, h, d/h].</summary>
    public LearnerKeys KeysValues(Tensor x, int[] positions, RotaryEmbedding rope)
    {
        int n = x.Shape[0];
        var keys = Ops.Rope(Ops.Reshape(LowRankResidual(x, A[1], B[1]), 1, n, Heads, HeadSize), rope, positions);
        var values = Ops.Reshape(LowRankResidual(x, A[2], B[2]), 1, n, Heads, HeadSize);
        return new LearnerKeys(keys, values, positions);
    }

    /// <summary>H [T, d] at <paramref name="positions"/> against <paramref name="keys"/> under <paramref name="mask"/> -> O A_o B_o [T, d].</summary>
    public Tensor Attend(Tensor hidden, ReadOnlySpan<int> positions, LearnerKeys keys, AttentionMask mask, RotaryEmbedding rope)
    {
        int t = hidden.Shape[0];
        var queries = Ops.Rope(Ops.Reshape(LowRankResidual(hidden, A[0], B[0]), 1, t, Heads, HeadSize), rope, positions);
        var attended = Ops.Attention(queries, keys.Keys, keys.Values, mask, 1f / MathF.Sqrt(HeadSize)).Output;
        return Ops.MatMul(Ops.MatMul(Ops.Reshape(attended, t, Width), A[3]), B[3]);
    }

    /// <summary>X [N, d] -> X + (X A) B.</summary>
    private static Tensor LowRankResidual(Tensor x, Tensor a, Tensor b) => Ops.Add(x, Ops.MatMul(Ops.MatMul(x, a), b));

    private static float TruncatedNormal(Random random, double std)
    {
        while (true)
        {
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            double z = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            if (Math.Abs(z) <= 2.0) return (float)(z * std);
        }
    }
}

/// <summary>
/// The router: S = Σ_heads P [T, T_k] -> a_t (<see cref="WingsRouterInput"/>) -> (w_v, w_t) = softmax(SiLU(W_r a_t + b_r)) [T, 2].
/// </summary>
public sealed class WingsRouter
{
    public WingsRouter(Tensor weight, Tensor bias, WingsRouterInput input)
    {
        if (weight.Rank != 2 || weight.Shape[0] != 2) throw new ArgumentException($"router W_r must be [2, inputs], got {weight.ShapeString}");
        if (!bias.Shape.AsSpan().SequenceEqual([2])) throw new ArgumentException($"router b_r must be [2], got {bias.ShapeString}");
        if (input == WingsRouterInput.ImageTextMass && weight.Shape[1] != 2)
            throw new ArgumentException($"the image-text-mass router reads 2 inputs, W_r is {weight.ShapeString}");
        Weight = weight;
        Bias = bias;
        Input = input;
    }

    public Tensor Weight { get; }
    public Tensor Bias { get; }
    public WingsRouterInput Input { get; }

    /// <summary>Keys the attention-row router reads; longer rows are refused.</summary>
    public int RowLength => Weight.Shape[1];

    /// <summary>Attention weights P [1, H_b, T, T_k] and whether each key is an image token -> (w_v, w_t) [T, 2].</summary>
    public Tensor Route(Tensor attentionWeights, ReadOnlySpan<bool> keyIsImage)
    {
        if (attentionWeights.Rank != 4 || attentionWeights.Shape[0] != 1)
            throw new ArgumentException($"router: attention weights must be [1, H, T, T_k], got {attentionWeights.ShapeString}");
        int heads = attentionWeights.Shape[1], t = attentionWeights.Shape[2], tk = attentionWeights.Shape[3];
        if (keyIsImage.Length != tk) throw new ArgumentException($"router: {keyIsImage.Length} key modalities for {tk} keys");
        // Σ over heads, as the mean times the head count.
        var summed = Ops.Reshape(Ops.Scale(Ops.Mean(Ops.Reshape(attentionWeights, heads, t * tk), 0), heads), t, tk);
        Tensor features;
        if (Input == WingsRouterInput.ImageTextMass)
        {
            // [T, T_k] · [T_k, 2]: column 0 sums the image keys, column 1 the text keys.
            var indicator = new float[tk * 2];
            for (int j = 0; j < tk; j++) indicator[j * 2 + (keyIsImage[j] ? 0 : 1)] = 1f;
            features = Ops.MatMul(summed, Tensor.FromArray(indicator, tk, 2));
        }
        else
        {
            if (tk > RowLength)
                throw new ArgumentException($"the attention-row router reads at most {RowLength} keys (router_row_length), the sequence has {tk}");
            features = tk == RowLength ? summed : Ops.Concat([summed, Tensor.Zeros(t, RowLength - tk)], 1);
        }
        return Ops.Softmax(Ops.Silu(Ops.Linear(features, Weight, Bias)));
    }
}

/// <summary>One layer's WINGS branch: the visual and textual learners and the router that mixes them.</summary>
public sealed class WingsLayer(LorraLearner visual, LorraLearner textual, WingsRouter router)
{
    public LorraLearner Visual { get; } = visual;
    public LorraLearner Textual { get; } = textual;
    public WingsRouter Router { get; } = router;

    /// <summary>
    /// H [T, d] at <paramref name="positions"/> -> H' = H + w_v O_v + w_t O_t. <paramref name="visual"/> and
    /// <paramref name="textual"/> are the learners' keys (null: none, that learner gives 0); <paramref name="keyIsImage"/>
    /// names the modality of each of the attention's keys.
    /// </summary>
    public Tensor Forward(Tensor hidden, Tensor attentionWeights, ReadOnlySpan<int> positions, LearnerKeys? visual, LearnerKeys? textual,
        ReadOnlySpan<bool> keyIsImage, RotaryEmbedding rope)
    {
        int t = hidden.Shape[0], d = hidden.Shape[1];
        var outVisual = visual is null ? Tensor.Zeros(t, d) : Visual.Attend(hidden, positions, visual, AttentionMask.None, rope);
        var outTextual = textual is null ? Tensor.Zeros(t, d) : Textual.Attend(hidden, positions, textual, TextCausalMask(positions, textual.Positions), rope);
        var weights = Router.Route(attentionWeights, keyIsImage);
        // [T, 1, 2] · [T, 2, d]: w_v O_v + w_t O_t for each token.
        var branches = Ops.Concat([Ops.Reshape(outVisual, t, 1, d), Ops.Reshape(outTextual, t, 1, d)], 1);
        var mixed = Ops.MatMul(Ops.Reshape(weights, t, 1, 2), branches);
        return Ops.Add(hidden, Ops.Reshape(mixed, t, d));
    }

    /// <summary>Query at position p sees the text keys at positions ≤ p, whatever their index among the text keys.</summary>
    private static AttentionMask TextCausalMask(ReadOnlySpan<int> queryPositions, int[] keyPositions)
    {
        var allowed = new bool[queryPositions.Length * keyPositions.Length];
        for (int i = 0; i < queryPositions.Length; i++)
            for (int j = 0; j < keyPositions.Length; j++)
                allowed[i * keyPositions.Length + j] = keyPositions[j] <= queryPositions[i];
        return AttentionMask.FromAllowed(allowed, 1, queryPositions.Length, keyPositions.Length);
    }
}
