using Graft.Tensors;

namespace Graft.Models.Llm;

/// <summary>
/// One sequence of a batched decode step: its next token, its KV cache (holding at least one token) and, for a
/// plug-in request, that request's hooks (null for the base alone).
/// </summary>
public readonly record struct DecodeRow(int Token, KvCache Cache, DecoderHooks? Hooks = null);

/// <summary>Batched decoding: one step for several sequences, each with its own cache and hooks.</summary>
public sealed partial class DecoderModel
{
    /// <summary>
    /// Logits [B, V] for one new token of each of B sequences, row b for <paramref name="rows"/>[b], each sequence's cache
    /// advanced by one. The rows of all sequences go through every linear layer together (<see cref="Ops.LinearRows"/>: one
    /// pass over the weights for B tokens) and attention runs per sequence against its own cache; a plug-in's hooks act on
    /// their own row at each of their points. Row b is bit-identical to what <see cref="Forward"/> (or
    /// <see cref="ForwardEmbeddings"/> with the row's hooks) gives for that token with that cache alone, whatever the other
    /// rows are: every kernel computes a row as it would alone. Inference: nothing is recorded.
    /// </summary>
    public Tensor DecodeStep(IReadOnlyList<DecodeRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        using var _ = Autograd.NoGrad();
        var c = Config;
        int count = rows.Count;
        if (count == 0) throw new ArgumentException("a decode step needs at least one sequence", nameof(rows));
        var tokens = new int[count];
        var positions = new int[count][];
        var ropes = new RotaryEmbedding[count];
        var masks = new AttentionMask[count];
        for (int b = 0; b < count; b++)
        {
            var row = rows[b];
            if (row.Cache is null) throw new ArgumentException($"sequence {b} of the decode step has no KV cache", nameof(rows));
            if ((uint)row.Token >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(rows), row.Token, $"sequence {b}: token id {row.Token} is outside the model's vocabulary of {c.VocabSize}");
            row.Cache.CheckFits(c, 1);
            for (int other = 0; other < b; other++)
            {
                if (ReferenceEquals(rows[other].Cache, row.Cache)) throw new ArgumentException($"sequences {other} and {b} of the decode step share one KV cache", nameof(rows));
                if (row.Hooks is not null && ReferenceEquals(rows[other].Hooks, row.Hooks)) throw new ArgumentException($"sequences {other} and {b} of the decode step share one plug-in request's hooks", nameof(rows));
            }
            int offset = row.Cache.Length;
            tokens[b] = row.Token;
            positions[b] = [offset];
            ropes[b] = RopeFor(offset + 1);
            masks[b] = row.Hooks?.MaskFor(offset, 1) ?? AttentionMask.Causal(offset);
        }

        var h = Ops.Embedding(Weights.Embedding, tokens, count);
        Hook(rows, h, (hooks, b, x) => hooks.Input(x, positions[b]));
        for (int i = 0; i < Weights.Layers.Length; i++)
        {
            var w = Weights.Layers[i];
            int layer = i;
            var normed = Ops.RmsNorm(h, w.AttentionNorm, c.RmsNormEps);
            Hook(rows, normed, (hooks, b, x) => hooks.BeforeAttention(layer, x, positions[b]));
            var attended = AttentionRows(w, normed, rows, positions, ropes, masks, layer, out var weights);
            h = Ops.Add(h, attended);
            Hook(rows, h, (hooks, b, x) => hooks.BesideAttention(layer, x, weights[b], positions[b]));
            normed = Ops.RmsNorm(h, w.FfnNorm, c.RmsNormEps);
            var ffn = FeedForwardRows(w, normed);
            // A hook that runs the base FFN on the very row it was given gets that row of the batched FFN: the same floats.
            Hook(rows, ffn, (hooks, b, _) =>
            {
                var input = RowOf(normed, b);
                return hooks.FeedForward(layer, input, x => ReferenceEquals(x, input) ? RowOf(ffn, b) : FeedForward(w, x), positions[b]);
            });
            h = Ops.Add(h, ffn);
            Hook(rows, h, (hooks, b, x) => hooks.AfterLayer(layer, x, positions[b]));
        }
        foreach (var row in rows) row.Cache.Advance(1);
        var logits = Ops.LinearRows(Ops.RmsNorm(h, Weights.FinalNorm, c.RmsNormEps), Weights.Head);
        Hook(rows, logits, (hooks, b, _) =>
        {
            var hidden = RowOf(h, b);
            return hooks.Output(hidden, x => ReferenceEquals(x, hidden) ? RowOf(logits, b) : BaseOutput(x));
        });
        return logits;
    }

    /// <summary>
    /// normed [B, C] -> [B, C]: the projections of every row together, then per sequence RoPE at its position, its cache's
    /// keys and values, and attention under its mask (with its probabilities when its hooks read them).
    /// </summary>
    private Tensor AttentionRows(DecoderLayerWeights w, Tensor normed, IReadOnlyList<DecodeRow> rows, int[][] positions, RotaryEmbedding[] ropes,
        AttentionMask[] masks, int layer, out Tensor?[] weights)
    {
        var c = Config;
        int count = rows.Count, queryWidth = c.NumHeads * c.HeadDim;
        var q = ProjectRows(normed, w.Query, w.QueryBias, rows, layer, AttentionProjection.Query, positions);
        var k = ProjectRows(normed, w.Key, w.KeyBias, rows, layer, AttentionProjection.Key, positions);
        var v = ProjectRows(normed, w.Value, w.ValueBias, rows, layer, AttentionProjection.Value, positions);
        var attended = Tensor.Zeros(count, queryWidth);
        weights = new Tensor?[count];
        for (int b = 0; b < count; b++)
        {
            var qb = Ops.Rope(RowOf(q, b).Reshape(1, 1, c.NumHeads, c.HeadDim), ropes[b], positions[b]);
            var kb = Ops.Rope(RowOf(k, b).Reshape(1, 1, c.NumKeyValueHeads, c.HeadDim), ropes[b], positions[b]);
            var vb = RowOf(v, b).Reshape(1, 1, c.NumKeyValueHeads, c.HeadDim);
            (kb, vb) = rows[b].Cache.Append(layer, kb, vb);
            bool needsWeights = rows[b].Hooks?.NeedsAttentionWeights(layer) ?? false;
            var (output, probabilities) = Ops.Attention(qb, kb, vb, masks[b], _attentionScale, needsWeights);
            output.Span.CopyTo(attended.Span.Slice(b * queryWidth, queryWidth));
            weights[b] = probabilities;
        }
        return ProjectRows(attended, w.Output, w.OutputBias, rows, layer, AttentionProjection.Output, positions);
    }

    /// <summary>
    /// x [B, in] -> [B, out]: every row through the weight together; a row whose hooks project this layer's attention by
    /// token (<see cref="DecoderHooks.ProjectAttention"/>) gets the hook's projection instead, with its row of the batched
    /// product as the base's projection of that very input (the same floats).
    /// </summary>
    private static Tensor ProjectRows(Tensor x, Tensor weight, Tensor? bias, IReadOnlyList<DecodeRow> rows, int layer, AttentionProjection projection, int[][] positions)
    {
        var projected = Ops.LinearRows(x, weight, bias);
        Hook(rows, projected, (hooks, b, row) =>
        {
            if (!hooks.ProjectsAttention(layer)) return row;
            var input = RowOf(x, b);
            return hooks.ProjectAttention(layer, projection, input, z => ReferenceEquals(z, input) ? row : Ops.Linear(z, weight, bias), positions[b]);
        });
        return projected;
    }

    /// <summary>x [B, C] -> [B, C]: down(silu(gate(x)) · up(x)) with every row through each projection together.</summary>
    private static Tensor FeedForwardRows(DecoderLayerWeights w, Tensor x) =>
        Ops.LinearRows(Ops.SwiGlu(Ops.LinearRows(x, w.Gate, w.GateBias), Ops.LinearRows(x, w.Up, w.UpBias)), w.Down, w.DownBias);

    /// <summary>
    /// For each row with hooks, replaces row b of <paramref name="batch"/> [B, W] by what <paramref name="point"/> returns for
    /// it; the hook gets its row as a tensor of its own [1, W], so nothing it keeps aliases the batch.
    /// </summary>
    private static void Hook(IReadOnlyList<DecodeRow> rows, Tensor batch, Func<DecoderHooks, int, Tensor, Tensor> point)
    {
        int width = batch.Shape[1];
        for (int b = 0; b < rows.Count; b++)
        {
            if (rows[b].Hooks is not { } hooks) continue;
            var result = point(hooks, b, RowOf(batch, b));
            if (result.Length != width) throw new InvalidOperationException($"a plug-in hook returned {result.ShapeString} for one row of width {width}");
            result.Span.CopyTo(batch.Span.Slice(b * width, width));
        }
    }

    /// <summary>Row b of x [B, W] as a new tensor [1, W].</summary>
    private static Tensor RowOf(Tensor x, int b)
    {
        int width = x.Shape[1];
        return Tensor.FromSpan(x.Span.Slice(b * width, width), 1, width);
    }
}
