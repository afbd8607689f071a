using Graft.Models.Llm;
using Graft.Tensors;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>The decoder against tools/reference/llm_golden.py (float64 PyTorch from the stored weights).</summary>
public class LlmForwardTests
{
    public static TheoryData<string> Families => new(LlmGolden.Families);

    [Theory]
    [MemberData(nameof(Families))]
    public void Logits_match_the_reference_at_every_position(string family)
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder(family));
        using var golden = LlmGolden.Values(family);
        for (int n = 0; golden.Contains($"ids.{n}"); n++)
        {
            var logits = model.Forward(LlmGolden.Ids(golden, $"ids.{n}"));
            TensorAssert.Close(LlmGolden.Floats(golden, $"logits.{n}"), logits, rtol: 1e-4f, atol: 2e-5f, what: $"{family} logits.{n}");
        }
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Greedy_continuation_matches_the_reference(string family)
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder(family));
        using var golden = LlmGolden.Values(family);
        var ids = LlmGolden.Ids(golden, "prompt").ToList();
        var expected = LlmGolden.Ids(golden, "greedy");
        var produced = new List<int>();
        for (int step = 0; step < expected.Length; step++)
        {
            int next = ArgMaxOfLastRow(model.Forward(ids.ToArray()));
            produced.Add(next);
            ids.Add(next);
        }
        Assert.Equal(expected, produced);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Cached_decode_gives_the_logits_and_tokens_of_full_recomputation(string family)
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder(family));
        using var golden = LlmGolden.Values(family);
        var prompt = LlmGolden.Ids(golden, "prompt");
        int steps = LlmGolden.Ids(golden, "greedy").Length;
        var cache = new KvCache(model.Config, prompt.Length + steps);

        var ids = prompt.ToList();
        var produced = new List<int>();
        var logits = model.Forward(prompt, cache);
        TensorAssert.Close(model.Forward(prompt), logits, rtol: 1e-5f, atol: 1e-5f, what: $"{family} prefill");
        for (int step = 0; ; step++)
        {
            int next = ArgMaxOfLastRow(logits);
            produced.Add(next);
            ids.Add(next);
            if (produced.Count == steps) break;
            logits = model.Forward([next], cache);
            Assert.Equal([1, model.Config.VocabSize], logits.Shape);
            TensorAssert.Close(LastRow(model.Forward(ids.ToArray())), logits.ToArray(), rtol: 1e-5f, atol: 1e-5f, what: $"{family} step {step}");
        }
        Assert.Equal(LlmGolden.Ids(golden, "greedy"), produced);
        Assert.Equal(ids.Count - 1, cache.Length);
    }

    [Fact]
    public void Cached_decode_past_the_dynamic_ntk_limit_rotates_each_key_as_hugging_face_does()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("internlm2"));
        using var golden = LlmGolden.Values("internlm2");
        var ids = LlmGolden.Ids(golden, "ids.2");
        int prefill = LlmGolden.Ids(golden, "cached_prefill")[0];
        Assert.True(ids.Length > model.Config.MaxPositionEmbeddings);
        var cache = new KvCache(model.Config, ids.Length);
        var rows = new List<float>(model.Forward(ids.AsSpan(0, prefill), cache).ToArray());
        for (int i = prefill; i < ids.Length; i++) rows.AddRange(model.Forward(ids.AsSpan(i, 1), cache).ToArray());
        TensorAssert.Close(LlmGolden.Floats(golden, "cached_logits.2").ToArray(), rows.ToArray(), rtol: 1e-4f, atol: 2e-5f, what: "cached dynamic NTK");
    }

    [Fact]
    public void Prefill_in_chunks_equals_one_full_forward()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("llama"));
        using var golden = LlmGolden.Values("llama");
        var ids = LlmGolden.Ids(golden, "ids.1");
        var cache = new KvCache(model.Config, ids.Length);
        var first = model.Forward(ids.AsSpan(0, 4), cache);
        var rest = model.Forward(ids.AsSpan(4), cache);
        var expected = LlmGolden.Floats(golden, "logits.1").ToArray();
        TensorAssert.Close(expected.AsSpan(0, first.Length), first.ToArray(), rtol: 1e-4f, atol: 2e-5f, what: "first chunk");
        TensorAssert.Close(expected.AsSpan(first.Length), rest.ToArray(), rtol: 1e-4f, atol: 2e-5f, what: "second chunk");
    }

    [Fact]
    public void Last_position_only_is_the_last_row_of_the_full_logits()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("qwen2"));
        using var golden = LlmGolden.Values("qwen2");
        var ids = LlmGolden.Ids(golden, "ids.2");
        var last = model.Forward(ids, lastPositionOnly: true);
        Assert.Equal([1, model.Config.VocabSize], last.Shape);
        TensorAssert.Close(LastRow(LlmGolden.Floats(golden, "logits.2")), last.ToArray(), rtol: 1e-4f, atol: 2e-5f, what: "last row");
    }

    [Fact]
    public void Cache_refuses_tokens_beyond_its_length()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("qwen2"));
        var cache = new KvCache(model.Config, 3);
        model.Forward([1, 2], cache);
        var e = Assert.Throws<InvalidOperationException>(() => model.Forward([3, 4], cache));
        Assert.Contains("2 of 3", e.Message);
        Assert.Equal(2, cache.Length);
    }

    [Fact]
    public void Gradient_flows_through_the_frozen_decoder_to_input_embeddings()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("qwen2"));
        using var golden = LlmGolden.Values("qwen2");
        var embeds = LlmGolden.Floats(golden, "embeds.0");
        var input = Tensor.Parameter(embeds.ToArray(), embeds.Shape);
        var logits = model.ForwardEmbeddings(input);
        logits.Backward(LlmGolden.Floats(golden, "upstream.0"));
        TensorAssert.Close(LlmGolden.Floats(golden, "grad_embeds.0"), input.Grad!, rtol: 1e-4f, atol: 1e-5f, what: "d logits / d embeddings");
        Assert.All(model.Weights.All(), w => Assert.Null(w.Grad));
    }

    [Fact]
    public void Cache_is_refused_while_recording_gradients()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("qwen2"));
        var input = Tensor.Parameter(new float[2 * model.Config.HiddenSize], 2, model.Config.HiddenSize);
        var cache = new KvCache(model.Config, 4);
        Assert.Throws<InvalidOperationException>(() => model.ForwardEmbeddings(input, cache));
        Assert.Equal(0, cache.Length);
    }

    [Fact]
    public void Same_ids_give_bit_identical_logits()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("llama"));
        int[] ids = [3, 1, 4, 1, 5, 9, 2, 6];
        Assert.Equal(model.Forward(ids).ToArray(), model.Forward(ids).ToArray());
    }

    [Fact]
    public void Out_of_vocabulary_id_is_refused()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("qwen2"));
        var e = Assert.Throws<ArgumentException>(() => model.Forward([1, model.Config.VocabSize]));
        Assert.Contains(model.Config.VocabSize.ToString(), e.Message);
    }

    private static float[] LastRow(Tensor logits)
    {
        int v = logits.Dim(-1);
        return logits.ToArray().AsSpan(logits.Length - v, v).ToArray();
    }

    private static int ArgMaxOfLastRow(Tensor logits)
    {
        var row = LastRow(logits);
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }
}

/// <summary>Logits at chosen rows only (what training asks for) and the rotary table behind every forward.</summary>
public class LlmOutputRowsTests
{
    [Theory]
    [MemberData(nameof(LlmForwardTests.Families), MemberType = typeof(LlmForwardTests))]
    public void Output_rows_are_the_full_forwards_rows_and_gradients_flow_through_them(string family)
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder(family));
        using var golden = LlmGolden.Values(family);
        var ids = LlmGolden.Ids(golden, "ids.0");
        int[] rows = [ids.Length - 1, 0, 2];
        var full = model.Forward(ids);
        Tensor selected;
        using (Autograd.NoGrad()) selected = model.ForwardEmbeddings(model.Embed(ids), outputRows: rows);
        int vocab = model.Config.VocabSize;
        Assert.Equal([rows.Length, vocab], selected.Shape);
        for (int r = 0; r < rows.Length; r++)
            TensorAssert.Close(full.Span.Slice(rows[r] * vocab, vocab), selected.Span.Slice(r * vocab, vocab), rtol: 1e-5f, atol: 1e-6f, what: $"{family} row {rows[r]}");

        var embeddings = Tensor.Parameter(model.Embed(ids).ToArray(), ids.Length, model.Config.HiddenSize);
        Ops.Sum(model.ForwardEmbeddings(embeddings, outputRows: [1])).Backward();
        var gradient = embeddings.Grad!.ToArray();
        Assert.Contains(gradient.AsSpan(0, 2 * model.Config.HiddenSize).ToArray(), g => g != 0);      // positions 0 and 1 reach row 1
        Assert.All(gradient.AsSpan(2 * model.Config.HiddenSize).ToArray(), g => Assert.Equal(0f, g));  // later positions cannot (causal)
        Assert.Throws<ArgumentException>(() => model.ForwardEmbeddings(model.Embed(ids), lastPositionOnly: true, outputRows: rows));
    }

    [Fact]
    public void Rotary_cos_and_sin_are_the_same_from_the_table_and_computed()
    {
        var rope = RotaryEmbedding.Default(16, 10000);
        Span<float> cos = stackalloc float[8], sin = stackalloc float[8];
        foreach (int position in new[] { 0, 7, 4095, 4096, 9000 })
        {
            rope.CosSin(position, cos, sin);
            for (int i = 0; i < 8; i++)
            {
                float angle = position * rope.InverseFrequencies[i];
                Assert.Equal((float)Math.Cos(angle), cos[i]);
                Assert.Equal((float)Math.Sin(angle), sin[i]);
            }
        }
    }
}
