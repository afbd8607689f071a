using Graft.Tensors;

namespace Graft.Models.Vision;

/// <summary>
/// Which visual features a design hands to its projector, taken from <see cref="VisionOutput.HiddenStates"/>:
/// one layer's tokens (LLaVA: layer -2, class token dropped), or the class token after every (L/n)-th block
/// (LaVIN / MMA: n = 6 on 24 blocks -> [B, 6, W]). All selections are differentiable.
/// </summary>
public sealed record VisionFeatureSelector
{
    private VisionFeatureSelector(int? layer, bool keepClassToken, int classTokenCount)
    {
        LayerIndex = layer;
        KeepClassToken = keepClassToken;
        ClassTokenCount = classTokenCount;
    }

    /// <summary>The hidden-state index for <see cref="Layer"/> (negative counts from the end, -1 = last); null for class tokens.</summary>
    public int? LayerIndex { get; }

    public bool KeepClassToken { get; }

    /// <summary>n for <see cref="ClassTokensEvery"/>; 0 otherwise.</summary>
    public int ClassTokenCount { get; }

    /// <summary>Hidden state <paramref name="layer"/> [B, T, W]; without the class token [B, T - 1, W] unless kept (SigLIP has none to drop).</summary>
    public static VisionFeatureSelector Layer(int layer, bool keepClassToken = false) => new(layer, keepClassToken, 0);

    /// <summary>The class token of hidden states L/n, 2L/n, .., L (the outputs of every (L/n)-th block) -> [B, n, W].</summary>
    public static VisionFeatureSelector ClassTokensEvery(int count) =>
        count > 0 ? new(null, true, count) : throw new ArgumentOutOfRangeException(nameof(count), count, "need at least one class token");

    /// <summary>LLaVA-1.5's choice: layer -2 without the class token.</summary>
    public static VisionFeatureSelector Llava { get; } = Layer(-2);

    public Tensor Select(VisionOutput output)
    {
        var states = output.HiddenStates;
        if (states.Count == 0) throw new InvalidOperationException("feature selection needs the hidden states; run Forward with keepHiddenStates: true");
        int layers = states.Count - 1;
        if (LayerIndex is int requested)
        {
            var state = states[Resolve(requested, states.Count)];
            if (!output.HasClassToken || KeepClassToken) return state;
            return Ops.Slice(state, 1, 1, state.Shape[1] - 1);
        }
        if (!output.HasClassToken) throw new InvalidOperationException("class-token features need a tower with a class token (CLIP); SigLIP has none");
        if (layers % ClassTokenCount != 0)
            throw new InvalidOperationException($"cannot take a class token after every (L/n)-th block: L = {layers} blocks is not a multiple of n = {ClassTokenCount}");
        int step = layers / ClassTokenCount;
        var tokens = new Tensor[ClassTokenCount];
        for (int i = 0; i < ClassTokenCount; i++) tokens[i] = Ops.Slice(states[(i + 1) * step], 1, 0, 1);
        return ClassTokenCount == 1 ? tokens[0] : Ops.Concat(tokens, 1);
    }

    /// <summary>A hidden-state index in [-(L+1), L] as a list position, or a clear error.</summary>
    public static int Resolve(int layer, int count)
    {
        int index = layer < 0 ? count + layer : layer;
        if (index < 0 || index >= count)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"hidden-state index must be in [{-count}, {count - 1}] for {count - 1} layers (0 = embeddings, -1 = last)");
        return index;
    }
}
