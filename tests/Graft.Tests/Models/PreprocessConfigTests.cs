using Graft.Models.Imaging;
using Graft.Tensors;

namespace Graft.Tests.Models;

/// <summary>preprocessor_config.json parsing, HF defaults and sizes, argument validation, and the batch helper.</summary>
public class PreprocessConfigTests
{
    private const string ClipVitL336 = """
        {
          "crop_size": {"height": 336, "width": 336},
          "do_center_crop": true, "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
          "image_mean": [0.48145466, 0.4578275, 0.40821073],
          "image_processor_type": "CLIPImageProcessor",
          "image_std": [0.26862954, 0.26130258, 0.27577711],
          "processor_class": "LlavaProcessor",
          "resample": 3, "rescale_factor": 0.00392156862745098,
          "size": {"shortest_edge": 336}
        }
        """;

    [Fact]
    public void ParsesAClipConfig()
    {
        var config = ImageProcessorConfig.Parse(ClipVitL336);
        Assert.Equal(ImageProcessorConfig.ClipType, config.ProcessorType);
        Assert.Equal(336, config.ShortestEdge);
        Assert.Equal((336, 336), (config.CropHeight, config.CropWidth));
        Assert.Equal(ResampleFilter.Bicubic, config.Resample);
        Assert.Equal(0.00392156862745098, config.RescaleFactor);
        Assert.Equal(ImageProcessorConfig.OpenAIClipStd, config.ImageStd);
        Assert.Equal((336, 336), config.OutputSize(1920, 1080));
    }

    [Fact]
    public void AbsentFieldsTakeTheClassDefaults()
    {
        var clip = ImageProcessorConfig.Parse("""{"image_processor_type": "CLIPImageProcessor", "size": null}""");
        Assert.Equal(ImageProcessorConfig.Clip(), clip);
        Assert.Equal(224, clip.ShortestEdge);
        Assert.True(clip.DoCenterCrop && clip.DoRescale && clip.DoNormalize);
        Assert.Equal(1 / 255.0, clip.RescaleFactor);

        var siglip = ImageProcessorConfig.Parse("""{"image_processor_type": "SiglipImageProcessor", "do_convert_rgb": null}""");
        Assert.Equal(ImageProcessorConfig.Siglip(), siglip);
        Assert.Null(siglip.ShortestEdge);
        Assert.Equal((224, 224), (siglip.ResizeHeight, siglip.ResizeWidth));
        Assert.False(siglip.DoCenterCrop);
        Assert.Equal(ImageProcessorConfig.HalfMean, siglip.ImageMean);
    }

    [Fact]
    public void LegacyIntegerSizesFollowGetSizeDict()
    {
        var clip = ImageProcessorConfig.Parse("""{"feature_extractor_type": "CLIPFeatureExtractor", "size": 224, "crop_size": 200, "image_mean": 0.5}""");
        Assert.Equal(224, clip.ShortestEdge);
        Assert.Equal((200, 200), (clip.CropHeight, clip.CropWidth));
        Assert.Equal([0.5, 0.5, 0.5], clip.ImageMean);

        var siglip = ImageProcessorConfig.Parse("""{"image_processor_type": "SiglipImageProcessor", "size": 384, "crop_size": 7}""");
        Assert.Equal((384, 384), (siglip.ResizeHeight, siglip.ResizeWidth));
        Assert.Null(siglip.ShortestEdge);
        Assert.False(siglip.DoCenterCrop);
    }

    [Fact]
    public void InternVLPresetIsImageNetBicubicTorchvision()
    {
        var config = ImageProcessorConfig.InternVL();
        Assert.Equal((448, 448), (config.ResizeHeight, config.ResizeWidth));
        Assert.Equal(ResampleFilter.Bicubic, config.Resample);
        Assert.Equal(ImageProcessorConfig.ImageNetMean, config.ImageMean);
        Assert.Equal(RescaleArithmetic.TorchFloat32Divide, config.RescaleArithmetic);
        Assert.False(config.DoCenterCrop);
    }

    [Theory]
    [InlineData(640, 480, 336, 336, 448)]
    [InlineData(480, 640, 336, 448, 336)]
    [InlineData(1000, 333, 336, 336, 1009)]
    [InlineData(333, 1000, 336, 1009, 336)]
    [InlineData(37, 23, 32, 32, 51)]
    [InlineData(100, 100, 7, 7, 7)]
    public void ShortestEdgeTruncatesTheLongSideAsTransformers(int width, int height, int edge, int expectedHeight, int expectedWidth)
    {
        var config = ImageProcessorConfig.Clip() with { ShortestEdge = edge };
        Assert.Equal((expectedHeight, expectedWidth), config.ResizeTarget(width, height));
    }

    [Theory]
    [InlineData("""{"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": -3}}""", "size.shortest_edge")]
    [InlineData("""{"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 0}}""", "size.shortest_edge")]
    [InlineData("""{"image_processor_type": "CLIPImageProcessor", "size": {"longest_edge": 5}}""", "size")]
    [InlineData("""{"image_processor_type": "CLIPImageProcessor", "crop_size": {"height": "x", "width": 3}}""", "crop_size.height")]
    [InlineData("""{"image_processor_type": "CLIPImageProcessor", "crop_size": [3, 3]}""", "crop_size")]
    [InlineData("""{"image_processor_type": "CLIPImageProcessor", "resample": 7}""", "resample")]
    [InlineData("""{"image_processor_type": "CLIPImageProcessor", "resample": "bicubic"}""", "resample")]
    [InlineData("""{"image_processor_type": "CLIPImageProcessor", "image_mean": [0.5, 0.5]}""", "image_mean")]
    [InlineData("""{"image_processor_type": "CLIPImageProcessor", "image_std": [0.5, 0, 0.5]}""", "image_std[1]")]
    [InlineData("""{"image_processor_type": "CLIPImageProcessor", "rescale_factor": -1}""", "rescale_factor")]
    [InlineData("""{"image_processor_type": "CLIPImageProcessor", "do_resize": "yes"}""", "do_resize")]
    [InlineData("""{"image_processor_type": "SiglipImageProcessor", "size": {"shortest_edge": 384}}""", "size.shortest_edge")]
    [InlineData("""{"image_processor_type": "ViTImageProcessor"}""", "image_processor_type")]
    [InlineData("""{"feature_extractor_type": "Foo"}""", "feature_extractor_type")]
    [InlineData("""{"image_processor_type": 3}""", "image_processor_type")]
    [InlineData("""{"do_resize": true}""", "image_processor_type")]
    [InlineData("""[1, 2]""", "(document)")]
    [InlineData("""{"image_processor_type": """, "(document)")]
    public void InvalidFieldsAreNamed(string json, string field)
    {
        var error = Assert.Throws<ImageProcessorConfigException>(() => ImageProcessorConfig.Parse(json, "models/x/preprocessor_config.json"));
        Assert.Equal(field, error.Field);
        Assert.StartsWith($"models/x/preprocessor_config.json: {field}: ", error.Message);
    }

    [Fact]
    public void LoadNamesTheFile()
    {
        var path = Path.Combine(Path.GetTempPath(), $"graft-preprocess-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, """{"image_processor_type": "CLIPImageProcessor", "crop_size": {"height": 0, "width": 3}}""");
        try
        {
            var error = Assert.Throws<ImageProcessorConfigException>(() => ImageProcessorConfig.Load(path));
            Assert.Equal(Path.GetFileName(path), error.File);
            Assert.Equal("crop_size.height", error.Field);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void NonPositiveSizesAreRejected()
    {
        var image = Gradient(5, 4);
        Assert.Throws<ArgumentException>(() => ImageResizer.Resize(image, 0, 3, ResampleFilter.Bicubic));
        Assert.Throws<ArgumentException>(() => ImageResizer.Resize(image, 3, -1, ResampleFilter.Nearest));
        Assert.Throws<ArgumentException>(() => ImageResizer.Resize(image, 3, 3, (ResampleFilter)9));
        Assert.Throws<ArgumentException>(() => ImageResizer.Resize(image, 60000, 60000, ResampleFilter.Bilinear));
        Assert.Throws<ArgumentException>(() => ImageGeometry.CenterCrop(image, 0, 2));
        Assert.Throws<ArgumentException>(() => ImageGeometry.Crop(image, 3, 0, 3, 2));
        Assert.Throws<ArgumentException>(() => ImageProcessorConfig.InternVL(0));
        Assert.Throws<ArgumentException>(() => DynamicTiling.ChooseGrid(0, 5, new TilingOptions()));
        Assert.Throws<ArgumentException>(() => DynamicTiling.ChooseGrid(5, 5, new TilingOptions { MaxTiles = 0 }));
        Assert.Throws<ArgumentException>(() => DynamicTiling.ChooseGrid(5, 5, new TilingOptions { ImageSize = -448 }));
        Assert.Throws<ArgumentException>(() => DynamicTiling.CandidateGrids(3, 2));
    }

    [Fact]
    public void ResizeToTheSameSizeCopies()
    {
        var image = Gradient(7, 3);
        var same = ImageResizer.Resize(image, 7, 3, ResampleFilter.Lanczos);
        Assert.NotSame(image.Pixels, same.Pixels);
        Assert.Equal(image.Pixels, same.Pixels);
    }

    [Fact]
    public void ExpandToSquareUsesTruncatedMeanColour()
    {
        var config = ImageProcessorConfig.Clip();
        Assert.Equal(new RgbColor(122, 116, 104), ImagePreprocessor.MeanColour(config));
        var square = ImageGeometry.ExpandToSquare(Gradient(4, 1), ImagePreprocessor.MeanColour(config));
        Assert.Equal((4, 4), (square.Width, square.Height));
        Assert.Equal([122, 116, 104], square.Pixels[..3]);
        Assert.Equal(Gradient(4, 1).Pixels, square.Pixels.AsSpan(12, 12).ToArray());
    }

    [Fact]
    public void CandidateGridsAreInternVLsTargetRatios()
    {
        var grids = DynamicTiling.CandidateGrids(1, 6);
        var expected = new HashSet<TileGrid>
        {
            new(1, 1), new(1, 2), new(2, 1), new(3, 1), new(1, 3), new(4, 1), new(1, 4), new(2, 2),
            new(1, 5), new(5, 1), new(6, 1), new(2, 3), new(1, 6), new(3, 2),
        };
        Assert.True(expected.SetEquals(grids));
        Assert.Equal(grids.Count, expected.Count);
        Assert.Equal(grids.OrderBy(g => g.Count), grids);
    }

    [Fact]
    public void BatchStacksSingleImageTensors()
    {
        var config = ImageProcessorConfig.Clip() with { ShortestEdge = 8, CropHeight = 8, CropWidth = 6 };
        var images = new[] { Gradient(13, 9), Gradient(9, 13), Gradient(8, 8) };
        var batch = ImagePreprocessor.ToBatch(images, config);
        Assert.Equal([3, 3, 8, 6], batch.Shape);
        for (int i = 0; i < images.Length; i++)
        {
            var single = ImagePreprocessor.ToTensor(images[i], config).ToArray();
            Assert.Equal(single, batch.ToArray().AsSpan(i * single.Length, single.Length).ToArray());
        }
        var uncropped = config with { DoCenterCrop = false };
        Assert.Throws<ArgumentException>(() => ImagePreprocessor.ToBatch(images, uncropped));
        Assert.Throws<ArgumentException>(() => ImagePreprocessor.ToBatch([], config));
    }

    [Fact]
    public void NormalisationFollowsEachReferencesArithmetic()
    {
        var image = new RgbImage(1, 1, [0, 128, 255]);
        var hf = ImagePreprocessor.ToTensor(image, ImageProcessorConfig.Siglip() with { DoResize = false }).ToArray();
        Assert.Equal([-1f, (float)(128 / 255.0) * 2 - 1, 1f], hf, (a, b) => Math.Abs(a - b) < 1e-6);
        var torch = ImagePreprocessor.ToTensor(image, ImageProcessorConfig.InternVL() with { DoResize = false }).ToArray();
        Assert.Equal((0f - 0.485f) / 0.229f, torch[0]);
        Assert.Equal((128f / 255f - 0.456f) / 0.224f, torch[1]);
        var raw = ImagePreprocessor.ToTensor(image, ImageProcessorConfig.Clip() with { DoResize = false, DoCenterCrop = false, DoRescale = false, DoNormalize = false });
        Assert.Equal([0f, 128f, 255f], raw.ToArray());
        Assert.Equal([3, 1, 1], raw.Shape);
    }

    private static RgbImage Gradient(int width, int height)
    {
        var pixels = new byte[width * height * 3];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(i * 37 % 256);
        return new RgbImage(width, height, pixels);
    }
}
