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
