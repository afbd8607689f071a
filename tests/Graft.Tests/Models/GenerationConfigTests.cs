using Graft.Models.Generation;

namespace Graft.Tests.Models;

public sealed class GenerationConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("graft-genconfig-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private GenerationConfig Load(string json)
    {
        File.WriteAllText(Path.Combine(_dir, GenerationConfig.FileName), json);
        return GenerationConfig.FromFolder(_dir);
    }

    [Fact]
    public void AnAbsentFileGivesTheHuggingFaceDefaults()
    {
        var config = GenerationConfig.FromFolder(_dir);
        Assert.Empty(config.EosTokenIds);
        Assert.False(config.DoSample);
        Assert.Equal(50, config.TopK);
        var options = config.ToSamplingOptions(64);
        Assert.True(options.IsGreedy);
        Assert.Equal(64, options.MaxTokens);
    }

    [Fact]
    public void WithoutTheFileTheTokenIdsComeFromConfigJson()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), """{"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "temperature": 0.1}""");
        var config = GenerationConfig.FromFolder(_dir);
        Assert.Equal([2], config.EosTokenIds);
        Assert.Equal(1, config.BosTokenId);
        Assert.Equal(1f, config.Temperature);

        File.WriteAllText(Path.Combine(_dir, "config.json"), """{"eos_token_id": [2, "x"]}""");
        var e = Assert.Throws<GenerationConfigException>(() => GenerationConfig.FromFolder(_dir));
        Assert.EndsWith("config.json", e.File);
        Assert.Equal("eos_token_id[1]", e.Field);
    }

    [Fact]
    public void ReadsEosAsANumberOrAList()
    {
        Assert.Equal([2], Load("""{"bos_token_id": 1, "eos_token_id": 2}""").EosTokenIds);
        var llama3 = Load("""{"bos_token_id": 128000, "eos_token_id": [128001, 128009], "do_sample": true, "temperature": 0.6, "top_p": 0.9}""");
        Assert.Equal([128001, 128009], llama3.EosTokenIds);
        Assert.Equal(128000, llama3.BosTokenId);
        var options = llama3.ToSamplingOptions(10);
        Assert.Equal(0.6f, options.Temperature);
        Assert.Equal(0.9f, options.TopP);
        Assert.Equal(50, options.TopK);
    }

    [Fact]
    public void QwenStyleDefaultsCarryOver()
    {
        var qwen = Load("""{"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643], "repetition_penalty": 1.05, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "transformers_version": "4.37.0"}""");
        var options = qwen.ToSamplingOptions(100);
        Assert.Equal((0.7f, 20, 0.8f, 1.05f), (options.Temperature, options.TopK, options.TopP, options.RepetitionPenalty));
    }

    [Theory]
    [InlineData("""{"eos_token_id": "two"}""", "eos_token_id")]
    [InlineData("""{"eos_token_id": [1, -3]}""", "eos_token_id[1]")]
    [InlineData("""{"temperature": "hot"}""", "temperature")]
    [InlineData("""{"top_k": 1.5}""", "top_k")]
    [InlineData("""{"do_sample": 1}""", "do_sample")]
    [InlineData("""[1, 2]""", "(root)")]
    [InlineData("""{"top_p": 0.9""", "line 1")]
    public void ErrorsNameTheFileAndField(string json, string field)
    {
        var e = Assert.Throws<GenerationConfigException>(() => Load(json));
        Assert.Contains(GenerationConfig.FileName, e.File);
        Assert.StartsWith(field, e.Field);
        Assert.Contains(field, e.Message);
    }
}
