namespace Graft.Models.Imaging;

/// <summary>
/// Netpbm PGM/PPM: P2/P3 (ASCII) and P5/P6 (binary), maxval 1..65535, '#' comments in the header.
/// Samples are scaled round(v / maxval * 255) in doubles, halves to even, exactly as PIL's PpmDecoder does for RGB and
/// 8-bit gray (PIL opens gray with maxval > 255 as 32-bit "I" and clips it on convert("RGB"); we scale it too).
/// </summary>
internal static class PnmDecoder
{
    public static bool HasSignature(ReadOnlySpan<byte> data) =>
        data.Length >= 2 && data[0] == (byte)'P' && data[1] is (byte)'2' or (byte)'3' or (byte)'5' or (byte)'6';

    /// <summary>The width and height fields, for the header probe.</summary>
    public static (long Width, long Height) ReadDimensions(ReadOnlySpan<byte> data, string? source)
    {
        int pos = 2;
        if (pos >= data.Length || !IsSpace(data[pos]))
            throw new ImageFormatException("expected whitespace after the magic number", source, pos);
        long width = ReadNumber(data, ref pos, source, "width");
        long height = ReadNumber(data, ref pos, source, "height");
        return (width, height);
    }

    public static RgbImage Decode(ReadOnlySpan<byte> data, DecodeOptions options, string? source)
    {
        char kind = (char)data[1];
        bool ascii = kind is '2' or '3';
        int channels = kind is '3' or '6' ? 3 : 1;
        int pos = 2;
        if (pos >= data.Length || !IsSpace(data[pos]))
            throw new ImageFormatException("expected whitespace after the magic number", source, pos);
        long width = ReadNumber(data, ref pos, source, "width");
        long height = ReadNumber(data, ref pos, source, "height");
        long maxval = ReadNumber(data, ref pos, source, "maxval");
        ImageDecoder.CheckDimensions(width, height, options.Limits, source, pos);
        if (maxval is < 1 or > 65535)
            throw new ImageFormatException($"maxval {maxval} is outside 1..65535", source, pos);
        int w = (int)width, h = (int)height, max = (int)maxval;
        long samples = width * height * channels;
        int bytesPerSample = max > 255 ? 2 : 1;
        if (!ascii)
        {
            // Exactly one whitespace byte separates the header from the raster.
            if (pos >= data.Length || !IsSpace(data[pos]))
                throw new ImageFormatException("expected one whitespace byte before the raster", source, pos);
            pos++;
            if (data.Length - pos < samples * bytesPerSample)
                throw new ImageFormatException($"truncated raster: {data.Length - pos} bytes, expected {samples * bytesPerSample}", source, pos);
        }
        else if (data.Length - pos < samples * 2 - 1)
            throw new ImageFormatException($"truncated: {data.Length - pos} bytes cannot hold {samples} ASCII samples", source, pos);

        var pixels = new byte[w * h * 3];
        var scale = new byte[max + 1];
        for (int v = 0; v <= max; v++)
            scale[v] = (byte)Math.Round((double)v / max * 255, MidpointRounding.ToEven);
        for (long i = 0; i < samples; i++)
        {
            int sampleOffset = pos;
            long v;
            if (ascii)
            {
                v = ReadNumber(data, ref pos, source, "sample", out sampleOffset);
            }
            else if (bytesPerSample == 1)
                v = data[pos++];
            else
            {
                v = (data[pos] << 8) | data[pos + 1];
                pos += 2;
            }
            if (v > max)
                throw new ImageFormatException($"sample {v} exceeds maxval {max}", source, sampleOffset);
            byte s = scale[v];
            if (channels == 3)
                pixels[i] = s;
            else
                pixels[3 * i] = pixels[3 * i + 1] = pixels[3 * i + 2] = s;
        }
        return new RgbImage(w, h, pixels);
    }

    private static bool IsSpace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r' or 0x0B or 0x0C;

    /// <summary>Skips whitespace and comments, then reads a decimal number; leaves pos just after its last digit.</summary>
    private static long ReadNumber(ReadOnlySpan<byte> data, ref int pos, string? source, string what) =>
        ReadNumber(data, ref pos, source, what, out _);

    private static long ReadNumber(ReadOnlySpan<byte> data, ref int pos, string? source, string what, out int start)
    {
        while (pos < data.Length)
        {
            if (IsSpace(data[pos]))
                pos++;
            else if (data[pos] == (byte)'#')
                while (pos < data.Length && data[pos] != (byte)'\n' && data[pos] != (byte)'\r')
                    pos++;
            else
                break;
        }
        start = pos;
        long value = 0;
        while (pos < data.Length && data[pos] is >= (byte)'0' and <= (byte)'9')
        {
            value = value * 10 + (data[pos] - '0');
            if (value > int.MaxValue)
                throw new ImageFormatException($"{what} is too large", source, start);
            pos++;
        }
        if (pos == start)
            throw new ImageFormatException(pos >= data.Length ? $"truncated: {what} missing" : $"expected a number for {what}", source, start);
        return value;
    }
}
