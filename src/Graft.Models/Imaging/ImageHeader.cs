using System.Buffers.Binary;

namespace Graft.Models.Imaging;

/// <summary>The container formats <see cref="ImageDecoder"/> recognises from their leading bytes.</summary>
public enum ImageFormat
{
    Png,
    Jpeg,
    Gif,
    WebP,
    Pnm,
}

/// <summary>
/// What an image's header says, read without decoding any pixels: the format, the stored width and height (before any
/// EXIF rotation; a rotation keeps the pixel count), and how many frames the file declares (1 for a still image).
/// </summary>
public readonly record struct ImageHeader(ImageFormat Format, int Width, int Height, int Frames)
{
    /// <summary>Width x Height, which cannot overflow: both are at most int.MaxValue.</summary>
    public long Pixels => (long)Width * Height;

    /// <summary>More than one frame: an animated GIF or WebP (refused by the decoder) or an APNG (whose default image is decoded).</summary>
    public bool IsAnimated => Frames > 1;
}

/// <summary>
/// Reads the header of PNG, JPEG, GIF, WebP and PPM/PGM data: a bounded walk over chunk and segment headers, never
/// inflating, allocating pixel buffers or decoding entropy-coded data, so a server can budget a request's images before
/// decoding any of them. Every malformed header is an <see cref="ImageFormatException"/> with its byte offset.
/// </summary>
internal static class ImageHeaderReader
{
    /// <summary>GIF and WebP frame walks stop here: a file declaring more frames is animated either way.</summary>
    private const int MaxFramesCounted = 1 << 16;

    public static ImageHeader Read(ReadOnlySpan<byte> data, string? source)
    {
        if (PngDecoder.HasSignature(data))
            return Png(data, source);
        if (data.Length >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
            return Jpeg(data, source);
        if (GifDecoder.HasSignature(data))
            return Gif(data, source);
        if (WebPContainer.HasSignature(data))
            return WebP(data, source);
        if (PnmDecoder.HasSignature(data))
        {
            var (width, height) = PnmDecoder.ReadDimensions(data, source);
            return Checked(ImageFormat.Pnm, width, height, 1, source, 3);
        }
        throw new ImageFormatException("unrecognised image format (expected PNG, JPEG, GIF, WebP, or PPM/PGM P2/P3/P5/P6)", source, 0);
    }

    /// <summary>Rejects zero and over-int dimensions; pixel limits are the caller's (<see cref="ImageDecoder.CheckDimensions"/>).</summary>
    private static ImageHeader Checked(ImageFormat format, long width, long height, int frames, string? source, long offset)
    {
        if (width <= 0 || height <= 0)
            throw new ImageFormatException($"invalid dimensions {width}x{height}", source, offset);
        if (width > int.MaxValue || height > int.MaxValue)
            throw new ImageFormatException($"dimensions {width}x{height} exceed 2^31 - 1", source, offset);
        return new ImageHeader(format, (int)width, (int)height, frames);
    }

    private static ImageHeader Png(ReadOnlySpan<byte> data, string? source)
    {
        if (data.Length < 33)
            throw new ImageFormatException("truncated: PNG shorter than its IHDR chunk", source, data.Length);
        if (BinaryPrimitives.ReadUInt32BigEndian(data[8..]) != 13 || !data.Slice(12, 4).SequenceEqual("IHDR"u8))
            throw new ImageFormatException("first chunk is not a 13-byte IHDR", source, 8);
        uint width = BinaryPrimitives.ReadUInt32BigEndian(data[16..]), height = BinaryPrimitives.ReadUInt32BigEndian(data[20..]);
        // APNG: an acTL chunk before the first IDAT declares the frame count; the default image is the IDAT one.
        int frames = 1;
        long pos = 33;
        while (pos + 8 <= data.Length)
        {
            uint length = BinaryPrimitives.ReadUInt32BigEndian(data[(int)pos..]);
            var type = data.Slice((int)pos + 4, 4);
            if (type.SequenceEqual("IDAT"u8) || type.SequenceEqual("IEND"u8))
                break;
            if (type.SequenceEqual("acTL"u8) && length >= 8 && pos + 16 <= data.Length)
                frames = (int)Math.Clamp(BinaryPrimitives.ReadUInt32BigEndian(data[((int)pos + 8)..]), 1u, int.MaxValue);
            pos += 12L + length;
        }
        return Checked(ImageFormat.Png, width, height, frames, source, 16);
    }

    private static ImageHeader Jpeg(ReadOnlySpan<byte> data, string? source)
    {
        int pos = 2;
        while (true)
        {
            while (pos < data.Length && data[pos] != 0xFF)
                pos++;
            while (pos < data.Length && data[pos] == 0xFF)
                pos++;
            if (pos >= data.Length)
                throw new ImageFormatException("truncated: no SOF frame header", source, data.Length);
            int marker = data[pos++];
            if (marker is 0xD9 or 0xDA)
                throw new ImageFormatException($"{(marker == 0xD9 ? "EOI" : "SOS")} before any SOF frame header", source, pos - 2);
            if (marker is 0x00 or 0x01 or >= 0xD0 and <= 0xD7)
                continue;
            if (data.Length - pos < 2)
                throw new ImageFormatException($"truncated segment length after marker FF{marker:X2}", source, pos);
            int length = BinaryPrimitives.ReadUInt16BigEndian(data[pos..]);
            if (marker is >= 0xC0 and <= 0xCF and not (0xC4 or 0xC8 or 0xCC))
            {
                // The probe needs only precision, height and width: a stream cut after them still has a size.
                if (length < 8 || data.Length - pos < 7)
                    throw new ImageFormatException(length < 8 ? "SOF segment too short" : "truncated SOF segment", source, pos);
                int height = BinaryPrimitives.ReadUInt16BigEndian(data[(pos + 3)..]), width = BinaryPrimitives.ReadUInt16BigEndian(data[(pos + 5)..]);
                if (height == 0)
                    throw new ImageFormatException("height 0 (defined later by DNL) is not supported", source, pos + 3);
                return Checked(ImageFormat.Jpeg, width, height, 1, source, pos + 3);
            }
            if (length < 2 || length > data.Length - pos)
                throw new ImageFormatException($"segment length {length} of marker FF{marker:X2} runs past the end of the data", source, pos);
            pos += length;
        }
    }

    private static ImageHeader Gif(ReadOnlySpan<byte> data, string? source)
    {
        var walk = GifDecoder.Walk(data, source, MaxFramesCounted);
        return Checked(ImageFormat.Gif, walk.Width, walk.Height, walk.Frames, source, 6);
    }

    private static ImageHeader WebP(ReadOnlySpan<byte> data, string? source)
    {
        var info = WebPContainer.ReadInfo(data, source, MaxFramesCounted);
        return Checked(ImageFormat.WebP, info.Width, info.Height, info.Frames, source, info.DimensionsOffset);
    }
}
