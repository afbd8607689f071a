using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Models.Llm;

/// <summary>
/// One decoder layer's weights in the internal layout, whatever the family's names. Matrices are [out, in]
/// in their stored type (F32, F16 or BF16); norm weights too; biases, when present, are F32.
/// </summary>
public sealed class DecoderLayerWeights
{
    public required Tensor AttentionNorm { get; init; }
    public required Tensor Query { get; init; }
    public required Tensor Key { get; init; }
    public required Tensor Value { get; init; }
    public required Tensor Output { get; init; }
    public Tensor? QueryBias { get; init; }
    public Tensor? KeyBias { get; init; }
    public Tensor? ValueBias { get; init; }
    public Tensor? OutputBias { get; init; }
    public required Tensor FfnNorm { get; init; }
    public required Tensor Gate { get; init; }
    public required Tensor Up { get; init; }
    public required Tensor Down { get; init; }
    public Tensor? GateBias { get; init; }
    public Tensor? UpBias { get; init; }
    public Tensor? DownBias { get; init; }

    public IEnumerable<Tensor> All() =>
        new[] { AttentionNorm, Query, Key, Value, Output, QueryBias, KeyBias, ValueBias, OutputBias, FfnNorm, Gate, Up, Down, GateBias, UpBias, DownBias }
            .OfType<Tensor>();
}

/// <summary>
/// A decoder's weights mapped from a family's Hugging Face names to one layout: embedding [V, C], layers,
/// final norm [C], head [V, C] (the embedding itself when tied).
/// </summary>
/// <remarks>
/// Loading checks every name, shape and type against the config before reading any data, and refuses
/// tensors it does not expect (they would mean a checkpoint we would run wrongly), except two that
/// transformers itself ignores: `*.rotary_emb.inv_freq` buffers of older Llama exports, and a stored
/// `lm_head.weight` when the config ties the head to the embedding.
/// InternLM2's fused wqkv holds, per KV group, the group's query heads, then its key head, then its value
/// head; query rows are therefore not contiguous, so q, k and v are copied apart once at load, in the
/// stored type.
/// </remarks>
public sealed class DecoderWeights
{
    public required Tensor Embedding { get; init; }
    public required DecoderLayerWeights[] Layers { get; init; }
    public required Tensor FinalNorm { get; init; }
    public required Tensor Head { get; init; }

    /// <summary>Every distinct tensor (the tied head counted once).</summary>
    public IEnumerable<Tensor> All()
    {
        yield return Embedding;
        foreach (var layer in Layers)
            foreach (var t in layer.All()) yield return t;
        yield return FinalNorm;
        if (!ReferenceEquals(Head, Embedding)) yield return Head;
    }

    /// <summary>Validates the checkpoint's tensors against <paramref name="config"/>, then maps them.</summary>
    internal static DecoderWeights Load(LlmConfig config, ISafeTensorsReader checkpoint)
    {
        Check(config, checkpoint);
        return config.Family == LlmFamily.InternLM2 ? MapInternLM2(config, checkpoint) : MapLlama(config, checkpoint);
    }

    /// <summary>Validates the checkpoint's headers against the config, reading no data; returns the tensors used.</summary>
    internal static List<SafeTensorInfo> Check(LlmConfig config, ISafeTensorsReader checkpoint)
    {
        var expected = ExpectedShapes(config);
        Validate(config, checkpoint, expected);
        return expected.Keys.Select(checkpoint.Info).ToList();
    }

    /// <summary>Every tensor name the family's checkpoint must hold, with its shape.</summary>
    internal static Dictionary<string, int[]> ExpectedShapes(LlmConfig c)
    {
        int hidden = c.HiddenSize, q = c.NumHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim, inter = c.IntermediateSize;
        var shapes = new Dictionary<string, int[]>(StringComparer.Ordinal);
        bool intern = c.Family == LlmFamily.InternLM2;
        shapes[intern ? "model.tok_embeddings.weight" : "model.embed_tokens.weight"] = [c.VocabSize, hidden];
        for (int i = 0; i < c.NumLayers; i++)
        {
            string p = $"model.layers.{i}.";
            if (intern)
            {
                shapes[p + "attention.wqkv.weight"] = [q + 2 * kv, hidden];
                if (c.QkvBias) shapes[p + "attention.wqkv.bias"] = [q + 2 * kv];
                shapes[p + "attention.wo.weight"] = [hidden, q];
                if (c.OutputBias) shapes[p + "attention.wo.bias"] = [hidden];
                shapes[p + "feed_forward.w1.weight"] = [inter, hidden];
                shapes[p + "feed_forward.w3.weight"] = [inter, hidden];
                shapes[p + "feed_forward.w2.weight"] = [hidden, inter];
                shapes[p + "attention_norm.weight"] = [hidden];
                shapes[p + "ffn_norm.weight"] = [hidden];
            }
            else
            {
                shapes[p + "self_attn.q_proj.weight"] = [q, hidden];
                shapes[p + "self_attn.k_proj.weight"] = [kv, hidden];
                shapes[p + "self_attn.v_proj.weight"] = [kv, hidden];
                shapes[p + "self_attn.o_proj.weight"] = [hidden, q];
                if (c.QkvBias)
                {
                    shapes[p + "self_attn.q_proj.bias"] = [q];
                    shapes[p + "self_attn.k_proj.bias"] = [kv];
                    shapes[p + "self_attn.v_proj.bias"] = [kv];
                }
                if (c.OutputBias) shapes[p + "self_attn.o_proj.bias"] = [hidden];
                shapes[p + "mlp.gate_proj.weight"] = [inter, hidden];
                shapes[p + "mlp.up_proj.weight"] = [inter, hidden];
                shapes[p + "mlp.down_proj.weight"] = [hidden, inter];
                if (c.MlpBias)
                {
                    shapes[p + "mlp.gate_proj.bias"] = [inter];
                    shapes[p + "mlp.up_proj.bias"] = [inter];
                    shapes[p + "mlp.down_proj.bias"] = [hidden];
                }
                shapes[p + "input_layernorm.weight"] = [hidden];
                shapes[p + "post_attention_layernorm.weight"] = [hidden];
            }
        }
        shapes["model.norm.weight"] = [hidden];
        if (!c.TieWordEmbeddings) shapes[intern ? "output.weight" : "lm_head.weight"] = [c.VocabSize, hidden];
        return shapes;
    }

    private static void Validate(LlmConfig config, ISafeTensorsReader checkpoint, Dictionary<string, int[]> expected)
    {
        foreach (var (name, shape) in expected)
        {
            if (!checkpoint.Contains(name))
                throw new LlmConfigException(checkpoint.Path, $"missing (a {config.Architecture} checkpoint needs it, shape [{string.Join(", ", shape)}])", tensor: name);
            var info = checkpoint.Info(name);
            if (!info.Shape.AsSpan().SequenceEqual(shape))
                throw new LlmConfigException(FileOf(checkpoint, name),
                    $"has shape [{string.Join(", ", info.Shape)}], config.json implies [{string.Join(", ", shape)}]", tensor: name);
            if (info.DType is not (DType.F32 or DType.F16 or DType.BF16))
                throw new LlmConfigException(FileOf(checkpoint, name), $"is {info.DType.SafeTensorsName()}, not F32, F16 or BF16", tensor: name);
        }
        foreach (var info in checkpoint.Tensors)
        {
            if (expected.ContainsKey(info.Name) || IgnoredExtra(config, info.Name)) continue;
            throw new LlmConfigException(FileOf(checkpoint, info.Name), $"is not part of a {config.Architecture} with this config.json", tensor: info.Name);
        }
    }

    /// <summary>The file holding a tensor (its shard, for a sharded checkpoint), for messages about it.</summary>
    private static string FileOf(ISafeTensorsReader checkpoint, string name) =>
        checkpoint is ShardedSafeTensors sharded ? sharded.Shard(name).Path : checkpoint.Path;

    private static bool IgnoredExtra(LlmConfig config, string name) =>
        name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)
        || (config.TieWordEmbeddings && name == (config.Family == LlmFamily.InternLM2 ? "output.weight" : "lm_head.weight"));

    private static DecoderWeights MapLlama(LlmConfig c, ISafeTensorsReader t)
    {
        var layers = new DecoderLayerWeights[c.NumLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"model.layers.{i}.";
            layers[i] = new DecoderLayerWeights
            {
                AttentionNorm = t.Load(p + "input_layernorm.weight"),
                Query = t.Load(p + "self_attn.q_proj.weight"),
                Key = t.Load(p + "self_attn.k_proj.weight"),
                Value = t.Load(p + "self_attn.v_proj.weight"),
                Output = t.Load(p + "self_attn.o_proj.weight"),
                QueryBias = c.QkvBias ? Bias(t, p + "self_attn.q_proj.bias") : null,
                KeyBias = c.QkvBias ? Bias(t, p + "self_attn.k_proj.bias") : null,
                ValueBias = c.QkvBias ? Bias(t, p + "self_attn.v_proj.bias") : null,
                OutputBias = c.OutputBias ? Bias(t, p + "self_attn.o_proj.bias") : null,
                FfnNorm = t.Load(p + "post_attention_layernorm.weight"),
                Gate = t.Load(p + "mlp.gate_proj.weight"),
                Up = t.Load(p + "mlp.up_proj.weight"),
                Down = t.Load(p + "mlp.down_proj.weight"),
                GateBias = c.MlpBias ? Bias(t, p + "mlp.gate_proj.bias") : null,
                UpBias = c.MlpBias ? Bias(t, p + "mlp.up_proj.bias") : null,
                DownBias = c.MlpBias ? Bias(t, p + "mlp.down_proj.bias") : null,
            };
        }
        var embedding = t.Load("model.embed_tokens.weight");
        return new DecoderWeights
        {
            Embedding = embedding,
            Layers = layers,
            FinalNorm = t.Load("model.norm.weight"),
            Head = c.TieWordEmbeddings ? embedding : t.Load("lm_head.weight"),
        };
    }

    private static DecoderWeights MapInternLM2(LlmConfig c, ISafeTensorsReader t)
    {
        var layers = new DecoderLayerWeights[c.NumLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"model.layers.{i}.";
            var (query, key, value) = SplitGroupedQkv(c, t.Load(p + "attention.wqkv.weight"));
            var (queryBias, keyBias, valueBias) = c.QkvBias ? SplitGroupedQkv(c, Bias(t, p + "attention.wqkv.bias")) : (null, null, null);
            layers[i] = new DecoderLayerWeights
            {
                AttentionNorm = t.Load(p + "attention_norm.weight"),
                Query = query,
                Key = key,
                Value = value,
                Output = t.Load(p + "attention.wo.weight"),
                QueryBias = queryBias,
                KeyBias = keyBias,
                ValueBias = valueBias,
                OutputBias = c.OutputBias ? Bias(t, p + "attention.wo.bias") : null,
                FfnNorm = t.Load(p + "ffn_norm.weight"),
                Gate = t.Load(p + "feed_forward.w1.weight"),
                Up = t.Load(p + "feed_forward.w3.weight"),
                Down = t.Load(p + "feed_forward.w2.weight"),
            };
        }
        var embedding = t.Load("model.tok_embeddings.weight");
        return new DecoderWeights
        {
            Embedding = embedding,
            Layers = layers,
            FinalNorm = t.Load("model.norm.weight"),
            Head = c.TieWordEmbeddings ? embedding : t.Load("output.weight"),
        };
    }

    /// <summary>Biases are tiny; they are widened to F32, which the bias-adding kernels read.</summary>
    private static Tensor Bias(ISafeTensorsReader t, string name)
    {
        var bias = t.Load(name).ToF32();
        bias.Name = name;
        return bias;
    }

    /// <summary>
    /// Splits rows laid out [KV groups, G query heads + 1 key head + 1 value head, D] (then any columns)
    /// into q [H·D, ..], k [KV·D, ..] and v [KV·D, ..], in the stored type.
    /// </summary>
    private static (Tensor Query, Tensor Key, Tensor Value) SplitGroupedQkv(LlmConfig c, Tensor fused)
    {
        int groups = c.QueryGroups, kvHeads = c.NumKeyValueHeads;
        int columns = fused.Rank == 2 ? fused.Shape[1] : 1;
        int head = c.HeadDim * columns;
        var name = fused.Name ?? "wqkv";
        float[]? floats = fused.DType == DType.F32 ? fused.ToArray() : null;

        Tensor Part(int firstHead, int headsPerGroup, string suffix)
        {
            int[] shape = fused.Rank == 2 ? [kvHeads * headsPerGroup * c.HeadDim, columns] : [kvHeads * headsPerGroup * c.HeadDim];
            int block = headsPerGroup * head;
            Tensor part;
            if (floats is not null)
            {
                var values = new float[kvHeads * block];
                for (int g = 0; g < kvHeads; g++) floats.AsSpan((g * (groups + 2) + firstHead) * head, block).CopyTo(values.AsSpan(g * block));
                part = Tensor.FromArray(values, shape);
            }
            else
            {
                var bits = new ushort[kvHeads * block];
                for (int g = 0; g < kvHeads; g++) fused.HalfBits.Slice((g * (groups + 2) + firstHead) * head, block).CopyTo(bits.AsSpan(g * block));
                part = Tensor.FromHalfBits(bits, fused.DType, shape);
            }
            part.Name = name + suffix;
            return part;
        }

        return (Part(0, groups, "[q]"), Part(groups, 1, "[k]"), Part(groups + 1, 1, "[v]"));
    }
}
