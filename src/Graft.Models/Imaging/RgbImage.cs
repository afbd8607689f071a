namespace Graft.Models.Imaging;

/// <summary>An 8-bit RGB image: <see cref="Pixels"/> holds Height rows of Width pixels, each R, G, B.</summary>
public sealed class RgbImage
{
    public RgbImage(int width, int height, byte[] pixels)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        if (pixels.Length != (long)width * height * 3)
            throw new ArgumentException($"expected {(long)width * height * 3} bytes for {width}x{height} RGB, got {pixels.Length}", nameof(pixels));
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    public int Width { get; }
    public int Height { get; }

    /// <summary>RGB interleaved, row-major, no padding.</summary>
    public byte[] Pixels { get; }
}

/// <summary>An opaque 8-bit colour, used as the background that transparent pixels are composited onto.</summary>
public readonly record struct RgbColor(byte R, byte G, byte B)
{
    public static RgbColor White => new(255, 255, 255);
    public static RgbColor Black => new(0, 0, 0);
}

/// <summary>
/// Bounds a decode may reach, checked against header fields before any pixel buffer is allocated,
/// so a hostile header cannot make the decoder allocate or loop beyond them.
/// </summary>
public sealed record ImageLimits
{
    public static ImageLimits Default { get; } = new();

    /// <summary>Largest encoded input accepted, in bytes.</summary>
    public long MaxFileBytes { get; init; } = 64L << 20;

    /// <summary>Largest Width * Height accepted (64 Mi pixels, i.e. 8192 x 8192).</summary>
    public long MaxPixels { get; init; } = 64L << 20;
}

/// <summary>What happens to transparency when an image with alpha (or a transparent palette entry / colour key) becomes RGB.</summary>
public enum AlphaHandling
{
    /// <summary>Alpha is dropped and the stored colour kept, as PIL's <c>convert("RGB")</c> (and so transformers) does.</summary>
    Drop,

    /// <summary>Colour is blended onto <see cref="DecodeOptions.Background"/> by alpha, rounded to nearest.</summary>
    Composite,
}

/// <summary>How to decode: the limits, what happens to alpha, and EXIF orientation.</summary>
public sealed record DecodeOptions
{
    public static DecodeOptions Default { get; } = new();

    public ImageLimits Limits { get; init; } = ImageLimits.Default;

    public AlphaHandling Alpha { get; init; } = AlphaHandling.Drop;

    /// <summary>The colour transparent pixels are composited onto when <see cref="Alpha"/> is Composite (white by default).</summary>
    public RgbColor Background { get; init; } = RgbColor.White;

    /// <summary>
    /// Apply the EXIF orientation (JPEG APP1, PNG eXIf or XMP, WebP EXIF) so the image reads upright, as PIL's
    /// ImageOps.exif_transpose does in transformers' load_image.
    /// </summary>
    public bool ApplyExifOrientation { get; init; } = true;
}

/// <summary>A malformed, truncated, unsupported or over-limit image: says what, in which source, at which byte offset.</summary>
public sealed class ImageFormatException : Exception
{
    public ImageFormatException(string problem, string? source, long offset, Exception? inner = null, bool isOverLimit = false)
        : base($"{source ?? "<image data>"} @ byte {offset}: {problem}", inner)
    {
        Problem = problem;
        FileName = source;
        Offset = offset;
        IsOverLimit = isOverLimit;
    }

    /// <summary>The image is well formed as far as read but over an <see cref="ImageLimits"/> bound (file size or pixels).</summary>
    public bool IsOverLimit { get; }

    public string Problem { get; }

    /// <summary>The file name when one was given.</summary>
    public string? FileName { get; }

    public long Offset { get; }
}
