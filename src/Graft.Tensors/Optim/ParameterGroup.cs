namespace Graft.Tensors.Optim;

/// <summary>Parameters that share a learning rate and a weight decay. Schedules set <see cref="LearningRate"/> before each step.</summary>
public sealed class ParameterGroup
{
    public ParameterGroup(IReadOnlyList<Tensor> parameters, float learningRate, float weightDecay)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(learningRate >= 0f)) throw new ArgumentOutOfRangeException(nameof(learningRate), $"learning rate must be >= 0, got {learningRate}");
        if (!(weightDecay >= 0f)) throw new ArgumentOutOfRangeException(nameof(weightDecay), $"weight decay must be >= 0, got {weightDecay}");
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            string which = $"parameter {i}{(p.Name is null ? "" : $" '{p.Name}'")} {p.ShapeString}";
            if (p.DType != DType.F32) throw new ArgumentException($"{which} is stored as {p.DType}; only F32 tensors can be optimised");
            if (!p.IsLeaf) throw new ArgumentException($"{which} is the result of an operation, not a leaf parameter");
            if (!p.RequiresGrad) throw new ArgumentException($"{which} is frozen (RequiresGrad is false); frozen tensors cannot be optimised");
        }
        Parameters = parameters.ToArray();
        LearningRate = learningRate;
        WeightDecay = weightDecay;
    }

    public IReadOnlyList<Tensor> Parameters { get; }

    public float LearningRate { get; set; }

    public float WeightDecay { get; }

    /// <summary>
    /// Splits named parameters into [0] a group with <paramref name="weightDecay"/> and [1] a group without it.
    /// By default biases, norm weights and every tensor of rank 0 or 1 skip decay (see <see cref="SkipsDecayByDefault"/>).
    /// </summary>
    public static ParameterGroup[] SplitByDecay(IEnumerable<(string Name, Tensor Parameter)> named, float learningRate, float weightDecay,
        Func<string, Tensor, bool>? skipsDecay = null)
    {
        skipsDecay ??= SkipsDecayByDefault;
        var decayed = new List<Tensor>();
        var undecayed = new List<Tensor>();
        foreach (var (name, parameter) in named) (skipsDecay(name, parameter) ? undecayed : decayed).Add(parameter);
        return [new ParameterGroup(decayed, learningRate, weightDecay), new ParameterGroup(undecayed, learningRate, 0f)];
    }

    /// <summary>True for 0-D and 1-D tensors and for names that end in "bias" or contain "norm" (any case).</summary>
    public static bool SkipsDecayByDefault(string name, Tensor parameter) =>
        parameter.Rank <= 1 || name.EndsWith("bias", StringComparison.OrdinalIgnoreCase) || name.Contains("norm", StringComparison.OrdinalIgnoreCase);
}
