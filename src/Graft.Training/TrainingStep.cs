using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.Optim;

namespace Graft.Training;

/// <summary>
/// The arithmetic of one optimiser step, shared by <see cref="PluginTrainer"/> and `graft bench train`: each example's
/// summed cross-entropy over its target tokens is back-propagated as it comes (<see cref="Accumulate"/>), then the
/// gradients are divided by the step's target count, clipped and applied (<see cref="Apply"/>). The loss of the step is
/// thus the mean over all its target tokens, whatever the examples' lengths.
/// </summary>
public static class TrainingStep
{
    /// <summary>
    /// Forward and backward of one prepared request: logits at the positions that have a target only (the head's
    /// product over the vocabulary is the costliest one), and the gradient of the summed loss accumulated into every
    /// trainable tensor the request reached. Returns the mean loss over its targets and their count.
    /// </summary>
    public static (float Loss, int Targets) Accumulate(DecoderModel model, PreparedInput prepared)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prepared);
        var (rows, labels) = TargetRows(prepared.Targets);
        if (rows.Length == 0) throw new ArgumentException("the request has no target token", nameof(prepared));
        var logits = model.ForwardEmbeddings(prepared.Embeddings, hooks: prepared.Hooks, outputRows: rows);
        var loss = Ops.CrossEntropy(logits, labels);
        if (loss.RequiresGrad) loss.Backward(Tensor.Full(rows.Length));
        return (loss.Span[0], rows.Length);
    }

    /// <summary>
    /// Divides the accumulated gradients of <paramref name="trainable"/> by <paramref name="targets"/>, clips their global
    /// norm to <paramref name="maxNorm"/> (none when null), applies <paramref name="optimizer"/> and clears the gradients.
    /// Returns the norm before clipping; a non-finite one leaves the parameters untouched.
    /// </summary>
    public static float Apply(IReadOnlyList<Tensor> trainable, AdamW optimizer, long targets, float? maxNorm)
    {
        ArgumentNullException.ThrowIfNull(trainable);
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(targets);
        foreach (var t in trainable)
            if (t.Grad is not null) System.Numerics.Tensors.TensorPrimitives.Multiply(t.Grad.Span, 1f / targets, t.Grad.Span);
        float norm = GradientClipping.ClipByGlobalNorm(trainable, maxNorm ?? float.PositiveInfinity);
        if (float.IsFinite(norm)) optimizer.Step();
        optimizer.ZeroGrad();
        return norm;
    }

    /// <summary>The positions that have a target, and those targets.</summary>
    private static (int[] Rows, int[] Labels) TargetRows(int[] targets)
    {
        int count = 0;
        foreach (int target in targets)
            if (target != MultimodalPrompt.IgnoreTarget) count++;
        var rows = new int[count];
        var labels = new int[count];
        for (int i = 0, j = 0; i < targets.Length; i++)
            if (targets[i] != MultimodalPrompt.IgnoreTarget)
            {
                rows[j] = i;
                labels[j++] = targets[i];
            }
        return (rows, labels);
    }
}
