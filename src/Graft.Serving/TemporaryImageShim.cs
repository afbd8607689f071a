// TEMPORARY until branch `images` lands ImageDecoder.ReadHeader: removed at that merge; never to land on main.
using Graft.Models.Imaging;

namespace Graft.Serving;

internal readonly record struct ShimHeader(int Width, int Height);

internal static class ImageDecoderShim
{
    public static ShimHeader ReadHeader(ReadOnlySpan<byte> data, ImageLimits limits, string? source)
    {
        if (data.Length >= 24 && data[0] == 0x89)
        {
            long w = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(data[16..]), h = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(data[20..]);
            if (w * h > limits.MaxPixels) throw new ImageFormatException($"{w}x{h} is {w * h} pixels, over the limit of {limits.MaxPixels}", source, 16);
            return new ShimHeader((int)w, (int)h);
        }
        var image = ImageDecoder.Decode(data, limits, source);
        return new ShimHeader(image.Width, image.Height);
    }

    public static RgbImage Decode(ReadOnlySpan<byte> data, ImageLimits limits, string? source, CancellationToken cancellationToken) => ImageDecoder.Decode(data, limits, source);

    public static bool IsOverLimit(this ImageFormatException e) => e.Problem.Contains("over the limit", StringComparison.Ordinal);
}
