using System.Numerics.Tensors;
using Graft.Tensors.Kernels;

namespace Graft.Tensors;

public static partial class Ops
{
    /// <summary>y = x·sigmoid(x), elementwise.</summary>
    public static Tensor Silu(Tensor x) =>
        Pointwise(x, "silu", Activations.Silu, Activations.SiluBackward);

    /// <summary>GELU: x·Φ(x) with the exact erf, or PyTorch's approximate='tanh' form when asked.</summary>
    public static Tensor Gelu(Tensor x, bool tanhApproximation = false) => tanhApproximation
        ? Pointwise(x, "gelu_tanh", Activations.GeluTanh, Activations.GeluTanhBackward)
        : Pointwise(x, "gelu", Activations.Gelu, Activations.GeluBackward);

    /// <summary>y = x·sigmoid(1.702x) (CLIP's quick GELU).</summary>
    public static Tensor QuickGelu(Tensor x) =>
        Pointwise(x, "quick_gelu", Activations.QuickGelu, Activations.QuickGeluBackward);

    /// <summary>y = silu(gate) · up, the Llama MLP gate; both [.., C] of the same shape.</summary>
    public static Tensor SwiGlu(Tensor gate, Tensor up)
    {
        RequireSameShape(gate, up, "swiglu");
        var y = Tensor.Zeros(gate.Shape);
        Activations.Silu(gate.Span, y.Span);
        TensorPrimitives.Multiply(y.Span, up.Span, y.Span);
        return Autograd.Record(y, "swiglu", [gate, up], gy =>
        {
            var g = gy.Span;
            if (gate.RequiresGrad)
            {
                var dGate = new float[g.Length];
                TensorPrimitives.Multiply(g, up.Span, dGate);
                Activations.SiluBackward(gate.Span, dGate, dGate);
                AccumulateOwned(gate, dGate);
            }
            if (up.RequiresGrad)
            {
                var dUp = new float[g.Length];
                Activations.Silu(gate.Span, dUp);
                TensorPrimitives.Multiply(dUp, g, dUp);
                AccumulateOwned(up, dUp);
            }
        });
    }

    /// <summary>Softmax over the last axis, numerically stable: x [.., C] -> [.., C].</summary>
    public static Tensor Softmax(Tensor x)
    {
        if (x.Rank == 0) throw new ArgumentException("softmax needs at least one axis, got a scalar");
        int c = x.Dim(-1);
        var y = Tensor.Zeros(x.Shape);
        x.Span.CopyTo(y.Span);
        var ys = y.Span;
        for (int offset = 0; offset < ys.Length; offset += c) Kernels.Softmax.Row(ys.Slice(offset, c));
        return Autograd.Record(y, "softmax", [x], gy =>
        {
            var dx = new float[x.Length];
            var g = gy.Span;
            var probabilities = y.Span;
            for (int offset = 0; offset < dx.Length; offset += c)
                Kernels.Softmax.RowBackward(probabilities.Slice(offset, c), g.Slice(offset, c), dx.AsSpan(offset, c));
            AccumulateOwned(x, dx);
        });
    }

    private delegate void ForwardKernel(ReadOnlySpan<float> x, Span<float> y);

    private delegate void BackwardKernel(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx);

    /// <summary>An elementwise op whose backward needs only its input and the output gradient.</summary>
    private static Tensor Pointwise(Tensor x, string name, ForwardKernel forward, BackwardKernel backward)
    {
        var y = Tensor.Zeros(x.Shape);
        forward(x.Span, y.Span);
        return Autograd.Record(y, name, [x], gy =>
        {
            var dx = new float[x.Length];
            backward(x.Span, gy.Span, dx);
            AccumulateOwned(x, dx);
        });
    }

    internal static void RequireSameShape(Tensor a, Tensor b, string op)
    {
        if (!Tensor.SameShape(a.Shape, b.Shape))
            throw new ArgumentException($"{op}: shapes {a.ShapeString} and {b.ShapeString} differ");
    }
}
