using System.Buffers.Binary;
using System.IO.Compression;

namespace Graft.Models.Imaging;

/// <summary>
/// PNG (ISO/IEC 15948): every colour type and bit depth, PLTE + tRNS, Adam7, all five filters, CRC on every chunk.
/// 16-bit samples keep their high byte (as PIL does for RGB/RGBA/LA; the colour key in tRNS compares all 16 bits);
/// sub-byte gray is scaled v * 255 / (2^depth - 1); alpha (channel, palette tRNS or colour key) is dropped as PIL's
/// convert("RGB") drops it, or composited onto a background when asked; the eXIf chunk's orientation (else an XMP
/// tiff:Orientation) is applied as PIL's exif_transpose does.
/// </summary>
internal static class PngDecoder
{
    private static ReadOnlySpan<byte> Signature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    public static bool HasSignature(ReadOnlySpan<byte> data) => data.StartsWith(Signature);

    private sealed class Header
    {
        public int Width, Height, BitDepth, ColorType;
        public bool Interlaced;
        public int Channels => ColorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, _ => 4 };
        public int BitsPerPixel => Channels * BitDepth;
    }

    public static RgbImage Decode(ReadOnlySpan<byte> data, DecodeOptions options, string? source, CancellationToken cancellationToken)
    {
        Header? header = null;
        byte[]? palette = null; // RGB triples
        byte[]? paletteAlpha = null;
        int[]? colourKey = null; // gray or R,G,B at full sample depth
        var compressed = new MemoryStream();
        long firstIdatOffset = -1;
        bool idatEnded = false, sawIend = false;
        int? exifOrientation = null, xmpOrientation = null;
        int pos = Signature.Length;
        while (!sawIend)
        {
            long chunkOffset = pos;
            if (data.Length - pos < 12)
                throw new ImageFormatException("truncated: chunk header or CRC missing before IEND", source, chunkOffset);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(data[pos..]);
            if (length > int.MaxValue || length > data.Length - pos - 12)
                throw new ImageFormatException($"chunk length {length} runs past the end of the data", source, chunkOffset);
            var typeBytes = data.Slice(pos + 4, 4);
            foreach (var b in typeBytes)
                if (!char.IsAsciiLetter((char)b))
                    throw new ImageFormatException("chunk type is not four ASCII letters", source, chunkOffset + 4);
            string type = System.Text.Encoding.ASCII.GetString(typeBytes);
            var body = data.Slice(pos + 8, (int)length);
            uint storedCrc = BinaryPrimitives.ReadUInt32BigEndian(data[(pos + 8 + (int)length)..]);
            uint actualCrc = Crc32.Compute(data.Slice(pos + 4, 4 + (int)length));
            if (storedCrc != actualCrc)
                throw new ImageFormatException($"CRC mismatch in {type} chunk (stored {storedCrc:X8}, computed {actualCrc:X8})", source, chunkOffset);
            pos += 12 + (int)length;

            if (header is null && type != "IHDR")
                throw new ImageFormatException($"first chunk is {type}, expected IHDR", source, chunkOffset);
            if (type != "IDAT" && firstIdatOffset >= 0)
                idatEnded = true;
            switch (type)
            {
                case "IHDR":
                    if (header is not null)
                        throw new ImageFormatException("second IHDR chunk", source, chunkOffset);
                    header = ReadHeader(body, options.Limits, source, chunkOffset);
                    break;
                case "PLTE":
                    if (length % 3 != 0 || length == 0 || length > 768)
                        throw new ImageFormatException($"PLTE length {length} is not 3 x 1..256 entries", source, chunkOffset);
                    if (firstIdatOffset >= 0)
                        throw new ImageFormatException("PLTE after IDAT", source, chunkOffset);
                    if (header!.ColorType is 0 or 4)
                        throw new ImageFormatException("PLTE in a grayscale image", source, chunkOffset);
                    palette = body.ToArray();
                    break;
                case "tRNS":
                    if (firstIdatOffset >= 0)
                        throw new ImageFormatException("tRNS after IDAT", source, chunkOffset);
                    (paletteAlpha, colourKey) = ReadTransparency(header!, body, palette, source, chunkOffset);
                    break;
                case "IDAT":
                    if (idatEnded)
                        throw new ImageFormatException("IDAT chunks are not consecutive", source, chunkOffset);
                    if (firstIdatOffset < 0)
                        firstIdatOffset = chunkOffset;
                    compressed.Write(body);
                    break;
                case "IEND":
                    sawIend = true;
                    break;
                case "eXIf":
                    exifOrientation = ExifOrientation.ReadTag(body); // PIL keeps the last eXIf chunk
                    break;
                case "iTXt":
                    xmpOrientation = ExifOrientation.FromPngXmp(body) ?? xmpOrientation;
                    break;
                default:
                    if ((typeBytes[0] & 0x20) == 0)
                        throw new ImageFormatException($"unknown critical chunk {type}", source, chunkOffset);
                    break; // ancillary: safe to skip
            }
        }
        var h = header!;
        if (firstIdatOffset < 0)
            throw new ImageFormatException("no IDAT chunk", source, pos);
        if (h.ColorType == 3 && palette is null)
            throw new ImageFormatException("palette image without PLTE", source, firstIdatOffset);

        CheckZlibHeader(compressed, source, firstIdatOffset + 8);
        byte[] raw = Inflate(compressed, ExpectedRawSize(h, source), source, firstIdatOffset, cancellationToken);
        var pixels = new byte[checked(h.Width * h.Height * 3)];
        bool composite = options.Alpha == AlphaHandling.Composite;
        var target = new PixelWriter(h, palette, composite ? paletteAlpha : null, composite ? colourKey : null, composite ? options.Background : null, pixels, source, firstIdatOffset);
        if (h.Interlaced)
        {
            int offset = 0;
            foreach (var (x0, y0, dx, dy) in Adam7)
            {
                int w = (h.Width - x0 + dx - 1) / dx, rows = (h.Height - y0 + dy - 1) / dy;
                if (w <= 0 || rows <= 0)
                    continue;
                int rowBytes = RowBytes(h, w);
                int size = rows * (rowBytes + 1);
                Unfilter(raw.AsSpan(offset, size), rows, rowBytes, h, source, firstIdatOffset, cancellationToken);
                for (int r = 0; r < rows; r++)
                    target.WriteRow(raw.AsSpan(offset + r * (rowBytes + 1) + 1, rowBytes), y0 + r * dy, x0, dx, w);
                offset += size;
            }
        }
        else
        {
            int rowBytes = RowBytes(h, h.Width);
            Unfilter(raw, h.Height, rowBytes, h, source, firstIdatOffset, cancellationToken);
            for (int y = 0; y < h.Height; y++)
                target.WriteRow(raw.AsSpan(y * (rowBytes + 1) + 1, rowBytes), y, 0, 1, h.Width);
        }
        var image = new RgbImage(h.Width, h.Height, pixels);
        // As PIL's getexif: the eXIf chunk's tag, else an XMP packet's tiff:Orientation.
        int orientation = exifOrientation ?? xmpOrientation ?? 1;
        return options.ApplyExifOrientation ? ExifOrientation.Apply(image, orientation) : image;
    }

    private static readonly (int X0, int Y0, int Dx, int Dy)[] Adam7 =
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];

    private static Header ReadHeader(ReadOnlySpan<byte> body, ImageLimits limits, string? source, long offset)
    {
        if (body.Length != 13)
            throw new ImageFormatException($"IHDR length {body.Length}, expected 13", source, offset);
        uint width = BinaryPrimitives.ReadUInt32BigEndian(body), height = BinaryPrimitives.ReadUInt32BigEndian(body[4..]);
        ImageDecoder.CheckDimensions(width, height, limits, source, offset + 8);
        var h = new Header { Width = (int)width, Height = (int)height, BitDepth = body[8], ColorType = body[9] };
        bool depthOk = h.ColorType switch
        {
            0 => h.BitDepth is 1 or 2 or 4 or 8 or 16,
            3 => h.BitDepth is 1 or 2 or 4 or 8,
            2 or 4 or 6 => h.BitDepth is 8 or 16,
            _ => throw new ImageFormatException($"invalid colour type {h.ColorType}", source, offset + 17),
        };
        if (!depthOk)
            throw new ImageFormatException($"bit depth {h.BitDepth} is not allowed for colour type {h.ColorType}", source, offset + 16);
        if (body[10] != 0 || body[11] != 0)
            throw new ImageFormatException($"unknown compression method {body[10]} or filter method {body[11]}", source, offset + 18);
        if (body[12] > 1)
            throw new ImageFormatException($"unknown interlace method {body[12]}", source, offset + 20);
        h.Interlaced = body[12] == 1;
        return h;
    }

    private static (byte[]? PaletteAlpha, int[]? ColourKey) ReadTransparency(
        Header h, ReadOnlySpan<byte> body, byte[]? palette, string? source, long offset)
    {
        switch (h.ColorType)
        {
            case 3:
                if (palette is null)
                    throw new ImageFormatException("tRNS before PLTE", source, offset);
                if (body.Length > palette.Length / 3)
                    throw new ImageFormatException($"tRNS has {body.Length} entries for a {palette.Length / 3}-entry palette", source, offset);
                var alpha = new byte[256];
                alpha.AsSpan().Fill(255);
                body.CopyTo(alpha);
                return (alpha, null);
            case 0 when body.Length == 2:
                return (null, [BinaryPrimitives.ReadUInt16BigEndian(body)]);
            case 2 when body.Length == 6:
                return (null, [BinaryPrimitives.ReadUInt16BigEndian(body), BinaryPrimitives.ReadUInt16BigEndian(body[2..]), BinaryPrimitives.ReadUInt16BigEndian(body[4..])]);
            default:
                throw new ImageFormatException($"tRNS of {body.Length} bytes is invalid for colour type {h.ColorType}", source, offset);
        }
    }

    private static int RowBytes(Header h, int width) => (int)(((long)width * h.BitsPerPixel + 7) / 8);

    private static int ExpectedRawSize(Header h, string? source)
    {
        long total = 0;
        if (!h.Interlaced)
            total = (long)h.Height * (RowBytes(h, h.Width) + 1);
        else
            foreach (var (x0, y0, dx, dy) in Adam7)
            {
                long w = (h.Width - x0 + dx - 1) / dx, rows = (h.Height - y0 + dy - 1) / dy;
                if (w > 0 && rows > 0)
                    total += rows * (RowBytes(h, (int)w) + 1);
            }
        return total <= Array.MaxLength ? (int)total : throw new ImageFormatException("decompressed image is too large", source, 16);
    }

    /// <summary>
    /// The two-byte zlib header (RFC 1950): deflate with a window of at most 32 KiB, a valid check, and no preset
    /// dictionary, which PNG forbids (ISO/IEC 15948 10.1) and which the inflater could not supply.
    /// </summary>
    private static void CheckZlibHeader(MemoryStream compressed, string? source, long offset)
    {
        if (compressed.Length < 2)
            throw new ImageFormatException($"IDAT holds {compressed.Length} bytes, too few for a zlib header", source, offset);
        var buffer = compressed.GetBuffer();
        int cmf = buffer[0], flg = buffer[1];
        if ((cmf & 15) != 8 || cmf >> 4 > 7)
            throw new ImageFormatException($"zlib header 0x{cmf:X2}{flg:X2} is not deflate with a window of at most 32 KiB", source, offset);
        if ((cmf * 256 + flg) % 31 != 0)
            throw new ImageFormatException($"zlib header 0x{cmf:X2}{flg:X2} fails its check bits", source, offset);
        if ((flg & 0x20) != 0)
            throw new ImageFormatException("zlib stream asks for a preset dictionary, which PNG does not allow", source, offset + 1);
    }

    /// <summary>Inflates exactly <paramref name="size"/> bytes; never reads more, so a zip bomb costs at most that.</summary>
    private static byte[] Inflate(MemoryStream compressed, int size, string? source, long offset, CancellationToken cancellationToken)
    {
        var raw = new byte[size];
        compressed.Position = 0;
        int filled = 0;
        try
        {
            using var zlib = new ZLibStream(compressed, CompressionMode.Decompress);
            while (filled < size)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = zlib.Read(raw, filled, Math.Min(size - filled, 1 << 20));
                if (n == 0)
                    break;
                filled += n;
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            // .NET reports a bad deflate stream as InvalidDataException, zlib-ng's own failures as ZLibException (an IOException).
            throw new ImageFormatException($"corrupt zlib stream in IDAT: {e.Message}", source, offset, e);
        }
        if (filled < size)
            throw new ImageFormatException($"image data inflates to {filled} bytes, expected {size}", source, offset);
        return raw;
    }

    /// <summary>Reverses the per-row filters in place; each row is its filter byte followed by rowBytes bytes.</summary>
    private static void Unfilter(Span<byte> rows, int count, int rowBytes, Header h, string? source, long offset, CancellationToken cancellationToken)
    {
        int bpp = Math.Max(1, h.BitsPerPixel / 8);
        int stride = rowBytes + 1;
        for (int r = 0; r < count; r++)
        {
            var row = rows.Slice(r * stride + 1, rowBytes);
            var prior = r == 0 ? Span<byte>.Empty : rows.Slice((r - 1) * stride + 1, rowBytes);
            byte filter = rows[r * stride];
            if ((r & 255) == 0)
                cancellationToken.ThrowIfCancellationRequested();
            switch (filter)
            {
                case 0:
                    break;
                case 1:
                    for (int i = bpp; i < row.Length; i++)
                        row[i] += row[i - bpp];
                    break;
                case 2:
                    if (!prior.IsEmpty)
                        for (int i = 0; i < row.Length; i++)
                            row[i] += prior[i];
                    break;
                case 3:
                    for (int i = 0; i < row.Length; i++)
                    {
                        int left = i >= bpp ? row[i - bpp] : 0, up = prior.IsEmpty ? 0 : prior[i];
                        row[i] += (byte)((left + up) >> 1);
                    }
                    break;
                case 4:
                    for (int i = 0; i < row.Length; i++)
                    {
                        int a = i >= bpp ? row[i - bpp] : 0, b = prior.IsEmpty ? 0 : prior[i];
                        int c = i >= bpp && !prior.IsEmpty ? prior[i - bpp] : 0;
                        row[i] += (byte)Paeth(a, b, c);
                    }
                    break;
                default:
                    throw new ImageFormatException($"unknown filter type {filter} on row {r}", source, offset);
            }
        }
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    /// <summary>Turns unfiltered rows of any colour type and depth into composited RGB pixels.</summary>
    private readonly struct PixelWriter(
        Header h, byte[]? palette, byte[]? paletteAlpha, int[]? colourKey, RgbColor? background, byte[] pixels, string? source, long offset)
    {
        private readonly bool composite = background is not null;

        public void WriteRow(ReadOnlySpan<byte> row, int y, int x0, int dx, int count)
        {
            int depth = h.BitDepth;
            int scale = depth < 8 ? 255 / ((1 << depth) - 1) : 1;
            for (int i = 0; i < count; i++)
            {
                int r, g, b, a = 255;
                switch (h.ColorType)
                {
                    case 0:
                    {
                        int v = Sample(row, i, 0, 1);
                        r = g = b = depth == 16 ? v >> 8 : v * scale;
                        if (colourKey is not null && v == colourKey[0])
                            a = 0;
                        break;
                    }
                    case 3:
                    {
                        int index = Sample(row, i, 0, 1);
                        if (index * 3 >= palette!.Length)
                            throw new ImageFormatException($"palette index {index} past the {palette.Length / 3}-entry PLTE", source, offset);
                        r = palette[index * 3];
                        g = palette[index * 3 + 1];
                        b = palette[index * 3 + 2];
                        if (paletteAlpha is not null)
                            a = paletteAlpha[index];
                        break;
                    }
                    case 2:
                    {
                        int rv = Sample(row, i, 0, 3), gv = Sample(row, i, 1, 3), bv = Sample(row, i, 2, 3);
                        if (colourKey is not null && rv == colourKey[0] && gv == colourKey[1] && bv == colourKey[2])
                            a = 0;
                        (r, g, b) = depth == 16 ? (rv >> 8, gv >> 8, bv >> 8) : (rv, gv, bv);
                        break;
                    }
                    case 4:
                        r = g = b = Sample8(row, i, 0, 2);
                        a = Sample8(row, i, 1, 2);
                        break;
                    default:
                        r = Sample8(row, i, 0, 4);
                        g = Sample8(row, i, 1, 4);
                        b = Sample8(row, i, 2, 4);
                        a = Sample8(row, i, 3, 4);
                        break;
                }
                int o = (y * h.Width + x0 + i * dx) * 3;
                if (a == 255 || !composite)
                {
                    pixels[o] = (byte)r;
                    pixels[o + 1] = (byte)g;
                    pixels[o + 2] = (byte)b;
                }
                else
                {
                    var bg = background!.Value;
                    pixels[o] = ImageDecoder.Composite(r, a, bg.R);
                    pixels[o + 1] = ImageDecoder.Composite(g, a, bg.G);
                    pixels[o + 2] = ImageDecoder.Composite(b, a, bg.B);
                }
            }
        }

        /// <summary>Sample <paramref name="channel"/> of pixel <paramref name="i"/> at full depth.</summary>
        private int Sample(ReadOnlySpan<byte> row, int i, int channel, int channels)
        {
            int depth = h.BitDepth;
            int index = i * channels + channel;
            return depth switch
            {
                8 => row[index],
                16 => (row[2 * index] << 8) | row[2 * index + 1],
                _ => (row[index * depth >> 3] >> (8 - depth - (index * depth & 7))) & ((1 << depth) - 1),
            };
        }

        private int Sample8(ReadOnlySpan<byte> row, int i, int channel, int channels) =>
            h.BitDepth == 16 ? row[2 * (i * channels + channel)] : row[i * channels + channel];
    }
}

/// <summary>CRC-32 (ISO 3309 / ITU-T V.42), as PNG chunks use it.</summary>
internal static class Crc32
{
    private static readonly uint[] Table = BuildTable();

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++)
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (var b in data)
            c = Table[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
}
