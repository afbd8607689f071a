using Graft.Tensors;

namespace Graft.Models.Vision;

/// <summary>A linear layer's weight [N, K] and bias [N].</summary>
public sealed record LinearWeights(Tensor Weight, Tensor? Bias)
{
    public Tensor Apply(Tensor x) => Ops.Linear(x, Weight, Bias);
}

/// <summary>A LayerNorm's weight and bias [C] with its epsilon.</summary>
public sealed record LayerNormWeights(Tensor Weight, Tensor Bias, float Eps)
{
    public Tensor Apply(Tensor x) => Ops.LayerNorm(x, Weight, Bias, Eps);
}

/// <summary>
/// Called with a block's index and the LayerNorm'd input of its attention [B, T, W]; returns the tensor the
/// attention reads instead (same shape). This is where MMA's adapters sit inside the ViT.
/// </summary>
public delegate Tensor AttentionInputHook(int blockIndex, Tensor normedInput);

/// <summary>
/// One pre-LN ViT encoder layer, identical in CLIP and SigLIP (<c>encoder.layers.{i}</c>):
/// x = x + out_proj(Attn(q, k, v of LN1(x))); x = x + fc2(act(fc1(LN2(x)))). Shapes: x [B, T, W], H heads of size D.
/// </summary>
public sealed class VisionEncoderBlock(
    int index, int heads, VisionActivation activation,
    LayerNormWeights norm1, LinearWeights query, LinearWeights key, LinearWeights value, LinearWeights output,
    LayerNormWeights norm2, LinearWeights fc1, LinearWeights fc2)
{
    public int Index { get; } = index;
    public LayerNormWeights Norm1 { get; } = norm1;
    public LinearWeights Query { get; } = query;
    public LinearWeights Key { get; } = key;
    public LinearWeights Value { get; } = value;
    public LinearWeights Output { get; } = output;
    public LayerNormWeights Norm2 { get; } = norm2;
    public LinearWeights Fc1 { get; } = fc1;
    public LinearWeights Fc2 { get; } = fc2;

    /// <summary>Reads layer <paramref name="index"/> named <c>{prefix}{index}.self_attn.q_proj.weight</c> and so on.</summary>
    internal static VisionEncoderBlock Load(VisionWeights weights, string prefix, int index, VisionTowerConfig config)
    {
        string p = $"{prefix}{index}.";
        int w = config.Width, inner = config.IntermediateSize;
        LinearWeights Linear(string name, int n, int k) => new(weights.Matrix(p + name + ".weight", n, k), weights.Vector(p + name + ".bias", n));
        LayerNormWeights Norm(string name) => new(weights.Vector(p + name + ".weight", w), weights.Vector(p + name + ".bias", w), config.LayerNormEps);
        return new VisionEncoderBlock(index, config.Heads, config.Activation,
            Norm("layer_norm1"),
            Linear("self_attn.q_proj", w, w), Linear("self_attn.k_proj", w, w), Linear("self_attn.v_proj", w, w), Linear("self_attn.out_proj", w, w),
            Norm("layer_norm2"), Linear("mlp.fc1", inner, w), Linear("mlp.fc2", w, inner));
    }

    /// <summary>x [B, T, W] -> [B, T, W].</summary>
    public Tensor Forward(Tensor x, AttentionInputHook? hook = null)
    {
        int batch = x.Shape[0], tokens = x.Shape[1], width = x.Shape[2], headSize = width / heads;
        var normed = Norm1.Apply(x);
        if (hook is not null) normed = hook(Index, normed);
        var q = Query.Apply(normed).Reshape(batch, tokens, heads, headSize);
        var k = Key.Apply(normed).Reshape(batch, tokens, heads, headSize);
        var v = Value.Apply(normed).Reshape(batch, tokens, heads, headSize);
        var attended = Ops.Attention(q, k, v, AttentionMask.None, 1f / MathF.Sqrt(headSize)).Output.Reshape(batch, tokens, width);
        x = Ops.Add(x, Output.Apply(attended));
        return Ops.Add(x, Mlp(Norm2.Apply(x), Fc1, Fc2, activation));
    }

    /// <summary>fc2(act(fc1(x))), shared with SigLIP's pooling head.</summary>
    internal static Tensor Mlp(Tensor x, LinearWeights fc1, LinearWeights fc2, VisionActivation activation)
    {
        var h = fc1.Apply(x);
        h = activation switch
        {
            VisionActivation.QuickGelu => Ops.QuickGelu(h),
            VisionActivation.Gelu => Ops.Gelu(h),
            _ => Ops.Gelu(h, tanhApproximation: true),
        };
        return fc2.Apply(h);
    }
}

/// <summary>
/// The output of a vision tower. HiddenStates follows Hugging Face's <c>hidden_states</c> tuple: index 0 is the
/// encoder's input (embeddings, after CLIP's pre_layrnorm), index i the output of layer i; it is empty when the
/// forward was asked not to keep them. LastHiddenState is the encoder output (SigLIP: after post_layernorm, as in
/// Hugging Face). Pooled is CLIP's post_layernorm(class token) or SigLIP's attention-pooling head, or null.
/// </summary>
public sealed record VisionOutput(IReadOnlyList<Tensor> HiddenStates, Tensor LastHiddenState, Tensor? Pooled, bool HasClassToken);

/// <summary>A loaded ViT vision tower (CLIP or SigLIP).</summary>
public interface IVisionEncoder : IDisposable
{
    VisionTowerConfig Config { get; }

    /// <summary>True when token 0 of every hidden state is a class token (CLIP).</summary>
    bool HasClassToken { get; }

    /// <summary>The encoder layers in order; their weights are exposed for plug-ins that read or adapt them.</summary>
    IReadOnlyList<VisionEncoderBlock> Blocks { get; }

    /// <summary>Every tensor of the tower (trainable ones when loaded with trainable: true).</summary>
    IReadOnlyList<Tensor> Parameters { get; }

    /// <summary>Optional hook on each block's normed attention input; null (the default) costs nothing.</summary>
    AttentionInputHook? AttentionInputHook { get; set; }

    /// <summary>pixels [B, C, S, S] (S = image_size, already preprocessed) -> the tower's outputs.</summary>
    VisionOutput Forward(Tensor pixels, bool keepHiddenStates = true);
}

/// <summary>Opens whichever tower a folder's config.json names.</summary>
public static class VisionEncoder
{
    public static IVisionEncoder Load(string folder, bool trainable = false) => VisionTowerConfig.DetectKind(folder) switch
    {
        VisionTowerKind.Clip => ClipVisionModel.Load(folder, trainable),
        _ => SiglipVisionModel.Load(folder, trainable),
    };

    /// <summary>Runs the blocks over x [B, T, W], collecting every hidden state when asked.</summary>
    internal static Tensor RunBlocks(IReadOnlyList<VisionEncoderBlock> blocks, Tensor x, AttentionInputHook? hook, List<Tensor>? hiddenStates)
    {
        hiddenStates?.Add(x);
        foreach (var block in blocks)
        {
            x = block.Forward(x, hook);
            hiddenStates?.Add(x);
        }
        return x;
    }

    /// <summary>Checks pixels are [B, C, S, S] for the config, naming what differs.</summary>
    internal static void CheckPixels(Tensor pixels, VisionTowerConfig config, string model)
    {
        if (pixels.Rank != 4 || pixels.Shape[1] != config.Channels || pixels.Shape[2] != config.ImageSize || pixels.Shape[3] != config.ImageSize)
            throw new ArgumentException($"{model}: pixels must be [B, {config.Channels}, {config.ImageSize}, {config.ImageSize}] (image_size {config.ImageSize}), got {pixels.ShapeString}");
        if (pixels.DType != DType.F32) throw new ArgumentException($"{model}: pixels must be F32, got {pixels.DType}");
    }

    /// <summary>row [1, 1, W] repeated to [B, 1, W], differentiable (gradients of the copies add up).</summary>
    internal static Tensor Repeat(Tensor row, int batch) => batch == 1 ? row : Ops.Concat(Enumerable.Repeat(row, batch).ToArray(), 0);
}
