using System.Buffers;
using System.Numerics.Tensors;
using Graft.Tensors.Kernels;

namespace Graft.Tensors;

/// <summary>The result of <see cref="Ops.Attention"/>: Output [B, Tq, Hq, D]; Weights [B, Hq, Tq, Tk] when asked for.</summary>
public sealed record AttentionResult(Tensor Output, Tensor? Weights);

public static partial class Ops
{
    /// <summary>
    /// Scaled dot-product attention in the layout projections produce: q [B, Tq, Hq, D], k and v [B, Tk, Hkv, D],
    /// output [B, Tq, Hq, D]. Grouped-query: Hq is a multiple of Hkv and query head h reads kv head h / (Hq/Hkv).
    /// P = softmax(scale · q·kᵀ) over the allowed keys; output = P·v. A query row with no allowed key gets
    /// all-zero probabilities, so its output is zero and it passes no gradient (never NaN).
    /// With <paramref name="returnWeights"/>, P is returned as Weights [B, Hq, Tq, Tk]; when recording, gradients
    /// that reach Weights flow back into q and k.
    /// </summary>
    public static AttentionResult Attention(Tensor q, Tensor k, Tensor v, AttentionMask mask, float scale, bool returnWeights = false)
    {
        ArgumentNullException.ThrowIfNull(mask);
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"attention: q, k, v must be [B, T, H, D], got {q.ShapeString}, {k.ShapeString}, {v.ShapeString}");
        if (!Tensor.SameShape(k.Shape, v.Shape)) throw new ArgumentException($"attention: k {k.ShapeString} and v {v.ShapeString} differ");
        int batch = q.Shape[0], tq = q.Shape[1], hq = q.Shape[2], d = q.Shape[3];
        int tk = k.Shape[1], hkv = k.Shape[2];
        if (k.Shape[0] != batch || k.Shape[3] != d)
            throw new ArgumentException($"attention: k {k.ShapeString} does not match q {q.ShapeString} in batch or head size");
        if (hkv == 0 || hq % hkv != 0)
            throw new ArgumentException($"attention: {hq} query heads are not a multiple of {hkv} key/value heads");
        mask.Validate(batch, tq, tk);

        var geometry = new AttentionGeometry(batch, tq, tk, hq, hkv, d, scale);
        bool record = Autograd.ShouldRecord([q, k, v]);
        bool keepProbabilities = record || returnWeights;
        var probabilities = keepProbabilities ? new float[geometry.ProbabilityLength] : null;
        var output = Tensor.Zeros(batch, tq, hq, d);
        AttentionForward(q.Memory, k.Memory, v.Memory, mask, geometry, output.Memory, probabilities);

        var weights = returnWeights ? Tensor.FromArray(probabilities!, batch, hq, tq, tk) : null;
        if (record)
        {
            Autograd.Record(output, "attention", [q, k, v], gy => AttentionBackward(q, k, v, geometry, probabilities!, gy, fromWeights: false));
            if (weights is not null)
                Autograd.Record(weights, "attention_weights", [q, k], gw => AttentionBackward(q, k, v, geometry, probabilities!, gw, fromWeights: true));
        }
        return new AttentionResult(output, weights);
    }

    private readonly record struct AttentionGeometry(int Batch, int Tq, int Tk, int Hq, int Hkv, int D, float Scale)
    {
        public int Group => Hq / Hkv;
        public int QueryStride => Hq * D;
        public int KeyStride => Hkv * D;
        public int ProbabilityLength => Batch * Hq * Tq * Tk;
        public int QueryOffset(int b, int h) => b * Tq * Hq * D + h * D;
        public int KeyOffset(int b, int kvHead) => b * Tk * Hkv * D + kvHead * D;
        public int ProbabilityOffset(int b, int h) => (b * Hq + h) * Tq * Tk;
    }

    /// <summary>
    /// Up to this many queries per head (decode steps, short continuations) are served by dot products per
    /// visible key, which skips hidden keys and needs no GEMM packing; longer blocks use GEMM.
    /// </summary>
    private const int RowwiseQueryLimit = 4;

    /// <summary>Per (batch, query head): scores [Tq, Tk] = q·kᵀ on the strided head views, mask, softmax, times v.</summary>
    private static void AttentionForward(Memory<float> q, Memory<float> k, Memory<float> v, AttentionMask mask, AttentionGeometry g,
        Memory<float> output, float[]? probabilities)
    {
        Parallel.For(0, g.Batch * g.Hq, item =>
        {
            int b = item / g.Hq, h = item % g.Hq, kvHead = h / g.Group;
            int size = g.Tq * g.Tk;
            float[]? rented = probabilities is null ? ArrayPool<float>.Shared.Rent(size) : null;
            var p = probabilities is null ? rented.AsSpan(0, size) : probabilities.AsSpan(g.ProbabilityOffset(b, h), size);
            var qHead = q.Span[g.QueryOffset(b, h)..];
            var kHead = k.Span[g.KeyOffset(b, kvHead)..];
            var vHead = v.Span[g.KeyOffset(b, kvHead)..];
            var outHead = output.Span[g.QueryOffset(b, h)..];
            if (g.Tq <= RowwiseQueryLimit)
            {
                for (int i = 0; i < g.Tq; i++)
                {
                    var row = p.Slice(i * g.Tk, g.Tk);
                    var qRow = qHead.Slice(i * g.QueryStride, g.D);
                    int limit = mask.KeyLimit(i, g.Tk);
                    AttentionRows.Scores(qRow, g.D, kHead, g.KeyStride, row[..limit]);
                    MaskedSoftmaxRow(row, limit, mask.PatternRow(b, i), g.Scale);
                    AttentionRows.WeightedSum(row[..limit], vHead, g.KeyStride, g.D, outHead.Slice(i * g.QueryStride, g.D));
                }
            }
            else
            {
                Gemm.Multiply(false, true, g.Tq, g.Tk, g.D, qHead, g.QueryStride, kHead, g.KeyStride, p, g.Tk);
                for (int i = 0; i < g.Tq; i++) MaskedSoftmaxRow(p.Slice(i * g.Tk, g.Tk), mask.KeyLimit(i, g.Tk), mask.PatternRow(b, i), g.Scale);
                Gemm.Multiply(false, false, g.Tq, g.D, g.Tk, p, g.Tk, vHead, g.KeyStride, outHead, g.QueryStride);
            }
            if (rented is not null) ArrayPool<float>.Shared.Return(rented);
        });
    }

    /// <summary>Scores in row[..limit] become probabilities over the keys the pattern allows; row[limit..] becomes 0.</summary>
    private static void MaskedSoftmaxRow(Span<float> row, int limit, ReadOnlySpan<bool> pattern, float scale)
    {
        var visible = row[..limit];
        TensorPrimitives.Multiply(visible, scale, visible);
        if (!pattern.IsEmpty)
            for (int j = 0; j < limit; j++)
                if (!pattern[j]) visible[j] = float.NegativeInfinity;
        Kernels.Softmax.Row(visible);
        row[limit..].Clear();
    }

    /// <summary>
    /// From the gradient of the output (dP = dO·vᵀ, dv += Pᵀ·dO) or of the weights (dP given), then
    /// dS = scale · P ⊙ (dP − rowsum(dP ⊙ P)), dq += dS·k, dk += dSᵀ·q. Parallel over (batch, kv head) so
    /// the query heads sharing a kv head accumulate into it one after another.
    /// </summary>
    private static void AttentionBackward(Tensor q, Tensor k, Tensor v, AttentionGeometry g, float[] probabilities, Tensor upstream, bool fromWeights)
    {
        // Gradient buffers are created here, once, before workers touch them.
        bool dq = q.RequiresGrad, dk = k.RequiresGrad, dv = !fromWeights && v.RequiresGrad;
        if (dq) q.GradientBuffer();
        if (dk) k.GradientBuffer();
        if (dv) v.GradientBuffer();
        bool needScores = dq || dk;
        var qm = q.Memory;
        var km = k.Memory;
        var vm = v.Memory;
        var gm = upstream.Memory;
        Parallel.For(0, g.Batch * g.Hkv, item =>
        {
            int b = item / g.Hkv, kvHead = item % g.Hkv;
            int size = g.Tq * g.Tk;
            var scratch = needScores ? new float[size] : [];
            int keyOffset = g.KeyOffset(b, kvHead);
            for (int h = kvHead * g.Group; h < (kvHead + 1) * g.Group; h++)
            {
                var p = probabilities.AsSpan(g.ProbabilityOffset(b, h), size);
                int queryOffset = g.QueryOffset(b, h);
                if (dv) // dv[Tk, D] += Pᵀ[Tk, Tq] · dO[Tq, D]
                    Gemm.Multiply(true, false, g.Tk, g.D, g.Tq, p, g.Tk, gm.Span[queryOffset..], g.QueryStride,
                        v.Grad!.Span[keyOffset..], g.KeyStride, beta: 1f);
                if (!needScores) continue;
                var dP = scratch.AsSpan();
                if (fromWeights) gm.Span.Slice(g.ProbabilityOffset(b, h), size).CopyTo(dP);
                else // dP[Tq, Tk] = dO[Tq, D] · vᵀ
                    Gemm.Multiply(false, true, g.Tq, g.Tk, g.D, gm.Span[queryOffset..], g.QueryStride, vm.Span[keyOffset..], g.KeyStride, dP, g.Tk);
                for (int i = 0; i < g.Tq; i++)
                {
                    var row = dP.Slice(i * g.Tk, g.Tk);
                    Kernels.Softmax.RowBackward(p.Slice(i * g.Tk, g.Tk), row, row);
                    TensorPrimitives.Multiply(row, g.Scale, row);
                }
                if (dq) // dq[Tq, D] += dS[Tq, Tk] · k[Tk, D]
                    Gemm.Multiply(false, false, g.Tq, g.D, g.Tk, dP, g.Tk, km.Span[keyOffset..], g.KeyStride,
                        q.Grad!.Span[queryOffset..], g.QueryStride, beta: 1f);
                if (dk) // dk[Tk, D] += dSᵀ[Tk, Tq] · q[Tq, D]
                    Gemm.Multiply(true, false, g.Tk, g.D, g.Tq, dP, g.Tk, qm.Span[queryOffset..], g.QueryStride,
                        k.Grad!.Span[keyOffset..], g.KeyStride, beta: 1f);
            }
        });
    }
}
