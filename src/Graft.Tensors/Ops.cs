using Graft.Tensors.Kernels;
using System.Numerics.Tensors;

namespace Graft.Tensors;

/// <summary>
/// Differentiable operations. Each computes its forward pass with span kernels and, when autograd
/// records (see <see cref="Autograd"/>), attaches the backward pass that accumulates into the inputs
/// requiring a gradient. Inputs that are frozen are read, never given gradient buffers.
/// Broadcasting is deliberately narrow: a second operand may have the trailing shape of the first.
/// </summary>
public static partial class Ops
{
    /// <summary>Same elements under a new shape; one dimension may be -1.</summary>
    public static Tensor Reshape(Tensor x, params int[] shape)
    {
        shape = (int[])shape.Clone();
        int inferred = Array.IndexOf(shape, -1);
        if (inferred >= 0)
        {
            long known = 1;
            for (int i = 0; i < shape.Length; i++) if (i != inferred) known *= shape[i];
            if (known == 0 || x.Length % known != 0) throw new ArgumentException($"cannot reshape {x.ShapeString} to [{string.Join(", ", shape)}]");
            shape[inferred] = (int)(x.Length / known);
        }
        if (Tensor.ShapeLength(shape) != x.Length) throw new ArgumentException($"cannot reshape {x.ShapeString} to [{string.Join(", ", shape)}]");
        var y = x.ViewAs(shape);
        return Autograd.Record(y, "reshape", [x], gy => Accumulate(x, gy.Span));
    }

    /// <summary>y = a + b, with b of a's shape or a trailing part of it (a bias).</summary>
    public static Tensor Add(Tensor a, Tensor b)
    {
        var y = Broadcast(a, b, "add", TensorPrimitives.Add, out int inner);
        return Autograd.Record(y, "add", [a, b], gy =>
        {
            Accumulate(a, gy.Span);
            if (b.RequiresGrad) AccumulateRowSums(b.GradientBuffer(), gy.Span, inner);
        });
    }

    /// <summary>y = x · Wᵀ + bias. x [.., K], W [N, K] in any stored float type, bias [N] or null; y [.., N].</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (weight.Rank != 2) throw new ArgumentException($"linear weight must be 2-D, got {weight.ShapeString}");
        int k = weight.Shape[1], n = weight.Shape[0];
        if (x.Dim(-1) != k) throw new ArgumentException($"linear: input {x.ShapeString} does not match weight {weight.ShapeString}");
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != n)) throw new ArgumentException($"linear: bias {bias.ShapeString} does not match weight {weight.ShapeString}");
        int m = x.Length / k;
        var outShape = (int[])x.Shape.Clone();
        outShape[^1] = n;
        var y = Tensor.Zeros(outShape);
        MultiplyByWeight(x.Span, m, k, weight, transposeWeight: true, y.Span);
        if (bias is not null)
        {
            var ys = y.Span;
            var bv = bias.Span;
            for (int row = 0; row < m; row++) TensorPrimitives.Add(ys.Slice(row * n, n), bv, ys.Slice(row * n, n));
        }
        return Autograd.Record(y, "linear", bias is null ? [x, weight] : [x, weight, bias], gy =>
        {
            var g = gy.Span;
            if (x.RequiresGrad)
            {
                // dx[M,K] += dy[M,N] · W[N,K]
                MultiplyByWeight(g, m, n, weight, transposeWeight: false, x.GradientBuffer(), beta: 1f);
            }
            if (weight.RequiresGrad)
            {
                // dW[N,K] += dy[M,N]ᵀ · x[M,K]
                Gemm.Multiply(true, false, n, k, m, g, n, x.Span, k, weight.GradientBuffer(), k, beta: 1f);
            }
            if (bias is not null && bias.RequiresGrad) AccumulateRowSums(bias.GradientBuffer(), g, n);
        });
    }

    /// <summary>
    /// x [B, K] · weightᵀ (+ bias) -> [B, N] for batched decoding: the weight streams from memory once for all B rows,
    /// yet each row's result is bit-identical to <see cref="Linear"/> of that row alone (every row is its own
    /// matrix-vector product, computed as the one-row path computes it). Inference only: nothing is recorded.
    /// </summary>
    public static Tensor LinearRows(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (weight.Rank != 2) throw new ArgumentException($"linear weight must be 2-D, got {weight.ShapeString}");
        int k = weight.Shape[1], n = weight.Shape[0];
        if (x.Rank != 2 || x.Shape[1] != k) throw new ArgumentException($"linear rows: input {x.ShapeString} is not [B, {k}] for weight {weight.ShapeString}");
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != n)) throw new ArgumentException($"linear: bias {bias.ShapeString} does not match weight {weight.ShapeString}");
        if (Autograd.IsEnabled && (x.RequiresGrad || weight.RequiresGrad || bias is { RequiresGrad: true }))
            throw new InvalidOperationException("linear rows is for inference and records no gradient; run it under Autograd.NoGrad");
        int rows = x.Shape[0];
        var y = Tensor.Zeros(rows, n);
        if (weight.DType == DType.F32) Gemm.MultiplyRows(rows, n, k, x.Span, weight.Span, y.Span);
        else Gemm.MultiplyRowsHalf(weight.DType, rows, n, k, x.Span, weight.HalfBits, y.Span);
        if (bias is not null)
        {
            var ys = y.Span;
            var bv = bias.Span;
            for (int row = 0; row < rows; row++) TensorPrimitives.Add(ys.Slice(row * n, n), bv, ys.Slice(row * n, n));
        }
        return y;
    }

    /// <summary>Batched product: a [.., M, K] · b [.., K, N] (b may be 2-D and shared by every batch) -> [.., M, N].</summary>
    public static Tensor MatMul(Tensor a, Tensor b)
    {
        if (a.Rank < 2 || b.Rank < 2) throw new ArgumentException($"matmul needs matrices, got {a.ShapeString} and {b.ShapeString}");
        int m = a.Dim(-2), k = a.Dim(-1), n = b.Dim(-1);
        if (b.Dim(-2) != k) throw new ArgumentException($"matmul: {a.ShapeString} and {b.ShapeString} do not chain");
        int batch = a.Length / (m * k);
        bool sharedB = b.Rank == 2;
        if (!sharedB && (b.Rank != a.Rank || b.Length / (k * n) != batch || !a.Shape.AsSpan(0, a.Rank - 2).SequenceEqual(b.Shape.AsSpan(0, b.Rank - 2))))
            throw new ArgumentException($"matmul: batch dimensions of {a.ShapeString} and {b.ShapeString} differ");
        var outShape = (int[])a.Shape.Clone();
        outShape[^1] = n;
        var y = Tensor.Zeros(outShape);
        for (int i = 0; i < batch; i++)
            Gemm.Multiply(false, false, m, n, k, a.Span.Slice(i * m * k, m * k), k, b.Span.Slice(sharedB ? 0 : i * k * n, k * n), n, y.Span.Slice(i * m * n, m * n), n);
        return Autograd.Record(y, "matmul", [a, b], gy =>
        {
            var g = gy.Span;
            for (int i = 0; i < batch; i++)
            {
                var gi = g.Slice(i * m * n, m * n);
                if (a.RequiresGrad) // da += dy · bᵀ
                    Gemm.Multiply(false, true, m, k, n, gi, n, b.Span.Slice(sharedB ? 0 : i * k * n, k * n), n, a.GradientBuffer().Slice(i * m * k, m * k), k, beta: 1f);
                if (b.RequiresGrad) // db += aᵀ · dy
                    Gemm.Multiply(true, false, k, n, m, a.Span.Slice(i * m * k, m * k), k, gi, n, b.GradientBuffer().Slice(sharedB ? 0 : i * k * n, k * n), n, beta: 1f);
            }
        });
    }

    /// <summary>
    /// out[M,N] = x[M,K] · Wᵀ (W [N,K]) or out[M,K'] = x[M,N] · W (transposeWeight false), W in its stored type; with
    /// <paramref name="beta"/> 1 the product is added to what out holds.
    /// </summary>
    internal static void MultiplyByWeight(ReadOnlySpan<float> x, int m, int inner, Tensor weight, bool transposeWeight, Span<float> output, float beta = 0f)
    {
        int rows = weight.Shape[0], cols = weight.Shape[1];
        int n = transposeWeight ? rows : cols;
        if (weight.DType == DType.F32)
            Gemm.Multiply(false, transposeWeight, m, n, inner, x, inner, weight.Span, cols, output, n, beta);
        else
            Gemm.MultiplyHalf(weight.DType, transposeWeight, m, n, inner, x, inner, weight.HalfBits, cols, output, n, beta);
    }

    /// <summary>An element-wise kernel over equal-length spans: destination = f(x, y).</summary>
    internal delegate void SpanBinary(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> destination);

    /// <summary>Applies <paramref name="kernel"/> to a and b repeated over a's leading dimensions; returns the block length.</summary>
    internal static Tensor Broadcast(Tensor a, Tensor b, string op, SpanBinary kernel, out int inner)
    {
        inner = TrailingBroadcast(a, b, op);
        var y = Tensor.Zeros(a.Shape);
        var ys = y.Span;
        var av = a.Span;
        var bv = b.Span;
        for (int offset = 0; offset < ys.Length; offset += inner)
            kernel(av.Slice(offset, inner), bv, ys.Slice(offset, inner));
        return y;
    }

    /// <summary>Checks that b's shape is a suffix of a's; returns the length of one repeated block.</summary>
    internal static int TrailingBroadcast(Tensor a, Tensor b, string op)
    {
        if (b.Rank > a.Rank || !a.Shape.AsSpan(a.Rank - b.Rank).SequenceEqual(b.Shape))
            throw new ArgumentException($"{op}: shape {b.ShapeString} does not broadcast to {a.ShapeString}");
        return Math.Max(b.Length, 1);
    }

    /// <summary>Adds a gradient into x's buffer when x requires one.</summary>
    internal static void Accumulate(Tensor x, ReadOnlySpan<float> gradient)
    {
        if (!x.RequiresGrad) return;
        var buffer = x.GradientBuffer();
        TensorPrimitives.Add(buffer, gradient, buffer);
    }

    /// <summary>target[j] += Σ_rows source[row, j], for source laid out as rows of length width.</summary>
    internal static void AccumulateRowSums(Span<float> target, ReadOnlySpan<float> source, int width)
    {
        for (int offset = 0; offset < source.Length; offset += width)
            TensorPrimitives.Add(target, source.Slice(offset, width), target);
    }
}
