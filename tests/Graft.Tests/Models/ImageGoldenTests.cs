using System.Text.Json;
using Graft.Models.Imaging;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>Every image written by tools/reference/images_golden.py decodes to PIL's pixels within the stated tolerance.</summary>
public class ImageGoldenTests
{
    public sealed record Case(string Name, string File, int Width, int Height, int MaxAbs, double MaxMean);

    internal static readonly string Folder = GoldenCase.Folder("images");

    internal static IReadOnlyList<Case> Manifest { get; } = JsonSerializer.Deserialize<List<Case>>(
        File.ReadAllText(Path.Combine(Folder, "manifest.json")),
        new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower })!;

    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (var c in Manifest)
            data.Add(c.Name);
        return data;
    }

    [Fact]
    public void ManifestCoversEveryFormat()
    {
        Assert.True(Manifest.Count >= 60);
        foreach (var ext in new[] { ".png", ".jpg", ".ppm", ".pgm" })
            Assert.Contains(Manifest, c => c.File.EndsWith(ext, StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void DecodesToReferencePixels(string name)
    {
        var c = Manifest.Single(m => m.Name == name);
        // images_golden.py composites alpha onto white; the default (PIL's convert("RGB"), alpha dropped) has its own goldens.
        var image = ImageDecoder.Load(Path.Combine(Folder, c.File), DecodeOptions.Default with { Alpha = AlphaHandling.Composite });
        var expected = File.ReadAllBytes(Path.Combine(Folder, c.Name + ".rgb"));
        Assert.Equal((c.Width, c.Height), (image.Width, image.Height));
        Assert.Equal(expected.Length, image.Pixels.Length);
        int maxAbs = 0, at = -1;
        long sum = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            int d = Math.Abs(expected[i] - image.Pixels[i]);
            sum += d;
            if (d > maxAbs)
                (maxAbs, at) = (d, i);
        }
        double mean = (double)sum / expected.Length;
        Assert.True(maxAbs <= c.MaxAbs && mean <= c.MaxMean,
            $"{name}: max |diff| {maxAbs} (at pixel {at / 3}, channel {at % 3}) > {c.MaxAbs} or mean {mean:F4} > {c.MaxMean}");
    }

    [Fact]
    public void DetectsFormatFromContentNotName()
    {
        var bytes = File.ReadAllBytes(Path.Combine(Folder, "jpeg_444_q90.jpg"));
        var path = Path.Combine(Path.GetTempPath(), $"graft-{Guid.NewGuid():N}.png");
        File.WriteAllBytes(path, bytes);
        try
        {
            var image = ImageDecoder.Load(path);
            Assert.Equal((17, 13), (image.Width, image.Height));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void AlphaIsCompositedOntoTheConfiguredBackground()
    {
        var data = File.ReadAllBytes(Path.Combine(Folder, "png_ct6_8bit.png"));
        var white = ImageDecoder.Decode(data, DecodeOptions.Default with { Alpha = AlphaHandling.Composite });
        var black = ImageDecoder.Decode(data, DecodeOptions.Default with { Alpha = AlphaHandling.Composite, Background = RgbColor.Black });
        var dropped = ImageDecoder.Decode(data);
        // The script makes the first three pixels of row 0 fully transparent.
        Assert.Equal(new byte[] { 255, 255, 255 }, white.Pixels[..3]);
        Assert.Equal(new byte[] { 0, 0, 0 }, black.Pixels[..3]);
        // By default alpha is dropped, as PIL's convert("RGB"): the stored colour of a transparent pixel shows.
        Assert.NotEqual(white.Pixels[..3], dropped.Pixels[..3]);
    }

    [Fact]
    public void ExifOrientationCanBeLeftUnapplied()
    {
        var data = File.ReadAllBytes(Path.Combine(Folder, "jpeg_exif_orientation6.jpg"));
        var upright = ImageDecoder.Decode(data);
        var stored = ImageDecoder.Decode(data, DecodeOptions.Default with { ApplyExifOrientation = false });
        Assert.Equal((21, 33), (upright.Width, upright.Height));
        Assert.Equal((33, 21), (stored.Width, stored.Height));
    }
}
