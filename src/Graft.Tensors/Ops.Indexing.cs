using System.Numerics.Tensors;

namespace Graft.Tensors;

/// <summary>Indexing and layout: embedding lookup, concat, slice, transpose, and row gather/scatter for routing tokens.</summary>
public static partial class Ops
{
    /// <summary>
    /// Rows of a table: weight [V, C] (F32, F16 or BF16, read in place), ids laid out as idShape -> [..idShape, C].
    /// The gradient scatter-adds into the rows used, and exists only when the weight is trainable.
    /// </summary>
    public static Tensor Embedding(Tensor weight, ReadOnlySpan<int> ids, params int[] idShape)
    {
        if (weight.Rank != 2) throw new ArgumentException($"embedding{NameSuffix(weight)}: weight must be [V, C], got {weight.ShapeString}");
        if (Tensor.ShapeLength(idShape) != ids.Length)
            throw new ArgumentException($"embedding: {ids.Length} ids do not fill shape [{string.Join(", ", idShape)}]");
        int vocab = weight.Shape[0], channels = weight.Shape[1];
        var indices = ids.ToArray();
        for (int i = 0; i < indices.Length; i++)
            if ((uint)indices[i] >= (uint)vocab)
                throw new ArgumentException($"embedding{NameSuffix(weight)}: id {indices[i]} at position {PositionString(i, idShape)} is outside the vocabulary [0, {vocab})");

        var y = Tensor.Zeros([.. idShape, channels]);
        var ys = y.Span;
        if (weight.DType == DType.F32)
        {
            var table = weight.Span;
            for (int i = 0; i < indices.Length; i++) table.Slice(indices[i] * channels, channels).CopyTo(ys.Slice(i * channels, channels));
        }
        else
        {
            var bits = weight.HalfBits;
            for (int i = 0; i < indices.Length; i++) HalfConvert.ToFloat(weight.DType, bits.Slice(indices[i] * channels, channels), ys.Slice(i * channels, channels));
        }
        return Autograd.Record(y, "embedding", [weight], gy =>
        {
            var gw = weight.GradientBuffer();
            var g = gy.Span;
            for (int i = 0; i < indices.Length; i++)
            {
                var row = gw.Slice(indices[i] * channels, channels);
                TensorPrimitives.Add(row, g.Slice(i * channels, channels), row);
            }
        });
    }

    /// <summary>Joins tensors along an axis (negative counts from the end); all other dimensions must agree.</summary>
    public static Tensor Concat(IReadOnlyList<Tensor> parts, int axis)
    {
        if (parts.Count == 0) throw new ArgumentException("concat needs at least one tensor", nameof(parts));
        var first = parts[0];
        int ax = CheckedAxis(axis, first.Rank, "concat");
        int total = 0;
        for (int p = 0; p < parts.Count; p++)
        {
            var part = parts[p];
            bool compatible = part.Rank == first.Rank;
            for (int d = 0; compatible && d < first.Rank; d++) compatible = d == ax || part.Shape[d] == first.Shape[d];
            if (!compatible) throw new ArgumentException($"concat along axis {ax}: part {p} {part.ShapeString} does not match part 0 {first.ShapeString}");
            total += part.Shape[ax];
        }
        var (outer, inner) = OuterInner(first.Shape, ax);
        var shape = (int[])first.Shape.Clone();
        shape[ax] = total;
        var y = Tensor.Zeros(shape);
        var ys = y.Span;
        int offset = 0;
        foreach (var part in parts)
        {
            int block = part.Shape[ax] * inner;
            var src = part.Span;
            for (int o = 0; o < outer; o++) src.Slice(o * block, block).CopyTo(ys.Slice((o * total + offset) * inner, block));
            offset += part.Shape[ax];
        }
        var inputs = parts.ToArray();
        return Autograd.Record(y, "concat", inputs, gy =>
        {
            var g = gy.Span;
            int start = 0;
            foreach (var part in inputs)
            {
                int block = part.Shape[ax] * inner;
                if (part.RequiresGrad)
                {
                    var gp = part.GradientBuffer();
                    for (int o = 0; o < outer; o++)
                    {
                        var target = gp.Slice(o * block, block);
                        TensorPrimitives.Add(target, g.Slice((o * total + start) * inner, block), target);
                    }
                }
                start += part.Shape[ax];
            }
        });
    }

    /// <summary>The elements start..start+length-1 along an axis (negative counts from the end), copied.</summary>
    public static Tensor Slice(Tensor x, int axis, int start, int length)
    {
        int ax = CheckedAxis(axis, x.Rank, "slice");
        int dim = x.Shape[ax];
        if (start < 0 || length < 0 || start > dim - length)
            throw new ArgumentException($"slice: [{start}, {start}+{length}) is outside axis {ax} of {x.ShapeString}");
        var (outer, inner) = OuterInner(x.Shape, ax);
        var shape = (int[])x.Shape.Clone();
        shape[ax] = length;
        var y = Tensor.Zeros(shape);
        var xs = x.Span;
        var ys = y.Span;
        int block = length * inner;
        for (int o = 0; o < outer; o++) xs.Slice((o * dim + start) * inner, block).CopyTo(ys.Slice(o * block, block));
        return Autograd.Record(y, "slice", [x], gy =>
        {
            var gx = x.GradientBuffer();
            var g = gy.Span;
            for (int o = 0; o < outer; o++)
            {
                var target = gx.Slice((o * dim + start) * inner, block);
                TensorPrimitives.Add(target, g.Slice(o * block, block), target);
            }
        });
    }

    /// <summary>A copy with two axes swapped (negative counts from the end), e.g. [B, T, H, D] -> [B, H, T, D]; the same axis twice returns x itself.</summary>
    public static Tensor Transpose(Tensor x, int axis0, int axis1)
    {
        int a = CheckedAxis(axis0, x.Rank, "transpose"), b = CheckedAxis(axis1, x.Rank, "transpose");
        if (a == b) return x;
        if (a > b) (a, b) = (b, a);
        var (outer, _) = OuterInner(x.Shape, a);
        var (_, inner) = OuterInner(x.Shape, b);
        int d0 = x.Shape[a], d1 = x.Shape[b];
        int mid = 1;
        for (int d = a + 1; d < b; d++) mid *= x.Shape[d];
        var shape = (int[])x.Shape.Clone();
        (shape[a], shape[b]) = (shape[b], shape[a]);
        var y = Tensor.Zeros(shape);
        SwapAxes(x.Span, y.Span, outer, d0, mid, d1, inner);
        return Autograd.Record(y, "transpose", [x], gy =>
        {
            var back = new float[x.Length];
            SwapAxes(gy.Span, back, outer, d1, mid, d0, inner);
            AccumulateOwned(x, back);
        });
    }

    /// <summary>
    /// Rows of x viewed as [N, C] (leading dimensions flattened) -> [M, C]. Repeated rows are allowed;
    /// their gradients add up.
    /// </summary>
    public static Tensor GatherRows(Tensor x, ReadOnlySpan<int> rows)
    {
        var (n, c) = RowsAndWidth(x, "gather rows");
        var indices = CheckedRows(rows, n, x, "gather rows");
        var y = Tensor.Zeros(indices.Length, c);
        var xs = x.Span;
        var ys = y.Span;
        for (int i = 0; i < indices.Length; i++) xs.Slice(indices[i] * c, c).CopyTo(ys.Slice(i * c, c));
        return Autograd.Record(y, "gather_rows", [x], gy =>
        {
            var gx = x.GradientBuffer();
            var g = gy.Span;
            for (int i = 0; i < indices.Length; i++)
            {
                var target = gx.Slice(indices[i] * c, c);
                TensorPrimitives.Add(target, g.Slice(i * c, c), target);
            }
        });
    }

    /// <summary>
    /// x (viewed as [N, C]) with row rows[i] replaced by source[i] (source [M, C]); a new tensor of x's shape.
    /// Rows must be distinct: a row written twice would make the result depend on order.
    /// </summary>
    public static Tensor ScatterRows(Tensor x, ReadOnlySpan<int> rows, Tensor source)
    {
        var (n, c) = RowsAndWidth(x, "scatter rows");
        var indices = CheckedRows(rows, n, x, "scatter rows");
        if (source.Rank != 2 || source.Shape[0] != indices.Length || source.Shape[1] != c)
            throw new ArgumentException($"scatter rows: source {source.ShapeString} must be [{indices.Length}, {c}] ({indices.Length} rows of width {c})");
        var firstSeen = new Dictionary<int, int>(indices.Length);
        for (int i = 0; i < indices.Length; i++)
            if (!firstSeen.TryAdd(indices[i], i))
                throw new ArgumentException($"scatter rows: row {indices[i]} appears at positions {firstSeen[indices[i]]} and {i}; rows must be distinct");

        var y = Tensor.Zeros(x.Shape);
        x.Span.CopyTo(y.Span);
        var ys = y.Span;
        var ss = source.Span;
        for (int i = 0; i < indices.Length; i++) ss.Slice(i * c, c).CopyTo(ys.Slice(indices[i] * c, c));
        return Autograd.Record(y, "scatter_rows", [x, source], gy =>
        {
            var g = gy.Span;
            if (x.RequiresGrad)
            {
                var gx = x.GradientBuffer();
                var replaced = new bool[n];
                foreach (int row in indices) replaced[row] = true;
                for (int row = 0; row < n; row++)
                {
                    if (replaced[row]) continue;
                    var target = gx.Slice(row * c, c);
                    TensorPrimitives.Add(target, g.Slice(row * c, c), target);
                }
            }
            if (source.RequiresGrad)
            {
                var gs = source.GradientBuffer();
                for (int i = 0; i < indices.Length; i++)
                {
                    var target = gs.Slice(i * c, c);
                    TensorPrimitives.Add(target, g.Slice(indices[i] * c, c), target);
                }
            }
        });
    }

    /// <summary>src [outer, d0, mid, d1, inner] -> dst [outer, d1, mid, d0, inner].</summary>
    private static void SwapAxes(ReadOnlySpan<float> src, Span<float> dst, int outer, int d0, int mid, int d1, int inner)
    {
        for (int o = 0; o < outer; o++)
            for (int i = 0; i < d0; i++)
                for (int m = 0; m < mid; m++)
                {
                    int from = ((o * d0 + i) * mid + m) * d1 * inner;
                    if (inner == 1)
                    {
                        for (int j = 0; j < d1; j++) dst[((o * d1 + j) * mid + m) * d0 + i] = src[from + j];
                    }
                    else
                    {
                        for (int j = 0; j < d1; j++)
                            src.Slice(from + j * inner, inner).CopyTo(dst.Slice((((o * d1 + j) * mid + m) * d0 + i) * inner, inner));
                    }
                }
    }

    private static int CheckedAxis(int axis, int rank, string op)
    {
        int resolved = axis < 0 ? axis + rank : axis;
        if (resolved < 0 || resolved >= rank) throw new ArgumentOutOfRangeException(nameof(axis), $"{op}: axis {axis} is outside a rank-{rank} tensor");
        return resolved;
    }

    /// <summary>Products of the dimensions before and after an axis.</summary>
    private static (int Outer, int Inner) OuterInner(int[] shape, int axis)
    {
        int outer = 1, inner = 1;
        for (int d = 0; d < axis; d++) outer *= shape[d];
        for (int d = axis + 1; d < shape.Length; d++) inner *= shape[d];
        return (outer, inner);
    }

    private static (int Rows, int Width) RowsAndWidth(Tensor x, string op)
    {
        if (x.Rank < 1 || x.Dim(-1) == 0) throw new ArgumentException($"{op}{NameSuffix(x)}: needs rows of a positive width, got {x.ShapeString}");
        int width = x.Dim(-1);
        return (x.Length / width, width);
    }

    private static int[] CheckedRows(ReadOnlySpan<int> rows, int n, Tensor x, string op)
    {
        var indices = rows.ToArray();
        for (int i = 0; i < indices.Length; i++)
            if ((uint)indices[i] >= (uint)n)
                throw new ArgumentException($"{op}{NameSuffix(x)}: row {indices[i]} at position {i} is outside [0, {n}) of {x.ShapeString}");
        return indices;
    }

    private static string NameSuffix(Tensor t) => t.Name is null ? "" : $" '{t.Name}'";

    /// <summary>A flat index as a multi-index in a shape, e.g. [1, 4].</summary>
    private static string PositionString(int flat, int[] shape)
    {
        var index = new int[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            index[d] = flat % shape[d];
            flat /= shape[d];
        }
        return "[" + string.Join(", ", index) + "]";
    }
}
