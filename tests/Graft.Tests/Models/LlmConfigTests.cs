using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

public class LlmConfigTests
{
    private static string ConfigPath(string family) => Path.Combine(GoldenCase.Folder("llm"), "models", family, "config.json");

    private static JsonObject ConfigJson(string family) => JsonNode.Parse(File.ReadAllText(ConfigPath(family)))!.AsObject();

    private static LlmConfigException Refused(JsonObject json) =>
        Assert.Throws<LlmConfigException>(() => LlmConfig.Parse(json.ToJsonString(), "some/config.json"));

    [Fact]
    public void Qwen2_config_has_biases_grouped_heads_and_tied_head()
    {
        var c = LlmConfig.Load(ConfigPath("qwen2"));
        Assert.Equal(LlmFamily.Qwen2, c.Family);
        Assert.Equal((4, 2, 16, 2), (c.NumHeads, c.NumKeyValueHeads, c.HeadDim, c.QueryGroups));
        Assert.True(c.QkvBias);
        Assert.False(c.OutputBias);
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal(1e6, c.RopeTheta);
        Assert.Equal(1e-6f, c.RmsNormEps);
        Assert.Equal(RopeScalingKind.None, c.RopeScaling.Kind);
        Assert.Equal([2], c.EosTokenIds);
    }

    [Fact]
    public void Llama_config_reads_explicit_head_dim_llama3_scaling_and_eos_list()
    {
        var c = LlmConfig.Load(ConfigPath("llama"));
        Assert.Equal(LlmFamily.Llama, c.Family);
        Assert.Equal(32, c.HeadDim); // not hidden / heads = 16
        Assert.Equal(new RopeScaling(RopeScalingKind.Llama3, 8, 1, 4, 64), c.RopeScaling);
        Assert.False(c.QkvBias);
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal([6, 7], c.EosTokenIds);
        Assert.Equal([5], c.BosTokenIds);
        Assert.Equal("bfloat16", c.TorchDType);
    }

    [Fact]
    public void InternLM2_config_reads_bias_key_and_dynamic_scaling()
    {
        var c = LlmConfig.Load(ConfigPath("internlm2"));
        Assert.Equal(LlmFamily.InternLM2, c.Family);
        Assert.Equal("InternLM2ForCausalLM", c.Architecture);
        Assert.Equal((8, 2, 8), (c.NumHeads, c.NumKeyValueHeads, c.HeadDim));
        Assert.False(c.QkvBias);
        Assert.Equal(new RopeScaling(RopeScalingKind.Dynamic, 2), c.RopeScaling);
    }

    [Fact]
    public void Defaults_follow_transformers()
    {
        var json = ConfigJson("llama");
        foreach (var key in new[] { "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "rope_scaling", "tie_word_embeddings", "eos_token_id" })
            json.Remove(key);
        var c = LlmConfig.Parse(json.ToJsonString(), "config.json");
        Assert.Equal(c.NumHeads, c.NumKeyValueHeads);
        Assert.Equal(64 / 4, c.HeadDim);
        Assert.Equal(1e-6f, c.RmsNormEps);
        Assert.Equal(10000, c.RopeTheta);
        Assert.Equal(RopeScaling.None, c.RopeScaling);
        Assert.False(c.TieWordEmbeddings);
        Assert.Empty(c.EosTokenIds);
    }

    [Fact]
    public void Missing_field_is_named_with_the_file()
    {
        var json = ConfigJson("qwen2");
        json.Remove("num_hidden_layers");
        var e = Refused(json);
        Assert.Equal("some/config.json", e.File);
        Assert.Equal("num_hidden_layers", e.Field);
        Assert.Contains("some/config.json", e.Message);
        Assert.Contains("num_hidden_layers", e.Message);
    }

    [Theory]
    [InlineData("hidden_size", "\"64\"")]
    [InlineData("vocab_size", "-3")]
    [InlineData("num_key_value_heads", "3")]
    [InlineData("rms_norm_eps", "0")]
    [InlineData("tie_word_embeddings", "1")]
    [InlineData("eos_token_id", "[2, \"x\"]")]
    [InlineData("hidden_act", "\"gelu\"")]
    [InlineData("use_sliding_window", "true")]
    public void Invalid_field_is_named(string field, string value)
    {
        var json = ConfigJson("qwen2");
        json[field] = JsonNode.Parse(value);
        Assert.Equal(field, Refused(json).Field);
    }

    [Fact]
    public void Unsupported_architecture_is_refused_by_name()
    {
        var json = ConfigJson("llama");
        json["architectures"] = new JsonArray("MixtralForCausalLM");
        var e = Refused(json);
        Assert.Equal("architectures", e.Field);
        Assert.Contains("MixtralForCausalLM", e.Message);
    }

    [Fact]
    public void Model_type_names_the_family_when_architectures_is_absent()
    {
        var json = ConfigJson("internlm2");
        json.Remove("architectures");
        Assert.Equal(LlmFamily.InternLM2, LlmConfig.Parse(json.ToJsonString(), "config.json").Family);
    }

    [Theory]
    [InlineData("{\"rope_type\": \"yarn\", \"factor\": 4.0}", "rope_scaling")]
    [InlineData("{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"original_max_position_embeddings\": 8192}", "rope_scaling.high_freq_factor")]
    [InlineData("{\"type\": \"linear\"}", "rope_scaling.factor")]
    [InlineData("{\"factor\": 2.0}", "rope_scaling")]
    public void Unsupported_or_incomplete_rope_scaling_is_refused(string scaling, string field)
    {
        var json = ConfigJson("llama");
        json["rope_scaling"] = JsonNode.Parse(scaling);
        Assert.Equal(field, Refused(json).Field);
    }

    [Fact]
    public void Malformed_json_names_the_file()
    {
        var e = Assert.Throws<LlmConfigException>(() => LlmConfig.Parse("{\"hidden_size\": ", "dir/config.json"));
        Assert.Contains("dir/config.json", e.Message);
    }

    [Fact]
    public void Llama3_frequencies_keep_high_smooth_the_band_and_divide_low()
    {
        var c = LlmConfig.Load(ConfigPath("llama"));
        var scaled = RopeFrequencies.Compute(c, 1);
        var plain = RopeFrequencies.Compute(c with { RopeScaling = RopeScaling.None }, 1);
        var ratios = scaled.Zip(plain, (s, p) => s / p).ToArray();
        Assert.Equal(2, ratios.Count(r => Math.Abs(r - 1) < 1e-6));
        Assert.Equal(3, ratios.Count(r => r < 0.999 && r > 0.126));
        Assert.Equal(11, ratios.Count(r => Math.Abs(r - 0.125) < 1e-6));
    }

    [Fact]
    public void Dynamic_ntk_changes_the_base_only_past_max_positions()
    {
        var c = LlmConfig.Load(ConfigPath("internlm2"));
        var plain = RopeFrequencies.Compute(c with { RopeScaling = RopeScaling.None }, 1);
        Assert.Equal(plain, RopeFrequencies.Compute(c, c.MaxPositionEmbeddings));
        var longer = RopeFrequencies.Compute(c, 2 * c.MaxPositionEmbeddings);
        double baseScale = Math.Pow(2.0 * 2 - 1, c.HeadDim / (c.HeadDim - 2.0));
        Assert.Equal(plain[1] / Math.Pow(baseScale, 2.0 / c.HeadDim), longer[1], 1e-6);
    }
}
