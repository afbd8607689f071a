using Graft.Models.Llm;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

public class LlmLoadingTests
{
    [Fact]
    public void Bf16_weights_stay_bf16_in_memory()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("llama"));
        Assert.Equal(DType.BF16, model.Weights.Embedding.DType);
        Assert.Equal(DType.BF16, model.Weights.Head.DType);
        Assert.All(model.Weights.Layers, l => Assert.Equal(DType.BF16, l.Query.DType));
        Assert.All(model.Weights.Layers, l => Assert.Equal(DType.BF16, l.Down.DType));
        Assert.Equal(DType.BF16, model.Weights.FinalNorm.DType);
        Assert.Equal(model.ParameterCount * 2, model.WeightBytes);
        Assert.True(model.Weights.Layers[2].Up.IsReadOnly, "weights should point into the memory-mapped file, not a copy");
    }

    [Theory]
    [InlineData("qwen2")]
    [InlineData("llama")]
    [InlineData("internlm2")]
    public void Header_summary_agrees_with_the_loaded_weights(string family)
    {
        var summary = DecoderModel.Inspect(LlmGolden.ModelFolder(family));
        using var model = DecoderModel.Load(LlmGolden.ModelFolder(family));
        Assert.Equal(model.ParameterCount, summary.ParameterCount);
        Assert.Equal(model.WeightBytes, summary.WeightBytes);
        Assert.Equal(model.ParametersByDType, summary.ParametersByDType);
        Assert.Equal(model.Config.Architecture, summary.Config.Architecture);
    }

    [Fact]
    public void Sharded_llama_loads_tensors_from_both_shards()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("llama"));
        Assert.Equal(3, model.Weights.Layers.Length);
        Assert.Equal([320, 64], model.Weights.Head.Shape);
        Assert.NotSame(model.Weights.Embedding, model.Weights.Head);
        Assert.Equal([128, 64], model.Weights.Layers[0].Query.Shape);
    }

    [Fact]
    public void Tied_qwen2_head_is_the_embedding_and_biases_are_loaded()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("qwen2"));
        Assert.Same(model.Weights.Embedding, model.Weights.Head);
        Assert.NotNull(model.Weights.Layers[1].KeyBias);
        Assert.Null(model.Weights.Layers[1].OutputBias);
    }

    [Fact]
    public void InternLM2_wqkv_splits_per_kv_group_into_query_key_value()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("internlm2"));
        var c = model.Config;
        using var file = SafeTensorsFile.Open(Path.Combine(LlmGolden.ModelFolder("internlm2"), "model.safetensors"));
        var fused = file.Load("model.layers.1.attention.wqkv.weight").ToArray();
        var layer = model.Weights.Layers[1];
        Assert.Equal(DType.F16, layer.Query.DType);
        var (q, k, v) = (layer.Query.ToArray(), layer.Key.ToArray(), layer.Value.ToArray());
        int row = c.HiddenSize, head = c.HeadDim * row, groupRows = (c.QueryGroups + 2) * head;
        for (int g = 0; g < c.NumKeyValueHeads; g++)
        {
            for (int j = 0; j < c.QueryGroups; j++)
                Assert.Equal(fused.AsSpan(g * groupRows + j * head, head), q.AsSpan((g * c.QueryGroups + j) * head, head));
            Assert.Equal(fused.AsSpan(g * groupRows + c.QueryGroups * head, head), k.AsSpan(g * head, head));
            Assert.Equal(fused.AsSpan(g * groupRows + (c.QueryGroups + 1) * head, head), v.AsSpan(g * head, head));
        }
    }

    [Fact]
    public void InternLM2_biases_split_like_the_weights()
    {
        using var scratch = new ScratchModel("internlm2");
        var config = scratch.PathOf("config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"bias\": false", "\"bias\": true"));
        const int rows = (8 + 2 * 2) * 8;
        var fusedBias = Enumerable.Range(0, rows).Select(i => (float)i).ToArray();
        scratch.Rewrite("model.safetensors", ts =>
        {
            for (int layer = 0; layer < 2; layer++)
            {
                ts.Add(KeyValuePair.Create($"model.layers.{layer}.attention.wqkv.bias", Tensor.FromArray((float[])fusedBias.Clone(), rows).ToDType(DType.F16)));
                ts.Add(KeyValuePair.Create($"model.layers.{layer}.attention.wo.bias", Tensor.Zeros(64).ToDType(DType.F16)));
            }
        });
        using var model = DecoderModel.Load(scratch.Folder);
        var w = model.Weights.Layers[0];
        // Per KV group of 48 rows: 4 query heads of 8, then the key head, then the value head.
        float[] Rows(int start, int count) => Enumerable.Range(start, count).Select(i => (float)i).ToArray();
        Assert.Equal(Rows(0, 32).Concat(Rows(48, 32)), w.QueryBias!.ToArray());
        Assert.Equal(Rows(32, 8).Concat(Rows(80, 8)), w.KeyBias!.ToArray());
        Assert.Equal(Rows(40, 8).Concat(Rows(88, 8)), w.ValueBias!.ToArray());
        Assert.Equal(DType.F32, w.OutputBias!.DType);
    }

    [Fact]
    public void Missing_tensor_is_named_with_the_file()
    {
        using var scratch = new ScratchModel("qwen2");
        scratch.Rewrite("model.safetensors", ts => ts.RemoveAll(t => t.Key == "model.layers.1.self_attn.k_proj.bias"));
        var e = Assert.Throws<LlmConfigException>(() => DecoderModel.Load(scratch.Folder));
        Assert.Equal("model.layers.1.self_attn.k_proj.bias", e.Tensor);
        Assert.EndsWith("model.safetensors", e.File);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void Misshaped_tensor_names_its_shard_and_both_shapes()
    {
        using var scratch = new ScratchModel("llama");
        var index = File.ReadAllText(scratch.PathOf("model.safetensors.index.json"));
        var shard = index.Contains("\"model.norm.weight\": \"model-00002-of-00002.safetensors\"") ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
        scratch.Rewrite(shard, ts =>
        {
            int i = ts.FindIndex(t => t.Key == "model.norm.weight");
            ts[i] = KeyValuePair.Create(ts[i].Key, Tensor.Zeros(63).ToDType(DType.BF16));
        });
        var e = Assert.Throws<LlmConfigException>(() => DecoderModel.Load(scratch.Folder));
        Assert.Equal("model.norm.weight", e.Tensor);
        Assert.EndsWith(shard, e.File);
        Assert.Equal(e.Message, Assert.Throws<LlmConfigException>(() => DecoderModel.Inspect(scratch.Folder)).Message);
        Assert.Contains("[63]", e.Message);
        Assert.Contains("[64]", e.Message);
    }

    [Fact]
    public void Unexpected_tensor_is_refused_but_rotary_buffers_are_ignored()
    {
        using var scratch = new ScratchModel("internlm2");
        scratch.Rewrite("model.safetensors", ts => ts.Add(KeyValuePair.Create("model.layers.0.attention.rotary_emb.inv_freq", Tensor.Zeros(4))));
        using (DecoderModel.Load(scratch.Folder)) { }
        scratch.Rewrite("model.safetensors", ts => ts.Add(KeyValuePair.Create("vision_model.proj.weight", Tensor.Zeros(2, 2))));
        var e = Assert.Throws<LlmConfigException>(() => DecoderModel.Load(scratch.Folder));
        Assert.Equal("vision_model.proj.weight", e.Tensor);
    }

    [Fact]
    public void Config_inconsistent_with_weights_names_the_tensor()
    {
        using var scratch = new ScratchModel("qwen2");
        var path = scratch.PathOf("config.json");
        File.WriteAllText(path, File.ReadAllText(path).Replace("\"intermediate_size\": 96", "\"intermediate_size\": 97"));
        var e = Assert.Throws<LlmConfigException>(() => DecoderModel.Load(scratch.Folder));
        Assert.Equal("model.layers.0.mlp.gate_proj.weight", e.Tensor);
    }

    [Fact]
    public void Folder_without_weights_is_named()
    {
        using var scratch = new ScratchModel("qwen2");
        File.Delete(scratch.PathOf("model.safetensors"));
        var e = Assert.Throws<SafeTensorsException>(() => DecoderModel.Load(scratch.Folder));
        Assert.Contains(scratch.Folder, e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void Index_naming_a_missing_shard_is_refused()
    {
        using var scratch = new ScratchModel("llama");
        File.Delete(scratch.PathOf("model-00002-of-00002.safetensors"));
        var e = Assert.Throws<SafeTensorsException>(() => DecoderModel.Load(scratch.Folder));
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
    }
}

/// <summary>A copy of a golden model folder that a test may damage; deleted afterwards.</summary>
internal sealed class ScratchModel : IDisposable
{
    public ScratchModel(string family)
    {
        Folder = Path.Combine(Path.GetTempPath(), $"graft-llm-{family}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Folder);
        foreach (var file in Directory.GetFiles(LlmGolden.ModelFolder(family)))
            File.Copy(file, Path.Combine(Folder, Path.GetFileName(file)));
    }

    public string Folder { get; }

    public string PathOf(string name) => Path.Combine(Folder, name);

    /// <summary>Rewrites one safetensors file of the folder through an edit of its tensors (name -> tensor, in order).</summary>
    public void Rewrite(string file, Action<List<KeyValuePair<string, Tensor>>> edit)
    {
        var path = PathOf(file);
        List<KeyValuePair<string, Tensor>> tensors;
        using (var reader = SafeTensorsFile.Open(path))
            tensors = reader.Tensors.Select(t => KeyValuePair.Create(t.Name, reader.Load(t.Name).ToDType(t.DType))).ToList();
        edit(tensors);
        SafeTensorsWriter.Write(path, tensors);
    }

    public void Dispose() => Directory.Delete(Folder, recursive: true);
}

/// <summary>The golden checkpoints and values written by tools/reference/llm_golden.py.</summary>
internal static class LlmGolden
{
    public static readonly string[] Families = ["qwen2", "llama", "internlm2"];

    public static string ModelFolder(string family) => Path.Combine(GoldenCase.Folder("llm"), "models", family);

    public static SafeTensorsFile Values(string family) => SafeTensorsFile.Open(Path.Combine(GoldenCase.Folder("llm"), family + ".safetensors"));

    public static int[] Ids(SafeTensorsFile values, string name) => Array.ConvertAll(values.ReadIntegers(name), v => checked((int)v));

    public static Tensor Floats(SafeTensorsFile values, string name) => Tensor.FromArray(values.ReadFloats(name), values.Info(name).Shape);
}
