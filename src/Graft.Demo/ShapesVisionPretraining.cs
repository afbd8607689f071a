using Graft.Data;
using Graft.Models;
using Graft.Models.Imaging;
using Graft.Models.Vision;
using Graft.Tensors;
using Graft.Training;

namespace Graft.Demo;

/// <summary>Held-out accuracies of the temporary head, in [0, 1], each over what its question needs.</summary>
/// <param name="Shape">Shapes whose kind is named right from the patches they cover ("What shape is at the top left?").</param>
/// <param name="Colour">Shapes whose colour is named right from the patches they cover ("What colour is the circle?").</param>
/// <param name="Occupancy">Grid cells correctly seen as empty or holding a shape ("Where is the red square?").</param>
/// <param name="Count">(scene, shape kind) pairs whose count is right ("How many circles are there?").</param>
public sealed record ShapesHeadAccuracy(double Shape, double Colour, double Occupancy, double Count, int Scenes);

/// <summary>The trained tower's run: the loop's record and the head's held-out accuracies.</summary>
public sealed record ShapesVisionResult(PretrainingResult Training, ShapesHeadAccuracy Accuracy);

/// <summary>
/// Trains a CLIP vision tower from scratch on shapes-world scenes so that its patch features carry what the
/// demo's questions ask. A temporary head, discarded afterwards, reads the hidden states plug-ins read: for every
/// patch token of layers -2 (LLaVA's choice) and -1 (each through the head's own LayerNorm and one linear map)
/// the kind and colour of the shape covering most of the patch (at least an eighth of it; otherwise "empty"), so
/// each patch says what lies there and its position says where; and from the pooled class token the number of
/// shapes of each kind. Loss: the mean of the three cross-entropies.
/// </summary>
public static class ShapesVisionPretraining
{
    private const int Cells = 9;
    private static readonly int Kinds = Enum.GetValues<ShapeKind>().Length;
    private static readonly int Colours = ShapesWorld.Colours.Count;

    /// <summary>
    /// Trains <paramref name="tower"/> in place (its parameters must be trainable) on <paramref name="batchSize"/> scenes a
    /// step drawn from <see cref="SeededRandom"/>(seed), then measures the head on <paramref name="evaluationScenes"/> scenes
    /// from another stream. Items in the result and progress are images.
    /// </summary>
    public static ShapesVisionResult Run(ClipVisionModel tower, ImageProcessorConfig preprocessing, ShapesWorldOptions world, ulong seed,
        PretrainingSchedule schedule, int batchSize, int evaluationScenes = 500, IProgress<PretrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tower);
        ArgumentNullException.ThrowIfNull(preprocessing);
        ArgumentNullException.ThrowIfNull(world);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(evaluationScenes);
        var config = tower.Config;
        if (preprocessing.OutputSize(world.Size, world.Size) != (config.ImageSize, config.ImageSize))
            throw new ArgumentException($"{world.Size}-pixel scenes preprocessed do not come out at the tower's {config.ImageSize} pixels", nameof(preprocessing));
        if (world.Size % config.GridSize != 0)
            throw new ArgumentException($"{world.Size}-pixel scenes do not split into the tower's {config.GridSize}x{config.GridSize} patches evenly", nameof(world));
        if (config.Layers < 2) throw new ArgumentException("the head reads layers -2 and -1, so the tower needs at least two layers", nameof(tower));
        var frozen = tower.Parameters.FirstOrDefault(t => !t.RequiresGrad);
        if (frozen is not null) throw new ArgumentException($"'{frozen.Name}' is frozen; create the tower with ClipVisionModel.CreateRandom or load it trainable", nameof(tower));

        var head = new Head(config, world.MaxShapes, new Random(unchecked((int)seed)));
        var named = tower.Parameters.Select(p => (p.Name ?? "tower", p)).Concat(head.Parameters).ToList();
        var random = new SeededRandom(seed);
        var training = PretrainingLoop.Run("vision", named, schedule, _ =>
        {
            var scenes = Enumerable.Range(0, batchSize).Select(_ => ShapesWorld.NewScene(random, world)).ToList();
            return (head.Loss(tower, Pixels(scenes, preprocessing), scenes), batchSize);
        }, progress, cancellationToken);

        var heldOut = new SeededRandom(seed ^ 0x0E7A1_5CE7E5UL);
        var test = Enumerable.Range(0, evaluationScenes).Select(_ => ShapesWorld.NewScene(heldOut, world)).ToList();
        return new ShapesVisionResult(training, head.Evaluate(tower, preprocessing, test));
    }

    private static Tensor Pixels(IReadOnlyList<ShapesScene> scenes, ImageProcessorConfig preprocessing) =>
        ImagePreprocessor.ToBatch(scenes.Select(ShapesWorld.Render).ToList(), preprocessing);

    /// <summary>
    /// For each patch of a grid × grid tiling, the index in <paramref name="scene"/>'s shapes of the shape covering most of its
    /// pixel centres (a later shape hides an earlier one), or -1 when none covers an eighth of the patch.
    /// </summary>
    private static int[] PatchShapes(ShapesScene scene, int grid)
    {
        var owners = new int[grid * grid];
        int patch = scene.Size / grid;
        var covered = new int[scene.Shapes.Count];
        for (int row = 0; row < grid; row++)
            for (int column = 0; column < grid; column++)
            {
                Array.Clear(covered);
                for (int y = row * patch; y < (row + 1) * patch; y++)
                    for (int x = column * patch; x < (column + 1) * patch; x++)
                        for (int k = scene.Shapes.Count - 1; k >= 0; k--)
                            if (ShapesWorld.Covers(scene.Shapes[k], x + 0.5, y + 0.5))
                            {
                                covered[k]++;
                                break;
                            }
                int best = -1;
                for (int k = 0; k < covered.Length; k++)
                    if (covered[k] * 8 >= patch * patch && (best < 0 || covered[k] > covered[best])) best = k;
                owners[row * grid + column] = best;
            }
        return owners;
    }

    /// <summary>The 3x3 cell (row-major) holding each patch's centre.</summary>
    private static int[] PatchCells(int grid)
    {
        var cells = new int[grid * grid];
        for (int row = 0; row < grid; row++)
            for (int column = 0; column < grid; column++)
                cells[row * grid + column] = (row * 3 / grid) * 3 + column * 3 / grid;
        return cells;
    }

    /// <summary>The temporary head: per patch, kind (0 empty, 1 + kind) and colour (0 none, 1 + colour); per kind, its count.</summary>
    private sealed class Head
    {
        private readonly LayerNormWeights _norm;
        private readonly Tensor _cellWeight, _cellBias, _countWeight, _countBias;
        private readonly int[] _patchCells;
        private readonly int _patches, _maxShapes, _grid;

        public Head(VisionTowerConfig config, int maxShapes, Random random)
        {
            int w = config.Width, outputs = 1 + Kinds + 1 + Colours;
            _patches = config.Patches;
            _maxShapes = maxShapes;
            _grid = config.GridSize;
            _patchCells = PatchCells(_grid);
            _norm = new LayerNormWeights(ParameterInit.Constant(1f, "head.norm.weight", w), ParameterInit.Constant(0f, "head.norm.bias", w), config.LayerNormEps);
            _cellWeight = ParameterInit.Normal(random, 0.02, "head.cell.weight", outputs, w);
            _cellBias = ParameterInit.Constant(0f, "head.cell.bias", outputs);
            _countWeight = ParameterInit.Normal(random, 0.02, "head.count.weight", Kinds * (maxShapes + 1), w);
            _countBias = ParameterInit.Constant(0f, "head.count.bias", Kinds * (maxShapes + 1));
        }

        public IEnumerable<(string, Tensor)> Parameters =>
            new[] { _norm.Weight, _norm.Bias, _cellWeight, _cellBias, _countWeight, _countBias }.Select(t => (t.Name!, t));

        /// <summary>Patch tokens of one hidden state [B, 1 + P, W] -> cell logits [B·P, 1 + K + 1 + C].</summary>
        private Tensor CellLogits(Tensor state)
        {
            int batch = state.Shape[0];
            var patches = Ops.Slice(state, 1, 1, _patches);
            return Ops.Linear(_norm.Apply(patches), _cellWeight, _cellBias).Reshape(batch * _patches, -1);
        }

        public Tensor Loss(ClipVisionModel tower, Tensor pixels, IReadOnlyList<ShapesScene> scenes)
        {
            var output = tower.Forward(pixels);
            int batch = scenes.Count;
            var kindTargets = new int[batch * _patches];
            var colourTargets = new int[batch * _patches];
            var countTargets = new int[batch * Kinds];
            for (int b = 0; b < batch; b++)
            {
                var shapes = scenes[b].Shapes;
                foreach (var shape in shapes) countTargets[b * Kinds + (int)shape.Kind]++;
                var owners = PatchShapes(scenes[b], _grid);
                for (int p = 0; p < _patches; p++)
                {
                    var shape = owners[p] < 0 ? null : shapes[owners[p]];
                    kindTargets[b * _patches + p] = shape is null ? 0 : 1 + (int)shape.Kind;
                    colourTargets[b * _patches + p] = shape is null ? 0 : 1 + ColourIndex(shape.Colour);
                }
            }
            // Kind and colour are each averaged over the two layers, so the three questions weigh the same.
            var states = output.HiddenStates;
            var cellLosses = new List<Tensor>();
            foreach (var state in new[] { states[^2], states[^1] })
            {
                var logits = CellLogits(state);
                cellLosses.Add(Ops.CrossEntropy(Ops.Slice(logits, 1, 0, 1 + Kinds), kindTargets));
                cellLosses.Add(Ops.CrossEntropy(Ops.Slice(logits, 1, 1 + Kinds, 1 + Colours), colourTargets));
            }
            var counts = Ops.Linear(output.Pooled!, _countWeight, _countBias).Reshape(batch * Kinds, _maxShapes + 1);
            var total = Ops.Add(Ops.Scale(cellLosses.Aggregate(Ops.Add), 0.5f), Ops.CrossEntropy(counts, countTargets));
            return Ops.Scale(total, 1f / 3);
        }

        /// <summary>
        /// From layer -2: each shape's kind and colour from the logits summed over the patches it covers; each cell occupied
        /// when one of its patches predicts a shape. Counts from the pooled token.
        /// </summary>
        public ShapesHeadAccuracy Evaluate(ClipVisionModel tower, ImageProcessorConfig preprocessing, IReadOnlyList<ShapesScene> scenes)
        {
            int shapeRight = 0, shapes = 0, colourRight = 0, occupancyRight = 0, countRight = 0;
            int width = 1 + Kinds + 1 + Colours;
            using var noGrad = Autograd.NoGrad();
            foreach (var chunk in scenes.Chunk(32))
            {
                var output = tower.Forward(Pixels(chunk, preprocessing));
                var logits = CellLogits(output.HiddenStates[^2]).ToArray();
                var counts = Ops.Linear(output.Pooled!, _countWeight, _countBias).ToArray();
                for (int b = 0; b < chunk.Length; b++)
                {
                    var scene = chunk[b];
                    var owners = PatchShapes(scene, _grid);
                    var sums = new double[scene.Shapes.Count, width];
                    var occupied = new bool[Cells];
                    for (int p = 0; p < _patches; p++)
                    {
                        var row = logits.AsSpan((b * _patches + p) * width, width);
                        if (System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row[..(1 + Kinds)]) != 0) occupied[_patchCells[p]] = true;
                        if (owners[p] < 0) continue;
                        for (int j = 0; j < width; j++) sums[owners[p], j] += row[j];
                    }
                    for (int k = 0; k < scene.Shapes.Count; k++)
                    {
                        if (!owners.Contains(k)) continue;
                        shapes++;
                        if (ArgMax(sums, k, 1, Kinds) == (int)scene.Shapes[k].Kind) shapeRight++;
                        if (ArgMax(sums, k, 2 + Kinds, Colours) == ColourIndex(scene.Shapes[k].Colour)) colourRight++;
                    }
                    for (int cell = 0; cell < Cells; cell++)
                        if (occupied[cell] == scene.Shapes.Any(s => s.Cell == cell)) occupancyRight++;
                    for (int k = 0; k < Kinds; k++)
                    {
                        var row = counts.AsSpan((b * Kinds + k) * (_maxShapes + 1), _maxShapes + 1);
                        if (System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row) == scene.Shapes.Count(s => (int)s.Kind == k)) countRight++;
                    }
                }
            }
            return new ShapesHeadAccuracy((double)shapeRight / shapes, (double)colourRight / shapes,
                (double)occupancyRight / (scenes.Count * Cells), (double)countRight / (scenes.Count * Kinds), scenes.Count);
        }

        /// <summary>The index, counted from <paramref name="start"/>, of the largest of <paramref name="length"/> sums of a row.</summary>
        private static int ArgMax(double[,] sums, int row, int start, int length)
        {
            int best = start;
            for (int j = start + 1; j < start + length; j++)
                if (sums[row, j] > sums[row, best]) best = j;
            return best - start;
        }

        private static int ColourIndex(ShapeColour colour)
        {
            for (int i = 0; i < Colours; i++)
                if (ShapesWorld.Colours[i].Name == colour.Name) return i;
            throw new ArgumentException($"'{colour.Name}' is not a shapes-world colour");
        }
    }
}
