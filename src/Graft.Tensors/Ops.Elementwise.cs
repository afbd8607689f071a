using System.Numerics.Tensors;

namespace Graft.Tensors;

public static partial class Ops
{
    /// <summary>y = a ⊙ b, with b of a's shape or a trailing part of it.</summary>
    public static Tensor Mul(Tensor a, Tensor b)
    {
        var y = Broadcast(a, b, "mul", TensorPrimitives.Multiply, out int inner);
        return Autograd.Record(y, "mul", [a, b], gy =>
        {
            var g = gy.Span;
            if (a.RequiresGrad)
            {
                var da = a.GradientBuffer();
                for (int offset = 0; offset < g.Length; offset += inner)
                    TensorPrimitives.MultiplyAdd(g.Slice(offset, inner), b.Span, da.Slice(offset, inner), da.Slice(offset, inner));
            }
            if (b.RequiresGrad)
            {
                var db = b.GradientBuffer();
                var x = a.Span;
                for (int offset = 0; offset < g.Length; offset += inner)
                    TensorPrimitives.MultiplyAdd(g.Slice(offset, inner), x.Slice(offset, inner), db, db);
            }
        });
    }

    /// <summary>y = a − b, with b of a's shape or a trailing part of it.</summary>
    public static Tensor Sub(Tensor a, Tensor b)
    {
        var y = Broadcast(a, b, "sub", TensorPrimitives.Subtract, out int inner);
        return Autograd.Record(y, "sub", [a, b], gy =>
        {
            AccumulateUpstream(a, gy);
            if (b.RequiresGrad)
            {
                var db = b.GradientBuffer();
                var g = gy.Span;
                for (int offset = 0; offset < g.Length; offset += inner)
                    TensorPrimitives.Subtract(db, g.Slice(offset, inner), db);
            }
        });
    }

    /// <summary>y = s · x.</summary>
    public static Tensor Scale(Tensor x, float s)
    {
        var y = Tensor.Zeros(x.Shape);
        TensorPrimitives.Multiply(x.Span, s, y.Span);
        return Autograd.Record(y, "scale", [x], gy =>
        {
            if (!x.RequiresGrad) return;
            var dx = x.GradientBuffer();
            TensorPrimitives.MultiplyAdd(gy.Span, s, dx, dx);
        });
    }

    /// <summary>Σ of all elements, as a 0-d tensor (shape [], one element).</summary>
    public static Tensor Sum(Tensor x) => FullReduction(x, "sum", 1f);

    /// <summary>Mean of all elements, as a 0-d tensor (shape [], one element). Empty input gives NaN, as in PyTorch.</summary>
    public static Tensor Mean(Tensor x) => FullReduction(x, "mean", 1f / x.Length);

    /// <summary>Mean along one axis (negative counts from the end), which is removed: [.., N, ..] -> [.., ..].</summary>
    public static Tensor Mean(Tensor x, int axis)
    {
        int rank = x.Rank;
        int a = axis < 0 ? axis + rank : axis;
        if (a < 0 || a >= rank) throw new ArgumentOutOfRangeException(nameof(axis), axis, $"mean: axis {axis} is outside {x.ShapeString}");
        int n = x.Shape[a];
        if (n == 0) throw new ArgumentException($"mean: axis {axis} of {x.ShapeString} is empty");
        int outer = 1, inner = 1;
        for (int i = 0; i < a; i++) outer *= x.Shape[i];
        for (int i = a + 1; i < rank; i++) inner *= x.Shape[i];
        var outShape = new int[rank - 1];
        x.Shape.AsSpan(0, a).CopyTo(outShape);
        x.Shape.AsSpan(a + 1).CopyTo(outShape.AsSpan(a));
        var y = Tensor.Zeros(outShape);
        var ys = y.Span;
        var xs = x.Span;
        float invN = 1f / n;
        // x viewed as [outer, n, inner]; y as [outer, inner].
        for (int o = 0; o < outer; o++)
        {
            var yo = ys.Slice(o * inner, inner);
            for (int k = 0; k < n; k++) TensorPrimitives.Add(yo, xs.Slice((o * n + k) * inner, inner), yo);
            TensorPrimitives.Multiply(yo, invN, yo);
        }
        return Autograd.Record(y, "mean_axis", [x], gy =>
        {
            if (!x.RequiresGrad) return;
            var dx = x.GradientBuffer();
            var g = gy.Span;
            for (int o = 0; o < outer; o++)
            for (int k = 0; k < n; k++)
            {
                var target = dx.Slice((o * n + k) * inner, inner);
                TensorPrimitives.MultiplyAdd(g.Slice(o * inner, inner), invN, target, target);
            }
        });
    }

    private static Tensor FullReduction(Tensor x, string name, float factor)
    {
        var y = Tensor.Zeros();
        y.Span[0] = TensorPrimitives.Sum(x.Span) * factor;
        return Autograd.Record(y, name, [x], gy =>
        {
            if (!x.RequiresGrad) return;
            var dx = x.GradientBuffer();
            TensorPrimitives.Add(dx, gy.Span[0] * factor, dx);
        });
    }
}
