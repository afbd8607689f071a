using System.Security.Cryptography;
using System.Text.Json;
using Graft.Models.Imaging;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>
/// Default loading (alpha dropped, EXIF orientation applied) equals transformers' load_image — PIL's exif_transpose then
/// convert("RGB") — on every file tools/reference/images_corpus_golden.py wrote: real GIFs from Debian packages and
/// derived PNG/GIF cases (alpha, palette transparency, eXIf and XMP orientation, interlace, offsets, animation).
/// </summary>
public class ImageCorpusTests
{
    public sealed record Entry(string File, string Origin, int Width, int Height, string? Sha256, bool Animated);

    internal static readonly string Folder = GoldenCase.Folder("image_corpus");

    internal static IReadOnlyList<Entry> Manifest { get; } = JsonSerializer.Deserialize<List<Entry>>(
        File.ReadAllText(Path.Combine(Folder, "manifest.json")),
        new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower })!;

    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string>();
        foreach (var e in Manifest)
            data.Add(e.File);
        return data;
    }

    [Fact]
    public void CorpusHasRealFilesOfEachKind()
    {
        Assert.True(Manifest.Count(e => e.Origin != "derived" && e.File.EndsWith(".gif", StringComparison.Ordinal)) >= 25);
        Assert.Contains(Manifest, e => e.Animated);
        Assert.Contains(Manifest, e => e.File.StartsWith("png_exif", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void DefaultLoadingMatchesTransformersLoadImage(string file)
    {
        var entry = Manifest.Single(e => e.File == file);
        var data = File.ReadAllBytes(Path.Combine(Folder, file));
        if (entry.Animated)
        {
            var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data, source: file));
            Assert.Contains("animated", e.Message);
            Assert.True(ImageDecoder.ReadHeader(data).IsAnimated);
            return;
        }
        var image = ImageDecoder.Decode(data, source: file);
        Assert.Equal((entry.Width, entry.Height), (image.Width, image.Height));
        Assert.Equal(entry.Sha256, Convert.ToHexStringLower(SHA256.HashData(image.Pixels)));
    }
}
