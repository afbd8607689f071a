using Graft.Models.Imaging;

namespace Graft.Serving;

/// <summary>
/// An image of a chat turn as a request brings it: encoded PNG, JPEG or GIF bytes whose header has been read (its size
/// is known, nothing is decoded yet), or pixels already decoded. The engine decodes encoded images off its scheduler
/// thread, within the request's time limit and cancellation, after the whole request has been checked.
/// </summary>
public sealed class ChatImage
{
    private readonly ReadOnlyMemory<byte> _encoded;
    private readonly RgbImage? _pixels;

    private ChatImage(ReadOnlyMemory<byte> encoded, RgbImage? pixels, int width, int height, string? param)
    {
        _encoded = encoded;
        _pixels = pixels;
        Width = width;
        Height = height;
        Param = param;
    }

    public int Width { get; }
    public int Height { get; }

    /// <summary>Width x Height.</summary>
    public long Pixels => (long)Width * Height;

    /// <summary>The encoded size (0 for pixels given decoded).</summary>
    public long EncodedBytes => _encoded.Length;

    /// <summary>Where the request carried it (a parameter such as messages[0].content[1].image_url.url), for errors.</summary>
    public string? Param { get; }

    /// <summary>Pixels already decoded.</summary>
    public static ChatImage FromPixels(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        return new ChatImage(default, image, image.Width, image.Height, null);
    }

    /// <summary>
    /// Encoded PNG, JPEG or GIF bytes (kept, not copied): the header is read and checked against <paramref name="limits"/>
    /// now, the pixels are decoded later. Throws <see cref="ChatRequestException"/> naming <paramref name="param"/> when the
    /// bytes are no such image or the header is over a limit.
    /// </summary>
    public static ChatImage FromEncoded(ReadOnlyMemory<byte> bytes, ImageLimits limits, string? param = null)
    {
        ArgumentNullException.ThrowIfNull(limits);
        var (width, height) = ImageInput.ReadHeader(bytes.Span, limits, param);
        return new ChatImage(bytes, null, width, height, param);
    }

    /// <summary>The pixels: decoded now for encoded bytes (stopping when <paramref name="cancellationToken"/> fires).</summary>
    internal RgbImage Decode(ImageLimits limits, CancellationToken cancellationToken) =>
        _pixels ?? ImageInput.Decode(_encoded.Span, limits, Param, cancellationToken);
}
