using System.Buffers.Binary;

namespace Graft.Models.Imaging;

/// <summary>
/// The RIFF container of WebP: a simple file (one VP8 or VP8L chunk) or an extended one (VP8X, then optional ICCP,
/// ANIM/ANMF, ALPH, VP8/VP8L, EXIF, XMP chunks). Finds the chunks the decoder needs without decoding any of them.
/// </summary>
internal static class WebPContainer
{
    public static bool HasSignature(ReadOnlySpan<byte> data) =>
        data.Length >= 12 && data.StartsWith("RIFF"u8) && data.Slice(8, 4).SequenceEqual("WEBP"u8);

    /// <summary>A chunk's payload position and length within the data.</summary>
    public readonly record struct Chunk(int Offset, int Length)
    {
        public bool Exists => Length >= 0;
        public static Chunk None => new(-1, -1);
    }

    public readonly record struct Info(
        long Width, long Height, int Frames, long DimensionsOffset, bool Lossless, Chunk Image, Chunk Alpha, Chunk Exif, int ImageChunkOffset);

    public static Info ReadInfo(ReadOnlySpan<byte> data, string? source, int maxFrames)
    {
        uint riffSize = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
        if (riffSize < 4 || riffSize > data.Length - 8L)
        {
            if (riffSize < 4)
                throw new ImageFormatException($"RIFF size {riffSize} is too small", source, 4);
            // libwebp accepts a RIFF size past the end only as truncation, which it refuses.
            throw new ImageFormatException($"truncated: RIFF size {riffSize} runs past the end of the data ({data.Length} bytes)", source, 4);
        }
        var body = data[..(int)(8 + riffSize)];
        int pos = 12;
        var first = ReadChunkHeader(body, pos, source, out var fourCc);
        if (fourCc == "VP8 " || fourCc == "VP8L")
        {
            var (w, h, at) = fourCc == "VP8 " ? Vp8Dimensions(body, first, source) : Vp8LDimensions(body, first, source);
            return new Info(w, h, 1, at, fourCc == "VP8L", first, Chunk.None, Chunk.None, pos);
        }
        if (fourCc != "VP8X")
            throw new ImageFormatException($"first WebP chunk is '{fourCc}', expected VP8, VP8L or VP8X", source, pos);
        if (first.Length < 10)
            throw new ImageFormatException($"VP8X chunk of {first.Length} bytes, expected 10", source, pos);
        var x = body.Slice(first.Offset, 10);
        bool animated = (x[0] & 0x02) != 0;
        long width = 1 + (x[4] | x[5] << 8 | x[6] << 16), height = 1 + (x[7] | x[8] << 8 | x[9] << 16);
        if (width * height > 1L << 32)
            throw new ImageFormatException($"VP8X canvas {width}x{height} is larger than 2^32 pixels", source, first.Offset + 4);
        int frames = 0;
        Chunk image = Chunk.None, alpha = Chunk.None, exif = Chunk.None;
        int imageAt = -1;
        pos = Next(first);
        while (pos < body.Length)
        {
            if (body.Length - pos < 8)
                throw new ImageFormatException("truncated: WebP chunk header", source, pos);
            var chunk = ReadChunkHeader(body, pos, source, out fourCc);
            switch (fourCc)
            {
                case "ANMF":
                    if (++frames >= maxFrames)
                        return new Info(width, height, frames, first.Offset + 4, false, image, alpha, exif, imageAt);
                    break;
                case "ALPH" when !image.Exists && !alpha.Exists:
                    alpha = chunk;
                    break;
                case "VP8 " or "VP8L" when !image.Exists:
                    image = chunk;
                    imageAt = pos;
                    break;
                case "EXIF" when !exif.Exists:
                    exif = chunk;
                    break;
            }
            pos = Next(chunk);
        }
        if (animated || frames > 0)
            return new Info(width, height, Math.Max(frames, 1), first.Offset + 4, false, image, alpha, exif, imageAt);
        if (!image.Exists)
            throw new ImageFormatException("extended WebP without a VP8 or VP8L image chunk", source, pos);
        bool lossless = body.Slice(imageAt, 4).SequenceEqual("VP8L"u8);
        var (iw, ih, dimsAt) = lossless ? Vp8LDimensions(body, image, source) : Vp8Dimensions(body, image, source);
        if (iw != width || ih != height)
            throw new ImageFormatException($"VP8X canvas {width}x{height} differs from the image's {iw}x{ih}", source, dimsAt);
        return new Info(width, height, 1, first.Offset + 4, lossless, image, lossless ? Chunk.None : alpha, exif, imageAt);
    }

    private static int Next(Chunk chunk) => chunk.Offset + chunk.Length + (chunk.Length & 1);

    private static Chunk ReadChunkHeader(ReadOnlySpan<byte> body, int pos, string? source, out string fourCc)
    {
        if (body.Length - pos < 8)
            throw new ImageFormatException("truncated: WebP chunk header", source, pos);
        var tag = body.Slice(pos, 4);
        fourCc = System.Text.Encoding.Latin1.GetString(tag);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(body[(pos + 4)..]);
        if (size > body.Length - pos - 8)
            throw new ImageFormatException($"chunk '{fourCc}' of {size} bytes runs past the end of the RIFF data", source, pos + 4);
        return new Chunk(pos + 8, (int)size);
    }

    /// <summary>A VP8 key frame: 3-byte frame tag, start code 9D 01 2A, 14-bit width and height (2 scale bits each, ignored as libwebp ignores them).</summary>
    internal static (long Width, long Height, long Offset) Vp8Dimensions(ReadOnlySpan<byte> body, Chunk chunk, string? source)
    {
        if (chunk.Length < 10)
            throw new ImageFormatException($"VP8 chunk of {chunk.Length} bytes is too short for a frame header", source, chunk.Offset);
        var b = body.Slice(chunk.Offset, 10);
        if ((b[0] & 1) != 0)
            throw new ImageFormatException("VP8 frame is not a key frame", source, chunk.Offset);
        if (b[3] != 0x9D || b[4] != 0x01 || b[5] != 0x2A)
            throw new ImageFormatException("VP8 start code 9D 01 2A missing", source, chunk.Offset + 3);
        return (BinaryPrimitives.ReadUInt16LittleEndian(b[6..]) & 0x3FFF, BinaryPrimitives.ReadUInt16LittleEndian(b[8..]) & 0x3FFF, chunk.Offset + 6);
    }

    /// <summary>VP8L: signature 0x2F, then 14 bits width - 1, 14 bits height - 1, the alpha hint and a 3-bit version 0.</summary>
    internal static (long Width, long Height, long Offset) Vp8LDimensions(ReadOnlySpan<byte> body, Chunk chunk, string? source)
    {
        if (chunk.Length < 5)
            throw new ImageFormatException($"VP8L chunk of {chunk.Length} bytes is too short for its header", source, chunk.Offset);
        if (body[chunk.Offset] != 0x2F)
            throw new ImageFormatException($"VP8L signature 0x{body[chunk.Offset]:X2}, expected 0x2F", source, chunk.Offset);
        uint bits = BinaryPrimitives.ReadUInt32LittleEndian(body[(chunk.Offset + 1)..]);
        if (bits >> 29 != 0)
            throw new ImageFormatException($"VP8L version {bits >> 29}, expected 0", source, chunk.Offset + 4);
        return (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF), chunk.Offset + 1);
    }
}
