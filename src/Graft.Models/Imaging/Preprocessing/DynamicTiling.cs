using Graft.Tensors;

namespace Graft.Models.Imaging;

/// <summary>A tiling grid: the image is resized to (Columns · size) x (Rows · size) and cut into Columns x Rows tiles.</summary>
public readonly record struct TileGrid(int Columns, int Rows)
{
    public int Count => Columns * Rows;
}

/// <summary>InternVL's dynamic_preprocess options; the defaults are those of InternVL's load_image (max 12 tiles of 448, thumbnail on).</summary>
public sealed record TilingOptions
{
    public int MinTiles { get; init; } = 1;
    public int MaxTiles { get; init; } = 12;
    public int ImageSize { get; init; } = 448;
    public bool UseThumbnail { get; init; } = true;

    internal void Validate()
    {
        if (MinTiles <= 0 || MaxTiles < MinTiles)
            throw new ArgumentException($"tile counts must satisfy 1 <= MinTiles <= MaxTiles, got {MinTiles} and {MaxTiles}");
        if (ImageSize <= 0)
            throw new ArgumentException($"tile size must be positive, got {ImageSize}");
    }
}

/// <summary>The tiles in row-major order (then the thumbnail, if any) and their normalised pixels [N, 3, S, S].</summary>
public sealed record TiledImage(TileGrid Grid, IReadOnlyList<RgbImage> Tiles, bool HasThumbnail, Tensor Pixels);

/// <summary>InternVL's dynamic high-resolution tiling (dynamic_preprocess + build_transform), reproduced step for step.</summary>
public static class DynamicTiling
{
    /// <summary>The grids with MinTiles &lt;= i·j &lt;= MaxTiles, by tile count; within a count, columns ascending.</summary>
    /// <remarks>
    /// InternVL sorts a Python set, so equal-count grids come in hash order; which one comes first can only decide a tie
    /// between two grids of the same count, and such a tie is never the closest ratio (a smaller grid lies between them).
    /// </remarks>
    public static IReadOnlyList<TileGrid> CandidateGrids(int minTiles, int maxTiles)
    {
        if (minTiles <= 0 || maxTiles < minTiles)
            throw new ArgumentException($"tile counts must satisfy 1 <= min <= max, got {minTiles} and {maxTiles}");
        var grids = new List<TileGrid>();
        for (int count = minTiles; count <= maxTiles; count++)
            for (int columns = 1; columns <= count; columns++)
                if (count % columns == 0)
                    grids.Add(new TileGrid(columns, count / columns));
        return grids;
    }

    /// <summary>
    /// find_closest_aspect_ratio: the grid whose columns/rows is nearest width/height; on an exact tie the later
    /// (larger) grid wins only when the image area exceeds half the area of that grid at full resolution.
    /// </summary>
    public static TileGrid ChooseGrid(int width, int height, TilingOptions options)
    {
        options.Validate();
        if (width <= 0 || height <= 0)
            throw new ArgumentException($"image size must be positive, got {width}x{height}");
        double aspect = (double)width / height;
        double area = (double)width * height;
        double bestDifference = double.PositiveInfinity;
        var best = new TileGrid(1, 1);
        foreach (var grid in CandidateGrids(options.MinTiles, options.MaxTiles))
        {
            double difference = Math.Abs(aspect - (double)grid.Columns / grid.Rows);
            if (difference < bestDifference)
            {
                bestDifference = difference;
                best = grid;
            }
            else if (difference == bestDifference && area > 0.5 * options.ImageSize * options.ImageSize * grid.Columns * grid.Rows)
            {
                best = grid;
            }
        }
        return best;
    }

    /// <summary>dynamic_preprocess: bicubic resize to the grid, tiles cut row-major, then a bicubic thumbnail when there is more than one tile.</summary>
    public static (TileGrid Grid, IReadOnlyList<RgbImage> Tiles, bool HasThumbnail) Split(RgbImage image, TilingOptions options)
    {
        ArgumentNullException.ThrowIfNull(image);
        var grid = ChooseGrid(image.Width, image.Height, options);
        int size = options.ImageSize;
        var resized = ImageResizer.Resize(image, size * grid.Columns, size * grid.Rows, ResampleFilter.Bicubic);
        var tiles = new List<RgbImage>(grid.Count + 1);
        for (int i = 0; i < grid.Count; i++)
            tiles.Add(ImageGeometry.Crop(resized, i % grid.Columns * size, i / grid.Columns * size, size, size));
        bool thumbnail = options.UseThumbnail && tiles.Count != 1;
        if (thumbnail)
            tiles.Add(ImageResizer.Resize(image, size, size, ResampleFilter.Bicubic));
        return (grid, tiles, thumbnail);
    }

    /// <summary>Split, then InternVL's build_transform on each tile, stacked as [N, 3, S, S].</summary>
    public static TiledImage Preprocess(RgbImage image, TilingOptions? options = null)
    {
        options ??= new TilingOptions();
        var (grid, tiles, thumbnail) = Split(image, options);
        return new TiledImage(grid, tiles, thumbnail, ImagePreprocessor.ToBatch(tiles, ImageProcessorConfig.InternVL(options.ImageSize)));
    }
}
