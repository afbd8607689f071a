using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Models.Vision;

/// <summary>
/// Mono-InternVL's visual front end (InternVisionPatchModel's embeddings + InternVL's <c>mlp1</c>), with no encoder:
/// Conv2d(C, W, k = p, stride = p) with bias; learned absolute positions stored for a base grid g0 × g0 and
/// resized bicubically (torch, a = -0.75) to the tile's grid when it differs; pixel shuffle 0.5
/// ([h, w, W] -> [h/2, w/2, 4W]); then mlp1 = LayerNorm(4W) -> Linear(4W, d) -> GELU -> Linear(d, d).
/// The original also prepends a class token and drops it before pixel shuffle; nothing reads it, so it is
/// neither loaded nor computed (the outputs and gradients are the same).
/// </summary>
public sealed class PatchEmbeddingFrontEnd : IDisposable
{
    private const float Mlp1NormEps = 1e-5f; // nn.LayerNorm's default, as InternVL builds mlp1
    private readonly ISafeTensorsReader? _reader;
    private readonly Dictionary<(int, int), Tensor> _resizeMatrices = [];

    public PatchEmbeddingFrontEnd(int patchSize, int baseGrid, LinearWeights patchEmbedding, Tensor positionEmbedding,
        LayerNormWeights mlpNorm, LinearWeights mlpIn, LinearWeights mlpOut, IReadOnlyList<Tensor> parameters, ISafeTensorsReader? reader = null)
    {
        int width = patchEmbedding.Weight.Shape[0];
        if (positionEmbedding.Rank != 2 || positionEmbedding.Shape[0] != 1 + baseGrid * baseGrid || positionEmbedding.Shape[1] != width)
            throw new ArgumentException($"position embedding {positionEmbedding.ShapeString} must be [1 + {baseGrid}², {width}]");
        PatchSize = patchSize;
        BaseGrid = baseGrid;
        PatchEmbedding = patchEmbedding;
        PositionEmbedding = positionEmbedding;
        MlpNorm = mlpNorm;
        MlpIn = mlpIn;
        MlpOut = mlpOut;
        Parameters = parameters;
        _reader = reader;
    }

    public int PatchSize { get; }

    /// <summary>g0: the position table covers a g0 × g0 grid (vision_config.image_size / patch_size).</summary>
    public int BaseGrid { get; }

    /// <summary>Conv weight [W, C, p, p] and bias [W].</summary>
    public LinearWeights PatchEmbedding { get; }

    /// <summary>[1 + g0², W]; row 0 is the (unused) class token's.</summary>
    public Tensor PositionEmbedding { get; }

    public LayerNormWeights MlpNorm { get; }
    public LinearWeights MlpIn { get; }
    public LinearWeights MlpOut { get; }
    public IReadOnlyList<Tensor> Parameters { get; }
    public int Width => PatchEmbedding.Weight.Shape[0];
    public int OutputWidth => MlpOut.Weight.Shape[0];

    /// <summary>
    /// Loads the front end from an InternVL-chat folder: config.json (<c>vision_config.{image_size, patch_size,
    /// hidden_size}</c>, <c>downsample_ratio</c> 0.5, <c>llm_config.hidden_size</c>) and the tensors
    /// <c>vision_model.embeddings.{patch_embedding.weight, patch_embedding.bias, position_embedding}</c> and
    /// <c>mlp1.{0,1,3}.{weight,bias}</c>. With <paramref name="trainable"/> all of them are float32 parameters.
    /// </summary>
    public static PatchEmbeddingFrontEnd Load(string folder, bool trainable = false)
    {
        string path = Path.Combine(folder, VisionTowerConfig.FileName);
        int imageSize, patch, width, llmWidth;
        using (var document = VisionTowerConfig.ParseFile(path))
        {
            var root = document.RootElement;
            var vision = Object(path, root, "vision_config");
            var llm = Object(path, root, "llm_config");
            imageSize = VisionTowerConfig.PositiveInt(path, vision, "vision_config.", "image_size", null);
            patch = VisionTowerConfig.PositiveInt(path, vision, "vision_config.", "patch_size", null);
            width = VisionTowerConfig.PositiveInt(path, vision, "vision_config.", "hidden_size", null);
            llmWidth = VisionTowerConfig.PositiveInt(path, llm, "llm_config.", "hidden_size", null);
            float ratio = VisionTowerConfig.PositiveFloat(path, root, "", "downsample_ratio", 0.5f);
            if (ratio != 0.5f) throw new VisionModelException(path, "downsample_ratio", $"only 0.5 (pixel shuffle by 2) is supported, got {ratio}");
            if (imageSize % patch != 0) throw new VisionModelException(path, "vision_config.image_size", $"{imageSize} is not a multiple of patch_size {patch}");
        }
        int grid = imageSize / patch;
        var reader = SafeTensorsCheckpoint.Open(folder);
        try
        {
            var weights = new VisionWeights(reader, trainable);
            const string e = "vision_model.embeddings.";
            var conv = new LinearWeights(weights.Matrix(e + "patch_embedding.weight", width, 3, patch, patch), weights.Vector(e + "patch_embedding.bias", width));
            var positions = weights.Vector(e + "position_embedding", [1, 1 + grid * grid, width], [1 + grid * grid, width]);
            var norm = new LayerNormWeights(weights.Vector("mlp1.0.weight", 4 * width), weights.Vector("mlp1.0.bias", 4 * width), Mlp1NormEps);
            var mlpIn = new LinearWeights(weights.Matrix("mlp1.1.weight", llmWidth, 4 * width), weights.Vector("mlp1.1.bias", llmWidth));
            var mlpOut = new LinearWeights(weights.Matrix("mlp1.3.weight", llmWidth, llmWidth), weights.Vector("mlp1.3.bias", llmWidth));
            var model = new PatchEmbeddingFrontEnd(patch, grid, conv, positions, norm, mlpIn, mlpOut, weights.Loaded.ToArray(), trainable ? null : reader);
            if (trainable) reader.Dispose();
            return model;
        }
        catch
        {
            reader.Dispose();
            throw;
        }
    }

    /// <summary>The position table for an h × w grid [h·w, W] (the base grid's rows, bicubically resized when h × w differs).</summary>
    public Tensor PositionsFor(int gridHeight, int gridWidth)
    {
        var table = Ops.Slice(PositionEmbedding, 0, 1, BaseGrid * BaseGrid);
        if (gridHeight == BaseGrid && gridWidth == BaseGrid) return table;
        if (!_resizeMatrices.TryGetValue((gridHeight, gridWidth), out var matrix))
            _resizeMatrices[(gridHeight, gridWidth)] = matrix = BicubicResize.Matrix2D(BaseGrid, BaseGrid, gridHeight, gridWidth);
        return Ops.MatMul(matrix, table);
    }

    /// <summary>pixels [B, C, H, W] (tiles, H and W multiples of 2p) -> visual tokens [B, (H/2p)·(W/2p), d].</summary>
    public Tensor Forward(Tensor pixels)
    {
        if (pixels.Rank != 4 || pixels.Shape[2] % (2 * PatchSize) != 0 || pixels.Shape[3] % (2 * PatchSize) != 0)
            throw new ArgumentException($"patch-embedding front end: pixels must be [B, C, H, W] with H and W multiples of 2·patch = {2 * PatchSize}, got {pixels.ShapeString}");
        int batch = pixels.Shape[0], h = pixels.Shape[2] / PatchSize, w = pixels.Shape[3] / PatchSize;
        var patches = Ops.Patchify(pixels, PatchEmbedding.Weight, PatchEmbedding.Bias, PatchSize);  // [B, h·w, W]
        var x = Ops.Add(patches, PositionsFor(h, w)).Reshape(batch, h, w, Width);
        var shuffled = Ops.PixelShuffle(x, 2).Reshape(batch, h / 2 * (w / 2), 4 * Width);     // [B, T, 4W]
        return MlpOut.Apply(Ops.Gelu(MlpIn.Apply(MlpNorm.Apply(shuffled))));
    }

    public void Dispose() => _reader?.Dispose();

    private static System.Text.Json.JsonElement Object(string path, System.Text.Json.JsonElement root, string key)
    {
        if (!root.TryGetProperty(key, out var value) || value.ValueKind != System.Text.Json.JsonValueKind.Object)
            throw new VisionModelException(path, key, "missing or not an object");
        return value;
    }
}
