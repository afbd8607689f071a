using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Vision;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>CLIP and SigLIP towers as plug-in front ends: features, summary, fingerprint, and plug-ins made and reloaded with them.</summary>
public class WiringVisionTests
{
    public static string Tower(string name) => Path.Combine(GoldenCase.Folder("vision"), "models", name);

    public static string Photo => Path.Combine(GoldenCase.Folder("vision"), "photo_40x30.png");

    [Fact]
    public void Clip_tower_gives_the_reference_features_of_layer_minus_2_without_the_class_token()
    {
        using var golden = GoldenCase.Open("vision", "e2e_clip_vision");
        using var vision = VisionTowerFrontEnd.Load(Tower("clip_vision"), new VisionTowerOptions { PadToSquare = false });
        var features = vision.Encode(ImageDecoder.Load(Photo));
        Assert.Equal([16, 32], features.Shape);
        var reference = golden.Expected("features_m2");   // [17, 32], class token first, from PyTorch
        TensorAssert.Close(Ops.Slice(reference, 0, 1, 16), features, 1e-4f, 2e-5f, "layer -2 without the class token");

        Assert.Equal("clip", vision.Kind);
        Assert.Equal(32, vision.FeatureWidth);
        Assert.Equal(16, vision.TokensPerImage);
        Assert.Equal("32", vision.Summary["image_size"]);
        Assert.Equal("8", vision.Summary["patch_size"]);
        Assert.Equal("32", vision.Summary["width"]);
        Assert.Equal("layer:-2", vision.Summary["features"]);
        Assert.Equal("false", vision.Summary["pad_to_square"]);
    }

    [Fact]
    public void Padding_to_square_and_the_layer_change_the_features_as_asked()
    {
        using var padded = VisionTowerFrontEnd.Load(Tower("clip_vision"));
        using var last = VisionTowerFrontEnd.Load(Tower("clip_vision"), new VisionTowerOptions { Features = VisionFeatureSelector.Layer(-1, keepClassToken: true), PadToSquare = false });
        var image = ImageDecoder.Load(Photo);
        // expand2square by hand: the 40x30 photo centred on a 40x40 canvas of the mean colour, then the unpadded path.
        using var manual = VisionTowerFrontEnd.Load(Tower("clip_vision"), new VisionTowerOptions { PadToSquare = false });
        var square = ImageGeometry.ExpandToSquare(image, ImagePreprocessor.MeanColour(padded.Preprocessor));
        Assert.Equal(PluginFixtures.Bits(manual.Encode(square)), PluginFixtures.Bits(padded.Encode(image)));
        Assert.Equal(17, last.TokensPerImage);
        Assert.Equal([17, 32], last.Encode(image).Shape);
        Assert.Equal("layer:-1:class", last.Summary["features"]);
    }

    [Fact]
    public void Siglip_tower_has_no_class_token_to_drop_and_refuses_class_token_features()
    {
        using var vision = VisionTowerFrontEnd.Load(Tower("siglip_head"));
        Assert.Equal("siglip", vision.Kind);
        Assert.Equal(vision.Encoder.Config.Patches, vision.TokensPerImage);
        Assert.Equal([vision.TokensPerImage, vision.FeatureWidth], vision.Encode(PluginFixtures.Image(3, 20, 12)).Shape);
        var e = Assert.Throws<VisionModelException>(() => VisionTowerFrontEnd.Load(Tower("siglip_head"), new VisionTowerOptions { Features = VisionFeatureSelector.ClassTokensEvery(1) }));
        Assert.Contains("class token", e.Message);
        e = Assert.Throws<VisionModelException>(() => VisionTowerFrontEnd.Load(Tower("clip_vision"), new VisionTowerOptions { Features = VisionFeatureSelector.Layer(-5) }));
        Assert.Contains("hidden state -5 does not exist in a tower of 3 layers", e.Message);
    }

    [Fact]
    public void Fingerprint_is_stable_and_moves_with_weights_selection_and_preprocessing()
    {
        using var temp = new TempFolder();
        string copy = CopyTower(Tower("clip_vision"), temp.Sub("clip"));
        string a, b, layer, padding, changed;
        using (var v = VisionTowerFrontEnd.Load(Tower("clip_vision"))) a = v.Fingerprint;
        using (var v = VisionTowerFrontEnd.Load(copy)) b = v.Fingerprint;
        using (var v = VisionTowerFrontEnd.Load(copy, new VisionTowerOptions { Features = VisionFeatureSelector.Layer(-1) })) layer = v.Fingerprint;
        using (var v = VisionTowerFrontEnd.Load(copy, new VisionTowerOptions { PadToSquare = false })) padding = v.Fingerprint;
        NudgeQueryWeight(copy);
        using (var v = VisionTowerFrontEnd.Load(copy)) changed = v.Fingerprint;
        Assert.Matches("^sha256:[0-9a-f]{64}$", a);
        Assert.Equal(a, b);
        Assert.Equal(4, new[] { a, layer, padding, changed }.Distinct().Count());
    }

    [Fact]
    public void A_bridge_on_a_tower_reloads_with_that_tower_bit_for_bit_and_refuses_another()
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var image = ImageDecoder.Load(Photo);
        var prompt = new MultimodalPrompt([new TextPart([1, 17]), new ImagePart(image), new TextPart([42, 9])]);
        Tensor before;
        using (var vision = VisionTowerFrontEnd.Load(Tower("clip_vision")))
        {
            var bridge = Bridge.Create(model, vision, new BridgeOptions { Seed = 4 });
            var host = new PluginHost(model);
            host.Attach("b", bridge);
            before = host.Forward("b", prompt);
            PluginFile.Save(bridge, temp.Sub("b.graft"));
        }
        Assert.Equal(2 + 16 + 2, before.Shape[0]);

        var manifest = PluginFile.ReadManifest(temp.Sub("b.graft"));
        Assert.Equal("clip", manifest.Vision!.Kind);
        Assert.Equal("layer:-2", manifest.Vision.Summary["features"]);
        using (var reopened = VisionTowerFrontEnd.Open(Tower("clip_vision"), manifest.Vision, "plugin.json"))
        {
            var host = new PluginHost(model);
            host.Attach("b", PluginFile.Load(temp.Sub("b.graft"), model, reopened));
            Assert.Equal(PluginFixtures.Bits(before), PluginFixtures.Bits(host.Forward("b", prompt)));
        }

        string other = CopyTower(Tower("clip_vision"), temp.Sub("other"));
        NudgeQueryWeight(other);
        using (var wrong = VisionTowerFrontEnd.Open(other, manifest.Vision, "plugin.json"))
        {
            var e = Assert.Throws<PluginCompatibilityException>(() => PluginFile.Load(temp.Sub("b.graft"), model, wrong));
            Assert.Contains("vision fingerprint", e.Message);
        }
        using (var siglip = VisionTowerFrontEnd.Open(Tower("siglip_head"), manifest.Vision, "plugin.json"))
        {
            var e = Assert.Throws<PluginCompatibilityException>(() => PluginFile.Load(temp.Sub("b.graft"), model, siglip));
            Assert.Contains("vision kind: plug-in expects clip, given siglip", e.Message);
        }
    }

    internal static string CopyTower(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        return to;
    }

    /// <summary>Flips the lowest mantissa bit of the first element of the first attention query weight.</summary>
    internal static void NudgeQueryWeight(string folder)
    {
        const string name = "vision_model.encoder.layers.0.self_attn.q_proj.weight";
        string path = Path.Combine(folder, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        using var header = System.Text.Json.JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        long start = header.RootElement.GetProperty(name).GetProperty("data_offsets")[0].GetInt64();
        bytes[8 + headerLength + start] ^= 1;
        File.WriteAllBytes(path, bytes);
    }
}
