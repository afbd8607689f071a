using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace Graft.Models.Imaging;

/// <summary>
/// Writes an <see cref="RgbImage"/> as a PNG: 8-bit truecolour, no interlace, one IDAT, zlib from
/// <see cref="ZLibStream"/>. Each row takes the filter whose residuals have the smallest sum of
/// absolute values (the libpng heuristic), which is what makes flat synthetic images small.
/// </summary>
public static class PngEncoder
{
    private static ReadOnlySpan<byte> Signature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    public static byte[] Encode(RgbImage image, CompressionLevel level = CompressionLevel.SmallestSize)
    {
        var output = new MemoryStream();
        output.Write(Signature);

        Span<byte> header = stackalloc byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, image.Width);
        BinaryPrimitives.WriteInt32BigEndian(header[4..], image.Height);
        header[8] = 8;  // bit depth
        header[9] = 2;  // colour type: truecolour
        header[10] = 0; // compression: deflate
        header[11] = 0; // filter method: adaptive, five filter types
        header[12] = 0; // no interlace
        WriteChunk(output, "IHDR", header);
        WriteChunk(output, "IDAT", Compress(FilterRows(image), level));
        WriteChunk(output, "IEND", []);
        return output.ToArray();
    }

    public static void Save(RgbImage image, string path, CompressionLevel level = CompressionLevel.SmallestSize) =>
        File.WriteAllBytes(path, Encode(image, level));

    /// <summary>Height rows, each one filter-type byte then Width*3 filtered bytes.</summary>
    private static byte[] FilterRows(RgbImage image)
    {
        int stride = image.Width * 3;
        long size = (long)image.Height * (stride + 1);
        if (size > Array.MaxLength)
            throw new ArgumentException($"{image.Width}x{image.Height} is too large for one PNG buffer", nameof(image));
        var filtered = new byte[size];
        var candidate = new byte[stride];
        var best = new byte[stride];
        var zeros = new byte[stride];
        for (int y = 0; y < image.Height; y++)
        {
            ReadOnlySpan<byte> row = image.Pixels.AsSpan(y * stride, stride);
            ReadOnlySpan<byte> above = y == 0 ? zeros : image.Pixels.AsSpan((y - 1) * stride, stride);
            long bestCost = long.MaxValue;
            byte bestType = 0;
            for (byte type = 0; type <= 4; type++)
            {
                long cost = ApplyFilter(type, row, above, candidate);
                if (cost < bestCost)
                {
                    bestCost = cost;
                    bestType = type;
                    candidate.CopyTo(best, 0);
                }
            }
            int at = y * (stride + 1);
            filtered[at] = bestType;
            best.CopyTo(filtered, at + 1);
        }
        return filtered;
    }

    /// <summary>Filters one row into <paramref name="output"/>; returns the sum of residuals read as signed bytes.</summary>
    private static long ApplyFilter(byte type, ReadOnlySpan<byte> row, ReadOnlySpan<byte> above, Span<byte> output)
    {
        const int bpp = 3;
        long cost = 0;
        for (int i = 0; i < row.Length; i++)
        {
            int left = i >= bpp ? row[i - bpp] : 0;
            int up = above[i];
            int upLeft = i >= bpp ? above[i - bpp] : 0;
            int predictor = type switch
            {
                0 => 0,
                1 => left,
                2 => up,
                3 => (left + up) >> 1,
                _ => Paeth(left, up, upLeft),
            };
            byte residual = (byte)(row[i] - predictor);
            output[i] = residual;
            int signed = (sbyte)residual;
            cost += signed < 0 ? -signed : signed;
        }
        return cost;
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c;
        int pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    private static byte[] Compress(byte[] data, CompressionLevel level)
    {
        var buffer = new MemoryStream();
        using (var zlib = new ZLibStream(buffer, level, leaveOpen: true))
            zlib.Write(data);
        return buffer.ToArray();
    }

    private static void WriteChunk(Stream output, string type, ReadOnlySpan<byte> payload)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, payload.Length);
        output.Write(word);

        var typeAndPayload = new byte[4 + payload.Length];
        Encoding.ASCII.GetBytes(type, typeAndPayload);
        payload.CopyTo(typeAndPayload.AsSpan(4));
        output.Write(typeAndPayload);

        BinaryPrimitives.WriteUInt32BigEndian(word, Crc32.Compute(typeAndPayload));
        output.Write(word);
    }
}
