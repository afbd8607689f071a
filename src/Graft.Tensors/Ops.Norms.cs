using Graft.Tensors.Kernels;

namespace Graft.Tensors;

public static partial class Ops
{
    /// <summary>
    /// Llama RMSNorm over the last axis: y = x / √(mean(x²) + eps) · weight. x [.., C]; weight [C] stored
    /// as F32, F16 or BF16 (a frozen base weight is read in its stored type, widened once per call).
    /// </summary>
    public static Tensor RmsNorm(Tensor x, Tensor weight, float eps)
    {
        int c = NormWidth(x, weight, null, "rms_norm");
        int rows = x.Length / Math.Max(c, 1);
        var w = FloatVector(weight);
        var y = Tensor.Zeros(x.Shape);
        var rstd = new float[rows];
        Normalization.RmsNorm(x.Span, w, eps, y.Span, rstd);
        return Autograd.Record(y, "rms_norm", [x, weight], gy =>
        {
            var dx = x.RequiresGrad ? new float[x.Length] : [];
            var dw = weight.RequiresGrad ? weight.GradientBuffer() : [];
            Normalization.RmsNormBackward(x.Span, w, rstd, gy.Span, dx, dw, new float[c]);
            if (x.RequiresGrad) AccumulateOwned(x, dx);
        });
    }

    /// <summary>
    /// LayerNorm over the last axis with the biased variance: y = (x − mean)/√(var + eps) · weight + bias.
    /// x [.., C]; weight and bias [C] in any stored float type; bias may be null.
    /// </summary>
    public static Tensor LayerNorm(Tensor x, Tensor weight, Tensor? bias, float eps)
    {
        int c = NormWidth(x, weight, bias, "layer_norm");
        int rows = x.Length / Math.Max(c, 1);
        var w = FloatVector(weight);
        var b = bias is null ? [] : FloatVector(bias);
        var y = Tensor.Zeros(x.Shape);
        var mean = new float[rows];
        var rstd = new float[rows];
        Normalization.LayerNorm(x.Span, w, b, eps, y.Span, mean, rstd);
        return Autograd.Record(y, "layer_norm", bias is null ? [x, weight] : [x, weight, bias], gy =>
        {
            var dx = x.RequiresGrad ? new float[x.Length] : [];
            var dw = weight.RequiresGrad ? weight.GradientBuffer() : [];
            var db = bias is not null && bias.RequiresGrad ? bias.GradientBuffer() : [];
            Normalization.LayerNormBackward(x.Span, w, mean, rstd, gy.Span, dx, dw, db, new float[2 * c]);
            if (x.RequiresGrad) AccumulateOwned(x, dx);
        });
    }

    private static int NormWidth(Tensor x, Tensor weight, Tensor? bias, string op)
    {
        if (x.Rank == 0) throw new ArgumentException($"{op}: input must have at least one axis, got a scalar");
        int c = x.Dim(-1);
        if (weight.Rank != 1 || weight.Shape[0] != c)
            throw new ArgumentException($"{op}: weight{NameOf(weight)} {weight.ShapeString} does not match the last axis of input {x.ShapeString}");
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != c))
            throw new ArgumentException($"{op}: bias{NameOf(bias)} {bias.ShapeString} does not match the last axis of input {x.ShapeString}");
        return c;
    }

    private static string NameOf(Tensor t) => t.Name is null ? "" : $" '{t.Name}'";

    /// <summary>A float32 copy of a small vector, widened when stored as F16/BF16; the backward sees the forward's values.</summary>
    private static float[] FloatVector(Tensor t) => t.ToArray();
}
