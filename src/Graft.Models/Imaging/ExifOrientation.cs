using System.Buffers.Binary;

namespace Graft.Models.Imaging;

/// <summary>The EXIF Orientation tag (0x0112) and the transposition that makes the image upright, as PIL's exif_transpose.</summary>
internal static class ExifOrientation
{
    /// <summary>
    /// Reads the orientation from a TIFF structure (the APP1 body after "Exif\0\0"). Metadata that is malformed
    /// is ignored (orientation 1): it is optional and must not make an otherwise good image undecodable.
    /// </summary>
    public static int Read(ReadOnlySpan<byte> tiff) => ReadTag(tiff) ?? 1;

    /// <summary>The orientation tag's value (values outside 1..8 read as 1, no rotation), or null when there is no tag.</summary>
    public static int? ReadTag(ReadOnlySpan<byte> tiff)
    {
        if (tiff.Length < 8)
            return null;
        bool little = tiff[0] == 'I' && tiff[1] == 'I';
        if (!little && !(tiff[0] == 'M' && tiff[1] == 'M'))
            return null;
        uint ifd = U32(tiff, 4, little);
        if (ifd > tiff.Length - 2)
            return null;
        int count = U16(tiff, (int)ifd, little);
        for (int i = 0; i < count; i++)
        {
            long entry = ifd + 2 + 12L * i;
            if (entry + 12 > tiff.Length)
                return null;
            int e = (int)entry;
            if (U16(tiff, e, little) == 0x0112 && U16(tiff, e + 2, little) == 3)
            {
                int value = U16(tiff, e + 8, little);
                return value is >= 1 and <= 8 ? value : 1;
            }
        }
        return null;
    }

    /// <summary>
    /// PIL's fallback for PNG: an uncompressed iTXt "XML:com.adobe.xmp" packet's tiff:Orientation="N" or
    /// &lt;tiff:Orientation&gt;N, the first digit after it.
    /// </summary>
    public static int? FromPngXmp(ReadOnlySpan<byte> itxt)
    {
        ReadOnlySpan<byte> keyword = "XML:com.adobe.xmp\0"u8;
        if (!itxt.StartsWith(keyword) || itxt.Length < keyword.Length + 2)
            return null;
        var rest = itxt[keyword.Length..]; // compression flag, method, language\0, translated keyword\0, text
        if (rest[0] != 0) // compressed text: rare for XMP, not read
            return null;
        int languageEnd = rest[2..].IndexOf((byte)0);
        if (languageEnd < 0)
            return null;
        var afterLanguage = rest[(2 + languageEnd + 1)..];
        int translatedEnd = afterLanguage.IndexOf((byte)0);
        if (translatedEnd < 0)
            return null;
        var text = afterLanguage[(translatedEnd + 1)..];
        ReadOnlySpan<byte> tag = "tiff:Orientation"u8;
        for (int at = text.IndexOf(tag); at >= 0; )
        {
            int after = at + tag.Length;
            if (after + 2 < text.Length && text[after] == '=' && text[after + 1] == '"' && char.IsAsciiDigit((char)text[after + 2]))
                return Valid(text[after + 2] - '0');
            if (after + 1 < text.Length && text[after] == '>' && char.IsAsciiDigit((char)text[after + 1]))
                return Valid(text[after + 1] - '0');
            int next = text[after..].IndexOf(tag);
            at = next < 0 ? -1 : after + next;
        }
        return null;
    }

    private static int Valid(int orientation) => orientation is >= 1 and <= 8 ? orientation : 1;

    private static int U16(ReadOnlySpan<byte> b, int at, bool little) =>
        little ? BinaryPrimitives.ReadUInt16LittleEndian(b[at..]) : BinaryPrimitives.ReadUInt16BigEndian(b[at..]);

    private static uint U32(ReadOnlySpan<byte> b, int at, bool little) =>
        little ? BinaryPrimitives.ReadUInt32LittleEndian(b[at..]) : BinaryPrimitives.ReadUInt32BigEndian(b[at..]);

    /// <summary>
    /// 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 anticlockwise.
    /// </summary>
    public static RgbImage Apply(RgbImage image, int orientation)
    {
        if (orientation == 1)
            return image;
        int w = image.Width, h = image.Height;
        bool swap = orientation >= 5;
        int ow = swap ? h : w, oh = swap ? w : h;
        var src = image.Pixels;
        var dst = new byte[src.Length];
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
            {
                var (sx, sy) = orientation switch
                {
                    2 => (w - 1 - x, y),
                    3 => (w - 1 - x, h - 1 - y),
                    4 => (x, h - 1 - y),
                    5 => (y, x),
                    6 => (y, h - 1 - x),
                    7 => (w - 1 - y, h - 1 - x),
                    _ => (w - 1 - y, x),
                };
                int s = (sy * w + sx) * 3, d = (y * ow + x) * 3;
                dst[d] = src[s];
                dst[d + 1] = src[s + 1];
                dst[d + 2] = src[s + 2];
            }
        return new RgbImage(ow, oh, dst);
    }
}
