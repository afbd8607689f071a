using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Graft.Tensors.Optim;

/// <summary>
/// Adam with decoupled weight decay, step for step as torch.optim.AdamW (amsgrad off): for each parameter
/// with a gradient, p ← p·(1 - lr·wd); m ← β1·m + (1-β1)·g; v ← β2·v + (1-β2)·g²;
/// p ← p - lr/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + ε), with t that parameter's own step count. Parameters without
/// a gradient this step are skipped and their step count does not advance (as torch).
/// </summary>
public sealed class AdamW
{
    private readonly Dictionary<Tensor, Moments> _state = new(ReferenceEqualityComparer.Instance);
    private readonly float _beta1, _beta2, _eps;

    public AdamW(IEnumerable<ParameterGroup> groups, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f)
    {
        ArgumentNullException.ThrowIfNull(groups);
        if (!(beta1 >= 0f && beta1 < 1f)) throw new ArgumentOutOfRangeException(nameof(beta1), $"beta1 must be in [0, 1), got {beta1}");
        if (!(beta2 >= 0f && beta2 < 1f)) throw new ArgumentOutOfRangeException(nameof(beta2), $"beta2 must be in [0, 1), got {beta2}");
        if (!(eps > 0f)) throw new ArgumentOutOfRangeException(nameof(eps), $"eps must be > 0, got {eps}");
        Groups = groups.ToArray();
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var group in Groups)
            foreach (var p in group.Parameters)
                if (!seen.Add(p)) throw new ArgumentException($"parameter {p} appears in more than one group (or twice in one)");
        (_beta1, _beta2, _eps) = (beta1, beta2, eps);
    }

    public IReadOnlyList<ParameterGroup> Groups { get; }

    /// <summary>Applies one update to every parameter that has a gradient.</summary>
    public void Step()
    {
        foreach (var group in Groups)
        {
            foreach (var p in group.Parameters)
            {
                if (p.Grad is null) continue;
                if (!_state.TryGetValue(p, out var moments)) _state[p] = moments = new Moments(p.Length);
                moments.Step++;
                var values = p.Span;
                if (group.WeightDecay != 0f) TensorPrimitives.Multiply(values, (float)(1.0 - (double)group.LearningRate * group.WeightDecay), values);
                double correction1 = 1.0 - Math.Pow(_beta1, moments.Step);
                double correction2 = 1.0 - Math.Pow(_beta2, moments.Step);
                Update(values, p.Grad.Span, moments.First, moments.Second, _beta1, _beta2,
                    stepSize: (float)(group.LearningRate / correction1), inverseRootCorrection2: (float)(1.0 / Math.Sqrt(correction2)), _eps);
            }
        }
    }

    /// <summary>Drops every parameter's gradient (the next backward pass starts from zero).</summary>
    public void ZeroGrad()
    {
        foreach (var group in Groups)
            foreach (var p in group.Parameters) p.Grad = null;
    }

    /// <summary>
    /// Copies of the optimiser state for checkpointing: for each parameter that has taken a step, NAME.exp_avg and
    /// NAME.exp_avg_sq (the parameter's shape) and NAME.step (a 1-element F32 tensor holding the step count,
    /// exact up to 2²⁴ steps), NAME given by <paramref name="nameOf"/>.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> StateTensors(Func<Tensor, string> nameOf)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var group in Groups)
            foreach (var p in group.Parameters)
            {
                if (!_state.TryGetValue(p, out var moments)) continue;
                string name = nameOf(p);
                if (!result.TryAdd(name + ".step", Tensor.FromArray([moments.Step], 1)))
                    throw new ArgumentException($"two parameters are both named '{name}'");
                result.Add(name + ".exp_avg", Tensor.FromArray((float[])moments.First.Clone(), p.Shape));
                result.Add(name + ".exp_avg_sq", Tensor.FromArray((float[])moments.Second.Clone(), p.Shape));
            }
        return result;
    }

    /// <summary>
    /// Restores state written by <see cref="StateTensors"/>. Parameters absent from it start fresh; an entry
    /// that names no parameter, a partial entry, or a shape mismatch is an error (the checkpoint does not fit).
    /// </summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, Func<Tensor, string> nameOf)
    {
        var loaded = new Dictionary<Tensor, Moments>(ReferenceEqualityComparer.Instance);
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var group in Groups)
            foreach (var p in group.Parameters)
            {
                string name = nameOf(p);
                bool hasStep = state.TryGetValue(name + ".step", out var step);
                bool hasFirst = state.TryGetValue(name + ".exp_avg", out var first);
                bool hasSecond = state.TryGetValue(name + ".exp_avg_sq", out var second);
                if (!hasStep && !hasFirst && !hasSecond) continue;
                if (!hasStep || !hasFirst || !hasSecond)
                    throw new ArgumentException($"optimiser state for '{name}' is incomplete: it needs {name}.step, {name}.exp_avg and {name}.exp_avg_sq");
                if (step!.Length != 1) throw new ArgumentException($"optimiser state '{name}.step' must hold one value, got {step.ShapeString}");
                float count = step.ToArray()[0];
                if (!(count >= 1f) || count != MathF.Floor(count)) throw new ArgumentException($"optimiser state '{name}.step' = {count} is not a positive whole number");
                foreach (var (suffix, moment) in new[] { (".exp_avg", first!), (".exp_avg_sq", second!) })
                    if (!moment.Shape.AsSpan().SequenceEqual(p.Shape))
                        throw new ArgumentException($"optimiser state '{name}{suffix}' has shape {moment.ShapeString}, but the parameter is {p.ShapeString}");
                loaded[p] = new Moments((int)count, first!.ToArray(), second!.ToArray());
                used.Add(name + ".step");
                used.Add(name + ".exp_avg");
                used.Add(name + ".exp_avg_sq");
            }
        foreach (var key in state.Keys)
            if (!used.Contains(key)) throw new ArgumentException($"optimiser state '{key}' matches no parameter of this optimiser");
        _state.Clear();
        foreach (var (p, moments) in loaded) _state[p] = moments;
    }

    /// <summary>The fused element-wise update of one parameter, after weight decay.</summary>
    private static void Update(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v,
        float beta1, float beta2, float stepSize, float inverseRootCorrection2, float eps)
    {
        if (g.Length != p.Length) throw new InvalidOperationException($"gradient length {g.Length} does not match parameter length {p.Length}");
        float oneMinusBeta1 = 1f - beta1, oneMinusBeta2 = 1f - beta2;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float pr = ref MemoryMarshal.GetReference(p);
            ref float gr = ref MemoryMarshal.GetReference(g);
            ref float mr = ref MemoryMarshal.GetReference(m);
            ref float vr = ref MemoryMarshal.GetReference(v);
            for (; i <= p.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var gi = Vector256.LoadUnsafe(ref gr, (nuint)i);
                var mi = Vector256.LoadUnsafe(ref mr, (nuint)i) * beta1 + gi * oneMinusBeta1;
                var vi = Vector256.LoadUnsafe(ref vr, (nuint)i) * beta2 + gi * gi * oneMinusBeta2;
                var denominator = Vector256.Sqrt(vi) * inverseRootCorrection2 + Vector256.Create(eps);
                var pi = Vector256.LoadUnsafe(ref pr, (nuint)i) - mi * stepSize / denominator;
                mi.StoreUnsafe(ref mr, (nuint)i);
                vi.StoreUnsafe(ref vr, (nuint)i);
                pi.StoreUnsafe(ref pr, (nuint)i);
            }
        }
        for (; i < p.Length; i++)
        {
            m[i] = m[i] * beta1 + g[i] * oneMinusBeta1;
            v[i] = v[i] * beta2 + g[i] * g[i] * oneMinusBeta2;
            p[i] -= m[i] * stepSize / (MathF.Sqrt(v[i]) * inverseRootCorrection2 + eps);
        }
    }

    private sealed class Moments(int step, float[] first, float[] second)
    {
        public Moments(int length) : this(0, new float[length], new float[length]) { }

        public int Step { get; set; } = step;
        public float[] First { get; } = first;
        public float[] Second { get; } = second;
    }
}
