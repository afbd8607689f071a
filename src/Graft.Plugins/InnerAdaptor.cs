using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>How <see cref="InnerAdaptor.Create"/> makes an untrained IAA plug-in.</summary>
public sealed record InnerAdaptorOptions
{
    /// <summary>Seed of the projector's initialisation (the inner layers are copies, so they need none).</summary>
    public int Seed { get; init; }

    /// <summary>
    /// Where the inner layers go: <see cref="InnerAdaptor.Iaa14"/> or <see cref="InnerAdaptor.Iaa8"/>, scaled to the base's
    /// depth (<see cref="InnerAdaptor.PresetLayers"/>). Ignored when <see cref="InsertAfter"/> is given.
    /// </summary>
    public string Preset { get; init; } = InnerAdaptor.Iaa14;

    /// <summary>An explicit list of frozen layer indices to insert after (preset "custom"); strictly increasing, within the base.</summary>
    public IReadOnlyList<int>? InsertAfter { get; init; }

    /// <summary>Train an own F32 copy of the token embedding for the multimodal stream (the original's `embed_tokens_condition`).</summary>
    public bool OwnEmbedding { get; init; }

    /// <summary>Train an own F32 copy of the final norm for the multimodal stream (the original's `norm_condition`).</summary>
    public bool OwnNorm { get; init; }

    /// <summary>
    /// Train an own F32 copy of the LM head for the multimodal stream (the original's `lm_head_condition`; with the other two,
    /// about 1B extra parameters on Llama-3-8B). On a base that ties its head to the embedding, an own head and an own
    /// embedding are one tensor, as in the base.
    /// </summary>
    public bool OwnHead { get; init; }
}

/// <summary>
/// IAA, the Inner-Adaptor Architecture (Wang et al., "IAA: Inner-Adaptor Architecture Empowers Frozen Large Language Model
/// with Multimodal Capabilities", arXiv 2408.12902): trainable decoder layers inserted inside a frozen LLM, on the
/// multimodal stream only.
/// </summary>
/// <remarks>
/// Vision: a frozen tower's features Z_v [N_v, d_v] (CLIP ViT-L, layer -2, class token dropped), produced by the
/// <see cref="IVisionFrontEnd"/>, projected by LLaVA's `mlp2x_gelu` (<see cref="GeluProjector"/>) and placed at `&lt;image&gt;`
/// as in Bridge: H_v = W_2 · GELU(W_1 · Z_v + b_1) + b_2.
/// Inner layers: full decoder layers of the base's shapes (attention + SwiGLU MLP), inserted serially after chosen frozen
/// layers S = {s_0 &lt; s_1 &lt; ...} (the authors' `ehce_layers`, IAA-14 on Llama-3-8B: {0,1,5,6,10,11,15,16,20,21,25,26,30,31}):
///     u_l = Frozen_l(h_l),     h_{l+1} = Inner_k(u_l) if l = s_k, else u_l,
///     Inner_k(u) = v + MLP_k(RMSNorm(v)),  v = u + Attn_k(RMSNorm(u))      (a Llama layer with weights of its own),
///     logits = Head(RMSNorm(h_L))  with the base's norm and head, or the plug-in's own copies (own_norm, own_head).
/// Every token of a request with an image runs this stream; a text-only request runs the base alone (CanRouteText is
/// false), as the authors' Text workflow does, so text is the base bit for bit by construction.
/// Initialisation (not published; Graft's): Inner_k starts as a copy of frozen layer s_k widened to F32 with its two output
/// projections (o_proj and down_proj, with their biases) zeroed. Attn_k and MLP_k then add exact zeros, so
/// Inner_k(u) = u and the multimodal stream at initialisation is the base's forward of the same input embeddings,
/// bit for bit; training moves it away from there.
/// KV cache: the base layers use the request's base cache; the inner layers keep their own, in the request's hooks,
/// so that a cached decode on the multimodal stream equals recomputation. Decode steps must go through the same hooks
/// (<see cref="PreparedInput.Hooks"/>) and embed new tokens with <see cref="Embed"/>.
/// Tensor names follow the authors' code: `model.condition_layers.{k}.*`, `model.embed_tokens_condition`,
/// `model.norm_condition`; the projector is LLaVA's `mm_projector.{0,2}`.
/// </remarks>
public sealed class InnerAdaptor : IPlugin
{
    public const string DesignName = "inner-adaptor";
    public const string ProjectorPart = "projector";
    public const string InnerLayersPart = "inner_layers";
    public const string HeadPart = "head";
    public const string Iaa14 = "iaa-14";
    public const string Iaa8 = "iaa-8";
    public const string CustomPreset = "custom";

    /// <summary>IAA-14 on a 32-layer base (the authors' `ehce_layers` for Llama-3-8B).</summary>
    public static IReadOnlyList<int> Iaa14On32 { get; } = [0, 1, 5, 6, 10, 11, 15, 16, 20, 21, 25, 26, 30, 31];

    /// <summary>
    /// IAA-8 on a 32-layer base. The paper reports IAA-8 without listing its layers and the released code holds IAA-14 only;
    /// Graft keeps IAA-14's pattern (pairs of consecutive layers, first and last included) at every tenth layer.
    /// </summary>
    public static IReadOnlyList<int> Iaa8On32 { get; } = [0, 1, 10, 11, 20, 21, 30, 31];

    private const string LayerPrefix = "model.condition_layers.";
    private const string EmbeddingName = "model.embed_tokens_condition.weight";
    private const string NormName = "model.norm_condition.weight";
    private const string HeadName = "lm_head_condition.weight";

    private readonly int[] _slotOfLayer;

    private InnerAdaptor(DecoderModel baseModel, IVisionFrontEnd? vision, PluginManifest manifest, GeluProjector projector,
        int[] insertAfter, DecoderLayerWeights[] innerLayers, OwnParts own)
    {
        Base = baseModel;
        Vision = vision;
        Manifest = manifest;
        Projector = projector;
        InsertAfter = insertAfter;
        InnerLayers = innerLayers;
        Own = own;
        _slotOfLayer = Enumerable.Repeat(-1, baseModel.Config.NumLayers).ToArray();
        for (int k = 0; k < insertAfter.Length; k++) _slotOfLayer[insertAfter[k]] = k;
        var parameters = new List<PluginParameter>
        {
            new("mm_projector.0.weight", ProjectorPart, projector.W1),
            new("mm_projector.0.bias", ProjectorPart, projector.B1),
            new("mm_projector.2.weight", ProjectorPart, projector.W2),
            new("mm_projector.2.bias", ProjectorPart, projector.B2),
        };
        for (int k = 0; k < innerLayers.Length; k++)
            foreach (var (suffix, tensor) in LayerTensors(innerLayers[k]))
                if (tensor is not null) parameters.Add(new(LayerPrefix + k + "." + suffix, InnerLayersPart, tensor));
        if (own.Embedding is not null) parameters.Add(new(EmbeddingName, HeadPart, own.Embedding));
        if (own.FinalNorm is not null) parameters.Add(new(NormName, HeadPart, own.FinalNorm));
        if (own.Head is not null && !ReferenceEquals(own.Head, own.Embedding)) parameters.Add(new(HeadName, HeadPart, own.Head));
        foreach (var p in parameters) p.Tensor.Name = p.Name;
        Parameters = parameters;
    }

    public string Design => DesignName;
    public PluginManifest Manifest { get; }

    /// <summary>IAA is built on LLaVA's code: each image at its `&lt;image&gt;` placeholder.</summary>
    public PromptLayout Layout => PromptLayout.AtPlaceholders;
    public DecoderModel Base { get; }
    public IVisionFrontEnd? Vision { get; }
    public GeluProjector Projector { get; }

    /// <summary>The frozen layers each inner layer follows, strictly increasing: inner layer k runs after frozen layer InsertAfter[k].</summary>
    public IReadOnlyList<int> InsertAfter { get; }

    /// <summary>The inner layers' weights, F32 and trainable, in the base's layer layout.</summary>
    public IReadOnlyList<DecoderLayerWeights> InnerLayers { get; }

    /// <summary>Whether the multimodal stream has its own token embedding (else it shares the base's).</summary>
    public bool HasOwnEmbedding => Own.Embedding is not null;

    /// <summary>Whether the multimodal stream has its own final norm (else it shares the base's).</summary>
    public bool HasOwnNorm => Own.FinalNorm is not null;

    /// <summary>Whether the multimodal stream has its own LM head (else it shares the base's).</summary>
    public bool HasOwnHead => Own.Head is not null;

    public IReadOnlyList<PluginParameter> Parameters { get; }

    /// <summary>IAA's Text workflow is the base alone: nothing of the plug-in acts on text.</summary>
    public bool CanRouteText => false;

    public bool CanEncodePixels => Vision is not null;

    private OwnParts Own { get; }

    /// <summary>
    /// The plug-in's own embedding, final norm and head, each null where the base's is shared; own head and own embedding
    /// are one tensor when the base ties them and both are own.
    /// </summary>
    private sealed record OwnParts(Tensor? Embedding, Tensor? FinalNorm, Tensor? Head);

    /// <summary>
    /// A preset's layers on a base of <paramref name="numLayers"/> layers: each index i of the 32-layer list maps to
    /// round(i · (L − 1) / 31) (halves up), so the first and last layers stay first and last, then duplicates are dropped.
    /// On 32 layers this is the list itself; on 2 layers both presets give {0, 1}.
    /// </summary>
    public static int[] PresetLayers(string preset, int numLayers)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numLayers);
        var on32 = preset switch
        {
            Iaa14 => Iaa14On32,
            Iaa8 => Iaa8On32,
            _ => throw new ArgumentException($"'{preset}' is not an IAA preset ({Iaa14}, {Iaa8})", nameof(preset)),
        };
        return on32.Select(i => (2 * i * (numLayers - 1) + 31) / 62).Distinct().Order().ToArray();
    }

    /// <summary>An untrained IAA for <paramref name="baseModel"/>: projector as nn.Linear, inner layers copied from the frozen ones with zeroed output projections.</summary>
    public static InnerAdaptor Create(DecoderModel baseModel, IVisionFrontEnd vision, InnerAdaptorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        ArgumentNullException.ThrowIfNull(vision);
        options ??= new InnerAdaptorOptions();
        var c = baseModel.Config;
        string preset = options.InsertAfter is null ? options.Preset : CustomPreset;
        int[] insertAfter = options.InsertAfter?.ToArray() ?? PresetLayers(options.Preset, c.NumLayers);
        string? problem = LayerListProblem(insertAfter, c.NumLayers);
        if (problem is not null) throw new ArgumentException($"InsertAfter: {problem}", nameof(options));

        var inner = insertAfter.Select(l => CopyWithZeroedOutputs(baseModel.Weights.Layers[l])).ToArray();
        var w = baseModel.Weights;
        var ownEmbedding = options.OwnEmbedding ? Copy(w.Embedding) : null;
        var ownHead = !options.OwnHead ? null : c.TieWordEmbeddings && ownEmbedding is not null ? ownEmbedding : Copy(w.Head);
        var own = new OwnParts(ownEmbedding, options.OwnNorm ? Copy(w.FinalNorm) : null, ownHead);
        var ownParts = new[] { (options.OwnEmbedding, "embedding"), (options.OwnNorm, "norm"), (options.OwnHead, "head") }.Where(p => p.Item1).Select(p => p.Item2).ToArray();
        int dv = vision.FeatureWidth, d = c.HiddenSize;
        var manifest = new PluginManifest
        {
            Design = DesignName,
            HyperParameters = new JsonObject
            {
                ["projector"] = Bridge.ProjectorKind,
                ["vision_width"] = dv,
                ["hidden_size"] = d,
                ["preset"] = preset,
                ["insert_after"] = new JsonArray(insertAfter.Select(l => (JsonNode?)l).ToArray()),
                ["own_embedding"] = options.OwnEmbedding,
                ["own_norm"] = options.OwnNorm,
                ["own_head"] = options.OwnHead,
                ["tied_head"] = c.TieWordEmbeddings,
                ["qkv_bias"] = c.QkvBias,
                ["o_proj_bias"] = c.OutputBias,
                ["mlp_bias"] = c.MlpBias,
                ["image_placeholder"] = "<image>",
            },
            Base = BaseDescription.Of(baseModel),
            Vision = VisionDescription.Of(vision),
            Training = new JsonObject
            {
                ["state"] = "untrained",
                ["initialisation"] = "projector: nn.Linear default; inner layer k: copy of frozen layer insert_after[k] (F32) with o_proj and down_proj zeroed"
                    + (ownParts.Length > 0 ? $"; own {string.Join(", ", ownParts)}: copies of the base's (F32)" : ""),
                ["seed"] = options.Seed,
            },
        };
        return new InnerAdaptor(baseModel, vision, manifest, GeluProjector.Create(dv, d, new Random(options.Seed)), insertAfter, inner, own);
    }

    /// <summary>The tensors an IAA plug-in with this manifest holds, with their shapes.</summary>
    public static IReadOnlyDictionary<string, int[]> ExpectedShapes(PluginManifest manifest, string file)
    {
        var b = manifest.Base;
        int dv = manifest.HyperParameter<int>("vision_width", file), d = b.HiddenSize;
        int q = b.NumHeads * b.HeadDim, kv = b.NumKeyValueHeads * b.HeadDim, inter = b.IntermediateSize;
        bool qkvBias = manifest.HyperParameter<bool>("qkv_bias", file), outputBias = manifest.HyperParameter<bool>("o_proj_bias", file);
        bool mlpBias = manifest.HyperParameter<bool>("mlp_bias", file);
        var shapes = new Dictionary<string, int[]>(StringComparer.Ordinal)
        {
            ["mm_projector.0.weight"] = [d, dv],
            ["mm_projector.0.bias"] = [d],
            ["mm_projector.2.weight"] = [d, d],
            ["mm_projector.2.bias"] = [d],
        };
        int layers = ReadInsertAfter(manifest, file).Length;
        for (int k = 0; k < layers; k++)
        {
            string p = LayerPrefix + k + ".";
            shapes[p + "input_layernorm.weight"] = [d];
            shapes[p + "self_attn.q_proj.weight"] = [q, d];
            shapes[p + "self_attn.k_proj.weight"] = [kv, d];
            shapes[p + "self_attn.v_proj.weight"] = [kv, d];
            shapes[p + "self_attn.o_proj.weight"] = [d, q];
            if (qkvBias)
            {
                shapes[p + "self_attn.q_proj.bias"] = [q];
                shapes[p + "self_attn.k_proj.bias"] = [kv];
                shapes[p + "self_attn.v_proj.bias"] = [kv];
            }
            if (outputBias) shapes[p + "self_attn.o_proj.bias"] = [d];
            shapes[p + "post_attention_layernorm.weight"] = [d];
            shapes[p + "mlp.gate_proj.weight"] = [inter, d];
            shapes[p + "mlp.up_proj.weight"] = [inter, d];
            shapes[p + "mlp.down_proj.weight"] = [d, inter];
            if (mlpBias)
            {
                shapes[p + "mlp.gate_proj.bias"] = [inter];
                shapes[p + "mlp.up_proj.bias"] = [inter];
                shapes[p + "mlp.down_proj.bias"] = [d];
            }
        }
        bool ownEmbedding = manifest.HyperParameter<bool>("own_embedding", file);
        if (ownEmbedding) shapes[EmbeddingName] = [b.VocabSize, d];
        if (manifest.HyperParameter<bool>("own_norm", file)) shapes[NormName] = [d];
        if (manifest.HyperParameter<bool>("own_head", file) && !(ownEmbedding && manifest.HyperParameter<bool>("tied_head", file))) shapes[HeadName] = [b.VocabSize, d];
        return shapes;
    }

    /// <summary>An IAA plug-in from a checked manifest and tensors (see <see cref="PluginFile.Load"/>).</summary>
    internal static InnerAdaptor Restore(PluginManifest manifest, IReadOnlyDictionary<string, Tensor> tensors, DecoderModel baseModel, IVisionFrontEnd? vision, string file)
    {
        string projector = manifest.HyperParameter<string>("projector", file);
        if (projector != Bridge.ProjectorKind) throw new PluginFormatException(file, $"'{projector}' is not a projector IAA runs ({Bridge.ProjectorKind})", "hyper_parameters.projector");
        var c = baseModel.Config;
        void Agrees(string field, bool recorded, bool actual)
        {
            if (recorded != actual) throw new PluginFormatException(file, $"is {recorded.ToString().ToLowerInvariant()}, but the base's config says {actual.ToString().ToLowerInvariant()}", $"hyper_parameters.{field}");
        }
        Agrees("qkv_bias", manifest.HyperParameter<bool>("qkv_bias", file), c.QkvBias);
        Agrees("o_proj_bias", manifest.HyperParameter<bool>("o_proj_bias", file), c.OutputBias);
        Agrees("mlp_bias", manifest.HyperParameter<bool>("mlp_bias", file), c.MlpBias);
        Agrees("tied_head", manifest.HyperParameter<bool>("tied_head", file), c.TieWordEmbeddings);
        var insertAfter = ReadInsertAfter(manifest, file);
        string preset = manifest.HyperParameter<string>("preset", file);
        if (preset != CustomPreset)
        {
            int[] expected = preset is Iaa14 or Iaa8 ? PresetLayers(preset, c.NumLayers)
                : throw new PluginFormatException(file, $"'{preset}' is not {Iaa14}, {Iaa8} or {CustomPreset}", "hyper_parameters.preset");
            if (!expected.SequenceEqual(insertAfter))
                throw new PluginFormatException(file, $"is [{string.Join(", ", insertAfter)}], but preset {preset} on {c.NumLayers} layers is [{string.Join(", ", expected)}]", "hyper_parameters.insert_after");
        }
        string? problem = LayerListProblem(insertAfter, c.NumLayers);
        if (problem is not null) throw new PluginFormatException(file, problem, "hyper_parameters.insert_after");

        var inner = new DecoderLayerWeights[insertAfter.Length];
        for (int k = 0; k < inner.Length; k++)
        {
            string p = LayerPrefix + k + ".";
            Tensor? Optional(string suffix) => tensors.TryGetValue(p + suffix, out var t) ? t : null;
            inner[k] = new DecoderLayerWeights
            {
                AttentionNorm = tensors[p + "input_layernorm.weight"],
                Query = tensors[p + "self_attn.q_proj.weight"],
                Key = tensors[p + "self_attn.k_proj.weight"],
                Value = tensors[p + "self_attn.v_proj.weight"],
                Output = tensors[p + "self_attn.o_proj.weight"],
                QueryBias = Optional("self_attn.q_proj.bias"),
                KeyBias = Optional("self_attn.k_proj.bias"),
                ValueBias = Optional("self_attn.v_proj.bias"),
                OutputBias = Optional("self_attn.o_proj.bias"),
                FfnNorm = tensors[p + "post_attention_layernorm.weight"],
                Gate = tensors[p + "mlp.gate_proj.weight"],
                Up = tensors[p + "mlp.up_proj.weight"],
                Down = tensors[p + "mlp.down_proj.weight"],
                GateBias = Optional("mlp.gate_proj.bias"),
                UpBias = Optional("mlp.up_proj.bias"),
                DownBias = Optional("mlp.down_proj.bias"),
            };
        }
        var embedding = tensors.GetValueOrDefault(EmbeddingName);
        var head = !manifest.HyperParameter<bool>("own_head", file) ? null : c.TieWordEmbeddings && embedding is not null ? embedding : tensors[HeadName];
        var own = new OwnParts(embedding, tensors.GetValueOrDefault(NormName), head);
        return new InnerAdaptor(baseModel, vision, manifest, new GeluProjector(
            tensors["mm_projector.0.weight"], tensors["mm_projector.0.bias"], tensors["mm_projector.2.weight"], tensors["mm_projector.2.bias"]),
            insertAfter, inner, own);
    }

    /// <summary>Z_v [N, d_v] -> H_v [N, d] = W_2 · GELU(W_1 · Z_v + b_1) + b_2.</summary>
    public Tensor Project(Tensor features) => Projector.Forward(features);

    /// <summary>Token embeddings [T, C] of the multimodal stream: the plug-in's own embedding with own_embedding, else the base's.</summary>
    public Tensor Embed(ReadOnlySpan<int> ids)
    {
        if (Own.Embedding is null) return Base.Embed(ids);
        if (ids.IsEmpty) throw new ArgumentException("no token ids to embed", nameof(ids));
        return Ops.Embedding(Own.Embedding, ids, ids.Length);
    }

    /// <summary>Text parts embedded by <see cref="Embed"/>, each image replaced by its N_v projected features, in prompt order; the hooks run the inner layers.</summary>
    public PreparedInput Prepare(MultimodalPrompt prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var (embeddings, imageMask, targets) = prompt.Lay(ids => Embed(ids), image => Project(image.FeaturesFrom(Vision, "IAA")));
        return new PreparedInput(embeddings, imageMask, targets, new InnerHooks(this));
    }

    /// <summary>h [T, C] -> logits: the plug-in's own final norm and head, or the base's.</summary>
    private Tensor Output(Tensor hidden, Func<Tensor, Tensor> baseOutput) =>
        Own.FinalNorm is null && Own.Head is null ? baseOutput(hidden)
            : Ops.Linear(Ops.RmsNorm(hidden, Own.FinalNorm ?? Base.Weights.FinalNorm, Base.Config.RmsNormEps), Own.Head ?? Base.Weights.Head);

    /// <summary>
    /// One request's multimodal stream: after frozen layer s_k, inner layer k (<see cref="DecoderModel.RunLayer"/>) with the
    /// inner layers' own KV cache. Inference (no gradient recorded) always caches: a chunk at position 0 starts the
    /// sequence afresh, a later chunk must continue where the cache stops. While recording, the inner layers run
    /// uncached on whole sequences, as the base does.
    /// </summary>
    private sealed class InnerHooks(InnerAdaptor plugin) : DecoderHooks
    {
        private KvCache? _cache;
        private int _chunk;
        private bool _cached;

        public override Tensor AfterLayer(int layer, Tensor hidden, ReadOnlySpan<int> positions)
        {
            int k = plugin._slotOfLayer[layer];
            if (k < 0) return hidden;
            if (k == 0) BeginChunk(positions);
            return plugin.Base.RunLayer(plugin.InnerLayers[k], hidden, positions, _cached ? _cache : null, k);
        }

        public override Tensor Output(Tensor hidden, Func<Tensor, Tensor> baseOutput)
        {
            if (_cached) DecoderModel.AdvanceCache(_cache!, _chunk);
            return plugin.Output(hidden, baseOutput);
        }

        /// <summary>Called at the first inner layer of each forward, before any inner layer appends.</summary>
        private void BeginChunk(ReadOnlySpan<int> positions)
        {
            _chunk = positions.Length;
            int start = positions.IsEmpty ? 0 : positions[0];
            _cached = !Autograd.IsEnabled;
            if (!_cached)
            {
                if (start != 0)
                    throw new InvalidOperationException($"IAA: a chunk at position {start} continues a cached sequence, which cannot be done while recording gradients; run the decode under Autograd.NoGrad");
                return;
            }
            if (start == 0) _cache?.Reset();
            int held = _cache?.Length ?? 0;
            if (start != held)
                throw new InvalidOperationException($"IAA: the chunk starts at position {start} but the inner layers' cache holds {held} tokens; decode steps must go through the same request's hooks, in order");
            var config = plugin.Base.Config with { NumLayers = plugin.InnerLayers.Count };
            if (_cache is null) _cache = new KvCache(config, Math.Max(1, _chunk));
            else if (held + _chunk > _cache.MaxLength) _cache = _cache.Grown(Math.Max(2 * _cache.MaxLength, held + _chunk));
        }
    }

    /// <summary>Every tensor of a layer by its name in the authors' layout (null where the base has no such bias).</summary>
    private static IEnumerable<(string Suffix, Tensor? Tensor)> LayerTensors(DecoderLayerWeights w) =>
    [
        ("input_layernorm.weight", w.AttentionNorm),
        ("self_attn.q_proj.weight", w.Query),
        ("self_attn.k_proj.weight", w.Key),
        ("self_attn.v_proj.weight", w.Value),
        ("self_attn.o_proj.weight", w.Output),
        ("self_attn.q_proj.bias", w.QueryBias),
        ("self_attn.k_proj.bias", w.KeyBias),
        ("self_attn.v_proj.bias", w.ValueBias),
        ("self_attn.o_proj.bias", w.OutputBias),
        ("post_attention_layernorm.weight", w.FfnNorm),
        ("mlp.gate_proj.weight", w.Gate),
        ("mlp.up_proj.weight", w.Up),
        ("mlp.down_proj.weight", w.Down),
        ("mlp.gate_proj.bias", w.GateBias),
        ("mlp.up_proj.bias", w.UpBias),
        ("mlp.down_proj.bias", w.DownBias),
    ];

    /// <summary>The frozen layer widened to trainable F32, with o_proj and down_proj (and their biases) zero: Inner(u) = u exactly.</summary>
    private static DecoderLayerWeights CopyWithZeroedOutputs(DecoderLayerWeights w) => new()
    {
        AttentionNorm = Copy(w.AttentionNorm),
        Query = Copy(w.Query),
        Key = Copy(w.Key),
        Value = Copy(w.Value),
        Output = Zeros(w.Output),
        QueryBias = CopyOrNull(w.QueryBias),
        KeyBias = CopyOrNull(w.KeyBias),
        ValueBias = CopyOrNull(w.ValueBias),
        OutputBias = w.OutputBias is null ? null : Zeros(w.OutputBias),
        FfnNorm = Copy(w.FfnNorm),
        Gate = Copy(w.Gate),
        Up = Copy(w.Up),
        Down = Zeros(w.Down),
        GateBias = CopyOrNull(w.GateBias),
        UpBias = CopyOrNull(w.UpBias),
        DownBias = w.DownBias is null ? null : Zeros(w.DownBias),
    };

    /// <summary>A trainable F32 copy (never a view of the base's memory, which is only ever read).</summary>
    private static Tensor Copy(Tensor t) => Tensor.Parameter(t.ToArray(), t.Shape);

    private static Tensor? CopyOrNull(Tensor? t) => t is null ? null : Copy(t);

    private static Tensor Zeros(Tensor like) => Tensor.Parameter(new float[like.Length], like.Shape);

    private static int[] ReadInsertAfter(PluginManifest manifest, string file)
    {
        if (manifest.HyperParameters["insert_after"] is not JsonArray list)
            throw new PluginFormatException(file, manifest.HyperParameters["insert_after"] is null ? "is missing" : "must be an array of layer indices", "hyper_parameters.insert_after");
        return list.Select(n => n is JsonValue v && v.TryGetValue(out int i) ? i
            : throw new PluginFormatException(file, $"holds {n?.ToJsonString() ?? "null"}, not a layer index", "hyper_parameters.insert_after")).ToArray();
    }

    /// <summary>What is wrong with a list of frozen layers to insert after on a base of <paramref name="numLayers"/> layers; null when nothing.</summary>
    public static string? LayerListProblem(IReadOnlyList<int> layers, int numLayers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Count == 0) return "no layer to insert after";
        for (int i = 0; i < layers.Count; i++)
        {
            if (layers[i] < 0 || layers[i] >= numLayers) return $"layer {layers[i]} is outside the base's {numLayers} layers";
            if (i > 0 && layers[i] <= layers[i - 1]) return $"layers must be strictly increasing ({layers[i - 1]} then {layers[i]})";
        }
        return null;
    }
}
