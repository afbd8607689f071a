using System.Globalization;
using Graft.Models.Imaging;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>
/// A parameter-free vision front end: the image cut into a <see cref="Grid"/> x <see cref="Grid"/> grid of cells (one
/// token each, row-major), each cell into <see cref="Cells"/> x <see cref="Cells"/> sub-cells whose mean R, G, B, scaled
/// to [-1, 1], make the token's features (d_v = 3 · Cells²). Deterministic and instant: it serves tests, smoke runs and
/// synthetic tasks (colours, layouts) without a vision checkpoint; real tasks use a CLIP or SigLIP tower.
/// </summary>
public sealed class PatchPixelsFrontEnd : IVisionFrontEnd
{
    public const string KindName = "patch-pixels";

    public PatchPixelsFrontEnd(int grid, int cells)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(grid);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cells);
        Grid = grid;
        Cells = cells;
    }

    public int Grid { get; }
    public int Cells { get; }
    public string Kind => KindName;
    public int FeatureWidth => 3 * Cells * Cells;
    public int TokensPerImage => Grid * Grid;

    public IReadOnlyDictionary<string, string> Summary => new Dictionary<string, string>
    {
        ["grid"] = Grid.ToString(CultureInfo.InvariantCulture),
        ["cells"] = Cells.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>No weights: the configuration is the whole identity.</summary>
    public string Fingerprint => $"{KindName}:grid={Grid}:cells={Cells}";

    /// <summary>Rebuilds the front end plugin.json describes.</summary>
    public static PatchPixelsFrontEnd FromDescription(VisionDescription description, string file)
    {
        int Field(string name) =>
            description.Summary.TryGetValue(name, out var text) && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value) && value > 0
                ? value
                : throw new PluginFormatException(file, "must be a positive integer", $"vision.summary.{name}");
        return new PatchPixelsFrontEnd(Field("grid"), Field("cells"));
    }

    /// <summary>[Grid², 3 · Cells²]: token (gy, gx) holds, for each sub-cell (sy, sx), its mean R, G, B in [-1, 1].</summary>
    public Tensor Encode(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        int n = Grid * Cells;
        var features = Tensor.Zeros(TokensPerImage, FeatureWidth);
        var output = features.Span;
        var pixels = image.Pixels;
        for (int y = 0; y < n; y++)
        {
            var (y0, y1) = Band(y, n, image.Height);
            for (int x = 0; x < n; x++)
            {
                var (x0, x1) = Band(x, n, image.Width);
                long r = 0, g = 0, b = 0;
                for (int py = y0; py < y1; py++)
                    for (int px = x0; px < x1; px++)
                    {
                        int at = (py * image.Width + px) * 3;
                        r += pixels[at];
                        g += pixels[at + 1];
                        b += pixels[at + 2];
                    }
                float scale = 1f / (127.5f * (y1 - y0) * (x1 - x0));
                int token = (y / Cells) * Grid + x / Cells;
                int feature = ((y % Cells) * Cells + x % Cells) * 3;
                var row = output.Slice(token * FeatureWidth + feature, 3);
                row[0] = r * scale - 1f;
                row[1] = g * scale - 1f;
                row[2] = b * scale - 1f;
            }
        }
        return features;
    }

    /// <summary>The pixel range [start, end) of band <paramref name="index"/> of <paramref name="count"/> over <paramref name="size"/> pixels; never empty.</summary>
    private static (int Start, int End) Band(int index, int count, int size)
    {
        int start = Math.Min((int)((long)index * size / count), size - 1);
        int end = Math.Max((int)((long)(index + 1) * size / count), start + 1);
        return (start, end);
    }
}
