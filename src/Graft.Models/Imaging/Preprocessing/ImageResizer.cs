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

    private const int Half = 1 << (PrecisionBits - 1);

    /// <summary>Horizontal weights kept at once; wider windows are resampled in column strips so memory stays bounded.</summary>
    private const int MaxTableEntries = 1 << 22;

    public static RgbImage Resize(RgbImage image, int width, int height, ResampleFilter filter)
    {
        ArgumentNullException.ThrowIfNull(image);
        return Resample(new Canvas(image, image.Width, image.Height, 0, 0, RgbColor.Black), width, height, new Window(0, 0, width, height), filter);
    }

    /// <summary>
    /// LLaVA's expand2square followed by <see cref="Resize"/>, without materialising the square: the padding is a
    /// virtual border of <paramref name="background"/> around the image, so a 65535 x 1 image costs what its pixels
    /// cost, not 65535^2. Byte-identical to PIL's resize of the padded image.
    /// </summary>
    public static RgbImage ResizePadded(RgbImage image, RgbColor background, int width, int height, ResampleFilter filter)
    {
        ArgumentNullException.ThrowIfNull(image);
        return Resample(Canvas.Square(image, background), width, height, new Window(0, 0, width, height), filter);
    }

    /// <summary>The image placed at (Left, Top) on a Width x Height canvas of Background: expand2square without the copy.</summary>
    internal readonly record struct Canvas(RgbImage Image, int Width, int Height, int Left, int Top, RgbColor Background)
    {
        /// <summary>expand2square's placement: a square of the longer side, the image at ((side - w) // 2, (side - h) // 2).</summary>
        public static Canvas Square(RgbImage image, RgbColor background)
        {
            int side = Math.Max(image.Width, image.Height);
            return new Canvas(image, side, side, (side - image.Width) / 2, (side - image.Height) / 2, background);
        }
    }

    /// <summary>A rectangle of the resized output: only these pixels are computed (a following centre crop's window).</summary>
    internal readonly record struct Window(int X, int Y, int Width, int Height);

    /// <summary>
    /// The <paramref name="window"/> of the canvas resized to outWidth x outHeight, as PIL resizes: horizontal pass into
    /// 8-bit rows, then vertical; an axis whose size does not change is not resampled. Rows are resampled horizontally
    /// once each, as the vertical pass first needs them, into a sliding buffer of at most twice the filter's window;
    /// padding rows and columns contribute their weight sum times the background, which in integer arithmetic equals
    /// PIL's sum over the same taps.
    /// </summary>
    internal static RgbImage Resample(Canvas canvas, int outWidth, int outHeight, Window window, ResampleFilter filter)
    {
        if (outWidth <= 0 || outHeight <= 0)
            throw new ArgumentException($"resize target must be positive, got {outWidth}x{outHeight}");
        if (!Enum.IsDefined(filter))
            throw new ArgumentException($"unknown resample filter {(int)filter}", nameof(filter));
        if (window.X < 0 || window.Y < 0 || window.Width <= 0 || window.Height <= 0
            || (long)window.X + window.Width > outWidth || (long)window.Y + window.Height > outHeight)
            throw new ArgumentException($"window {window} is outside the {outWidth}x{outHeight} output");
        if ((long)window.Width * window.Height * 3 > Array.MaxLength)
            throw new ArgumentException($"resize output {window.Width}x{window.Height} is too large for one pixel buffer");
        var output = new byte[window.Width * window.Height * 3];
        if (filter == ResampleFilter.Nearest)
        {
            ResampleNearest(canvas, outWidth, outHeight, window, output);
            return new RgbImage(window.Width, window.Height, output);
        }
        var horizontal = new AxisFilter(canvas.Width, outWidth, canvas.Left, canvas.Image.Width, filter);
        var vertical = new AxisFilter(canvas.Height, outHeight, canvas.Top, canvas.Image.Height, filter);
        // Column strips whose weight tables stay small; normally the whole window is one strip.
        int x = window.X;
        while (x < window.X + window.Width)
        {
            int stripEnd = x;
            long entries = 0;
            while (stripEnd < window.X + window.Width && (stripEnd == x || entries + horizontal.ImageTaps(stripEnd) <= MaxTableEntries))
                entries += horizontal.ImageTaps(stripEnd++);
            ResampleStrip(canvas, horizontal.Table(x, stripEnd - x), vertical, window, x, stripEnd - x, output);
            x = stripEnd;
        }
        return new RgbImage(window.Width, window.Height, output);
    }

    private static void ResampleStrip(Canvas canvas, AxisTable columns, AxisFilter vertical, Window window, int x0, int width, byte[] output)
    {
        var image = canvas.Image;
        int rowBytes = width * 3, outRowBytes = window.Width * 3, outOffset = (x0 - window.X) * 3;
        ReadOnlySpan<byte> background = [canvas.Background.R, canvas.Background.G, canvas.Background.B];
        // A padding row resampled horizontally: the same for every padding row, so computed once.
        var backgroundRow = new byte[rowBytes];
        for (int x = 0; x < width; x++)
        {
            int total = columns.BackgroundWeight[x];
            foreach (var w in columns.Weights.AsSpan(columns.Offset[x], columns.Count[x]))
                total += w;
            for (int c = 0; c < 3; c++)
                backgroundRow[x * 3 + c] = Clip8(Half + total * background[c]);
        }
        int window0 = Math.Min(vertical.MaxImageTaps, image.Height);
        var buffer = new byte[Math.Max(1, 2 * window0) * rowBytes];
        int capacity = Math.Max(1, 2 * window0), bufferBase = 0, computed = 0; // image rows [bufferBase, computed) are in the buffer
        var weights = new int[vertical.KernelSize];
        for (int y = window.Y; y < window.Y + window.Height; y++)
        {
            var tap = vertical.Row(y, weights);
            int first = tap.ImageStart, last = tap.ImageStart + tap.ImageCount; // image rows this output row reads
            if (tap.ImageCount > 0)
            {
                if (computed < first)
                    bufferBase = computed = first;
                if (last - bufferBase > capacity)
                {
                    int keep = Math.Max(0, computed - first);
                    buffer.AsSpan((first - bufferBase) * rowBytes, keep * rowBytes).CopyTo(buffer);
                    bufferBase = first;
                }
                for (; computed < last; computed++)
                    ResampleRow(image.Pixels.AsSpan(computed * image.Width * 3, image.Width * 3), columns, background,
                        buffer.AsSpan((computed - bufferBase) * rowBytes, rowBytes));
            }
            var taps = tap.ImageCount > 0 ? buffer.AsSpan((first - bufferBase) * rowBytes, tap.ImageCount * rowBytes) : Span<byte>.Empty;
            var outRow = output.AsSpan((y - window.Y) * outRowBytes + outOffset, rowBytes);
            ResampleColumn(taps, weights.AsSpan(0, tap.ImageCount), backgroundRow, tap.BackgroundWeight, rowBytes, outRow);
        }
    }

    // out[x, c] = Clip8(half + bw[x] · background[c] + Σ_k w[x, k] · row[start[x] + k, c])
    private static void ResampleRow(ReadOnlySpan<byte> row, AxisTable columns, ReadOnlySpan<byte> background, Span<byte> output)
    {
        int width = columns.Count.Length;
        for (int x = 0; x < width; x++)
        {
            var weights = columns.Weights.AsSpan(columns.Offset[x], columns.Count[x]);
            var taps = row.Slice(columns.Start[x] * 3, weights.Length * 3);
            int bw = columns.BackgroundWeight[x];
            int r = Half + bw * background[0], g = Half + bw * background[1], b = Half + bw * background[2];
            for (int k = 0; k < weights.Length; k++)
            {
                int w = weights[k];
                r += taps[k * 3] * w;
                g += taps[k * 3 + 1] * w;
                b += taps[k * 3 + 2] * w;
            }
            output[x * 3] = Clip8(r);
            output[x * 3 + 1] = Clip8(g);
            output[x * 3 + 2] = Clip8(b);
        }
    }

    // out[n] = Clip8(half + bw · backgroundRow[n] + Σ_k w[k] · rows[k, n])
    private static void ResampleColumn(ReadOnlySpan<byte> rows, ReadOnlySpan<int> weights, ReadOnlySpan<byte> backgroundRow, int backgroundWeight, int rowBytes, Span<byte> output)
    {
        int n = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var rounding = Vector256.Create(Half);
            var zero = Vector256<int>.Zero;
            var max = Vector256.Create(255);
            var bw = Vector256.Create(backgroundWeight);
            for (; n <= rowBytes - Vector256<byte>.Count; n += Vector256<byte>.Count)
            {
                Vector256<int> s0 = rounding, s1 = rounding, s2 = rounding, s3 = rounding;
                if (backgroundWeight != 0)
                    Accumulate(Vector256.Create<byte>(backgroundRow.Slice(n, Vector256<byte>.Count)), bw, ref s0, ref s1, ref s2, ref s3);
                for (int k = 0; k < weights.Length; k++)
                    Accumulate(Vector256.Create<byte>(rows.Slice(k * rowBytes + n, Vector256<byte>.Count)), Vector256.Create(weights[k]), ref s0, ref s1, ref s2, ref s3);
                var c0 = Vector256.Min(Vector256.Max(Vector256.ShiftRightArithmetic(s0, PrecisionBits), zero), max).AsUInt32();
                var c1 = Vector256.Min(Vector256.Max(Vector256.ShiftRightArithmetic(s1, PrecisionBits), zero), max).AsUInt32();
                var c2 = Vector256.Min(Vector256.Max(Vector256.ShiftRightArithmetic(s2, PrecisionBits), zero), max).AsUInt32();
                var c3 = Vector256.Min(Vector256.Max(Vector256.ShiftRightArithmetic(s3, PrecisionBits), zero), max).AsUInt32();
                Vector256.Narrow(Vector256.Narrow(c0, c1), Vector256.Narrow(c2, c3)).CopyTo(output.Slice(n));
            }
        }
        for (; n < rowBytes; n++)
        {
            int sum = Half + backgroundWeight * backgroundRow[n];
            for (int k = 0; k < weights.Length; k++)
                sum += rows[k * rowBytes + n] * weights[k];
            output[n] = Clip8(sum);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate(Vector256<byte> pixels, Vector256<int> w, ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        var (low, high) = Vector256.Widen(pixels);
        var (p0, p1) = Vector256.Widen(low);
        var (p2, p3) = Vector256.Widen(high);
        s0 += p0.AsInt32() * w;
        s1 += p1.AsInt32() * w;
        s2 += p2.AsInt32() * w;
        s3 += p3.AsInt32() * w;
    }

    /// <summary>
    /// PIL's ImagingScaleAffine: source coordinate accumulated in double from half a step, truncated; the padding answers
    /// with the background.
    /// </summary>
    private static void ResampleNearest(Canvas canvas, int outWidth, int outHeight, Window window, byte[] output)
    {
        var image = canvas.Image;
        double stepX = (double)canvas.Width / outWidth, stepY = (double)canvas.Height / outHeight;
        var sourceX = new int[window.Width]; // image column, or -1 for padding
        double position = stepX * 0.5;
        for (int x = 0; x < window.X + window.Width; x++)
        {
            if (x >= window.X)
            {
                int cx = Math.Min((int)position, canvas.Width - 1) - canvas.Left;
                sourceX[x - window.X] = cx >= 0 && cx < image.Width ? cx : -1;
            }
            position += stepX;
        }
        position = stepY * 0.5;
        for (int y = 0; y < window.Y + window.Height; y++)
        {
            int cy = Math.Min((int)position, canvas.Height - 1) - canvas.Top;
            position += stepY;
            if (y < window.Y)
                continue;
            var outRow = output.AsSpan((y - window.Y) * window.Width * 3, window.Width * 3);
            bool inImage = cy >= 0 && cy < image.Height;
            var inRow = inImage ? image.Pixels.AsSpan(cy * image.Width * 3, image.Width * 3) : default;
            for (int x = 0; x < window.Width; x++)
            {
                int s = sourceX[x];
                if (inImage && s >= 0)
                {
                    outRow[x * 3] = inRow[s * 3];
                    outRow[x * 3 + 1] = inRow[s * 3 + 1];
                    outRow[x * 3 + 2] = inRow[s * 3 + 2];
                }
                else
                {
                    outRow[x * 3] = canvas.Background.R;
                    outRow[x * 3 + 1] = canvas.Background.G;
                    outRow[x * 3 + 2] = canvas.Background.B;
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte Clip8(int sum) => (byte)Math.Clamp(sum >> PrecisionBits, 0, 255);

    /// <summary>One output index's taps: the image samples it reads (with weights written to a buffer) and the weight the padding carries.</summary>
    private readonly record struct Taps(int ImageStart, int ImageCount, int BackgroundWeight);

    /// <summary>Weights for a run of output columns: image taps only, the padding's share summed per column.</summary>
    private sealed class AxisTable
    {
        public required int[] Start { get; init; }
        public required int[] Count { get; init; }
        public required int[] Offset { get; init; }
        public required int[] BackgroundWeight { get; init; }
        public required int[] Weights { get; init; }
    }

    /// <summary>
    /// PIL's precompute_coeffs + normalize_coeffs_8bpc for one axis of the canvas, one output index at a time: the
    /// window [xmin, xmin + xmax) around (i + 0.5) * scale, weights normalised to sum 1 in double, then rounded to
    /// 22-bit fixed point. An axis whose size does not change gets PIL's "no pass": one tap of weight 2^22, which
    /// reproduces the sample. Taps on the padding are summed into one background weight.
    /// </summary>
    private sealed class AxisFilter
    {
        private readonly int _inSize, _outSize, _imageStart, _imageSize;
        private readonly ResampleFilter _filter;
        private readonly bool _identity;
        private readonly double _scale, _support, _inverseScale;

        public AxisFilter(int inSize, int outSize, int imageStart, int imageSize, ResampleFilter filter)
        {
            (_inSize, _outSize, _imageStart, _imageSize, _filter) = (inSize, outSize, imageStart, imageSize, filter);
            _identity = inSize == outSize;
            _scale = (double)inSize / outSize;
            double filterScale = Math.Max(_scale, 1.0);
            _support = Support(filter) * filterScale;
            _inverseScale = 1.0 / filterScale;
            KernelSize = _identity ? 1 : (int)Math.Ceiling(_support) * 2 + 1;
        }

        /// <summary>PIL's ksize: the most taps one output index can have.</summary>
        public int KernelSize { get; }

        public int MaxImageTaps => Math.Min(KernelSize, _imageSize);

        private (int Min, int Count) Bounds(int i)
        {
            if (_identity)
                return (i, 1);
            double center = (i + 0.5) * _scale;
            int xmin = Math.Max((int)(center - _support + 0.5), 0);
            int xmax = Math.Min((int)(center + _support + 0.5), _inSize) - xmin;
            return (xmin, xmax);
        }

        /// <summary>How many of output index i's taps land on the image (not the padding).</summary>
        public int ImageTaps(int i)
        {
            var (min, count) = Bounds(i);
            return Math.Max(0, Math.Min(min + count, _imageStart + _imageSize) - Math.Max(min, _imageStart));
        }

        /// <summary>Output index i's taps; the image taps' weights go to <paramref name="weights"/>[0..ImageCount).</summary>
        public Taps Row(int i, Span<int> weights)
        {
            var (min, count) = Bounds(i);
            Span<int> all = count <= 1024 ? stackalloc int[count] : new int[count];
            if (_identity)
                all[0] = 1 << PrecisionBits;
            else
                Normalised(i, min, all);
            int first = Math.Max(min, _imageStart), end = Math.Min(min + count, _imageStart + _imageSize);
            int background = 0;
            for (int k = 0; k < count; k++)
            {
                int at = min + k;
                if (at >= first && at < end)
                    weights[at - first] = all[k];
                else
                    background += all[k];
            }
            return end > first ? new Taps(first - _imageStart, end - first, background) : new Taps(0, 0, background);
        }

        private void Normalised(int i, int min, Span<int> fixedPoint)
        {
            double center = (i + 0.5) * _scale;
            int count = fixedPoint.Length;
            Span<double> k = count <= 1024 ? stackalloc double[count] : new double[count];
            double total = 0.0;
            for (int x = 0; x < count; x++)
            {
                double w = Evaluate(_filter, (x + min - center + 0.5) * _inverseScale);
                k[x] = w;
                total += w;
            }
            for (int x = 0; x < count; x++)
            {
                double normalised = total != 0.0 ? k[x] / total : k[x];
                fixedPoint[x] = normalised < 0
                    ? (int)(-0.5 + normalised * (1 << PrecisionBits))
                    : (int)(0.5 + normalised * (1 << PrecisionBits));
            }
        }

        /// <summary>The taps of output indices [first, first + count), image taps only.</summary>
        public AxisTable Table(int first, int count)
        {
            var start = new int[count];
            var counts = new int[count];
            var offset = new int[count];
            var background = new int[count];
            long total = 0;
            for (int i = 0; i < count; i++)
                total += ImageTaps(first + i);
            var weights = new int[total];
            var scratch = new int[KernelSize];
            int at = 0;
            for (int i = 0; i < count; i++)
            {
                var taps = Row(first + i, scratch);
                start[i] = taps.ImageStart;
                counts[i] = taps.ImageCount;
                offset[i] = at;
                background[i] = taps.BackgroundWeight;
                scratch.AsSpan(0, taps.ImageCount).CopyTo(weights.AsSpan(at));
                at += taps.ImageCount;
            }
            return new AxisTable { Start = start, Count = counts, Offset = offset, BackgroundWeight = background, Weights = weights };
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
