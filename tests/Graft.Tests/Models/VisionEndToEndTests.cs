using System.CommandLine;
using Graft.Cli;
using Graft.Models.Imaging;
using Graft.Models.Vision;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>PNG -> preprocessor_config.json -> tower, and `graft encode-image` in its documented form.</summary>
public sealed class VisionEndToEndTests
{
    private static string Photo => Path.Combine(GoldenCase.Folder("vision"), "photo_40x30.png");

    private static (int ExitCode, string Output, string Error) Invoke(params string[] args) =>
        CliRunner.Run([EncodeImageCommand.Create()], args);

    [Theory]
    [InlineData("clip_vision")]
    [InlineData("siglip_head")]
    public void PreprocessedPngMatchesReference(string name)
    {
        using var golden = GoldenCase.Open("vision", "e2e_" + name);
        string folder = VisionGoldenTests.ModelFolder(name);
        using var model = VisionEncoder.Load(folder);
        var image = ImageDecoder.Load(Photo);
        var pixels = ImagePreprocessor.ToTensor(image, EncodeImageCommand.PreprocessorFor(model.Config, folder));
        TensorAssert.Close(golden.Input("pixels"), pixels, 1e-5f, 1e-5f, "preprocessed pixels");
        TensorAssert.Close(golden.Expected("features_last"), EncodeImageCommand.Encode(model, folder, image, -1), 1e-4f, 2e-5f, "features, last layer");
    }

    [Fact]
    public void EncodeImageWritesOneF32FeatureTensor()
    {
        using var golden = GoldenCase.Open("vision", "e2e_clip_vision");
        var path = Path.Combine(Path.GetTempPath(), $"graft-encode-{Guid.NewGuid():N}.safetensors");
        try
        {
            var (code, _, error) = Invoke("encode-image", "--vision", VisionGoldenTests.ModelFolder("clip_vision"), "--image", Photo, "--out", path, "--layer", "-2");
            Assert.True(code == 0, error);
            using var written = SafeTensorsFile.Open(path);
            var info = Assert.Single(written.Tensors);
            Assert.Equal("features", info.Name);
            Assert.Equal(DType.F32, info.DType);
            Assert.Equal([17, 32], info.Shape);
            TensorAssert.Close(golden.Expected("features_m2"), Tensor.FromArray(written.ReadFloats("features"), info.Shape), 1e-4f, 2e-5f, "features, layer -2");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// A GIF goes through the one decoding entry point: its features equal those of a PNG holding the same pixels (which
    /// ImageCorpusTests holds equal to PIL's); an animated GIF is one line on stderr and exit code 1.
    /// </summary>
    [Fact]
    public void EncodeImageReadsGifAndRefusesAnimatedGif()
    {
        string folder = VisionGoldenTests.ModelFolder("clip_vision");
        var gif = Path.Combine(ImageCorpusTests.Folder, "real_images_logo100.gif");
        var temp = Directory.CreateTempSubdirectory("graft-gif-");
        try
        {
            var png = Path.Combine(temp.FullName, "same.png");
            PngEncoder.Save(ImageDecoder.Load(gif), png);
            var (code, _, error) = Invoke("encode-image", "--vision", folder, "--image", gif, "--out", Path.Combine(temp.FullName, "gif.safetensors"));
            Assert.True(code == 0, error);
            (code, _, error) = Invoke("encode-image", "--vision", folder, "--image", png, "--out", Path.Combine(temp.FullName, "png.safetensors"));
            Assert.True(code == 0, error);
            using (var fromGif = SafeTensorsFile.Open(Path.Combine(temp.FullName, "gif.safetensors")))
            using (var fromPng = SafeTensorsFile.Open(Path.Combine(temp.FullName, "png.safetensors")))
                Assert.Equal(fromPng.ReadFloats("features"), fromGif.ReadFloats("features"));

            var animated = Path.Combine(ImageCorpusTests.Folder, "gif_animated_two_frames.gif");
            (code, _, error) = Invoke("encode-image", "--vision", folder, "--image", animated, "--out", Path.Combine(temp.FullName, "a.safetensors"));
            Assert.Equal(1, code);
            Assert.Contains("animated GIF", error);
            Assert.Single(error.Trim().Split('\n'));
        }
        finally
        {
            temp.Delete(recursive: true);
        }
    }

    [Fact]
    public void EncodeImageReportsBadInputOnOneLine()
    {
        var path = Path.Combine(Path.GetTempPath(), $"graft-encode-{Guid.NewGuid():N}.safetensors");
        var (code, _, error) = Invoke("encode-image", "--vision", VisionGoldenTests.ModelFolder("clip_vision"), "--image", Photo, "--out", path, "--layer", "9");
        Assert.Equal(1, code);
        Assert.Contains("hidden-state index", error);
        (code, _, error) = Invoke("encode-image", "--vision", GoldenCase.Folder("vision"), "--image", Photo, "--out", path);
        Assert.Equal(1, code);
        Assert.Contains("config.json", error);
        Assert.False(File.Exists(path));
    }
}
