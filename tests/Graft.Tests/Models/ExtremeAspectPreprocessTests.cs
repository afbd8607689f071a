using System.IO.Compression;
using Graft.Models.Imaging;

namespace Graft.Tests.Models;

/// <summary>
/// Issue #14's preprocessing rows: extreme aspect ratios through LLaVA's pad-to-square + resize + crop. The padding is
/// virtual, so the result must equal the materialised expand2square + PIL resize (checked where the square still fits)
/// and memory must follow the input and output, not side^2.
/// </summary>
public class ExtremeAspectPreprocessTests
{
    private static ImageProcessorConfig Llava(ResampleFilter filter = ResampleFilter.Bicubic) =>
        ImageProcessorConfig.Clip() with { ShortestEdge = 336, CropHeight = 336, CropWidth = 336, PadToSquare = true, Resample = filter };

    private static RgbImage Noise(int width, int height, int seed)
    {
        var pixels = new byte[width * height * 3];
        new Random(seed).NextBytes(pixels);
        return new RgbImage(width, height, pixels);
    }

    /// <summary>The virtual border equals the materialised square, byte for byte, for every filter and odd offsets.</summary>
    [Theory]
    [InlineData(1500, 7, ResampleFilter.Bicubic)]
    [InlineData(5, 1201, ResampleFilter.Bicubic)]
    [InlineData(999, 40, ResampleFilter.Lanczos)]
    [InlineData(40, 999, ResampleFilter.Bilinear)]
    [InlineData(301, 2, ResampleFilter.Box)]
    [InlineData(3, 400, ResampleFilter.Hamming)]
    [InlineData(777, 13, ResampleFilter.Nearest)]
    [InlineData(100, 3, ResampleFilter.Bicubic)]
    public void VirtualPaddingEqualsTheMaterialisedSquare(int width, int height, ResampleFilter filter)
    {
        var image = Noise(width, height, width * 31 + height);
        var config = Llava(filter);
        var background = ImagePreprocessor.MeanColour(config);
        var square = ImageGeometry.ExpandToSquare(image, background);
        var (h, w) = config.ResizeTarget(square.Width, square.Height);
        var reference = ImageGeometry.CenterCrop(ImageResizer.Resize(square, w, h, filter), 336, 336);
        Assert.Equal(reference.Pixels, ImagePreprocessor.Prepare(image, config).Pixels);
        // Enlarging too (the square smaller than the target), and ResizePadded alone.
        var small = Noise(width % 50 + 1, height % 50 + 1, 5);
        Assert.Equal(ImageResizer.Resize(ImageGeometry.ExpandToSquare(small, background), 336, 336, filter).Pixels,
            ImageResizer.ResizePadded(small, background, 336, 336, filter).Pixels);
    }

    /// <summary>65535x1, 1x65535 (overflowed int in pad-to-square) and 40000x400 (index out of range) now preprocess, in bounded memory.</summary>
    [Theory]
    [InlineData(65535, 1)]
    [InlineData(1, 65535)]
    [InlineData(40000, 400)]
    [InlineData(400, 40000)]
    public void ExtremeAspectRatiosPreprocessInBoundedMemory(int width, int height)
    {
        var image = Noise(width, height, 7);
        var config = Llava();
        long before = GC.GetAllocatedBytesForCurrentThread();
        var prepared = ImagePreprocessor.Prepare(image, config);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal((336, 336), (prepared.Width, prepared.Height));
        Assert.True(allocated < 24L << 20, $"{width}x{height}: preprocessing allocated {allocated >> 20} MiB");
        // Most of the square is padding: the corners are the mean colour, the middle is the image's.
        var mean = ImagePreprocessor.MeanColour(config);
        Assert.Equal(new[] { mean.R, mean.G, mean.B }, prepared.Pixels[..3]);
        var tensor = ImagePreprocessor.ToTensor(image, config);
        Assert.Equal([3, 336, 336], tensor.Shape.ToArray());
    }

    /// <summary>The 3 KB PNG of 16384x1024 that cost 917 MB: decode plus preprocess now allocate about the decoded image.</summary>
    [Fact]
    public void SmallPngOfAWideImagePreprocessesInBoundedMemory()
    {
        var png = ConstantPng(16384, 1024);
        Assert.True(png.Length < 64 << 10);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var image = ImageDecoder.Decode(png);
        var prepared = ImagePreprocessor.Prepare(image, Llava());
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        long decoded = 16384L * 1024 * 3;
        Assert.Equal((336, 336), (prepared.Width, prepared.Height));
        // The raw scanlines (1 byte more per row) and the RGB image are the decoder's; preprocessing adds little.
        Assert.True(allocated < 2 * decoded + (24L << 20), $"allocated {allocated >> 20} MiB for a {decoded >> 20} MiB image");
    }

    /// <summary>An 8-bit RGB PNG of one colour, deflated (so a few KB stand for many megapixels).</summary>
    private static byte[] ConstantPng(int width, int height)
    {
        var raw = new byte[height * (width * 3 + 1)];
        for (int y = 0; y < height; y++)
            raw.AsSpan(y * (width * 3 + 1) + 1, width * 3).Fill(90);
        using var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
            z.Write(raw);
        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8;
        ihdr[9] = 2;
        byte[] signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
        return [.. signature, .. ImageDecoderErrorTests.Chunk("IHDR", ihdr), .. ImageDecoderErrorTests.Chunk("IDAT", compressed.ToArray()), .. ImageDecoderErrorTests.Chunk("IEND", [])];
    }
}
