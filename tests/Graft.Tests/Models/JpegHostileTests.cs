using Graft.Models.Imaging;

namespace Graft.Tests.Models;

/// <summary>
/// Issue #14's JPEG rows, built here byte by byte: a progressive stream of end-of-band refinement scans (work bounded
/// by a budget proportional to the image, then a clear error) and a tiny CMYK file declaring a huge rotated image
/// (memory about the output's, rotation written in place).
/// </summary>
public class JpegHostileTests
{
    private static byte[] Segment(byte marker, params byte[] body) =>
        [0xFF, marker, (byte)((body.Length + 2) >> 8), (byte)(body.Length + 2), .. body];

    private static byte[] Frame(byte sof, int width, int height, params (byte Id, byte Sampling)[] components)
    {
        var body = new List<byte> { 8, (byte)(height >> 8), (byte)height, (byte)(width >> 8), (byte)width, (byte)components.Length };
        foreach (var (id, sampling) in components)
            body.AddRange([id, sampling, 0]);
        return Segment(sof, [.. body]);
    }

    private static byte[] QuantTable() => Segment(0xDB, [0, .. Enumerable.Repeat((byte)1, 64)]);

    /// <summary>A DHT with one table holding one symbol of code length 1 (the code "0").</summary>
    private static byte[] OneSymbolTable(int tableClass, byte symbol) =>
        Segment(0xC4, [(byte)(tableClass << 4), 1, .. new byte[15], symbol]);

    /// <summary>Bits MSB first, 0xFF followed by a stuffed 0x00, padded with ones.</summary>
    private static byte[] EntropyCoded(IEnumerable<(int Value, int Bits)> codes)
    {
        var bytes = new List<byte>();
        int buffer = 0, count = 0;
        void Emit(byte b)
        {
            bytes.Add(b);
            if (b == 0xFF)
                bytes.Add(0);
        }
        foreach (var (value, bits) in codes)
            for (int i = bits - 1; i >= 0; i--)
            {
                buffer = (buffer << 1) | ((value >> i) & 1);
                if (++count == 8)
                {
                    Emit((byte)buffer);
                    buffer = count = 0;
                }
            }
        if (count > 0)
            Emit((byte)((buffer << (8 - count)) | ((1 << (8 - count)) - 1)));
        return [.. bytes];
    }

    /// <summary>
    /// A gray progressive image whose every scan is an AC refinement (Ss 1, Se 63, Ah 1, Al 0) made of EOB runs of
    /// 32,767 blocks: each scan is a few dozen bytes but visits every coefficient of the image.
    /// </summary>
    internal static byte[] RefinementScanFlood(int side, int scans)
    {
        var data = new List<byte> { 0xFF, 0xD8 };
        data.AddRange(QuantTable());
        data.AddRange(Frame(0xC2, side, side, (1, 0x11)));
        data.AddRange(OneSymbolTable(1, 0xE0)); // EOB run, 14 extra bits
        int blocks = side / 8 * (side / 8);
        var scan = EntropyCoded(Enumerable.Range(0, (blocks + 32766) / 32767).SelectMany(_ => new[] { (0, 1), (0x3FFF, 14) }));
        for (int s = 0; s < scans; s++)
        {
            data.AddRange(Segment(0xDA, 1, 1, 0x00, 1, 63, 0x10));
            data.AddRange(scan);
        }
        data.AddRange([0xFF, 0xD9]);
        return [.. data];
    }

    [Fact]
    public void RefinementScanFloodIsRefusedWithinABudgetProportionalToTheImage()
    {
        var data = RefinementScanFlood(2048, 1000);
        Assert.True(data.Length < 200_000);
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data, source: "flood.jpg"));
        Assert.Contains("passes over the image's coefficients", e.Message);
        // Refused at the 17th scan: 16 full passes is the budget, whatever the number of scans in the file.
        Assert.Contains("(scan 17)", e.Message);
        Assert.True(e.Offset > 0);
        // A real progressive file of the same size decodes: a handful of refinement scans is within the budget.
        var few = ImageDecoder.Decode(RefinementScanFlood(2048, 5));
        Assert.Equal((2048, 2048), (few.Width, few.Height));
    }

    /// <summary>A baseline CMYK (Adobe) frame with EXIF orientation 6 and almost no entropy-coded data.</summary>
    internal static byte[] TinyRotatedCmyk(int side)
    {
        byte[] tiff = [(byte)'M', (byte)'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
        var data = new List<byte> { 0xFF, 0xD8 };
        data.AddRange(Segment(0xE1, [.. "Exif\0\0"u8, .. tiff]));
        data.AddRange(Segment(0xEE, [.. "Adobe"u8, 0, 100, 0, 0, 0, 0, 0]));
        data.AddRange(QuantTable());
        data.AddRange(Frame(0xC0, side, side, (1, 0x11), (2, 0x11), (3, 0x11), (4, 0x11)));
        data.AddRange(OneSymbolTable(0, 0)); // DC difference 0
        data.AddRange(OneSymbolTable(1, 0)); // EOB
        data.AddRange(Segment(0xDA, 4, 1, 0x00, 2, 0x00, 3, 0x00, 4, 0x00, 0, 63, 0));
        data.AddRange(new byte[] { 0x00, 0x00, 0xFF, 0xD9 });
        return [.. data];
    }

    [Fact]
    public void TinyCmykFileOfAHugeRotatedImageCostsAboutItsOutput()
    {
        const int side = 4096;
        var data = TinyRotatedCmyk(side);
        Assert.True(data.Length < 256);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var image = ImageDecoder.Decode(data, source: "cmyk.jpg");
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        long output = (long)side * side * 3;
        Assert.Equal((side, side), (image.Width, image.Height));
        // The output, four sample planes (one byte per sample) and row buffers: no coefficient store for a baseline
        // frame, no full-size upsampled copies, no second buffer for the rotation.
        Assert.True(allocated < output + 4L * side * side + (8L << 20), $"allocated {allocated >> 20} MiB for a {output >> 20} MiB image");
        // Blocks the data never reached are zero coefficients (sample 128), as libjpeg leaves them; inverted Adobe CMYK
        // of 128 everywhere is one colour.
        Assert.All(image.Pixels.Take(3 * 1000), p => Assert.Equal(image.Pixels[0], p));
    }

    [Fact]
    public void OverLimitDimensionsAreRefusedBeforeAnyAllocation()
    {
        var data = TinyRotatedCmyk(8192);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data, new ImageLimits { MaxPixels = 1 << 24 }, "cmyk.jpg"));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
        Assert.True(e.IsOverLimit);
    }
}
