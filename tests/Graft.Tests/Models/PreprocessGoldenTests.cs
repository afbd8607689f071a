using System.Text.Json;
using Graft.Models.Imaging;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>Every case written by tools/reference/preprocess_golden.py (PIL 9.4, transformers' and InternVL's steps re-written there).</summary>
public class PreprocessGoldenTests
{
    private static readonly string Folder = GoldenCase.Folder("preprocess");
    private static readonly JsonElement Manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, "manifest.json"))).RootElement.Clone();

    private static readonly Dictionary<string, ResampleFilter> Filters = new()
    {
        ["nearest"] = ResampleFilter.Nearest, ["bilinear"] = ResampleFilter.Bilinear, ["bicubic"] = ResampleFilter.Bicubic,
        ["lanczos"] = ResampleFilter.Lanczos, ["box"] = ResampleFilter.Box, ["hamming"] = ResampleFilter.Hamming,
    };

    public static TheoryData<string> ResizeCases() => Names("resize");
    public static TheoryData<string> PipelineCases() => Names("pipeline");
    public static TheoryData<string> TilingCases() => Names("tiling");

    private static TheoryData<string> Names(string group)
    {
        var data = new TheoryData<string>();
        foreach (var c in Manifest.GetProperty(group).EnumerateArray())
            data.Add(c.GetProperty("name").GetString()!);
        return data;
    }

    private static JsonElement Case(string group, string name) =>
        Manifest.GetProperty(group).EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);

    private static RgbImage Source(JsonElement c) => ImageDecoder.Load(Path.Combine(Folder, c.GetProperty("source").GetString()!));

    private static SafeTensorsFile Open(string name) => SafeTensorsFile.Open(Path.Combine(Folder, name + ".safetensors"));

    [Fact]
    public void ManifestCoversEveryFilterAndPipeline()
    {
        var filters = Manifest.GetProperty("resize").EnumerateArray().Select(c => c.GetProperty("filter").GetString()).ToHashSet();
        Assert.True(filters.SetEquals(Filters.Keys));
        Assert.True(Manifest.GetProperty("pipeline").GetArrayLength() >= 9);
        Assert.True(Manifest.GetProperty("tiling").GetArrayLength() >= 5);
        Assert.True(Manifest.GetProperty("grids").GetArrayLength() >= 300);
    }

    /// <summary>Byte-exact: the fixed-point arithmetic is PIL's, so no level of tolerance is needed.</summary>
    [Theory]
    [MemberData(nameof(ResizeCases))]
    public void ResizeMatchesPilExactly(string name)
    {
        var c = Case("resize", name);
        var resized = ImageResizer.Resize(Source(c), c.GetProperty("width").GetInt32(), c.GetProperty("height").GetInt32(),
            Filters[c.GetProperty("filter").GetString()!]);
        using var file = Open(name);
        AssertPixels(file.RawBytes("out.pixels"), resized.Pixels, name);
    }

    /// <summary>The 8-bit steps byte-exact, then the float32 rescale/normalise within 1e-6.</summary>
    [Theory]
    [MemberData(nameof(PipelineCases))]
    public void PipelineMatchesTransformers(string name)
    {
        var c = Case("pipeline", name);
        var config = ImageProcessorConfig.Parse(c.GetProperty("config").GetRawText(), name + ".json")
            with { PadToSquare = c.GetProperty("pad_to_square").GetBoolean() };
        var image = Source(c);
        using var file = Open(name);
        if (config.PadToSquare)
            AssertPixels(file.RawBytes("out.padded"), ImageGeometry.ExpandToSquare(image, ImagePreprocessor.MeanColour(config)).Pixels, name + " padded");
        var expected = file.Load("out.pixels");
        var actual = ImagePreprocessor.ToTensor(image, config);
        TensorAssert.Close(expected, actual, rtol: 0, atol: 1e-6f, what: name);
        Assert.Equal(config.OutputSize(image.Width, image.Height), (actual.Dim(1), actual.Dim(2)));
    }

    [Theory]
    [MemberData(nameof(TilingCases))]
    public void TilingMatchesInternVL(string name)
    {
        var c = Case("tiling", name);
        int size = c.GetProperty("image_size").GetInt32();
        var options = new TilingOptions { MaxTiles = c.GetProperty("max_num").GetInt32(), ImageSize = size };
        var tiled = DynamicTiling.Preprocess(Source(c), options);
        Assert.Equal(new TileGrid(c.GetProperty("columns").GetInt32(), c.GetProperty("rows").GetInt32()), tiled.Grid);
        int count = c.GetProperty("tiles").GetInt32();
        Assert.Equal(count, tiled.Tiles.Count);
        Assert.Equal(count > 1, tiled.HasThumbnail);
        Assert.Equal([count, 3, size, size], tiled.Pixels.Shape);

        using var file = Open(name);
        var pixels = tiled.Pixels.ToArray();
        if (file.Contains("out.tiles"))
        {
            AssertPixels(file.RawBytes("out.tiles"), tiled.Tiles.SelectMany(t => t.Pixels).ToArray(), name);
            TensorAssert.Close(file.ReadFloats("out.pixels"), pixels, rtol: 0, atol: 1e-6f, what: name);
            return;
        }
        // 448-pixel tiles are stored as a band of rows in full plus every row's byte sum.
        int band = c.GetProperty("band_rows").GetInt32();
        var bandBytes = tiled.Tiles.SelectMany(t => t.Pixels.AsSpan(0, band * size * 3).ToArray()).ToArray();
        AssertPixels(file.RawBytes("out.tile_band"), bandBytes, name + " band");
        var rowSums = tiled.Tiles.SelectMany(t => Enumerable.Range(0, size)
            .Select(y => t.Pixels.AsSpan(y * size * 3, size * 3).ToArray().Sum(b => (long)b))).ToArray();
        Assert.Equal(file.ReadIntegers("out.tile_row_sums"), rowSums);
        var expectedBand = file.ReadFloats("out.pixels_band");
        var actualBand = new float[expectedBand.Length];
        int plane = band * size, k = 0;
        for (int tile = 0; tile < count; tile++)
            for (int channel = 0; channel < 3; channel++, k += plane)
                pixels.AsSpan((tile * 3 + channel) * size * size, plane).CopyTo(actualBand.AsSpan(k));
        TensorAssert.Close(expectedBand, actualBand, rtol: 0, atol: 1e-6f, what: name + " band");
    }

    [Fact]
    public void GridChoiceMatchesInternVLForEveryTableRow()
    {
        foreach (var row in Manifest.GetProperty("grids").EnumerateArray())
        {
            int Get(string key) => row.GetProperty(key).GetInt32();
            var options = new TilingOptions { MinTiles = Get("min_num"), MaxTiles = Get("max_num"), ImageSize = Get("image_size") };
            var grid = DynamicTiling.ChooseGrid(Get("width"), Get("height"), options);
            Assert.True(new TileGrid(Get("columns"), Get("rows")) == grid, $"{row.GetRawText()}: chose {grid}");
        }
    }

    private static void AssertPixels(ReadOnlySpan<byte> expected, byte[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        int mismatches = 0, worst = 0, first = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            int difference = Math.Abs(expected[i] - actual[i]);
            if (difference == 0) continue;
            if (first < 0) first = i;
            mismatches++;
            worst = Math.Max(worst, difference);
        }
        Assert.True(mismatches == 0, $"{what}: {mismatches} of {expected.Length} bytes differ (worst by {worst}, first at byte {first})");
    }
}
