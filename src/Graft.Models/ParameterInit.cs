using Graft.Tensors;

namespace Graft.Models;

/// <summary>
/// Fresh trainable float32 parameters for models built from scratch, drawn from one <see cref="Random"/> in the
/// order they are asked for, so a seed fixes every value.
/// </summary>
public static class ParameterInit
{
    /// <summary>A parameter of <paramref name="shape"/> with elements from N(0, std²) (Box-Muller).</summary>
    public static Tensor Normal(Random random, double std, string name, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(random);
        if (!(std >= 0) || double.IsInfinity(std)) throw new ArgumentOutOfRangeException(nameof(std), std, "standard deviation must be finite and >= 0");
        var values = new float[Tensor.ShapeLength(shape)];
        for (int i = 0; i < values.Length; i += 2)
        {
            double radius = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble()));
            double angle = 2 * Math.PI * random.NextDouble();
            values[i] = (float)(std * radius * Math.Cos(angle));
            if (i + 1 < values.Length) values[i + 1] = (float)(std * radius * Math.Sin(angle));
        }
        return Named(Tensor.Parameter(values, shape), name);
    }

    /// <summary>A parameter of <paramref name="shape"/> with every element <paramref name="value"/> (norm weights 1, biases 0).</summary>
    public static Tensor Constant(float value, string name, params int[] shape)
    {
        var values = new float[Tensor.ShapeLength(shape)];
        Array.Fill(values, value);
        return Named(Tensor.Parameter(values, shape), name);
    }

    private static Tensor Named(Tensor tensor, string name)
    {
        tensor.Name = name;
        return tensor;
    }
}
