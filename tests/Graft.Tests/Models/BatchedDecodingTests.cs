using Graft.Models.Generation;
using Graft.Models.Llm;
using Graft.Tensors;
using Graft.Tests.Plugins;

namespace Graft.Tests.Models;

/// <summary>Batched decoding: a sequence's logits in a batch are its logits decoded alone, bit for bit.</summary>
public class BatchedDecodingTests
{
    [Theory]
    [InlineData(DType.F32, 37, 53, 7, true)]     // one range; 37 % 4 = 1 output past the groups; k % 16 = 5 in the scalar tail; 4 + 3 rows
    [InlineData(DType.F32, 1031, 200, 9, false)] // several ranges (two threads); the last range has outputs past the groups
    [InlineData(DType.F32, 64, 16, 1, true)]     // one row: the matrix-vector path itself
    [InlineData(DType.BF16, 1031, 200, 6, true)] // k % 32 = 8 past the paired blocks; 8-output groups, 4-output groups and single outputs
    [InlineData(DType.BF16, 4099, 32, 5, false)] // exactly one paired block per output
    [InlineData(DType.BF16, 300, 20, 4, true)]   // k below one paired block: no pairing, widened chunks
    [InlineData(DType.F16, 700, 131, 3, true)]   // F16: widened chunks for every output
    [InlineData(DType.BF16, 96, 2100, 8, false)] // k past one widened chunk of 1024
    public void Linear_rows_are_bit_identical_to_each_row_alone(DType dtype, int n, int k, int rows, bool bias)
    {
        var x = Tensor.FromArray(Random(rows * k, 1), rows, k);
        var weight = Tensor.FromArray(Random(n * k, 2), n, k);
        if (dtype != DType.F32) weight = weight.ToDType(dtype);
        var b = bias ? Tensor.FromArray(Random(n, 3), n) : null;
        // A zero row and a row of negative zeros: signs of zero must come out as alone too.
        if (rows > 2)
        {
            x.Span.Slice(k, k).Clear();
            x.Span.Slice(2 * k, k).Fill(-0f);
        }
        using var _ = Autograd.NoGrad();
        var batched = Ops.LinearRows(x, weight, b);
        Assert.Equal([rows, n], batched.Shape);
        for (int row = 0; row < rows; row++)
        {
            var alone = Ops.Linear(Tensor.FromSpan(x.Span.Slice(row * k, k), 1, k), weight, b);
            Assert.Equal(PluginFixtures.Bits(alone), PluginFixtures.Bits(Tensor.FromSpan(batched.Span.Slice(row * n, n), 1, n)));
        }
    }

    [Fact]
    public void Linear_rows_refuse_mismatched_shapes_and_recording()
    {
        var weight = Tensor.FromArray(Random(6, 4), 3, 2);
        Assert.Contains("is not [B, 2]", Assert.Throws<ArgumentException>(() => Ops.LinearRows(Tensor.Zeros(2, 3), weight)).Message);
        var trainable = Tensor.Parameter(Random(4, 5), 2, 2);
        Assert.Throws<InvalidOperationException>(() => Ops.LinearRows(trainable, Tensor.FromArray(Random(4, 6), 2, 2)));
    }

    /// <summary>
    /// Sequences of different lengths join and leave the batch between steps (continuous batching); every step's batched
    /// logits equal the same sequence decoded alone with a cache of its own, on all three families (llama is bf16).
    /// </summary>
    [Theory]
    [InlineData("qwen2")]
    [InlineData("llama")]
    [InlineData("internlm2")]
    public void A_sequence_decodes_in_a_batch_exactly_as_alone(string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        int[][] prompts = [[1, 5, 9], [2], [7, 3, 11, 4, 8, 6, 12], [3, 3, 3, 3, 3, 10, 2, 1, 9, 14, 5]];
        var alone = prompts.Select(_ => new KvCache(model.Config, 24)).ToArray();
        var batched = prompts.Select(_ => new KvCache(model.Config, 24)).ToArray();
        var next = new int[prompts.Length];
        for (int s = 0; s < prompts.Length; s++)
        {
            next[s] = ArgMax(model.Forward(prompts[s], alone[s], lastPositionOnly: true).ToArray());
            Assert.Equal(next[s], ArgMax(model.Forward(prompts[s], batched[s], lastPositionOnly: true).ToArray()));
        }
        // Which sequences run at each step: all, some leaving, one alone, back together.
        int[][] steps = [[0, 1, 2, 3], [0, 1, 2, 3], [1, 3], [2], [0, 2, 3], [3, 0, 1, 2], [0, 1, 2, 3]];
        foreach (var members in steps)
        {
            var logits = model.DecodeStep(members.Select(s => new DecodeRow(next[s], batched[s])).ToArray());
            int vocabulary = model.Config.VocabSize;
            for (int i = 0; i < members.Length; i++)
            {
                int s = members[i];
                var expected = model.Forward([next[s]], alone[s], lastPositionOnly: true);
                var row = Tensor.FromSpan(logits.Span.Slice(i * vocabulary, vocabulary), 1, vocabulary);
                Assert.Equal(PluginFixtures.Bits(expected), PluginFixtures.Bits(row));
                Assert.Equal(alone[s].Length, batched[s].Length);
                next[s] = ArgMax(row.ToArray());
            }
        }
    }

    [Fact]
    public void Sequence_batch_steps_decoder_states_together_and_matches_appending_alone()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        using var sequences = new DecoderSequenceModel(model, 32);
        int[][] prompts = [[1, 2, 3, 4, 5], [9], [4, 4, 8]];
        var alone = prompts.Select(_ => sequences.CreateState()).ToArray();
        var together = prompts.Select(_ => sequences.CreateState()).ToList();
        var tokens = new int[prompts.Length];
        for (int s = 0; s < prompts.Length; s++)
        {
            tokens[s] = ArgMax(alone[s].Append(prompts[s]).ToArray());
            together[s].Append(prompts[s]);
        }
        for (int step = 0; step < 4; step++)
        {
            var logits = SequenceBatch.Step(together.ToArray(), tokens);
            for (int s = 0; s < prompts.Length; s++)
            {
                var expected = alone[s].Append([tokens[s]]).ToArray();
                var row = logits.Span.Slice(s * expected.Length, expected.Length).ToArray();
                Assert.Equal(Array.ConvertAll(expected, BitConverter.SingleToInt32Bits), Array.ConvertAll(row, BitConverter.SingleToInt32Bits));
                tokens[s] = ArgMax(expected);
            }
        }
        Assert.Equal(prompts[0].Length + 4, together[0].Length);
        var e = Assert.Throws<ArgumentException>(() => SequenceBatch.Step([together[0], together[0]], [1, 2]));
        Assert.Contains("same state", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.DecodeStep([new DecodeRow(model.Config.VocabSize, new KvCache(model.Config, 4))]));
        foreach (var state in alone.Concat(together)) state.Dispose();
    }

    internal static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    private static float[] Random(int length, int seed)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++) values[i] = (float)random.NextDouble() - 0.5f;
        return values;
    }
}
