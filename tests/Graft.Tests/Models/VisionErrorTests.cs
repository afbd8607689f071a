using System.Text.Json.Nodes;
using Graft.Models.Vision;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>Bad folders and inputs fail with errors that name the file and the field or tensor.</summary>
public sealed class VisionErrorTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "graft-vision-" + Guid.NewGuid().ToString("N"));

    public VisionErrorTests()
    {
        Directory.CreateDirectory(_folder);
        foreach (var file in Directory.GetFiles(VisionGoldenTests.ModelFolder("clip_vision")))
            File.Copy(file, Path.Combine(_folder, Path.GetFileName(file)));
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string ConfigPath => Path.Combine(_folder, "config.json");

    private void EditConfig(Action<JsonObject> edit)
    {
        var config = JsonNode.Parse(File.ReadAllText(ConfigPath))!.AsObject();
        edit(config);
        File.WriteAllText(ConfigPath, config.ToJsonString());
    }

    private void RewriteTensors(Func<string, Tensor, Tensor?> change)
    {
        var path = Path.Combine(_folder, "model.safetensors");
        var tensors = new List<KeyValuePair<string, Tensor>>();
        using (var file = SafeTensorsFile.Open(path))
            foreach (var info in file.Tensors)
            {
                var replaced = change(info.Name, Tensor.FromArray(file.ReadFloats(info.Name), info.Shape));
                if (replaced is not null) tensors.Add(new(info.Name, replaced));
            }
        SafeTensorsWriter.Write(path, tensors);
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        RewriteTensors((name, t) => name == "vision_model.encoder.layers.1.mlp.fc2.bias" ? null : t);
        var e = Assert.Throws<VisionModelException>(() => ClipVisionModel.Load(_folder));
        Assert.Equal("vision_model.encoder.layers.1.mlp.fc2.bias", e.Where);
        Assert.EndsWith("model.safetensors", e.File);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void WrongShapeIsNamedWithBothShapes()
    {
        RewriteTensors((name, t) => name == "vision_model.embeddings.position_embedding.weight" ? Tensor.Zeros(16, 32) : t);
        var e = Assert.Throws<VisionModelException>(() => ClipVisionModel.Load(_folder));
        Assert.Equal("vision_model.embeddings.position_embedding.weight", e.Where);
        Assert.Contains("[16, 32]", e.Message);
        Assert.Contains("[17, 32]", e.Message);
    }

    [Fact]
    public void BadConfigFieldIsNamed()
    {
        EditConfig(c => c["num_attention_heads"] = "four");
        var e = Assert.Throws<VisionModelException>(() => ClipVisionModel.Load(_folder));
        Assert.Equal("num_attention_heads", e.Where);
        Assert.EndsWith("config.json", e.File);
    }

    [Fact]
    public void HeadsThatDoNotDivideTheWidthAreRejected()
    {
        EditConfig(c => c["num_attention_heads"] = 5);
        var e = Assert.Throws<VisionModelException>(() => ClipVisionModel.Load(_folder));
        Assert.Equal("hidden_size", e.Where);
    }

    [Fact]
    public void UnknownActivationIsNamed()
    {
        EditConfig(c => c["hidden_act"] = "relu6");
        var e = Assert.Throws<VisionModelException>(() => ClipVisionModel.Load(_folder));
        Assert.Equal("hidden_act", e.Where);
    }

    [Fact]
    public void WrongFamilyIsRejected()
    {
        var e = Assert.Throws<VisionModelException>(() => SiglipVisionModel.Load(_folder));
        Assert.Equal("model_type", e.Where);
        EditConfig(c => c["model_type"] = "llama");
        e = Assert.Throws<VisionModelException>(() => VisionEncoder.Load(_folder));
        Assert.Equal("model_type", e.Where);
    }

    [Fact]
    public void FullConfigWithoutVisionConfigIsRejected()
    {
        EditConfig(c => c["model_type"] = "clip");
        var e = Assert.Throws<VisionModelException>(() => ClipVisionModel.Load(_folder));
        Assert.Equal("vision_config", e.Where);
    }

    [Fact]
    public void MissingOrBrokenConfigIsReported()
    {
        File.WriteAllText(ConfigPath, "{ \"model_type\": ");
        Assert.Throws<VisionModelException>(() => ClipVisionModel.Load(_folder));
        File.Delete(ConfigPath);
        var e = Assert.Throws<VisionModelException>(() => ClipVisionModel.Load(_folder));
        Assert.EndsWith("config.json", e.File);
    }

    [Fact]
    public void PixelsOfTheWrongSizeAreRejected()
    {
        using var model = ClipVisionModel.Load(_folder);
        var e = Assert.Throws<ArgumentException>(() => model.Forward(Tensor.Zeros(1, 3, 48, 48)));
        Assert.Contains("image_size 32", e.Message);
    }

    [Fact]
    public void FeatureSelectionChecksItsArguments()
    {
        using var model = ClipVisionModel.Load(_folder);
        VisionOutput output;
        using (Autograd.NoGrad()) output = model.Forward(Tensor.Zeros(1, 3, 32, 32));
        Assert.Throws<ArgumentOutOfRangeException>(() => VisionFeatureSelector.Layer(4).Select(output));
        Assert.Throws<ArgumentOutOfRangeException>(() => VisionFeatureSelector.Layer(-5).Select(output));
        Assert.Equal(output.HiddenStates[0].ToArray(), VisionFeatureSelector.Layer(-4, keepClassToken: true).Select(output).ToArray());
        Assert.Throws<InvalidOperationException>(() => VisionFeatureSelector.ClassTokensEvery(2).Select(output));
        using (Autograd.NoGrad()) output = model.Forward(Tensor.Zeros(1, 3, 32, 32), keepHiddenStates: false);
        Assert.Throws<InvalidOperationException>(() => VisionFeatureSelector.Llava.Select(output));
    }

    private string CopyModel(string name)
    {
        var folder = Path.Combine(_folder, name);
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(VisionGoldenTests.ModelFolder(name)))
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        return folder;
    }

    [Fact]
    public void SiglipHeadFollowsVisionUseHead()
    {
        var withHead = CopyModel("siglip_head");
        var path = Path.Combine(withHead, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config["vision_use_head"] = false;
        File.WriteAllText(path, config.ToJsonString());
        using (var model = SiglipVisionModel.Load(withHead)) Assert.Null(model.Head);

        var withoutHead = CopyModel("siglip_bf16");
        path = Path.Combine(withoutHead, "config.json");
        config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config["vision_config"]!["vision_use_head"] = true;
        File.WriteAllText(path, config.ToJsonString());
        Assert.Equal("vision_model.head.probe", Assert.Throws<VisionModelException>(() => SiglipVisionModel.Load(withoutHead)).Where);
    }

    [Fact]
    public void FrontEndConfigErrorsNameTheField()
    {
        var folder = CopyModel("mono_front");
        var path = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config["downsample_ratio"] = 0.25;
        File.WriteAllText(path, config.ToJsonString());
        Assert.Equal("downsample_ratio", Assert.Throws<VisionModelException>(() => PatchEmbeddingFrontEnd.Load(folder)).Where);
        config["downsample_ratio"] = 0.5;
        config["llm_config"]!["hidden_size"] = 65;
        File.WriteAllText(path, config.ToJsonString());
        Assert.Equal("mlp1.1.weight", Assert.Throws<VisionModelException>(() => PatchEmbeddingFrontEnd.Load(folder)).Where);
    }
}
