using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Cli;

/// <summary>
/// A Qwen2 checkpoint folder with random weights (<see cref="RandomWeights"/>), as a Hugging Face folder holds one:
/// config.json, model.safetensors, generation_config.json (greedy, EOS = the tokenizer's), tokenizer.json and
/// tokenizer_config.json. For benchmarks and tests that need a model a server can open.
/// </summary>
internal static class RandomCheckpoint
{
    /// <summary>ChatML's special tokens, for the byte-level tokenizer written when no tokenizer folder is given.</summary>
    private static readonly string[] ChatMLTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

    /// <param name="tokenizerFolder">Where tokenizer.json and tokenizer_config.json are copied from (its vocabulary must fit
    /// the config's); null: a byte-level tokenizer (one token per byte) with ChatML's special tokens and template.</param>
    public static void Write(string folder, LlmConfig config, DType dtype, int seed, string? tokenizerFolder = null)
    {
        if (config.Family != LlmFamily.Qwen2 || !config.TieWordEmbeddings || !config.QkvBias || config.MlpBias || config.OutputBias)
            throw new ArgumentException("random checkpoints are written in Qwen2's layout: tied embeddings, q/k/v biases only", nameof(config));
        Directory.CreateDirectory(folder);
        if (tokenizerFolder is null)
        {
            File.WriteAllText(Path.Combine(folder, "tokenizer.json"), ByteTokenizerJson.Create(ChatMLTokens));
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), new JsonObject
            {
                ["bos_token"] = null,
                ["eos_token"] = "<|im_end|>",
                ["chat_template"] = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}",
            }.ToJsonString());
        }
        else
            foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
                File.Copy(Path.Combine(tokenizerFolder, file), Path.Combine(folder, file), overwrite: true);
        var tokenizer = Tokenizer.FromFolder(folder);
        if (tokenizer.VocabSize > config.VocabSize)
            throw new ArgumentException($"the tokenizer has {tokenizer.VocabSize} tokens, more than the model's vocabulary of {config.VocabSize}", nameof(tokenizerFolder));
        int? eos = tokenizer.EosTokenId;

        File.WriteAllText(Path.Combine(folder, "config.json"), new JsonObject
        {
            ["architectures"] = new JsonArray("Qwen2ForCausalLM"),
            ["model_type"] = "qwen2",
            ["hidden_size"] = config.HiddenSize,
            ["intermediate_size"] = config.IntermediateSize,
            ["num_hidden_layers"] = config.NumLayers,
            ["num_attention_heads"] = config.NumHeads,
            ["num_key_value_heads"] = config.NumKeyValueHeads,
            ["vocab_size"] = config.VocabSize,
            ["max_position_embeddings"] = config.MaxPositionEmbeddings,
            ["rms_norm_eps"] = config.RmsNormEps,
            ["rope_theta"] = config.RopeTheta,
            ["tie_word_embeddings"] = true,
            ["hidden_act"] = "silu",
            ["torch_dtype"] = dtype == DType.F32 ? "float32" : "bfloat16",
            ["eos_token_id"] = eos,
        }.ToJsonString());
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), new JsonObject { ["eos_token_id"] = eos, ["do_sample"] = false }.ToJsonString());

        var weights = RandomWeights.Build(config, dtype, seed);
        var tensors = new List<KeyValuePair<string, Tensor>> { new("model.embed_tokens.weight", weights.Embedding) };
        for (int i = 0; i < weights.Layers.Length; i++)
        {
            var w = weights.Layers[i];
            string p = $"model.layers.{i}.";
            tensors.AddRange(
            [
                new(p + "self_attn.q_proj.weight", w.Query), new(p + "self_attn.q_proj.bias", w.QueryBias!),
                new(p + "self_attn.k_proj.weight", w.Key), new(p + "self_attn.k_proj.bias", w.KeyBias!),
                new(p + "self_attn.v_proj.weight", w.Value), new(p + "self_attn.v_proj.bias", w.ValueBias!),
                new(p + "self_attn.o_proj.weight", w.Output),
                new(p + "mlp.gate_proj.weight", w.Gate), new(p + "mlp.up_proj.weight", w.Up), new(p + "mlp.down_proj.weight", w.Down),
                new(p + "input_layernorm.weight", w.AttentionNorm), new(p + "post_attention_layernorm.weight", w.FfnNorm),
            ]);
        }
        tensors.Add(new("model.norm.weight", weights.FinalNorm));
        SafeTensorsWriter.Write(Path.Combine(folder, "model.safetensors"), tensors);
    }
}
