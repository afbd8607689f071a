using System.Buffers;
using System.Numerics.Tensors;

namespace Graft.Tensors;

/// <summary>Training losses.</summary>
public static partial class Ops
{
    /// <summary>Rows × vocabulary above which the per-row work is spread over threads.</summary>
    private const long ParallelCrossEntropyWork = 1 << 16;

    /// <summary>
    /// Mean cross-entropy of logits [.., V] (N rows) against N target ids; rows whose target is
    /// <paramref name="ignoreIndex"/> count neither in the sum nor in the mean. Returns a scalar (shape []).
    /// When every row is ignored the loss is 0 and the gradient is zero, not NaN.
    /// </summary>
    public static Tensor CrossEntropy(Tensor logits, ReadOnlySpan<int> targets, int ignoreIndex = -100)
    {
        if (logits.Rank < 1 || logits.Dim(-1) == 0) throw new ArgumentException($"cross-entropy{NameSuffix(logits)}: logits must be [N, V] with V > 0, got {logits.ShapeString}");
        int vocab = logits.Dim(-1), rows = logits.Length / vocab;
        if (targets.Length != rows) throw new ArgumentException($"cross-entropy: {targets.Length} targets for {rows} rows of logits {logits.ShapeString}");
        var labels = targets.ToArray();
        int counted = 0;
        for (int i = 0; i < labels.Length; i++)
        {
            if (labels[i] == ignoreIndex) continue;
            if ((uint)labels[i] >= (uint)vocab)
                throw new ArgumentException($"cross-entropy: target {labels[i]} at row {i} is outside [0, {vocab}) and is not the ignore index {ignoreIndex}");
            counted++;
        }

        var logSumExp = new float[rows];
        var rowLoss = new float[rows];
        var data = logits.Memory;
        ForEachRow(rows, vocab, (row, scratch) =>
        {
            if (labels[row] == ignoreIndex) return;
            var x = data.Span.Slice(row * vocab, vocab);
            float max = TensorPrimitives.Max(x);
            TensorPrimitives.Subtract(x, max, scratch);
            TensorPrimitives.Exp(scratch, scratch);
            logSumExp[row] = max + MathF.Log(TensorPrimitives.Sum(scratch));
            rowLoss[row] = logSumExp[row] - x[labels[row]];
        });
        double total = 0;
        foreach (float loss in rowLoss) total += loss;
        var y = Tensor.Zeros();
        y.Span[0] = counted == 0 ? 0f : (float)(total / counted);

        return Autograd.Record(y, "cross_entropy", [logits], gy =>
        {
            logits.GradientBuffer(); // a fully ignored batch still yields a (zero) gradient
            if (counted == 0) return;
            float scale = gy.Span[0] / counted;
            var gradientMemory = logits.Grad!.Memory;
            // d loss / d x[row] = (softmax(x[row]) - onehot(target)) · scale
            ForEachRow(rows, vocab, (row, scratch) =>
            {
                if (labels[row] == ignoreIndex) return;
                var g = gradientMemory.Span.Slice(row * vocab, vocab);
                TensorPrimitives.Subtract(data.Span.Slice(row * vocab, vocab), logSumExp[row], scratch);
                TensorPrimitives.Exp(scratch, scratch);
                TensorPrimitives.MultiplyAdd(scratch, scale, g, g);
                g[labels[row]] -= scale;
            });
        });
    }

    /// <summary>Runs body(row, scratch of exactly width floats) for every row, in parallel when the work is large.</summary>
    private static void ForEachRow(int rows, int width, RowBody body)
    {
        if ((long)rows * width < ParallelCrossEntropyWork)
        {
            var scratch = new float[width];
            for (int row = 0; row < rows; row++) body(row, scratch);
            return;
        }
        Parallel.For(0, rows,
            () => ArrayPool<float>.Shared.Rent(width),
            (row, _, scratch) =>
            {
                body(row, scratch.AsSpan(0, width));
                return scratch;
            },
            scratch => ArrayPool<float>.Shared.Return(scratch));
    }

    private delegate void RowBody(int row, Span<float> scratch);
}
