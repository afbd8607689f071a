using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Models.Vision;

/// <summary>
/// CLIP's vision tower (Hugging Face <c>CLIPVisionModel</c>, or the vision half of a <c>CLIPModel</c> checkpoint,
/// whose text tensors are ignored). Embeddings: patch conv without bias [W, C, p, p], a class token [W] in front,
/// learned positions [1 + P, W]; then <c>pre_layrnorm</c> (sic), L pre-LN blocks, and <c>post_layernorm</c>
/// applied to the class token only, which is the pooled output.
/// </summary>
public sealed class ClipVisionModel : IVisionEncoder
{
    private const string Prefix = "vision_model.";
    private readonly ISafeTensorsReader? _reader;

    public ClipVisionModel(VisionTowerConfig config, Tensor patchWeight, Tensor classEmbedding, Tensor positionEmbedding,
        LayerNormWeights preNorm, IReadOnlyList<VisionEncoderBlock> blocks, LayerNormWeights postNorm, IReadOnlyList<Tensor> parameters,
        ISafeTensorsReader? reader = null)
    {
        Config = config;
        PatchWeight = patchWeight;
        ClassEmbedding = classEmbedding;
        PositionEmbedding = positionEmbedding;
        PreNorm = preNorm;
        Blocks = blocks;
        PostNorm = postNorm;
        Parameters = parameters;
        _reader = reader;
    }

    public VisionTowerConfig Config { get; }
    public bool HasClassToken => true;

    /// <summary>[W, C, p, p], no bias.</summary>
    public Tensor PatchWeight { get; }

    /// <summary>[1, 1, W].</summary>
    public Tensor ClassEmbedding { get; }

    /// <summary>[1 + P, W]; row 0 belongs to the class token.</summary>
    public Tensor PositionEmbedding { get; }

    public LayerNormWeights PreNorm { get; }
    public IReadOnlyList<VisionEncoderBlock> Blocks { get; }
    public LayerNormWeights PostNorm { get; }
    public IReadOnlyList<Tensor> Parameters { get; }
    public AttentionInputHook? AttentionInputHook { get; set; }

    /// <summary>
    /// Loads a Hugging Face folder (config.json + model.safetensors or a sharded index). Frozen weights keep their
    /// stored type and stay mapped until <see cref="Dispose"/>; with <paramref name="trainable"/> every tensor is a
    /// float32 parameter.
    /// </summary>
    public static ClipVisionModel Load(string folder, bool trainable = false)
    {
        var config = VisionTowerConfig.Read(folder, VisionTowerKind.Clip);
        var reader = SafeTensorsCheckpoint.Open(folder);
        try
        {
            var weights = new VisionWeights(reader, trainable);
            int w = config.Width;
            var patch = weights.Matrix(Prefix + "embeddings.patch_embedding.weight", w, config.Channels, config.PatchSize, config.PatchSize);
            var cls = weights.Vector(Prefix + "embeddings.class_embedding", [w], [1, 1, w]);
            var positions = weights.Vector(Prefix + "embeddings.position_embedding.weight", 1 + config.Patches, w);
            var pre = new LayerNormWeights(weights.Vector(Prefix + "pre_layrnorm.weight", w), weights.Vector(Prefix + "pre_layrnorm.bias", w), config.LayerNormEps);
            var blocks = new VisionEncoderBlock[config.Layers];
            for (int i = 0; i < blocks.Length; i++) blocks[i] = VisionEncoderBlock.Load(weights, Prefix + "encoder.layers.", i, config);
            var post = new LayerNormWeights(weights.Vector(Prefix + "post_layernorm.weight", w), weights.Vector(Prefix + "post_layernorm.bias", w), config.LayerNormEps);
            var model = new ClipVisionModel(config, patch, cls, positions, pre, blocks, post, weights.Loaded.ToArray(), trainable ? null : reader);
            if (trainable) reader.Dispose();
            return model;
        }
        catch
        {
            reader.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A tower initialised as transformers' CLIPPreTrainedModel initialises one (initializer_factor f): class token
    /// N(0, (W^-½·f)²); patch and position embeddings N(0, (range·f)²); q, k, v and fc2 N(0, (W^-½·(2L)^-½·f)²); out_proj
    /// N(0, (W^-½·f)²); fc1 N(0, ((2W)^-½·f)²); LayerNorm weights 1, every bias 0. All trainable float32 tensors under
    /// the checkpoint's names, drawn in checkpoint order from one <see cref="Random"/>(seed).
    /// </summary>
    public static ClipVisionModel CreateRandom(VisionTowerConfig config, int seed, float initializerRange = 0.02f, float initializerFactor = 1f)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Kind != VisionTowerKind.Clip) throw new ArgumentException($"a CLIP tower needs a CLIP config, not {config.Kind}", nameof(config));
        if (!(initializerRange > 0) || !(initializerFactor > 0))
            throw new ArgumentOutOfRangeException(nameof(initializerRange), "initializer range and factor must be positive");
        var random = new Random(seed);
        var parameters = new List<Tensor>();
        int w = config.Width, inner = config.IntermediateSize;
        double factor = initializerFactor, widthScale = 1 / Math.Sqrt(w), depthScale = 1 / Math.Sqrt(2.0 * config.Layers);
        Tensor Normal(string name, double std, params int[] shape) => Add(ParameterInit.Normal(random, std, Prefix + name, shape));
        Tensor Constant(string name, float value, params int[] shape) => Add(ParameterInit.Constant(value, Prefix + name, shape));
        Tensor Add(Tensor tensor)
        {
            parameters.Add(tensor);
            return tensor;
        }
        LayerNormWeights Norm(string name) => new(Constant(name + ".weight", 1f, w), Constant(name + ".bias", 0f, w), config.LayerNormEps);
        LinearWeights Linear(string name, double std, int n, int k) => new(Normal(name + ".weight", std, n, k), Constant(name + ".bias", 0f, n));

        var cls = Normal("embeddings.class_embedding", widthScale * factor, 1, 1, w);
        var patch = Normal("embeddings.patch_embedding.weight", initializerRange * factor, w, config.Channels, config.PatchSize, config.PatchSize);
        var positions = Normal("embeddings.position_embedding.weight", initializerRange * factor, 1 + config.Patches, w);
        var pre = Norm("pre_layrnorm");
        var blocks = new VisionEncoderBlock[config.Layers];
        for (int i = 0; i < blocks.Length; i++)
        {
            string p = $"encoder.layers.{i}.";
            double inStd = widthScale * depthScale * factor;
            var norm1 = Norm(p + "layer_norm1");
            var (q, k, v) = (Linear(p + "self_attn.q_proj", inStd, w, w), Linear(p + "self_attn.k_proj", inStd, w, w), Linear(p + "self_attn.v_proj", inStd, w, w));
            var output = Linear(p + "self_attn.out_proj", widthScale * factor, w, w);
            var norm2 = Norm(p + "layer_norm2");
            var fc1 = Linear(p + "mlp.fc1", factor / Math.Sqrt(2.0 * w), inner, w);
            var fc2 = Linear(p + "mlp.fc2", inStd, w, inner);
            blocks[i] = new VisionEncoderBlock(i, config.Heads, config.Activation, norm1, q, k, v, output, norm2, fc1, fc2);
        }
        var post = Norm("post_layernorm");
        return new ClipVisionModel(config, patch, cls, positions, pre, blocks, post, parameters);
    }

    /// <summary>Every tensor under its Hugging Face CLIPVisionModel name, in checkpoint order (the class token as [W], as stored).</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> HuggingFaceTensors()
    {
        int w = Config.Width;
        var named = new List<KeyValuePair<string, Tensor>>
        {
            new(Prefix + "embeddings.class_embedding", Tensor.FromArray(ClassEmbedding.ToArray(), w)),
            new(Prefix + "embeddings.patch_embedding.weight", PatchWeight),
            new(Prefix + "embeddings.position_embedding.weight", PositionEmbedding),
            new(Prefix + "pre_layrnorm.weight", PreNorm.Weight),
            new(Prefix + "pre_layrnorm.bias", PreNorm.Bias),
        };
        foreach (var block in Blocks)
        {
            string p = $"{Prefix}encoder.layers.{block.Index}.";
            void Linear(string name, LinearWeights linear)
            {
                named.Add(new(p + name + ".weight", linear.Weight));
                if (linear.Bias is { } bias) named.Add(new(p + name + ".bias", bias));
            }
            named.Add(new(p + "layer_norm1.weight", block.Norm1.Weight));
            named.Add(new(p + "layer_norm1.bias", block.Norm1.Bias));
            Linear("self_attn.q_proj", block.Query);
            Linear("self_attn.k_proj", block.Key);
            Linear("self_attn.v_proj", block.Value);
            Linear("self_attn.out_proj", block.Output);
            named.Add(new(p + "layer_norm2.weight", block.Norm2.Weight));
            named.Add(new(p + "layer_norm2.bias", block.Norm2.Bias));
            Linear("mlp.fc1", block.Fc1);
            Linear("mlp.fc2", block.Fc2);
        }
        named.Add(new(Prefix + "post_layernorm.weight", PostNorm.Weight));
        named.Add(new(Prefix + "post_layernorm.bias", PostNorm.Bias));
        return named;
    }

    public VisionOutput Forward(Tensor pixels, bool keepHiddenStates = true)
    {
        VisionEncoder.CheckPixels(pixels, Config, "CLIP vision");
        int batch = pixels.Shape[0];
        var patches = Ops.Patchify(pixels, PatchWeight, null, Config.PatchSize);           // [B, P, W]
        var tokens = Ops.Concat([VisionEncoder.Repeat(ClassEmbedding, batch), patches], 1); // [B, 1 + P, W]
        var x = PreNorm.Apply(Ops.Add(tokens, PositionEmbedding));
        var hidden = keepHiddenStates ? new List<Tensor>(Config.Layers + 1) : null;
        var last = VisionEncoder.RunBlocks(Blocks, x, AttentionInputHook, hidden);
        var pooled = PostNorm.Apply(Ops.Slice(last, 1, 0, 1).Reshape(batch, Config.Width));
        return new VisionOutput((IReadOnlyList<Tensor>?)hidden ?? [], last, pooled, HasClassToken);
    }

    public void Dispose() => _reader?.Dispose();
}
