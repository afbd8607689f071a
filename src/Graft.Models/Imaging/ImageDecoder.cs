namespace Graft.Models.Imaging;

/// <summary>Decodes PNG, JPEG and PPM/PGM to 8-bit RGB, choosing the format from the leading bytes, never the file name.</summary>
public static class ImageDecoder
{
    public static RgbImage Decode(ReadOnlySpan<byte> data, ImageLimits? limits = null, string? source = null) =>
        Decode(data, limits is null ? DecodeOptions.Default : DecodeOptions.Default with { Limits = limits }, source);

    public static RgbImage Decode(ReadOnlySpan<byte> data, DecodeOptions options, string? source = null)
    {
        var limits = options.Limits;
        if (data.Length > limits.MaxFileBytes)
            throw new ImageFormatException($"input is {data.Length} bytes, over the limit of {limits.MaxFileBytes}", source, 0);
        if (PngDecoder.HasSignature(data))
            return PngDecoder.Decode(data, options, source);
        if (data.Length >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
            return JpegDecoder.Decode(data, options, source);
        if (data.Length >= 2 && data[0] == (byte)'P' && data[1] is (byte)'2' or (byte)'3' or (byte)'5' or (byte)'6')
            return PnmDecoder.Decode(data, options, source);
        throw new ImageFormatException("unrecognised image format (expected PNG, JPEG, or PPM/PGM P2/P3/P5/P6)", source, 0);
    }

    public static RgbImage Load(string path, ImageLimits? limits = null) =>
        Load(path, limits is null ? DecodeOptions.Default : DecodeOptions.Default with { Limits = limits });

    public static RgbImage Load(string path, DecodeOptions options)
    {
        var name = Path.GetFileName(path);
        var length = new FileInfo(path).Length;
        if (length > options.Limits.MaxFileBytes)
            throw new ImageFormatException($"file is {length} bytes, over the limit of {options.Limits.MaxFileBytes}", name, 0);
        return Decode(File.ReadAllBytes(path), options, name);
    }

    /// <summary>Rejects dimensions over the limits; called as soon as a header gives them, before allocating.</summary>
    internal static void CheckDimensions(long width, long height, ImageLimits limits, string? source, long offset)
    {
        if (width <= 0 || height <= 0)
            throw new ImageFormatException($"invalid dimensions {width}x{height}", source, offset);
        if (width * height > limits.MaxPixels)
            throw new ImageFormatException($"{width}x{height} is {width * height} pixels, over the limit of {limits.MaxPixels}", source, offset);
        if (width * height * 4 > Array.MaxLength)
            throw new ImageFormatException($"{width}x{height} is too large for one pixel buffer", source, offset);
    }

    /// <summary>Rounds (colour * alpha + background * (255 - alpha)) / 255 to nearest, halves up.</summary>
    internal static byte Composite(int colour, int alpha, int background) =>
        (byte)((colour * alpha + background * (255 - alpha) + 127) / 255);
}
