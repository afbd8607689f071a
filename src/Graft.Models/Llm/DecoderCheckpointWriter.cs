using System.Text.Json;
using Graft.Tensors;

namespace Graft.Models.Llm;

/// <summary>How <see cref="DecoderCheckpointWriter.Save"/> writes a decoder.</summary>
public sealed record DecoderCheckpointOptions
{
    /// <summary>F32 keeps every bit; BF16 halves the size (and rounds the weights, so logits change slightly).</summary>
    public DType StoredAs { get; init; } = DType.F32;

    /// <summary>A folder whose tokenizer files (tokenizer.json, tokenizer_config.json, ...) are copied beside the weights.</summary>
    public string? TokenizerFolder { get; init; }

    /// <summary>Tokenizer files given as text, by file name (a tokenizer trained in memory).</summary>
    public IReadOnlyDictionary<string, string>? TokenizerFiles { get; init; }

    /// <summary>Replace the target folder even when Graft did not write it.</summary>
    public bool Overwrite { get; init; }

    /// <summary>config.json's initializer_range (what <see cref="DecoderWeights.CreateRandom"/> drew with).</summary>
    public float InitializerRange { get; init; } = 0.02f;
}

/// <summary>
/// Saves a Llama or Qwen2 decoder as a Hugging Face folder that <see cref="DecoderModel.Load"/> and transformers
/// both read: config.json in the family's own keys (sorted, as transformers writes them), model.safetensors under
/// the family's tensor names, generation_config.json, and the tokenizer files. The folder is written whole or not
/// at all (<see cref="CheckpointFolder"/>).
/// </summary>
public static class DecoderCheckpointWriter
{
    public const string WeightsFileName = "model.safetensors";

    /// <summary>The files a Hugging Face tokenizer may consist of; those present are copied from <see cref="DecoderCheckpointOptions.TokenizerFolder"/>.</summary>
    public static readonly IReadOnlyList<string> TokenizerFileNames =
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model"];

    public static void Save(string folder, LlmConfig config, DecoderWeights weights, DecoderCheckpointOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        options ??= new DecoderCheckpointOptions();
        var tensors = CheckpointFolder.StoredAs(weights.HuggingFaceTensors(config), options.StoredAs);
        var configWriter = ConfigWriter(config, options);

        using var output = CheckpointFolder.Begin(folder, "decoder", options.Overwrite);
        output.WriteJson("config.json", configWriter);
        output.WriteJson("generation_config.json", w => ConfigJson.WriteObject(w, new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["bos_token_id"] = TokenIds(config.BosTokenIds),
            ["do_sample"] = false,
            ["eos_token_id"] = TokenIds(config.EosTokenIds),
        }));
        output.WriteSafeTensors(WeightsFileName, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        if (options.TokenizerFolder is { } source)
        {
            if (!File.Exists(Path.Combine(source, "tokenizer.json")) && !File.Exists(Path.Combine(source, "tokenizer.model")))
                throw new FileNotFoundException($"tokenizer folder '{source}' has neither tokenizer.json nor tokenizer.model", Path.Combine(source, "tokenizer.json"));
            foreach (var name in TokenizerFileNames)
                if (File.Exists(Path.Combine(source, name))) output.CopyFile(Path.Combine(source, name), name);
        }
        foreach (var (name, text) in options.TokenizerFiles ?? new Dictionary<string, string>())
        {
            if (!TokenizerFileNames.Contains(name)) throw new ArgumentException($"'{name}' is not a tokenizer file name ({string.Join(", ", TokenizerFileNames)})", nameof(options));
            output.WriteText(name, text);
        }
        output.Commit();
    }

    /// <summary>config.json as transformers writes it for the family; a config the family's keys cannot express is refused.</summary>
    private static Action<Utf8JsonWriter> ConfigWriter(LlmConfig c, DecoderCheckpointOptions options)
    {
        var keys = new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["attention_dropout"] = 0.0,
            ["bos_token_id"] = TokenIds(c.BosTokenIds),
            ["eos_token_id"] = TokenIds(c.EosTokenIds),
            ["hidden_act"] = "silu",
            ["hidden_size"] = c.HiddenSize,
            ["initializer_range"] = options.InitializerRange,
            ["intermediate_size"] = c.IntermediateSize,
            ["max_position_embeddings"] = c.MaxPositionEmbeddings,
            ["num_attention_heads"] = c.NumHeads,
            ["num_hidden_layers"] = c.NumLayers,
            ["num_key_value_heads"] = c.NumKeyValueHeads,
            ["rms_norm_eps"] = c.RmsNormEps,
            ["rope_scaling"] = RopeScalingKeys(c.RopeScaling),
            ["rope_theta"] = c.RopeTheta,
            ["tie_word_embeddings"] = c.TieWordEmbeddings,
            ["torch_dtype"] = CheckpointFolder.TorchDTypeName(options.StoredAs),
            ["use_cache"] = true,
            ["vocab_size"] = c.VocabSize,
        };
        switch (c.Family)
        {
            case LlmFamily.Qwen2:
                if (c.OutputBias || c.MlpBias) throw Inexpressible(c, "Qwen2 has biases on q, k and v only");
                if (c.HeadDim * c.NumHeads != c.HiddenSize) throw Inexpressible(c, $"Qwen2's head size is hidden_size / num_attention_heads, not {c.HeadDim}");
                keys["architectures"] = new[] { "Qwen2ForCausalLM" };
                keys["model_type"] = "qwen2";
                keys["max_window_layers"] = c.NumLayers;
                keys["sliding_window"] = c.MaxPositionEmbeddings;
                keys["use_sliding_window"] = false;
                break;
            case LlmFamily.Llama:
                if (c.QkvBias != c.OutputBias) throw Inexpressible(c, "Llama's attention_bias puts biases on q, k, v and o together");
                keys["architectures"] = new[] { "LlamaForCausalLM" };
                keys["model_type"] = "llama";
                keys["attention_bias"] = c.QkvBias;
                keys["mlp_bias"] = c.MlpBias;
                keys["head_dim"] = c.HeadDim;
                keys["pretraining_tp"] = 1;
                break;
            default:
                throw new NotSupportedException($"writing {c.Architecture} checkpoints is not supported (Llama and Qwen2 are)");
        }
        return w => ConfigJson.WriteObject(w, keys);
    }

    private static Dictionary<string, object?>? RopeScalingKeys(RopeScaling scaling) => scaling.Kind switch
    {
        RopeScalingKind.None => null,
        RopeScalingKind.Linear => new() { ["factor"] = scaling.Factor, ["rope_type"] = "linear" },
        RopeScalingKind.Dynamic => new() { ["factor"] = scaling.Factor, ["rope_type"] = "dynamic" },
        _ => new()
        {
            ["factor"] = scaling.Factor,
            ["high_freq_factor"] = scaling.HighFreqFactor,
            ["low_freq_factor"] = scaling.LowFreqFactor,
            ["original_max_position_embeddings"] = scaling.OriginalMaxPositionEmbeddings,
            ["rope_type"] = "llama3",
        },
    };

    /// <summary>One id as a number, several as a list, none as null (as transformers writes them).</summary>
    private static object? TokenIds(int[] ids) => ids.Length switch { 0 => null, 1 => ids[0], _ => ids };

    private static ArgumentException Inexpressible(LlmConfig c, string why) =>
        new($"this {c.Architecture} config cannot be written as a Hugging Face config.json: {why}");
}
