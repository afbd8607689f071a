using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Tests.Plugins;

/// <summary>NAME.graft/: plugin.json + plugin.safetensors, saved atomically, refused on the wrong base or with wrong tensors.</summary>
public class PluginFileTests
{
    private static MultimodalPrompt ImagePrompt() =>
        new([new TextPart([1, 17, 42]), new ImagePart(PluginFixtures.Image(4)), new TextPart([9, 3])]);

    [Theory]
    [InlineData("llama")]
    [InlineData("internlm2")]
    public void Save_then_load_gives_bit_identical_outputs(string family)
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var bridge = PluginFixtures.RandomBridge(model, 3);
        PluginFile.Save(bridge, temp.Sub("a.graft"));
        var loaded = PluginFile.Load(temp.Sub("a.graft"), model, PluginFixtures.Vision());

        var host = new PluginHost(model);
        host.Attach("saved", bridge);
        host.Attach("loaded", loaded);
        Assert.Equal(PluginFixtures.Bits(host.Forward("saved", ImagePrompt())), PluginFixtures.Bits(host.Forward("loaded", ImagePrompt())));
        Assert.Equal(bridge.Parameters.Select(p => (p.Name, p.Part)), loaded.Parameters.Select(p => (p.Name, p.Part)));
    }

    [Fact]
    public void The_files_hold_the_manifest_fields_and_only_the_plugins_tensors()
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        string folder = temp.Sub("p.graft");
        PluginFile.Save(Bridge.Create(model, PluginFixtures.Vision(), new BridgeOptions { Seed = 1, Tune = BridgeTune.Full }), folder);

        Assert.Equal(["plugin.json", "plugin.safetensors"], Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "plugin.json")))!;
        Assert.Equal(1, (int)json["format_version"]!);
        Assert.Equal("bridge", (string)json["design"]!);
        Assert.Equal("full", (string)json["hyper_parameters"]!["tune"]!);
        Assert.Equal("mlp2x_gelu", (string)json["hyper_parameters"]!["projector"]!);
        Assert.Equal("Qwen2ForCausalLM", (string)json["base"]!["architecture"]!);
        Assert.Equal(BaseFingerprint.Of(model), (string)json["base"]!["fingerprint"]!);
        Assert.Equal("patch-pixels", (string)json["vision"]!["kind"]!);
        Assert.Equal(1, (int)json["training"]!["seed"]!);
        using var tensors = SafeTensorsFile.Open(Path.Combine(folder, "plugin.safetensors"));
        Assert.Equal(["mm_projector.0.bias", "mm_projector.0.weight", "mm_projector.2.bias", "mm_projector.2.weight"],
            tensors.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        Assert.Equal([64, 12], tensors.Info("mm_projector.0.weight").Shape);
    }

    [Fact]
    public void Loading_onto_a_different_base_is_refused_naming_the_difference()
    {
        using var temp = new TempFolder();
        using var llama = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        using var qwen = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        PluginFile.Save(Bridge.Create(llama, PluginFixtures.Vision()), temp.Sub("l.graft"));
        var e = Assert.Throws<PluginCompatibilityException>(() => PluginFile.Load(temp.Sub("l.graft"), qwen, PluginFixtures.Vision()));
        Assert.Contains("base architecture: plug-in made for LlamaForCausalLM, this base has Qwen2ForCausalLM", e.Message);
        Assert.Contains("base num_layers: plug-in made for 3, this base has 2", e.Message);
        Assert.Contains(e.Differences, d => d.StartsWith("base weights fingerprint", StringComparison.Ordinal));
    }

    [Fact]
    public void Loading_onto_a_fine_tuned_copy_of_the_base_is_refused_by_its_fingerprint()
    {
        using var temp = new TempFolder();
        string copy = temp.Sub("qwen2-tuned");
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.GetFiles(PluginFixtures.ModelFolder("qwen2"))) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        using (var original = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2")))
            PluginFile.Save(Bridge.Create(original, PluginFixtures.Vision()), temp.Sub("q.graft"));
        NudgeOneWeight(Path.Combine(copy, "model.safetensors"), "model.layers.1.mlp.down_proj.weight");

        using var tuned = DecoderModel.Load(copy);
        var e = Assert.Throws<PluginCompatibilityException>(() => PluginFile.Load(temp.Sub("q.graft"), tuned, PluginFixtures.Vision()));
        var difference = Assert.Single(e.Differences);
        Assert.Contains("base weights fingerprint", difference);
        Assert.Contains("same shapes, different weights", difference);
    }

    [Fact]
    public void The_fingerprint_is_stable_and_sees_a_change_in_a_sampled_large_tensor()
    {
        using var temp = new TempFolder();
        using var a = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        using var b = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        Assert.Equal(BaseFingerprint.Of(a), BaseFingerprint.Of(b));
        Assert.Matches("^sha256:[0-9a-f]{64}$", BaseFingerprint.Of(a));

        // The tied qwen2 embedding (384 x 64 F32 = 96 KiB) is larger than a whole-hash tensor, so it is sampled; its first bytes are in a sample.
        string copy = temp.Sub("qwen2");
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.GetFiles(PluginFixtures.ModelFolder("qwen2"))) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        using var original = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        Assert.True(original.Weights.Embedding.Length * 4 > BaseFingerprint.WholeTensorBytes);
        NudgeOneWeight(Path.Combine(copy, "model.safetensors"), "model.embed_tokens.weight");
        using var nudged = DecoderModel.Load(copy);
        Assert.NotEqual(BaseFingerprint.Of(original), BaseFingerprint.Of(nudged));
    }

    [Fact]
    public void Another_vision_front_end_is_refused_naming_what_differs()
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        PluginFile.Save(Bridge.Create(model, PluginFixtures.Vision()), temp.Sub("p.graft"));
        var e = Assert.Throws<PluginCompatibilityException>(() => PluginFile.Load(temp.Sub("p.graft"), model, new PatchPixelsFrontEnd(3, 2)));
        Assert.Contains("vision tokens per image: plug-in expects 4, given 9", e.Message);
    }

    [Theory]
    [InlineData("missing", "mm_projector.2.bias", "is missing (a bridge plug-in needs it, shape [64])")]
    [InlineData("misshaped", "mm_projector.0.weight", "has shape [64, 13], plugin.json implies [64, 12]")]
    [InlineData("extra", "mm_projector.4.weight", "is not a tensor of a bridge plug-in")]
    [InlineData("half", "mm_projector.0.bias", "is BF16, not F32")]
    public void A_missing_extra_or_misshaped_tensor_is_refused_naming_it(string fault, string tensor, string problem)
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var bridge = Bridge.Create(model, PluginFixtures.Vision());
        string folder = temp.Sub("p.graft");
        PluginFile.Save(bridge, folder);
        var tensors = bridge.Parameters.ToDictionary(p => p.Name, p => p.Tensor);
        switch (fault)
        {
            case "missing": tensors.Remove(tensor); break;
            case "misshaped": tensors[tensor] = Tensor.Zeros(64, 13); break;
            case "extra": tensors[tensor] = Tensor.Zeros(2, 2); break;
            case "half": tensors[tensor] = tensors[tensor].ToDType(DType.BF16); break;
        }
        SafeTensorsWriter.Write(Path.Combine(folder, "plugin.safetensors"), tensors);
        var e = Assert.Throws<PluginFormatException>(() => PluginFile.Load(folder, model, PluginFixtures.Vision()));
        Assert.Equal(tensor, e.Where);
        Assert.Contains(problem, e.Problem);
    }

    [Fact]
    public void Tensors_from_another_save_are_refused()
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        PluginFile.Save(PluginFixtures.RandomBridge(model, 1), temp.Sub("a.graft"));
        PluginFile.Save(PluginFixtures.RandomBridge(model, 2), temp.Sub("b.graft"));
        File.Copy(Path.Combine(temp.Sub("b.graft"), "plugin.safetensors"), Path.Combine(temp.Sub("a.graft"), "plugin.safetensors"), overwrite: true);
        var e = Assert.Throws<PluginFormatException>(() => PluginFile.Load(temp.Sub("a.graft"), model, PluginFixtures.Vision()));
        Assert.Contains("come from different saves", e.Message);
    }

    [Fact]
    public void Saving_again_replaces_both_files_leaves_no_temporary_file_and_never_writes_into_the_base()
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        string folder = temp.Sub("p.graft");
        PluginFile.Save(PluginFixtures.RandomBridge(model, 1), folder);
        var second = PluginFixtures.RandomBridge(model, 2);
        PluginFile.Save(second, folder);
        Assert.Equal(2, Directory.GetFiles(folder).Length);
        var loaded = PluginFile.Load(folder, model, PluginFixtures.Vision());
        Assert.Equal(second.Parameters[0].Tensor.ToArray(), loaded.Parameters[0].Tensor.ToArray());

        string inside = Path.Combine(PluginFixtures.ModelFolder("qwen2"), "p.graft");
        Assert.Contains("only ever read", Assert.Throws<ArgumentException>(() => PluginFile.Save(second, inside)).Message);
        Assert.False(Directory.Exists(inside));
    }

    [Fact]
    public void A_malformed_manifest_is_refused_naming_the_field()
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        string folder = temp.Sub("p.graft");
        PluginFile.Save(Bridge.Create(model, PluginFixtures.Vision()), folder);
        string path = Path.Combine(folder, "plugin.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        json["base"]!.AsObject().Remove("hidden_size");
        File.WriteAllText(path, json.ToJsonString());
        var e = Assert.Throws<PluginFormatException>(() => PluginFile.Load(folder, model));
        Assert.Equal("base.hidden_size", e.Where);

        json["base"]!["hidden_size"] = 64;
        json["format_version"] = 9;
        File.WriteAllText(path, json.ToJsonString());
        Assert.Equal("format_version", Assert.Throws<PluginFormatException>(() => PluginFile.Load(folder, model)).Where);
    }

    /// <summary>Adds a small amount to the first element of a stored F32 tensor, in place, as a fine-tune would.</summary>
    private static void NudgeOneWeight(string file, string tensor)
    {
        long offset;
        using (var reader = SafeTensorsFile.Open(file))
        {
            var info = reader.Info(tensor);
            Assert.Equal(DType.F32, info.DType);
            var bytes = File.ReadAllBytes(file);
            offset = 8 + BitConverter.ToInt64(bytes, 0) + info.Begin;
        }
        var data = File.ReadAllBytes(file);
        float value = BitConverter.ToSingle(data, (int)offset) + 1e-3f;
        BitConverter.TryWriteBytes(data.AsSpan((int)offset, 4), value);
        File.WriteAllBytes(file, data);
    }
}
