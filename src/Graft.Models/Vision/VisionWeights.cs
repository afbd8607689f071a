using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Models.Vision;

/// <summary>
/// Loads named tensors from a checkpoint with their expected shapes. Frozen matrices stay in their stored
/// type (a bf16 checkpoint runs on bf16 weights, read in place from the mapping); vectors (biases, norms,
/// embeddings) are widened to small float32 copies because the ops that add them read float32. With
/// <c>trainable</c>, every tensor becomes a writable float32 parameter.
/// </summary>
internal sealed class VisionWeights(ISafeTensorsReader reader, bool trainable)
{
    private readonly List<Tensor> _loaded = [];

    public ISafeTensorsReader Reader { get; } = reader;

    /// <summary>Every tensor loaded so far, in load order.</summary>
    public IReadOnlyList<Tensor> Loaded => _loaded;

    public bool Has(string name) => Reader.Contains(name);

    /// <summary>A weight matrix (or conv kernel) in its stored type, or a float32 parameter when trainable.</summary>
    public Tensor Matrix(string name, params int[] shape)
    {
        var stored = Checked(name, shape);
        var tensor = trainable ? Parameter(stored) : stored;
        _loaded.Add(tensor);
        return tensor;
    }

    /// <summary>A float32 copy of any tensor, reshaped to <paramref name="viewShape"/> when given (same element count).</summary>
    public Tensor Vector(string name, int[] shape, int[]? viewShape = null)
    {
        var stored = Checked(name, shape);
        var tensor = Tensor.FromArray(stored.ToArray(), viewShape ?? shape);
        tensor.Name = name;
        if (trainable) tensor.RequiresGrad = true;
        _loaded.Add(tensor);
        return tensor;
    }

    public Tensor Vector(string name, params int[] shape) => Vector(name, shape, null);

    /// <summary>
    /// A tensor packed along its first axis (torch's in_proj_weight [3W, ..]) as <paramref name="parts"/> float32
    /// copies of equal size, each its own parameter.
    /// </summary>
    public Tensor[] Split(string name, int[] shape, int parts)
    {
        var values = Checked(name, shape).ToArray();
        int rows = shape[0] / parts, partLength = values.Length / parts;
        var partShape = (int[])shape.Clone();
        partShape[0] = rows;
        var result = new Tensor[parts];
        for (int i = 0; i < parts; i++)
        {
            var part = Tensor.FromArray(values.AsSpan(i * partLength, partLength).ToArray(), partShape);
            part.Name = $"{name}[{i * rows}:{(i + 1) * rows}]";
            if (trainable) part.RequiresGrad = true;
            _loaded.Add(part);
            result[i] = part;
        }
        return result;
    }

    private static Tensor Parameter(Tensor stored)
    {
        var copy = Tensor.FromArray(stored.ToArray(), stored.Shape);
        copy.Name = stored.Name;
        copy.RequiresGrad = true;
        return copy;
    }

    private Tensor Checked(string name, int[] shape)
    {
        if (!Reader.Contains(name)) throw new VisionModelException(Reader.Path, name, $"tensor missing (expected shape [{string.Join(", ", shape)}])");
        var info = Reader.Info(name);
        if (info.DType is not (DType.F32 or DType.F16 or DType.BF16))
            throw new VisionModelException(Reader.Path, name, $"stored as {info.DType.SafeTensorsName()}, expected a float type (F32, F16, BF16)");
        if (!info.Shape.AsSpan().SequenceEqual(shape))
            throw new VisionModelException(Reader.Path, name, $"shape [{string.Join(", ", info.Shape)}] does not match the config, which implies [{string.Join(", ", shape)}]");
        return Reader.Load(name);
    }
}
