using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Models.Vision;

/// <summary>
/// SigLIP's attention-pooling head (<c>vision_model.head</c>): a learned probe [1, 1, W] attends over the tokens
/// with torch's nn.MultiheadAttention (packed <c>in_proj_weight</c> [3W, W]), then out = a + MLP(LN(a)) with a the
/// attention output; the pooled vector is its single token. Held in float32 (it is small).
/// </summary>
public sealed record SiglipPoolingHead(Tensor Probe, LinearWeights Query, LinearWeights Key, LinearWeights Value, LinearWeights Output,
    LayerNormWeights Norm, LinearWeights Fc1, LinearWeights Fc2)
{
    /// <summary>x [B, T, W] -> [B, W].</summary>
    public Tensor Forward(Tensor x, int heads, VisionActivation activation)
    {
        int batch = x.Shape[0], tokens = x.Shape[1], width = x.Shape[2], headSize = width / heads;
        var probe = VisionEncoder.Repeat(Probe, batch);
        var q = Query.Apply(probe).Reshape(batch, 1, heads, headSize);
        var k = Key.Apply(x).Reshape(batch, tokens, heads, headSize);
        var v = Value.Apply(x).Reshape(batch, tokens, heads, headSize);
        var attended = Output.Apply(Ops.Attention(q, k, v, AttentionMask.None, 1f / MathF.Sqrt(headSize)).Output.Reshape(batch, 1, width));
        var pooled = Ops.Add(attended, VisionEncoderBlock.Mlp(Norm.Apply(attended), Fc1, Fc2, activation));
        return pooled.Reshape(batch, width);
    }

    internal static SiglipPoolingHead Load(VisionWeights weights, string prefix, VisionTowerConfig config)
    {
        int w = config.Width, inner = config.IntermediateSize;
        var probe = weights.Vector(prefix + "probe", 1, 1, w);
        var packedWeight = weights.Split(prefix + "attention.in_proj_weight", [3 * w, w], 3);
        var packedBias = weights.Split(prefix + "attention.in_proj_bias", [3 * w], 3);
        LinearWeights Part(int i) => new(packedWeight[i], packedBias[i]);
        LinearWeights Linear(string name, int n, int k) => new(weights.Vector(prefix + name + ".weight", n, k), weights.Vector(prefix + name + ".bias", n));
        var norm = new LayerNormWeights(weights.Vector(prefix + "layernorm.weight", w), weights.Vector(prefix + "layernorm.bias", w), config.LayerNormEps);
        return new SiglipPoolingHead(probe, Part(0), Part(1), Part(2), Linear("attention.out_proj", w, w), norm, Linear("mlp.fc1", inner, w), Linear("mlp.fc2", w, inner));
    }
}

/// <summary>
/// SigLIP's vision tower (Hugging Face <c>SiglipVisionModel</c>, or the vision half of a <c>SiglipModel</c>).
/// Embeddings: patch conv with bias, learned positions [P, W], no class token and no pre-norm; L pre-LN blocks
/// with tanh GELU; <c>post_layernorm</c> over all tokens gives last_hidden_state. The attention-pooling head runs
/// when <c>vision_use_head</c> is true (its tensors are then required), is skipped when it is false, and otherwise
/// runs when its tensors are present; without it Pooled is null.
/// </summary>
public sealed class SiglipVisionModel : IVisionEncoder
{
    private const string Prefix = "vision_model.";
    private readonly ISafeTensorsReader? _reader;

    public SiglipVisionModel(VisionTowerConfig config, LinearWeights patchEmbedding, Tensor positionEmbedding, IReadOnlyList<VisionEncoderBlock> blocks,
        LayerNormWeights postNorm, SiglipPoolingHead? head, IReadOnlyList<Tensor> parameters, ISafeTensorsReader? reader = null)
    {
        Config = config;
        PatchEmbedding = patchEmbedding;
        PositionEmbedding = positionEmbedding;
        Blocks = blocks;
        PostNorm = postNorm;
        Head = head;
        Parameters = parameters;
        _reader = reader;
    }

    public VisionTowerConfig Config { get; }
    public bool HasClassToken => false;

    /// <summary>Weight [W, C, p, p] and bias [W].</summary>
    public LinearWeights PatchEmbedding { get; }

    /// <summary>[P, W].</summary>
    public Tensor PositionEmbedding { get; }

    public IReadOnlyList<VisionEncoderBlock> Blocks { get; }
    public LayerNormWeights PostNorm { get; }
    public SiglipPoolingHead? Head { get; }
    public IReadOnlyList<Tensor> Parameters { get; }
    public AttentionInputHook? AttentionInputHook { get; set; }

    /// <summary>Loads a Hugging Face folder; see <see cref="ClipVisionModel.Load"/> for dtype and lifetime.</summary>
    public static SiglipVisionModel Load(string folder, bool trainable = false)
    {
        var config = VisionTowerConfig.Read(folder, VisionTowerKind.Siglip);
        var reader = SafeTensorsCheckpoint.Open(folder);
        try
        {
            var weights = new VisionWeights(reader, trainable);
            int w = config.Width;
            var patch = new LinearWeights(
                weights.Matrix(Prefix + "embeddings.patch_embedding.weight", w, config.Channels, config.PatchSize, config.PatchSize),
                weights.Vector(Prefix + "embeddings.patch_embedding.bias", w));
            var positions = weights.Vector(Prefix + "embeddings.position_embedding.weight", config.Patches, w);
            var blocks = new VisionEncoderBlock[config.Layers];
            for (int i = 0; i < blocks.Length; i++) blocks[i] = VisionEncoderBlock.Load(weights, Prefix + "encoder.layers.", i, config);
            var post = new LayerNormWeights(weights.Vector(Prefix + "post_layernorm.weight", w), weights.Vector(Prefix + "post_layernorm.bias", w), config.LayerNormEps);
            bool useHead = config.UseHead ?? weights.Has(Prefix + "head.probe");
            var head = useHead ? SiglipPoolingHead.Load(weights, Prefix + "head.", config) : null;
            var model = new SiglipVisionModel(config, patch, positions, blocks, post, head, weights.Loaded.ToArray(), trainable ? null : reader);
            if (trainable) reader.Dispose();
            return model;
        }
        catch
        {
            reader.Dispose();
            throw;
        }
    }

    public VisionOutput Forward(Tensor pixels, bool keepHiddenStates = true)
    {
        VisionEncoder.CheckPixels(pixels, Config, "SigLIP vision");
        var x = Ops.Add(Ops.Patchify(pixels, PatchEmbedding.Weight, PatchEmbedding.Bias, Config.PatchSize), PositionEmbedding); // [B, P, W]
        var hidden = keepHiddenStates ? new List<Tensor>(Config.Layers + 1) : null;
        var last = PostNorm.Apply(VisionEncoder.RunBlocks(Blocks, x, AttentionInputHook, hidden));
        var pooled = Head?.Forward(last, Config.Heads, Config.Activation);
        return new VisionOutput((IReadOnlyList<Tensor>?)hidden ?? [], last, pooled, HasClassToken);
    }

    public void Dispose() => _reader?.Dispose();
}
