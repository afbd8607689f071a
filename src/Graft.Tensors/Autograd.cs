namespace Graft.Tensors;

/// <summary>One recorded operation: its inputs and how to push the output gradient into them.</summary>
internal sealed class AutogradNode(string op, Tensor[] inputs, Action<Tensor> backward)
{
    public string Op { get; } = op;
    public Tensor[] Inputs { get; } = inputs;

    /// <summary>Receives the gradient of the output and accumulates into the inputs that require one.</summary>
    public Action<Tensor> Backward { get; } = backward;
}

/// <summary>
/// Reverse-mode autograd. An operation is recorded only when gradients are enabled on this thread and
/// some input requires a gradient; under <see cref="NoGrad"/> nothing is recorded or allocated for it.
/// The recorded graph is the tape: a reverse topological walk from the loss replays it backwards.
/// </summary>
public static class Autograd
{
    [ThreadStatic] private static int t_noGradDepth;

    public static bool IsEnabled => t_noGradDepth == 0;

    /// <summary>Disables recording on this thread until disposed.</summary>
    public static NoGradScope NoGrad()
    {
        t_noGradDepth++;
        return new NoGradScope();
    }

    public readonly struct NoGradScope : IDisposable
    {
        public void Dispose() => t_noGradDepth--;
    }

    internal static bool ShouldRecord(Tensor a) => t_noGradDepth == 0 && a.RequiresGrad;

    internal static bool ShouldRecord(Tensor a, Tensor b) => t_noGradDepth == 0 && (a.RequiresGrad || b.RequiresGrad);

    internal static bool ShouldRecord(ReadOnlySpan<Tensor?> inputs)
    {
        if (t_noGradDepth != 0) return false;
        foreach (var t in inputs) if (t is not null && t.RequiresGrad) return true;
        return false;
    }

    /// <summary>Attaches a backward function to <paramref name="output"/> when recording applies.</summary>
    internal static Tensor Record(Tensor output, string op, Tensor[] inputs, Action<Tensor> backward)
    {
        if (ShouldRecord(inputs)) output.GradFn = new AutogradNode(op, inputs, backward);
        return output;
    }

    internal static void Backward(Tensor root, Tensor? outputGradient)
    {
        if (!root.RequiresGrad) throw new InvalidOperationException("backward on a tensor that does not require a gradient");
        if (outputGradient is null && root.Length != 1) throw new InvalidOperationException($"backward without an output gradient needs a scalar, got {root.ShapeString}");
        if (outputGradient is not null && !Tensor.SameShape(outputGradient.Shape, root.Shape))
            throw new ArgumentException($"output gradient {outputGradient.ShapeString} does not match {root.ShapeString}");

        var order = TopologicalOrder(root);
        var seed = root.GradientBuffer();
        if (outputGradient is null) seed[0] += 1f;
        else
        {
            var g = outputGradient.Span;
            for (int i = 0; i < seed.Length; i++) seed[i] += g[i];
        }

        using (NoGrad())
        {
            for (int i = order.Count - 1; i >= 0; i--)
            {
                var tensor = order[i];
                var node = tensor.GradFn!;
                if (tensor.Grad is not null) node.Backward(tensor.Grad);
                // Intermediate gradients and the graph are released as soon as they have been used.
                tensor.Grad = null;
                tensor.GradFn = null;
            }
        }
    }

    /// <summary>Recorded tensors reachable from the root, each after all the tensors it depends on.</summary>
    private static List<Tensor> TopologicalOrder(Tensor root)
    {
        var order = new List<Tensor>();
        var visited = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Tensor Tensor, bool Expanded)>();
        stack.Push((root, false));
        while (stack.Count > 0)
        {
            var (tensor, expanded) = stack.Pop();
            if (expanded)
            {
                order.Add(tensor);
                continue;
            }
            if (tensor.GradFn is null || !visited.Add(tensor)) continue;
            stack.Push((tensor, true));
            foreach (var input in tensor.GradFn.Inputs)
                if (input.GradFn is not null && !visited.Contains(input)) stack.Push((input, false));
        }
        return order;
    }
}
