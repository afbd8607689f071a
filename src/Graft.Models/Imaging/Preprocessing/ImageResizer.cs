using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Graft.Models.Imaging;

/// <summary>PIL's resampling filters, numbered as PIL's Image.Resampling (the integers Hugging Face configs store).</summary>
public enum ResampleFilter
{
    Nearest = 0,
    Lanczos = 1,
    Bilinear = 2,
    Bicubic = 3,
    Box = 4,
    Hamming = 5,
}

/// <summary>
/// Resizes 8-bit RGB exactly as Pillow 9.4's <c>Image.resize(size, resample)</c> without a box or reducing_gap:
/// the convolution filters run two separable passes (horizontal into an 8-bit intermediate, then vertical),
/// antialiased when shrinking by widening the support by the scale, with coefficients normalised to sum 1 and
/// rounded to 22-bit fixed point; NEAREST samples the pixel under each output pixel centre, as PIL's affine scale.
/// </summary>
public static class ImageResizer
{
    /// <summary>PIL's PRECISION_BITS for 8-bit images: 32 - 8 - 2, leaving room for negative lobes and overshoot.</summary>
    private const int PrecisionBits = 22;

    public static RgbImage Resize(RgbImage image, int width, int height, ResampleFilter filter)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (width <= 0 || height <= 0)
            throw new ArgumentException($"resize target must be positive, got {width}x{height}");
        if ((long)width * height * 3 > Array.MaxLength)
            throw new ArgumentException($"resize target {width}x{height} is too large for one pixel buffer");
        if (!Enum.IsDefined(filter))
            throw new ArgumentException($"unknown resample filter {(int)filter}", nameof(filter));
        if (width == image.Width && height == image.Height)
            return new RgbImage(width, height, (byte[])image.Pixels.Clone());
        if (filter == ResampleFilter.Nearest)
            return ResizeNearest(image, width, height);

        var vertical = Coefficients.Compute(image.Height, height, filter);
        var source = image;
        if (width != image.Width)
        {
            // Only the rows the vertical pass reads are resampled horizontally, as PIL does.
            int firstRow = vertical.Start[0];
            int lastRow = vertical.Start[height - 1] + vertical.Count[height - 1];
            for (int y = 0; y < height; y++) vertical.Start[y] -= firstRow;
            var horizontal = Coefficients.Compute(image.Width, width, filter);
            source = new RgbImage(width, lastRow - firstRow, new byte[width * (lastRow - firstRow) * 3]);
            ResampleHorizontal(image.Pixels, image.Width, firstRow, source.Pixels, width, source.Height, horizontal);
        }
        if (height == image.Height)
            return source;
        var output = new byte[width * height * 3];
        ResampleVertical(source.Pixels, width * 3, output, height, vertical);
        return new RgbImage(width, height, output);
    }

    /// <summary>PIL's ImagingScaleAffine: source coordinate accumulated in double from half a step, truncated.</summary>
    private static RgbImage ResizeNearest(RgbImage image, int width, int height)
    {
        double stepX = (double)image.Width / width, stepY = (double)image.Height / height;
        var sourceX = new int[width];
        double position = stepX * 0.5;
        for (int x = 0; x < width; x++)
        {
            sourceX[x] = Math.Min((int)position, image.Width - 1);
            position += stepX;
        }
        var output = new byte[width * height * 3];
        var input = image.Pixels;
        position = stepY * 0.5;
        for (int y = 0; y < height; y++)
        {
            int sourceY = Math.Min((int)position, image.Height - 1);
            position += stepY;
            var inRow = input.AsSpan(sourceY * image.Width * 3, image.Width * 3);
            var outRow = output.AsSpan(y * width * 3, width * 3);
            for (int x = 0; x < width; x++)
            {
                int s = sourceX[x] * 3;
                outRow[x * 3] = inRow[s];
                outRow[x * 3 + 1] = inRow[s + 1];
                outRow[x * 3 + 2] = inRow[s + 2];
            }
        }
        return new RgbImage(width, height, output);
    }

    // in [H_in, W_in, 3] rows firstRow.., out [H_out, W_out, 3]: out[y, x] = Σ_k in[y + firstRow, start[x] + k] · w[x, k]
    private static void ResampleHorizontal(byte[] input, int inWidth, int firstRow, byte[] output, int outWidth, int rows, Coefficients c)
    {
        const int half = 1 << (PrecisionBits - 1);
        for (int y = 0; y < rows; y++)
        {
            var inRow = input.AsSpan((y + firstRow) * inWidth * 3, inWidth * 3);
            var outRow = output.AsSpan(y * outWidth * 3, outWidth * 3);
            for (int x = 0; x < outWidth; x++)
            {
                var weights = c.Weights.AsSpan(x * c.Size, c.Count[x]);
                var taps = inRow.Slice(c.Start[x] * 3, weights.Length * 3);
                int r = half, g = half, b = half;
                for (int k = 0; k < weights.Length; k++)
                {
                    int w = weights[k];
                    r += taps[k * 3] * w;
                    g += taps[k * 3 + 1] * w;
                    b += taps[k * 3 + 2] * w;
                }
                outRow[x * 3] = Clip8(r);
                outRow[x * 3 + 1] = Clip8(g);
                outRow[x * 3 + 2] = Clip8(b);
            }
        }
    }

    // in [H_in, N] bytes (N = W·3), out [H_out, N]: out[y, n] = Σ_k in[start[y] + k, n] · w[y, k]
    private static void ResampleVertical(byte[] input, int rowBytes, byte[] output, int outHeight, Coefficients c)
    {
        const int half = 1 << (PrecisionBits - 1);
        for (int y = 0; y < outHeight; y++)
        {
            var weights = c.Weights.AsSpan(y * c.Size, c.Count[y]);
            var taps = input.AsSpan(c.Start[y] * rowBytes, weights.Length * rowBytes);
            var outRow = output.AsSpan(y * rowBytes, rowBytes);
            int n = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                var rounding = Vector256.Create(half);
                var zero = Vector256<int>.Zero;
                var max = Vector256.Create(255);
                for (; n <= rowBytes - Vector256<byte>.Count; n += Vector256<byte>.Count)
                {
                    Vector256<int> s0 = rounding, s1 = rounding, s2 = rounding, s3 = rounding;
                    for (int k = 0; k < weights.Length; k++)
                    {
                        var pixels = Vector256.Create<byte>(taps.Slice(k * rowBytes + n, Vector256<byte>.Count));
                        var w = Vector256.Create(weights[k]);
                        var (low, high) = Vector256.Widen(pixels);
                        var (p0, p1) = Vector256.Widen(low);
                        var (p2, p3) = Vector256.Widen(high);
                        s0 += p0.AsInt32() * w;
                        s1 += p1.AsInt32() * w;
                        s2 += p2.AsInt32() * w;
                        s3 += p3.AsInt32() * w;
                    }
                    var c0 = Vector256.Min(Vector256.Max(Vector256.ShiftRightArithmetic(s0, PrecisionBits), zero), max).AsUInt32();
                    var c1 = Vector256.Min(Vector256.Max(Vector256.ShiftRightArithmetic(s1, PrecisionBits), zero), max).AsUInt32();
                    var c2 = Vector256.Min(Vector256.Max(Vector256.ShiftRightArithmetic(s2, PrecisionBits), zero), max).AsUInt32();
                    var c3 = Vector256.Min(Vector256.Max(Vector256.ShiftRightArithmetic(s3, PrecisionBits), zero), max).AsUInt32();
                    Vector256.Narrow(Vector256.Narrow(c0, c1), Vector256.Narrow(c2, c3)).CopyTo(outRow.Slice(n));
                }
            }
            for (; n < rowBytes; n++)
            {
                int sum = half;
                for (int k = 0; k < weights.Length; k++)
                    sum += taps[k * rowBytes + n] * weights[k];
                outRow[n] = Clip8(sum);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte Clip8(int sum) => (byte)Math.Clamp(sum >> PrecisionBits, 0, 255);

    /// <summary>PIL's precompute_coeffs + normalize_coeffs_8bpc for one axis: per output index a window start, a count and fixed-point weights.</summary>
    private sealed class Coefficients
    {
        public required int Size { get; init; }
        public required int[] Start { get; init; }
        public required int[] Count { get; init; }
        public required int[] Weights { get; init; }

        public static Coefficients Compute(int inSize, int outSize, ResampleFilter filter)
        {
            double filterSupport = Support(filter);
            double scale = (double)inSize / outSize;
            double filterScale = Math.Max(scale, 1.0);
            double support = filterSupport * filterScale;
            int size = (int)Math.Ceiling(support) * 2 + 1;
            var start = new int[outSize];
            var count = new int[outSize];
            var weights = new int[outSize * size];
            Span<double> k = size <= 256 ? stackalloc double[size] : new double[size];
            double inverseScale = 1.0 / filterScale;
            for (int xx = 0; xx < outSize; xx++)
            {
                double center = (xx + 0.5) * scale;
                int xmin = Math.Max((int)(center - support + 0.5), 0);
                int xmax = Math.Min((int)(center + support + 0.5), inSize) - xmin;
                double total = 0.0;
                for (int x = 0; x < xmax; x++)
                {
                    double w = Evaluate(filter, (x + xmin - center + 0.5) * inverseScale);
                    k[x] = w;
                    total += w;
                }
                var row = weights.AsSpan(xx * size, size);
                for (int x = 0; x < xmax; x++)
                {
                    double normalised = total != 0.0 ? k[x] / total : k[x];
                    row[x] = normalised < 0
                        ? (int)(-0.5 + normalised * (1 << PrecisionBits))
                        : (int)(0.5 + normalised * (1 << PrecisionBits));
                }
                start[xx] = xmin;
                count[xx] = xmax;
            }
            return new Coefficients { Size = size, Start = start, Count = count, Weights = weights };
        }

        private static double Support(ResampleFilter filter) => filter switch
        {
            ResampleFilter.Box => 0.5,
            ResampleFilter.Bilinear or ResampleFilter.Hamming => 1.0,
            ResampleFilter.Bicubic => 2.0,
            ResampleFilter.Lanczos => 3.0,
            _ => throw new ArgumentOutOfRangeException(nameof(filter)),
        };

        private static double Evaluate(ResampleFilter filter, double x)
        {
            switch (filter)
            {
                case ResampleFilter.Box:
                    return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
                case ResampleFilter.Bilinear:
                    x = Math.Abs(x);
                    return x < 1.0 ? 1.0 - x : 0.0;
                case ResampleFilter.Hamming:
                    x = Math.Abs(x);
                    if (x == 0.0) return 1.0;
                    if (x >= 1.0) return 0.0;
                    x *= Math.PI;
                    // PIL writes the window's constants as C floats.
                    return Math.Sin(x) / x * ((double)0.54f + (double)0.46f * Math.Cos(x));
                case ResampleFilter.Bicubic:
                    const double a = -0.5;
                    x = Math.Abs(x);
                    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
                    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
                    return 0.0;
                case ResampleFilter.Lanczos:
                    return -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0;
                default:
                    throw new ArgumentOutOfRangeException(nameof(filter));
            }
        }

        private static double Sinc(double x)
        {
            if (x == 0.0) return 1.0;
            x *= Math.PI;
            return Math.Sin(x) / x;
        }
    }
}
