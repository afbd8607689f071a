namespace Graft.Models.Imaging;

/// <summary>
/// The one entry point for encoded images: PNG, JPEG, GIF, WebP and PPM/PGM decoded to 8-bit RGB, the format chosen
/// from the leading bytes, never the file name. Every failure is an <see cref="ImageFormatException"/> with the byte
/// offset; limits are checked from the header before any pixel buffer is allocated; decoding is synchronous and can be
/// cancelled (callers that must not block run it on a worker thread and pass their request's token).
/// </summary>
public static class ImageDecoder
{
    /// <summary>
    /// The format, dimensions and frame count from the header alone: no pixels decoded, nothing inflated, no buffer
    /// allocated, a bounded walk over the chunk/segment headers. Malformed headers throw <see cref="ImageFormatException"/>.
    /// </summary>
    public static ImageHeader ReadHeader(ReadOnlySpan<byte> data, string? source = null) => ImageHeaderReader.Read(data, source);

    /// <summary>
    /// <see cref="ReadHeader(ReadOnlySpan{byte}, string?)"/>, then the limits (file size, pixels) checked on it; an
    /// over-limit image throws <see cref="ImageFormatException"/> with <see cref="ImageFormatException.IsOverLimit"/> set.
    /// </summary>
    public static ImageHeader ReadHeader(ReadOnlySpan<byte> data, ImageLimits limits, string? source = null)
    {
        ArgumentNullException.ThrowIfNull(limits);
        CheckFileSize(data.Length, limits, source, "input");
        var header = ImageHeaderReader.Read(data, source);
        CheckDimensions(header.Width, header.Height, limits, source, 0);
        return header;
    }

    public static RgbImage Decode(ReadOnlySpan<byte> data, ImageLimits? limits = null, string? source = null, CancellationToken cancellationToken = default) =>
        Decode(data, limits is null ? DecodeOptions.Default : DecodeOptions.Default with { Limits = limits }, source, cancellationToken);

    public static RgbImage Decode(ReadOnlySpan<byte> data, DecodeOptions options, string? source = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        CheckFileSize(data.Length, options.Limits, source, "input");
        cancellationToken.ThrowIfCancellationRequested();
        if (PngDecoder.HasSignature(data))
            return PngDecoder.Decode(data, options, source, cancellationToken);
        if (data.Length >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
            return JpegDecoder.Decode(data, options, source, cancellationToken);
        if (GifDecoder.HasSignature(data))
            return GifDecoder.Decode(data, options, source, cancellationToken);
        if (WebPContainer.HasSignature(data))
            throw new ImageFormatException("WebP decoding is not supported yet", source, 0);
        if (PnmDecoder.HasSignature(data))
            return PnmDecoder.Decode(data, options, source);
        throw new ImageFormatException("unrecognised image format (expected PNG, JPEG, GIF, WebP, or PPM/PGM P2/P3/P5/P6)", source, 0);
    }

    public static RgbImage Load(string path, ImageLimits? limits = null, CancellationToken cancellationToken = default) =>
        Load(path, limits is null ? DecodeOptions.Default : DecodeOptions.Default with { Limits = limits }, cancellationToken);

    public static RgbImage Load(string path, DecodeOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var name = Path.GetFileName(path);
        CheckFileSize(new FileInfo(path).Length, options.Limits, name, "file");
        return Decode(File.ReadAllBytes(path), options, name, cancellationToken);
    }

    private static void CheckFileSize(long length, ImageLimits limits, string? source, string what)
    {
        if (length > limits.MaxFileBytes)
            throw new ImageFormatException($"{what} is {length} bytes, over the limit of {limits.MaxFileBytes}", source, 0, isOverLimit: true);
    }

    /// <summary>
    /// Rejects dimensions over the limits; called as soon as a header gives them, before allocating. Overflow-safe for
    /// any two 32-bit dimensions (PNG allows 2^31 - 1 each): the product is formed in 128 bits.
    /// </summary>
    internal static void CheckDimensions(long width, long height, ImageLimits limits, string? source, long offset)
    {
        if (width <= 0 || height <= 0)
            throw new ImageFormatException($"invalid dimensions {width}x{height}", source, offset);
        Int128 pixels = (Int128)width * height;
        if (pixels > limits.MaxPixels)
            throw new ImageFormatException($"{width}x{height} is {pixels} pixels, over the limit of {limits.MaxPixels}", source, offset, isOverLimit: true);
        if (pixels * 4 > Array.MaxLength || width > int.MaxValue || height > int.MaxValue)
            throw new ImageFormatException($"{width}x{height} is too large for one pixel buffer", source, offset, isOverLimit: true);
    }

    /// <summary>Rounds (colour * alpha + background * (255 - alpha)) / 255 to nearest, halves up.</summary>
    internal static byte Composite(int colour, int alpha, int background) =>
        (byte)((colour * alpha + background * (255 - alpha) + 127) / 255);
}
