using System.Buffers.Binary;

namespace Graft.Models.Imaging;

/// <summary>
/// GIF87a/GIF89a, the first frame as Pillow 9.4 reads it: the canvas is the logical screen, widened to the first
/// frame's extent; pixels outside the frame hold the transparent index when the frame has one, else index 0; indices
/// map through the frame's palette (local, else global), entries the palette lacks read as gray (i, i, i), as in
/// PIL's palette. An animated GIF (more than one image descriptor) is refused, as OpenAI's API refuses it.
/// </summary>
internal static class GifDecoder
{
    private const int MaxCodeBits = 12;

    public static bool HasSignature(ReadOnlySpan<byte> data) =>
        data.StartsWith("GIF87a"u8) || data.StartsWith("GIF89a"u8);

    /// <summary>Where the first frame lies and what it needs, found by one bounded walk over the blocks.</summary>
    public readonly record struct Layout(
        int Width, int Height, int Frames,
        int FrameX, int FrameY, int FrameWidth, int FrameHeight, bool Interlaced,
        int PaletteOffset, int PaletteEntries, int Transparent, int MinCodeSize, int DataOffset, int DescriptorOffset);

    /// <summary>
    /// Reads the screen descriptor and walks every block without decompressing, counting image descriptors up to
    /// <paramref name="maxFrames"/>. Unknown bytes between blocks are skipped, as PIL skips them; data ending without a
    /// trailer ends the walk.
    /// </summary>
    public static Layout Walk(ReadOnlySpan<byte> data, string? source, int maxFrames)
    {
        if (data.Length < 13)
            throw new ImageFormatException("truncated: GIF shorter than its screen descriptor", source, data.Length);
        int screenWidth = BinaryPrimitives.ReadUInt16LittleEndian(data[6..]), screenHeight = BinaryPrimitives.ReadUInt16LittleEndian(data[8..]);
        int flags = data[10];
        int pos = 13, globalPalette = -1, globalEntries = 0;
        if ((flags & 0x80) != 0)
        {
            globalEntries = 2 << (flags & 7);
            globalPalette = pos;
            pos += 3 * globalEntries;
            if (pos > data.Length)
                throw new ImageFormatException("truncated: global colour table runs past the end of the data", source, 13);
        }
        int frames = 0, transparent = -1;
        Layout first = default;
        while (pos < data.Length && frames < maxFrames)
        {
            int blockOffset = pos;
            byte introducer = data[pos++];
            if (introducer == 0x3B)
                break;
            if (introducer == 0x21)
            {
                if (pos >= data.Length)
                    throw new ImageFormatException("truncated: extension label missing", source, pos);
                int label = data[pos++];
                // A graphic control extension before the first frame: its transparent index, when flagged, is the
                // frame's (a later one without the flag keeps it, as in PIL).
                if (label == 0xF9 && frames == 0 && data.Length - pos >= 5 && data[pos] >= 4 && (data[pos + 1] & 1) != 0)
                    transparent = data[pos + 4];
                pos = SkipSubBlocks(data, pos, source, blockOffset);
            }
            else if (introducer == 0x2C)
            {
                if (data.Length - pos < 10)
                    throw new ImageFormatException("truncated: image descriptor", source, blockOffset);
                var d = data.Slice(pos, 9);
                int x = BinaryPrimitives.ReadUInt16LittleEndian(d), y = BinaryPrimitives.ReadUInt16LittleEndian(d[2..]);
                int w = BinaryPrimitives.ReadUInt16LittleEndian(d[4..]), h = BinaryPrimitives.ReadUInt16LittleEndian(d[6..]);
                int imageFlags = d[8];
                pos += 9;
                int palette = globalPalette, entries = globalEntries;
                if ((imageFlags & 0x80) != 0)
                {
                    entries = 2 << (imageFlags & 7);
                    palette = pos;
                    pos += 3 * entries;
                    if (pos >= data.Length)
                        throw new ImageFormatException("truncated: local colour table runs past the end of the data", source, blockOffset + 10);
                }
                int minCodeSize = data[pos++];
                if (frames == 0)
                    first = new Layout(
                        Math.Max(screenWidth, x + w), Math.Max(screenHeight, y + h), 0, x, y, w, h, (imageFlags & 0x40) != 0,
                        palette, entries, transparent, minCodeSize, pos, blockOffset);
                pos = SkipSubBlocks(data, pos, source, blockOffset);
                frames++;
            }
            // Any other byte: PIL ignores it and reads on.
        }
        if (frames == 0)
            throw new ImageFormatException("GIF has no image descriptor", source, Math.Min(pos, data.Length));
        return first with { Frames = frames };
    }

    private static int SkipSubBlocks(ReadOnlySpan<byte> data, int pos, string? source, int blockOffset)
    {
        while (true)
        {
            if (pos >= data.Length)
                throw new ImageFormatException("truncated: data sub-blocks run past the end of the data", source, blockOffset);
            int length = data[pos++];
            if (length == 0)
                return pos;
            pos += length;
        }
    }

    public static RgbImage Decode(ReadOnlySpan<byte> data, DecodeOptions options, string? source, CancellationToken cancellationToken)
    {
        var layout = Walk(data, source, maxFrames: 2);
        if (layout.Frames > 1)
            throw new ImageFormatException("animated GIF (more than one frame) is not supported; send a still image", source, layout.DescriptorOffset);
        ImageDecoder.CheckDimensions(layout.Width, layout.Height, options.Limits, source, 6);
        if (layout.MinCodeSize is < 1 or > 11)
            throw new ImageFormatException($"LZW minimum code size {layout.MinCodeSize} is outside 1..11", source, layout.DataOffset - 1);

        // Colour of each index: the palette's entries, gray (i, i, i) past them.
        Span<byte> colours = stackalloc byte[256 * 3];
        for (int i = 0; i < 256; i++)
            colours[3 * i] = colours[3 * i + 1] = colours[3 * i + 2] = (byte)i;
        if (layout.PaletteOffset >= 0)
            data.Slice(layout.PaletteOffset, 3 * layout.PaletteEntries).CopyTo(colours);

        int width = layout.Width, height = layout.Height;
        var indices = new byte[checked(width * height)];
        if (layout.Transparent >= 0)
            indices.AsSpan().Fill((byte)layout.Transparent);
        if (layout.FrameWidth > 0 && layout.FrameHeight > 0)
            DecodeFrame(data, layout, indices, source, cancellationToken);

        var pixels = new byte[checked(indices.Length * 3)];
        bool composite = options.Alpha == AlphaHandling.Composite && layout.Transparent >= 0;
        var background = options.Background;
        for (int p = 0; p < indices.Length; p++)
        {
            int index = indices[p];
            if (composite && index == layout.Transparent)
            {
                pixels[3 * p] = background.R;
                pixels[3 * p + 1] = background.G;
                pixels[3 * p + 2] = background.B;
            }
            else
            {
                pixels[3 * p] = colours[3 * index];
                pixels[3 * p + 1] = colours[3 * index + 1];
                pixels[3 * p + 2] = colours[3 * index + 2];
            }
        }
        return new RgbImage(width, height, pixels);
    }

    /// <summary>
    /// LZW-decodes the frame's sub-blocks into its rectangle of the canvas, rows in interlaced order when flagged. The
    /// stream ending early (end code or block terminator) leaves the remaining pixels as they were, as PIL does.
    /// </summary>
    private static void DecodeFrame(ReadOnlySpan<byte> data, Layout layout, byte[] canvas, string? source, CancellationToken cancellationToken)
    {
        int clear = 1 << layout.MinCodeSize, end = clear + 1;
        Span<short> prefix = stackalloc short[1 << MaxCodeBits];
        Span<byte> suffix = stackalloc byte[1 << MaxCodeBits];
        Span<byte> first = stackalloc byte[1 << MaxCodeBits];
        Span<byte> stack = stackalloc byte[1 << MaxCodeBits];
        for (int i = 0; i < clear; i++)
        {
            prefix[i] = -1;
            suffix[i] = first[i] = (byte)i;
        }
        int codeBits = layout.MinCodeSize + 1, next = end + 1, previous = -1;
        int fw = layout.FrameWidth, fh = layout.FrameHeight;
        int x = 0, y = 0, row = 0, pass = 0;
        long written = 0, total = (long)fw * fh;

        int pos = layout.DataOffset, blockEnd = pos;
        uint bits = 0;
        int bitCount = 0;
        while (written < total)
        {
            while (bitCount < codeBits)
            {
                if (pos == blockEnd)
                {
                    if (pos >= data.Length)
                        throw new ImageFormatException("truncated: GIF image data ends inside a sub-block chain", source, pos);
                    int length = data[pos++];
                    if (length == 0)
                        return;
                    blockEnd = pos + length;
                    if (blockEnd > data.Length)
                        throw new ImageFormatException("truncated: GIF data sub-block runs past the end of the data", source, pos - 1);
                    continue;
                }
                bits |= (uint)data[pos++] << bitCount;
                bitCount += 8;
            }
            int code = (int)(bits & ((1u << codeBits) - 1));
            bits >>= codeBits;
            bitCount -= codeBits;
            if (code == clear)
            {
                codeBits = layout.MinCodeSize + 1;
                next = end + 1;
                previous = -1;
                continue;
            }
            if (code == end)
                return;
            int top = 0;
            int current = code;
            if (previous < 0)
            {
                if (code >= clear)
                    throw new ImageFormatException($"LZW code {code} before any literal", source, pos);
            }
            else if (code > next || (code == next && next >= 1 << MaxCodeBits))
                throw new ImageFormatException($"LZW code {code} is not yet defined (next is {next})", source, pos);
            if (previous >= 0 && code == next)
            {
                // The KwKwK case: the new string is previous + previous's first symbol.
                stack[top++] = first[previous];
                current = previous;
            }
            while (current >= clear)
            {
                stack[top++] = suffix[current];
                current = prefix[current];
            }
            stack[top++] = (byte)current;
            if (previous >= 0 && next < 1 << MaxCodeBits)
            {
                prefix[next] = (short)previous;
                suffix[next] = (byte)current;
                first[next] = first[previous];
                next++;
                if (next == 1 << codeBits && codeBits < MaxCodeBits)
                    codeBits++;
            }
            previous = code;
            // Emit the string (it was pushed last symbol first).
            while (top > 0 && written < total)
            {
                canvas[(layout.FrameY + y) * layout.Width + layout.FrameX + x] = stack[--top];
                written++;
                if (++x == fw)
                {
                    x = 0;
                    row++;
                    y = layout.Interlaced ? InterlacedRow(row, fh, ref pass) : row;
                    if ((row & 63) == 0)
                        cancellationToken.ThrowIfCancellationRequested();
                }
            }
        }
    }

    /// <summary>The canvas row of the n-th stored row of an interlaced frame: passes start 0/4/2/1, step 8/8/4/2.</summary>
    private static int InterlacedRow(int stored, int height, ref int pass)
    {
        int remaining = stored;
        ReadOnlySpan<int> starts = [0, 4, 2, 1];
        ReadOnlySpan<int> steps = [8, 8, 4, 2];
        for (pass = 0; pass < 4; pass++)
        {
            int rows = starts[pass] < height ? (height - starts[pass] + steps[pass] - 1) / steps[pass] : 0;
            if (remaining < rows)
                return starts[pass] + remaining * steps[pass];
            remaining -= rows;
        }
        return height - 1; // past the last row: nothing more is written
    }
}
