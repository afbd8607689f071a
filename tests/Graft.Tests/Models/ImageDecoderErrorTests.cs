using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using Graft.Models.Imaging;

namespace Graft.Tests.Models;

/// <summary>Broken, hostile and over-limit inputs fail fast with ImageFormatException naming the problem and offset.</summary>
public class ImageDecoderErrorTests
{
    private static byte[] Golden(string file) => File.ReadAllBytes(Path.Combine(ImageGoldenTests.Folder, file));

    internal static byte[] Chunk(string type, byte[] body)
    {
        var typeBytes = System.Text.Encoding.ASCII.GetBytes(type);
        var chunk = new byte[12 + body.Length];
        BinaryPrimitives.WriteInt32BigEndian(chunk, body.Length);
        typeBytes.CopyTo(chunk, 4);
        body.CopyTo(chunk, 8);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + body.Length), Crc(chunk.AsSpan(4, 4 + body.Length)));
        return chunk;
    }

    /// <summary>An independent bitwise CRC-32, so the test does not trust the decoder's table.</summary>
    internal static uint Crc(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFF;
        foreach (var b in data)
        {
            c ^= b;
            for (int k = 0; k < 8; k++)
                c = (c >> 1) ^ (0xEDB88320 & (uint)-(int)(c & 1));
        }
        return ~c;
    }

    /// <summary>A PNG of the given IHDR dimensions (RGB, 8-bit) with no image data: enough for the header probe.</summary>
    internal static byte[] PngHeader(uint width, uint height)
    {
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8;
        ihdr[9] = 2;
        byte[] signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
        return [.. signature, .. Chunk("IHDR", ihdr), .. Chunk("IEND", [])];
    }

    private static byte[] Png(int width, int height, params byte[][] chunks)
    {
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8; // depth
        ihdr[9] = 2; // RGB
        byte[] signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
        return [.. signature, .. Chunk("IHDR", ihdr), .. chunks.SelectMany(c => c), .. Chunk("IEND", [])];
    }

    [Fact]
    public void HugePngHeaderIsRejectedBeforeAllocating()
    {
        var data = Png(100000, 100000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data, source: "huge.png"));
        Assert.True(sw.ElapsedMilliseconds < 500);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "allocated more than 1 MiB before rejecting");
        Assert.Contains("100000x100000", e.Message);
        Assert.Contains("over the limit", e.Message);
        Assert.Equal("huge.png", e.FileName);
        Assert.Equal(16, e.Offset);
    }

    [Fact]
    public void HugeJpegHeaderIsRejected()
    {
        var data = Golden("jpeg_444_q90.jpg");
        int sof = FindMarker(data, 0xC0);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(sof + 5), 65000); // height
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(sof + 7), 65000); // width
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data));
        Assert.Contains("over the limit", e.Message);
    }

    [Theory]
    [InlineData("jpeg_progressive_420.jpg")]
    [InlineData("jpeg_restart_420.jpg")]
    public void LargeClaimedJpegWithLittleDataStaysCheap(string file)
    {
        // 2000x2000 is within the limits, but the scans run out of bits after a few blocks: decoding must stop
        // there (or at the next restart marker) instead of decoding padding for every remaining block, scan after scan.
        var data = Golden(file);
        int sof = FindSofIndex(data);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(sof + 5), 2000);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(sof + 7), 2000);
        var sw = Stopwatch.StartNew();
        try
        {
            var image = ImageDecoder.Decode(data);
            Assert.Equal(2000, image.Width);
        }
        catch (ImageFormatException)
        {
            // Also acceptable: the restart file runs out of RST markers.
        }
        Assert.True(sw.ElapsedMilliseconds < 1500, $"took {sw.ElapsedMilliseconds} ms");
    }

    private static int FindSofIndex(byte[] data)
    {
        for (int i = 0; i + 1 < data.Length; i++)
            if (data[i] == 0xFF && data[i + 1] is 0xC0 or 0xC2)
                return i;
        throw new InvalidOperationException("no SOF0/SOF2");
    }

    [Fact]
    public void LimitsAreConfigurable()
    {
        var data = Golden("ppm_p6.ppm"); // 17x13 = 221 pixels
        Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data, new ImageLimits { MaxPixels = 220 }));
        Assert.Equal(17, ImageDecoder.Decode(data, new ImageLimits { MaxPixels = 221 }).Width);
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data, new ImageLimits { MaxFileBytes = 100 }));
        Assert.Contains("over the limit of 100", e.Message);
    }

    [Fact]
    public void CrcMismatchNamesTheChunkAndOffset()
    {
        var data = Golden("png_ct2_8bit.png");
        data[^20] ^= 0x01; // inside the last IDAT's data
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data, source: "x.png"));
        Assert.Contains("CRC mismatch in IDAT", e.Message);
        Assert.Contains("x.png", e.Message);
        Assert.Equal("IDAT", System.Text.Encoding.ASCII.GetString(data, (int)e.Offset + 4, 4));
        Assert.InRange(e.Offset, data.Length - 12 - 64 - 12, data.Length - 20 - 8);
    }

    [Fact]
    public void UnknownCriticalChunkIsRejectedAndAncillarySkipped()
    {
        var idat = Chunk("IDAT", ZLibCompress(new byte[1 + 3])); // 1x1 RGB, filter 0, black
        Assert.Equal(new byte[3], ImageDecoder.Decode(Png(1, 1, Chunk("zzZz", [1, 2]), idat)).Pixels);
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(Png(1, 1, Chunk("ZZZZ", [1, 2]), idat)));
        Assert.Contains("unknown critical chunk ZZZZ", e.Message);
    }

    [Fact]
    public void ZipBombIsBoundedByTheExpectedSize()
    {
        var idat = Chunk("IDAT", ZLibCompress(new byte[50 << 20])); // 50 MiB of zeros for a 1x1 image
        var image = ImageDecoder.Decode(Png(1, 1, idat));
        Assert.Equal(new byte[3], image.Pixels);
    }

    [Fact]
    public void TruncatedFilesFailWithTheTypedError()
    {
        foreach (var c in ImageGoldenTests.Manifest)
        {
            var data = Golden(c.File);
            // Cutting an ASCII PNM inside its last number leaves a shorter, valid number: only cut those early.
            bool ascii = data[0] == 'P' && data[1] is (byte)'2' or (byte)'3';
            foreach (var keep in new[] { 1, 7, 20, data.Length / 3, data.Length / 2, ascii ? data.Length / 2 + 1 : data.Length - 3 })
            {
                var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data.AsSpan(0, keep), source: c.File));
                Assert.Contains(c.File, e.Message);
                Assert.InRange(e.Offset, 0, keep);
            }
        }
    }

    [Theory]
    [InlineData(0xC9, "arithmetic")]
    [InlineData(0xC3, "lossless")]
    public void UnsupportedJpegProcessesSaySo(int marker, string word)
    {
        var data = Golden("jpeg_444_q90.jpg");
        data[FindMarker(data, 0xC0) + 1] = (byte)marker;
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data));
        Assert.Contains(word, e.Message);
    }

    [Fact]
    public void BadHuffmanTableIsRejected()
    {
        var data = Golden("jpeg_444_q90.jpg");
        int dht = FindMarker(data, 0xC4);
        // libjpeg's standard luminance DC table has counts 0,1,5,...: make it 2,1,3 (same total), over-subscribed.
        Assert.Equal(new byte[] { 0, 1, 5 }, data[(dht + 5)..(dht + 8)]);
        data[dht + 5] = 2;
        data[dht + 7] = 3;
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data));
        Assert.Contains("Huffman table has more codes of length 2 than fit", e.Message);
    }

    /// <summary>#14: both dimensions at or past 2^31 overflowed a 64-bit product (OverflowException, a 2.1 GB allocation).</summary>
    [Theory]
    [InlineData(0x8000_0000u, 0x8000_0000u)]
    [InlineData(0xFFFF_FFFFu, 0xFFFF_FFFFu)]
    [InlineData(0x7FFF_FFFFu, 0x7FFF_FFFFu)]
    [InlineData(0x7FFF_FFFFu, 1u)]
    public void PngDimensionsPast2To31AreTypedErrorsBeforeAllocating(uint width, uint height)
    {
        var data = PngHeader(width, height);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data, source: "wide.png"));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
        Assert.Equal(16, e.Offset);
        Assert.True(e.IsOverLimit);
        Assert.Contains($"{width}x{height}", e.Message);
    }

    /// <summary>#14: zlib's FDICT flag made .NET throw ZLibException; PNG forbids preset dictionaries, so it is the typed error.</summary>
    [Fact]
    public void ZlibPresetDictionaryIsATypedError()
    {
        var valid = Golden("png_ct2_8bit.png");
        int idat = valid.AsSpan().IndexOf("IDAT"u8) - 4;
        int length = BinaryPrimitives.ReadInt32BigEndian(valid.AsSpan(idat));
        var body = valid.AsSpan(idat + 8, length).ToArray();
        // CMF 0x78, FLG with FDICT set and check bits fixed, then the dictionary id (DICTID) the stream would need.
        int flg = 0x20 | 0x80;
        flg += 31 - (0x78 * 256 + flg) % 31;
        byte[] withDictionary = [0x78, (byte)flg, 0x12, 0x34, 0x56, 0x78, .. body[2..]];
        byte[] data = [.. valid[..idat], .. Chunk("IDAT", withDictionary), .. valid[(idat + 12 + length)..]];
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(data, source: "dict.png"));
        Assert.Contains("preset dictionary", e.Message);
        Assert.Equal(idat + 8 + 1, e.Offset);
        // A wrong check or a non-deflate method are typed too.
        byte[] badCheck = [0x78, 0x00, .. body[2..]];
        Assert.Contains("check bits", Assert.Throws<ImageFormatException>(() =>
            ImageDecoder.Decode([.. valid[..idat], .. Chunk("IDAT", badCheck), .. valid[(idat + 12 + length)..]])).Message);
    }

    [Fact]
    public void DecodingStopsWhenCancelled()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        foreach (var file in new[] { "png_ct2_8bit.png", "jpeg_progressive_420.jpg", "ppm_p6.ppm" })
            Assert.Throws<OperationCanceledException>(() => ImageDecoder.Decode(Golden(file), DecodeOptions.Default, file, cancelled.Token));

        // Cancelled while decoding: a 16-megapixel PNG takes far longer than the 5 ms it is given.
        var pixels = new byte[4096 * 4096 * 3];
        new Random(3).NextBytes(pixels);
        var png = PngEncoder.Encode(new RgbImage(4096, 4096, pixels), System.IO.Compression.CompressionLevel.Fastest);
        using var soon = new CancellationTokenSource(TimeSpan.FromMilliseconds(5));
        var sw = Stopwatch.StartNew();
        Assert.ThrowsAny<OperationCanceledException>(() => ImageDecoder.Decode(png, DecodeOptions.Default, "big.png", soon.Token));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void UnknownFormatIsRejected()
    {
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode("BM\0\0\0\0......"u8));
        Assert.Contains("unrecognised image format", e.Message);
        Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode([]));
    }

    [Fact]
    public void PnmSampleAboveMaxvalIsRejected()
    {
        var e = Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode("P2 2 1 10\n5 11"u8));
        Assert.Contains("exceeds maxval 10", e.Message);
        Assert.Equal(12, e.Offset);
    }

    internal static int FindMarker(byte[] data, int marker)
    {
        for (int i = 0; i + 1 < data.Length; i++)
            if (data[i] == 0xFF && data[i + 1] == marker)
                return i;
        throw new InvalidOperationException($"marker FF{marker:X2} not found");
    }

    private static byte[] ZLibCompress(byte[] raw)
    {
        var output = new MemoryStream();
        using (var z = new ZLibStream(output, CompressionLevel.Optimal))
            z.Write(raw);
        return output.ToArray();
    }
}
