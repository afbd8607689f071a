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
        return Map(config, checkpoint.Load);
    }

    /// <summary>
    /// A decoder initialised as Hugging Face initialises one before training: every matrix and the embedding from
    /// N(0, <paramref name="initializerRange"/>²), norm weights 1, biases 0; all trainable float32 tensors named as the
    /// family's checkpoint names them. The tensors are drawn in checkpoint order from one <see cref="Random"/>(seed).
    /// </summary>
    public static DecoderWeights CreateRandom(LlmConfig config, int seed, float initializerRange = 0.02f)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!(initializerRange > 0) || float.IsInfinity(initializerRange))
            throw new ArgumentOutOfRangeException(nameof(initializerRange), initializerRange, "initializer range must be positive and finite");
        var random = new Random(seed);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, shape) in ExpectedShapes(config))
            tensors[name] = shape.Length == 2 ? ParameterInit.Normal(random, initializerRange, name, shape)
                : ParameterInit.Constant(name.EndsWith(".bias", StringComparison.Ordinal) ? 0f : 1f, name, shape);
        var weights = Map(config, name => tensors[name]);
        // InternLM2's q, k and v are copied out of the fused matrix; the copies are trainable too.
        foreach (var tensor in weights.All())
            if (!tensor.RequiresGrad) tensor.RequiresGrad = true;
        return weights;
    }

    /// <summary>
    /// A trainable float32 copy of every tensor (widened from F16/BF16, out of read-only mapped memory), names kept;
    /// a tied head stays tied to the copied embedding. This object is left as it is.
    /// </summary>
    public DecoderWeights ToTrainable()
    {
        var copies = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        Tensor Copy(Tensor tensor)
        {
            if (copies.TryGetValue(tensor, out var copy)) return copy;
            copy = tensor.ToDType(DType.F32);
            copy.RequiresGrad = true;
            return copies[tensor] = copy;
        }
        Tensor? CopyOptional(Tensor? tensor) => tensor is null ? null : Copy(tensor);
        var layers = Layers.Select(l => new DecoderLayerWeights
        {
            AttentionNorm = Copy(l.AttentionNorm),
            Query = Copy(l.Query),
            Key = Copy(l.Key),
            Value = Copy(l.Value),
            Output = Copy(l.Output),
            QueryBias = CopyOptional(l.QueryBias),
            KeyBias = CopyOptional(l.KeyBias),
            ValueBias = CopyOptional(l.ValueBias),
            OutputBias = CopyOptional(l.OutputBias),
            FfnNorm = Copy(l.FfnNorm),
            Gate = Copy(l.Gate),
            Up = Copy(l.Up),
            Down = Copy(l.Down),
            GateBias = CopyOptional(l.GateBias),
            UpBias = CopyOptional(l.UpBias),
            DownBias = CopyOptional(l.DownBias),
        }).ToArray();
        return new DecoderWeights { Embedding = Copy(Embedding), Layers = layers, FinalNorm = Copy(FinalNorm), Head = Copy(Head) };
    }

    /// <summary>
    /// Every tensor under the name a Llama or Qwen2 checkpoint gives it, in checkpoint order (the tied head once, as the
    /// embedding). These are the names <see cref="DecoderCheckpointWriter"/> writes. InternLM2 fuses q, k and v into
    /// one matrix per layer, which is not rebuilt here.
    /// </summary>
    public IEnumerable<KeyValuePair<string, Tensor>> HuggingFaceTensors(LlmConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Family == LlmFamily.InternLM2)
            throw new NotSupportedException("InternLM2 checkpoints fuse q, k and v into wqkv; writing them is not supported (Llama and Qwen2 are)");
        if (Layers.Length != config.NumLayers)
            throw new ArgumentException($"{Layers.Length} layers of weights for a config of {config.NumLayers}", nameof(config));
        var named = new List<KeyValuePair<string, Tensor>> { new("model.embed_tokens.weight", Embedding) };
        void Add(string name, Tensor? tensor)
        {
            if (tensor is not null) named.Add(new(name, tensor));
        }
        for (int i = 0; i < Layers.Length; i++)
        {
            string p = $"model.layers.{i}.";
            var l = Layers[i];
            Add(p + "self_attn.q_proj.weight", l.Query);
            Add(p + "self_attn.k_proj.weight", l.Key);
            Add(p + "self_attn.v_proj.weight", l.Value);
            Add(p + "self_attn.o_proj.weight", l.Output);
            Add(p + "self_attn.q_proj.bias", l.QueryBias);
            Add(p + "self_attn.k_proj.bias", l.KeyBias);
            Add(p + "self_attn.v_proj.bias", l.ValueBias);
            Add(p + "self_attn.o_proj.bias", l.OutputBias);
            Add(p + "mlp.gate_proj.weight", l.Gate);
            Add(p + "mlp.up_proj.weight", l.Up);
            Add(p + "mlp.down_proj.weight", l.Down);
            Add(p + "mlp.gate_proj.bias", l.GateBias);
            Add(p + "mlp.up_proj.bias", l.UpBias);
            Add(p + "mlp.down_proj.bias", l.DownBias);
            Add(p + "input_layernorm.weight", l.AttentionNorm);
            Add(p + "post_attention_layernorm.weight", l.FfnNorm);
        }
        Add("model.norm.weight", FinalNorm);
        if (!config.TieWordEmbeddings) Add("lm_head.weight", Head);
        else if (!ReferenceEquals(Head, Embedding)) throw new ArgumentException("config.json ties the head to the embedding, but these weights have a separate head", nameof(config));

        var expected = ExpectedShapes(config);
        foreach (var (name, tensor) in named)
            if (!expected.TryGetValue(name, out var shape) || !tensor.Shape.AsSpan().SequenceEqual(shape))
                throw new ArgumentException(expected.TryGetValue(name, out shape)
                    ? $"{name} is {tensor.ShapeString}, the config implies [{string.Join(", ", shape)}]"
                    : $"{name} is present but the config has no such tensor", nameof(config));
        var missing = expected.Keys.Except(named.Select(n => n.Key)).ToList();
        if (missing.Count > 0) throw new ArgumentException($"the config needs {string.Join(", ", missing)}, which these weights lack", nameof(config));
        return named;
    }

    private static DecoderWeights Map(LlmConfig config, Func<string, Tensor> load) =>
        config.Family == LlmFamily.InternLM2 ? MapInternLM2(config, load) : MapLlama(config, load);

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

    private static DecoderWeights MapLlama(LlmConfig c, Func<string, Tensor> load)
    {
        var layers = new DecoderLayerWeights[c.NumLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"model.layers.{i}.";
            layers[i] = new DecoderLayerWeights
            {
                AttentionNorm = load(p + "input_layernorm.weight"),
                Query = load(p + "self_attn.q_proj.weight"),
                Key = load(p + "self_attn.k_proj.weight"),
                Value = load(p + "self_attn.v_proj.weight"),
                Output = load(p + "self_attn.o_proj.weight"),
                QueryBias = c.QkvBias ? Bias(load, p + "self_attn.q_proj.bias") : null,
                KeyBias = c.QkvBias ? Bias(load, p + "self_attn.k_proj.bias") : null,
                ValueBias = c.QkvBias ? Bias(load, p + "self_attn.v_proj.bias") : null,
                OutputBias = c.OutputBias ? Bias(load, p + "self_attn.o_proj.bias") : null,
                FfnNorm = load(p + "post_attention_layernorm.weight"),
                Gate = load(p + "mlp.gate_proj.weight"),
                Up = load(p + "mlp.up_proj.weight"),
                Down = load(p + "mlp.down_proj.weight"),
                GateBias = c.MlpBias ? Bias(load, p + "mlp.gate_proj.bias") : null,
                UpBias = c.MlpBias ? Bias(load, p + "mlp.up_proj.bias") : null,
                DownBias = c.MlpBias ? Bias(load, p + "mlp.down_proj.bias") : null,
            };
        }
        var embedding = load("model.embed_tokens.weight");
        return new DecoderWeights
        {
            Embedding = embedding,
            Layers = layers,
            FinalNorm = load("model.norm.weight"),
            Head = c.TieWordEmbeddings ? embedding : load("lm_head.weight"),
        };
    }

    private static DecoderWeights MapInternLM2(LlmConfig c, Func<string, Tensor> load)
    {
        var layers = new DecoderLayerWeights[c.NumLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"model.layers.{i}.";
            var (query, key, value) = SplitGroupedQkv(c, load(p + "attention.wqkv.weight"));
            var (queryBias, keyBias, valueBias) = c.QkvBias ? SplitGroupedQkv(c, Bias(load, p + "attention.wqkv.bias")) : (null, null, null);
            layers[i] = new DecoderLayerWeights
            {
                AttentionNorm = load(p + "attention_norm.weight"),
                Query = query,
                Key = key,
                Value = value,
                Output = load(p + "attention.wo.weight"),
                QueryBias = queryBias,
                KeyBias = keyBias,
                ValueBias = valueBias,
                OutputBias = c.OutputBias ? Bias(load, p + "attention.wo.bias") : null,
                FfnNorm = load(p + "ffn_norm.weight"),
                Gate = load(p + "feed_forward.w1.weight"),
                Up = load(p + "feed_forward.w3.weight"),
                Down = load(p + "feed_forward.w2.weight"),
            };
        }
        var embedding = load("model.tok_embeddings.weight");
        return new DecoderWeights
        {
            Embedding = embedding,
            Layers = layers,
            FinalNorm = load("model.norm.weight"),
            Head = c.TieWordEmbeddings ? embedding : load("output.weight"),
        };
    }

    /// <summary>Biases are tiny; they are widened to F32, which the bias-adding kernels read.</summary>
    private static Tensor Bias(Func<string, Tensor> load, string name)
    {
        var bias = load(name).ToF32();
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
