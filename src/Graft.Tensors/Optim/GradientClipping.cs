using System.Numerics.Tensors;

namespace Graft.Tensors.Optim;

public static class GradientClipping
{
    /// <summary>
    /// As torch.nn.utils.clip_grad_norm_ (L2): the norm of all gradients together; when it exceeds maxNorm the
    /// gradients are scaled by maxNorm / (norm + 1e-6). Returns the norm before clipping. Parameters without a
    /// gradient are ignored. A non-finite norm is returned with the gradients left as they are, so the caller
    /// can skip the step (torch would scale them to NaN).
    /// </summary>
    public static float ClipByGlobalNorm(IEnumerable<Tensor> parameters, float maxNorm)
    {
        if (!(maxNorm > 0f)) throw new ArgumentOutOfRangeException(nameof(maxNorm), $"maximum norm must be > 0, got {maxNorm}");
        var gradients = parameters.Where(p => p.Grad is not null).Select(p => p.Grad!).ToList();
        double sumOfSquares = 0;
        foreach (var g in gradients)
        {
            double norm = TensorPrimitives.Norm(g.Span);
            sumOfSquares += norm * norm;
        }
        float total = (float)Math.Sqrt(sumOfSquares);
        if (!float.IsFinite(total)) return total;
        float scale = maxNorm / (total + 1e-6f);
        if (scale < 1f)
            foreach (var g in gradients) TensorPrimitives.Multiply(g.Span, scale, g.Span);
        return total;
    }
}
