using Graft.Models.Vision;
using Graft.Tensors;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>CLIP / SigLIP towers and the Mono-InternVL front end against tools/reference/vision_golden.py (float64 PyTorch).</summary>
public sealed class VisionGoldenTests
{
    private const string Group = "vision";
    private const float Rtol = 1e-4f, Atol = 2e-5f;

    public static string ModelFolder(string name) => Path.Combine(GoldenCase.Folder(Group), "models", name);

    public static TheoryData<string> TowerCases() => ["clip_vision", "clip_full", "siglip_head", "siglip_bf16"];

    [Theory]
    [MemberData(nameof(TowerCases))]
    public void TowerMatchesReference(string name)
    {
        using var golden = GoldenCase.Open(Group, name);
        using var model = VisionEncoder.Load(ModelFolder(golden.String("model")));
        Assert.Equal(golden.String("kind") == "clip", model.HasClassToken);
        Assert.Equal(golden.Int("layers"), model.Blocks.Count);
        VisionOutput output;
        using (Autograd.NoGrad()) output = model.Forward(golden.Input("pixels"));

        Assert.Equal(golden.Int("layers") + 1, output.HiddenStates.Count);
        for (int i = 0; i < output.HiddenStates.Count; i++)
            TensorAssert.Close(golden.Expected($"hidden.{i}"), output.HiddenStates[i], Rtol, Atol, $"{name} hidden state {i}");
        TensorAssert.Close(golden.Expected("last"), output.LastHiddenState, Rtol, Atol, $"{name} last hidden state");
        if (golden.Has("out.pooled")) TensorAssert.Close(golden.Expected("pooled"), output.Pooled!, Rtol, Atol, $"{name} pooled");
        else Assert.Null(output.Pooled);

        TensorAssert.Close(golden.Expected("layer_m2_no_cls"), VisionFeatureSelector.Llava.Select(output), Rtol, Atol, "layer -2 without class token");
        if (model.HasClassToken)
        {
            TensorAssert.Close(golden.Expected("layer_m2_cls"), VisionFeatureSelector.Layer(-2, keepClassToken: true).Select(output), Rtol, Atol, "layer -2 with class token");
            TensorAssert.Close(golden.Expected("cls_every_3"), VisionFeatureSelector.ClassTokensEvery(3).Select(output), Rtol, Atol, "class token every block");
        }
    }

    [Fact]
    public void Bf16TowerKeepsItsWeightsInBf16()
    {
        using var model = VisionEncoder.Load(ModelFolder("siglip_bf16"));
        Assert.All(model.Blocks, b => Assert.Equal(DType.BF16, b.Fc1.Weight.DType));
        Assert.Equal(DType.BF16, ((SiglipVisionModel)model).PatchEmbedding.Weight.DType);
    }

    [Fact]
    public void GradientReachesThePixelsThroughAFrozenClipTower()
    {
        using var golden = GoldenCase.Open(Group, "clip_vision");
        using var model = VisionEncoder.Load(ModelFolder("clip_vision"));
        var pixels = golden.Input("pixels", trainable: true);
        var last = model.Forward(pixels, keepHiddenStates: false).LastHiddenState;
        last.Backward(golden.Input("upstream"));
        TensorAssert.Close(golden.ExpectedGrad("pixels"), pixels.Grad!, 1e-4f, 1e-5f, "d last / d pixels");
        Assert.All(model.Parameters, p => Assert.Null(p.Grad));
    }

    [Theory]
    [InlineData("mono_front_resized")]
    [InlineData("mono_front_base")]
    public void PatchEmbeddingFrontEndMatchesReference(string name)
    {
        using var golden = GoldenCase.Open(Group, name);
        using var front = PatchEmbeddingFrontEnd.Load(ModelFolder(golden.String("model")), trainable: true);
        var y = front.Forward(golden.Input("pixels"));
        TensorAssert.Close(golden.Expected("y"), y, Rtol, Atol, $"{name} output");
        y.Backward(golden.Input("upstream"));
        TensorAssert.Close(golden.ExpectedGrad("vision_model.embeddings.patch_embedding.weight"), front.PatchEmbedding.Weight.Grad!, Rtol, Atol, "patch weight gradient");
        TensorAssert.Close(golden.ExpectedGrad("vision_model.embeddings.patch_embedding.bias"), front.PatchEmbedding.Bias!.Grad!, Rtol, Atol, "patch bias gradient");
        var positionGrad = golden.ExpectedGrad("vision_model.embeddings.position_embedding");
        TensorAssert.Close(positionGrad.ToArray(), front.PositionEmbedding.Grad!.ToArray(), Rtol, Atol, "position embedding gradient");
    }

    [Fact]
    public void BicubicResizeMatchesTorchInterpolate()
    {
        using var golden = GoldenCase.Open(Group, "bicubic_4x4_to_7x3");
        var y = BicubicResize.Resize(golden.Input("table"), golden.Int("in_h"), golden.Int("in_w"), golden.Int("out_h"), golden.Int("out_w"));
        TensorAssert.Close(golden.Expected("y"), y, 1e-5f, 1e-6f, "bicubic 4x4 -> 7x3");
    }

    [Fact]
    public void BicubicResizeToTheSameGridIsTheIdentity()
    {
        var m = BicubicResize.Matrix1D(5, 5);
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) Assert.Equal(i == j ? 1.0 : 0.0, m[i, j], 12);
    }
}
