namespace Graft.Models.Imaging;

/// <summary>
/// Upsampling and colour conversion after the IDCT, as libjpeg-turbo does them by default: "fancy" triangle
/// filtering for 2x horizontal (h2v1), 2x both (h2v2) and 2x vertical (h1v2), pixel replication otherwise;
/// YCbCr->RGB with its 16-bit fixed-point tables; CMYK (Adobe files stored inverted) -> RGB as PIL's convert does.
/// </summary>
internal static class JpegColour
{
    public enum Space { Gray, YCbCr, Rgb, Cmyk, Ycck }

    /// <summary>A component's samples: Width x Height valid ones in a plane of the given stride, sampled H x V.</summary>
    public readonly record struct Plane(byte[] Samples, int Stride, int Width, int Height, int H, int V);

    private const int ScaleBits = 16, Half = 1 << (ScaleBits - 1);
    private static readonly int[] CrToR = new int[256], CbToB = new int[256], CrToG = new int[256], CbToG = new int[256];

    static JpegColour()
    {
        for (int i = 0; i < 256; i++)
        {
            int x = i - 128;
            CrToR[i] = (Fix(1.40200) * x + Half) >> ScaleBits;
            CbToB[i] = (Fix(1.77200) * x + Half) >> ScaleBits;
            CrToG[i] = -Fix(0.71414) * x;
            CbToG[i] = -Fix(0.34414) * x + Half;
        }
    }

    private static int Fix(double x) => (int)(x * (1 << ScaleBits) + 0.5);

    /// <summary>
    /// Upsamples and converts one output row at a time (no full-resolution component copies) and writes each row where
    /// the EXIF orientation puts it, so the only full-size buffer is the result.
    /// </summary>
    public static RgbImage ToRgb(int width, int height, int maxH, int maxV, Plane[] planes, Space space, bool adobeInverted, int orientation, CancellationToken cancellationToken)
    {
        bool swap = orientation >= 5;
        int outWidth = swap ? height : width, outHeight = swap ? width : height;
        var rgb = new byte[checked(width * height * 3)];
        var rows = new byte[planes.Length][];
        for (int i = 0; i < planes.Length; i++)
            rows[i] = new byte[width];
        var line = orientation == 1 ? [] : new byte[width * 3];
        for (int y = 0; y < height; y++)
        {
            if ((y & 63) == 0)
                cancellationToken.ThrowIfCancellationRequested();
            for (int i = 0; i < planes.Length; i++)
                UpsampleRow(planes[i], y, maxH / planes[i].H, maxV / planes[i].V, rows[i]);
            var target = orientation == 1 ? rgb.AsSpan(y * width * 3, width * 3) : line.AsSpan();
            ConvertRow(rows, space, adobeInverted, target);
            if (orientation != 1)
                Place(line, y, width, height, orientation, rgb, outWidth);
        }
        return new RgbImage(outWidth, outHeight, rgb);
    }

    /// <summary>Writes stored row y to its place in the upright image (PIL's exif_transpose mapping).</summary>
    private static void Place(ReadOnlySpan<byte> line, int y, int w, int h, int orientation, byte[] rgb, int outWidth)
    {
        for (int x = 0; x < w; x++)
        {
            // Upright (ox, oy) of stored (x, y); the inverse of ExifOrientation.Apply's mapping.
            var (ox, oy) = orientation switch
            {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (h - 1 - y, x),
                7 => (h - 1 - y, w - 1 - x),
                _ => (y, w - 1 - x),
            };
            int d = (oy * outWidth + ox) * 3;
            rgb[d] = line[x * 3];
            rgb[d + 1] = line[x * 3 + 1];
            rgb[d + 2] = line[x * 3 + 2];
        }
    }

    private static void ConvertRow(byte[][] rows, Space space, bool adobeInverted, Span<byte> rgb)
    {
        int n = rgb.Length / 3;
        switch (space)
        {
            case Space.Gray:
            {
                var g = rows[0];
                for (int p = 0; p < n; p++)
                    rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = g[p];
                break;
            }
            case Space.Rgb:
                for (int p = 0; p < n; p++)
                {
                    rgb[3 * p] = rows[0][p];
                    rgb[3 * p + 1] = rows[1][p];
                    rgb[3 * p + 2] = rows[2][p];
                }
                break;
            case Space.YCbCr:
            {
                var y = rows[0];
                var cb = rows[1];
                var cr = rows[2];
                for (int p = 0; p < n; p++)
                    YccToRgb(y[p], cb[p], cr[p], rgb.Slice(3 * p, 3));
                break;
            }
            default:
            {
                Span<byte> cmy = stackalloc byte[3];
                for (int p = 0; p < n; p++)
                {
                    int c, m, y;
                    if (space == Space.Ycck)
                    {
                        // libjpeg's ycck_cmyk_convert: CMY = 255 - RGB(YCC), K passes through.
                        YccToRgb(rows[0][p], rows[1][p], rows[2][p], cmy);
                        (c, m, y) = (255 - cmy[0], 255 - cmy[1], 255 - cmy[2]);
                    }
                    else
                        (c, m, y) = (rows[0][p], rows[1][p], rows[2][p]);
                    int k = rows[3][p];
                    if (adobeInverted)
                        (c, m, y, k) = (255 - c, 255 - m, 255 - y, 255 - k);
                    // PIL's cmyk2rgb: nk - c * nk / 255, rounded via its MULDIV255.
                    int nk = 255 - k;
                    rgb[3 * p] = (byte)(nk - MulDiv255(c, nk));
                    rgb[3 * p + 1] = (byte)(nk - MulDiv255(m, nk));
                    rgb[3 * p + 2] = (byte)(nk - MulDiv255(y, nk));
                }
                break;
            }
        }
    }

    private static int MulDiv255(int a, int b)
    {
        int t = a * b + 128;
        return ((t >> 8) + t) >> 8;
    }

    private static void YccToRgb(int y, int cb, int cr, Span<byte> rgb)
    {
        rgb[0] = (byte)Math.Clamp(y + CrToR[cr], 0, 255);
        rgb[1] = (byte)Math.Clamp(y + ((CbToG[cb] + CrToG[cr]) >> ScaleBits), 0, 255);
        rgb[2] = (byte)Math.Clamp(y + CbToB[cb], 0, 255);
    }

    /// <summary>
    /// Row y of a plane scaled up by (fx, fy). libjpeg's edge handling equals clamping neighbour indices to the valid
    /// samples (Width x Height), which is what the fancy filters below do.
    /// </summary>
    private static void UpsampleRow(Plane plane, int y, int fx, int fy, Span<byte> row)
    {
        var s = plane.Samples;
        int width = row.Length;
        int lastX = plane.Width - 1, lastY = plane.Height - 1;
        bool fancyH = fx == 2 && plane.Width > 2; // libjpeg falls back to replication for 1-2 sample rows
        int sy = y / fy;
        int nearY = fy == 2 ? Math.Clamp(y % 2 == 0 ? sy - 1 : sy + 1, 0, lastY) : sy;
        var cur = s.AsSpan(sy * plane.Stride, plane.Stride);
        var near = s.AsSpan(nearY * plane.Stride, plane.Stride);
        if (fx == 1 && fy == 1)
            cur[..width].CopyTo(row);
        else if (fancyH && fy == 1)
            for (int x = 0; x < width; x++)
            {
                int sx = x >> 1, nx = Math.Clamp((x & 1) == 0 ? sx - 1 : sx + 1, 0, lastX);
                row[x] = (byte)((3 * cur[sx] + cur[nx] + ((x & 1) == 0 ? 1 : 2)) >> 2);
            }
        else if (fancyH && fy == 2)
            for (int x = 0; x < width; x++)
            {
                int sx = x >> 1, nx = Math.Clamp((x & 1) == 0 ? sx - 1 : sx + 1, 0, lastX);
                int here = 3 * cur[sx] + near[sx], there = 3 * cur[nx] + near[nx];
                row[x] = (byte)((3 * here + there + ((x & 1) == 0 ? 8 : 7)) >> 4);
            }
        else if (fx == 1 && fy == 2)
            for (int x = 0; x < width; x++)
                row[x] = (byte)((3 * cur[x] + near[x] + (y % 2 == 0 ? 1 : 2)) >> 2);
        else
            for (int x = 0; x < width; x++)
                row[x] = cur[x / fx];
    }
}
