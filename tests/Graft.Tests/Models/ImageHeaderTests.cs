using System.Buffers.Binary;
using Graft.Models.Imaging;

namespace Graft.Tests.Models;

/// <summary>ImageDecoder.ReadHeader: format, size and frames from headers alone, typed errors, no pixel allocation.</summary>
public class ImageHeaderTests
{
    [Theory]
    [MemberData(nameof(ImageGoldenTests.Names), MemberType = typeof(ImageGoldenTests))]
    public void HeaderAgreesWithTheDecodedImage(string name)
    {
        var c = ImageGoldenTests.Manifest.Single(m => m.Name == name);
        var data = File.ReadAllBytes(Path.Combine(ImageGoldenTests.Folder, c.File));
        var header = ImageDecoder.ReadHeader(data, c.File);
        var stored = ImageDecoder.Decode(data, DecodeOptions.Default with { ApplyExifOrientation = false });
        Assert.Equal((stored.Width, stored.Height), (header.Width, header.Height));
        Assert.Equal(1, header.Frames);
        var expected = Path.GetExtension(c.File) switch
        {
            ".png" => ImageFormat.Png,
            ".jpg" => ImageFormat.Jpeg,
            ".gif" => ImageFormat.Gif,
            ".webp" => ImageFormat.WebP,
            _ => ImageFormat.Pnm,
        };
        Assert.Equal(expected, header.Format);
    }

    [Fact]
    public void ReadingAHeaderAllocatesNoPixels()
    {
        var data = ImageDecoderErrorTests.PngHeader(60000, 60000);
        ImageDecoder.ReadHeader(data); // JIT outside the measurement
        long before = GC.GetAllocatedBytesForCurrentThread();
        var header = ImageDecoder.ReadHeader(data);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 4096);
        Assert.Equal((ImageFormat.Png, 60000, 60000, 3_600_000_000L), (header.Format, header.Width, header.Height, header.Pixels));
    }

    [Fact]
    public void LimitsAreCheckedOnTheHeader()
    {
        var data = ImageDecoderErrorTests.PngHeader(60000, 60000);
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.ReadHeader(data, ImageLimits.Default, "big.png"));
        Assert.True(e.IsOverLimit);
        Assert.Contains("3600000000 pixels", e.Message);
        Assert.Equal(new ImageHeader(ImageFormat.Png, 3, 2, 1), ImageDecoder.ReadHeader(ImageDecoderErrorTests.PngHeader(3, 2), ImageLimits.Default));
    }

    [Theory]
    [InlineData(0x8000_0000u, 0x8000_0000u)]
    [InlineData(0xFFFF_FFFFu, 0xFFFF_FFFFu)]
    [InlineData(0x8000_0000u, 1u)]
    [InlineData(0u, 5u)]
    public void PngDimensionsOutsideTheSpecAreTypedErrors(uint width, uint height)
    {
        var data = ImageDecoderErrorTests.PngHeader(width, height);
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.ReadHeader(data, "wide.png"));
        Assert.Equal(16, e.Offset);
        Assert.Equal("wide.png", e.FileName);
    }

    [Fact]
    public void TruncatedOrUnknownHeadersAreTypedErrors()
    {
        var png = ImageDecoderErrorTests.PngHeader(10, 10);
        foreach (var cut in new[] { 8, 20, 32 })
            Assert.Throws<ImageFormatException>(() => ImageDecoder.ReadHeader(png.AsSpan(0, cut)));
        var jpeg = File.ReadAllBytes(Path.Combine(ImageGoldenTests.Folder, "jpeg_444_q90.jpg"));
        int sof = jpeg.AsSpan().IndexOf(new byte[] { 0xFF, 0xC0 });
        for (int cut = 3; cut < sof + 9; cut += 5)
            Assert.Throws<ImageFormatException>(() => ImageDecoder.ReadHeader(jpeg.AsSpan(0, cut)));
        Assert.Equal((17, 13), (ImageDecoder.ReadHeader(jpeg.AsSpan(0, sof + 9)).Width, ImageDecoder.ReadHeader(jpeg.AsSpan(0, sof + 9)).Height));
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.ReadHeader("BM\0\0\0\0"u8));
        Assert.Contains("unrecognised", e.Message);
        Assert.Throws<ImageFormatException>(() => ImageDecoder.ReadHeader(ReadOnlySpan<byte>.Empty));
    }

    [Fact]
    public void GifHeaderCountsFramesAndWidensToTheFirstFrame()
    {
        var still = Gif(screen: (4, 3), frames: [(0, 0, 4, 3)]);
        Assert.Equal(new ImageHeader(ImageFormat.Gif, 4, 3, 1), ImageDecoder.ReadHeader(still));
        var animated = Gif(screen: (4, 3), frames: [(0, 0, 4, 3), (1, 1, 2, 2), (0, 0, 1, 1)]);
        Assert.Equal(new ImageHeader(ImageFormat.Gif, 4, 3, 3), ImageDecoder.ReadHeader(animated));
        Assert.True(ImageDecoder.ReadHeader(animated).IsAnimated);
        // PIL's size covers a first frame that extends past the logical screen.
        var wider = Gif(screen: (4, 3), frames: [(2, 1, 5, 5)]);
        Assert.Equal(new ImageHeader(ImageFormat.Gif, 7, 6, 1), ImageDecoder.ReadHeader(wider));
        Assert.Throws<ImageFormatException>(() => ImageDecoder.ReadHeader(still.AsSpan(0, 12)));
    }

    [Fact]
    public void WebPHeadersOfEveryKind()
    {
        // VP8L: 14-bit width-1 and height-1 after the 0x2F signature.
        byte[] lossless = Riff("VP8L", [0x2F, .. Le32((uint)((300 - 1) | ((200 - 1) << 14)))]);
        Assert.Equal(new ImageHeader(ImageFormat.WebP, 300, 200, 1), ImageDecoder.ReadHeader(lossless));
        // VP8 key frame: tag, start code, 14-bit dimensions.
        byte[] lossy = Riff("VP8 ", [0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, .. Le16(640), .. Le16(480)]);
        Assert.Equal(new ImageHeader(ImageFormat.WebP, 640, 480, 1), ImageDecoder.ReadHeader(lossy));
        // VP8X with the animation flag and two ANMF chunks.
        byte[] vp8x = [0x02, 0, 0, 0, .. Le24(16383), .. Le24(99)];
        byte[] animated = Riff("VP8X", vp8x, ("ANIM", new byte[6]), ("ANMF", new byte[16]), ("ANMF", new byte[16]));
        Assert.Equal(new ImageHeader(ImageFormat.WebP, 16384, 100, 2), ImageDecoder.ReadHeader(animated));
        Assert.Throws<ImageFormatException>(() => ImageDecoder.ReadHeader(lossy.AsSpan(0, 20)));
        var badStart = (byte[])lossy.Clone();
        badStart[23] = 0;
        Assert.Equal(23, Assert.Throws<ImageFormatException>(() => ImageDecoder.ReadHeader(badStart)).Offset);
    }

    private static byte[] Le16(int v) => [(byte)v, (byte)(v >> 8)];

    private static byte[] Le24(int v) => [(byte)v, (byte)(v >> 8), (byte)(v >> 16)];

    private static byte[] Le32(uint v) => [(byte)v, (byte)(v >> 8), (byte)(v >> 16), (byte)(v >> 24)];

    internal static byte[] Riff(string firstChunk, byte[] firstBody, params (string Tag, byte[] Body)[] more)
    {
        var chunks = new List<byte>();
        foreach (var (tag, body) in new[] { (firstChunk, firstBody) }.Concat(more))
        {
            chunks.AddRange(System.Text.Encoding.ASCII.GetBytes(tag));
            chunks.AddRange(Le32((uint)body.Length));
            chunks.AddRange(body);
            if (body.Length % 2 == 1)
                chunks.Add(0);
        }
        return [.. "RIFF"u8, .. Le32((uint)(4 + chunks.Count)), .. "WEBP"u8, .. chunks];
    }

    /// <summary>A GIF with a 2-entry global palette and one 1-pixel-per-code LZW stream per frame (clear, zeros, end).</summary>
    internal static byte[] Gif((int W, int H) screen, (int X, int Y, int W, int H)[] frames)
    {
        var bytes = new List<byte>();
        bytes.AddRange("GIF89a"u8.ToArray());
        bytes.AddRange(Le16(screen.W));
        bytes.AddRange(Le16(screen.H));
        bytes.AddRange(new byte[] { 0x80, 0, 0, 0, 0, 0, 255, 255, 255 });
        foreach (var (x, y, w, h) in frames)
        {
            bytes.Add(0x2C);
            bytes.AddRange(Le16(x));
            bytes.AddRange(Le16(y));
            bytes.AddRange(Le16(w));
            bytes.AddRange(Le16(h));
            bytes.Add(0);
            bytes.Add(2); // minimum code size
            bytes.AddRange(new byte[] { 1, 0x2C, 0 }); // clear (4) then end (5), 3 bits each, LSB first: an empty frame
        }
        bytes.Add(0x3B);
        return [.. bytes];
    }
}
